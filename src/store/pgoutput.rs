//! The decoder of PostgreSQL's logical replication messages (the `pgoutput`
//! plugin, protocol version 1): Begin, Commit, Origin, Relation, Type,
//! Insert, Update, Delete, Truncate and logical Message.
//!
//! [`decode`] turns one message (the payload of one `XLogData`, or one row
//! of `pg_logical_slot_get_binary_changes`) into a [`Message`]. It never
//! panics: every read is bounds-checked, every count is checked against the
//! bytes left before anything is allocated for it, and a message with bytes
//! left over is refused (a protocol mismatch, not something to guess at).
//! The tests feed it arbitrary bytes and mutations of messages captured from
//! a real server (proptest), seeded by `tests/fixtures/pgoutput/`.
//!
//! [`Relations`] keeps the Relation messages of one stream (a new one for an
//! id replaces the old: columns added, dropped, renamed, reordered) and turns
//! row messages into a [`Change`] whose columns are read by name, in the
//! text format or the binary one (`binary 'true'`).

mod value;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};

pub use value::ValueError;

/// Microseconds from the Unix epoch to Postgres's (2000-01-01).
const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000;

/// One pgoutput message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Begin {
        final_lsn: u64,
        /// Microseconds since 2000-01-01 UTC (see [`pg_timestamp`]).
        commit_time_micros: i64,
        xid: u32,
    },
    Commit {
        flags: u8,
        commit_lsn: u64,
        end_lsn: u64,
        commit_time_micros: i64,
    },
    Origin {
        commit_lsn: u64,
        name: String,
    },
    Relation(Relation),
    /// Sent before a Relation whose column has a type outside the built-in
    /// ones: that type's OID, with the namespace (empty for `pg_catalog`)
    /// and name of its base type (a domain over text is named `text`).
    Type {
        id: u32,
        namespace: String,
        name: String,
    },
    Insert {
        relation: u32,
        new: Tuple,
    },
    Update {
        relation: u32,
        /// `K` (the old key, when it changed) or `O` (the whole old row,
        /// under `REPLICA IDENTITY FULL`); absent otherwise.
        old: Option<OldTuple>,
        new: Tuple,
    },
    Delete {
        relation: u32,
        old: OldTuple,
    },
    Truncate {
        relations: Vec<u32>,
        /// Bit 1: CASCADE, bit 2: RESTART IDENTITY.
        options: u8,
    },
    /// `pg_logical_emit_message` (sent with the `messages 'true'` option).
    LogicalMessage {
        /// Bit 1: transactional.
        flags: u8,
        lsn: u64,
        prefix: String,
        content: Bytes,
    },
}

/// A Relation message: a table's id and its published columns, in the order
/// that tuples carry them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    pub id: u32,
    /// Empty for `pg_catalog`.
    pub namespace: String,
    pub name: String,
    /// `d` default, `n` nothing, `f` full, `i` index.
    pub replica_identity: u8,
    pub columns: Vec<RelationColumn>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationColumn {
    /// Part of the replica identity (the key).
    pub key: bool,
    pub name: String,
    pub type_oid: u32,
    pub type_modifier: i32,
}

/// One column's value in a tuple.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Datum {
    Null,
    /// A TOASTed value the UPDATE did not change, so it is not sent.
    UnchangedToast,
    /// The type's text output (in the sender's DateStyle and TimeZone).
    Text(Bytes),
    /// The type's binary send format (`binary 'true'`).
    Binary(Bytes),
}

/// A row's columns, in the order of its relation's columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tuple(pub Vec<Datum>);

/// The old row of an Update or Delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OldTuple {
    /// `K`: the replica identity's columns; the others are Null.
    Key(Tuple),
    /// `O`: the whole old row (`REPLICA IDENTITY FULL`).
    Full(Tuple),
}

impl OldTuple {
    pub fn tuple(&self) -> &Tuple {
        match self {
            OldTuple::Key(t) | OldTuple::Full(t) => t,
        }
    }
}

/// A table's schema and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TableName {
    pub schema: String,
    pub name: String,
}

impl TableName {
    fn of(relation: &Relation) -> TableName {
        let schema = match relation.namespace.as_str() {
            "" => "pg_catalog",
            other => other,
        };
        TableName {
            schema: schema.to_string(),
            name: relation.name.clone(),
        }
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("empty pgoutput message")]
    Empty,
    #[error("unknown pgoutput message tag {}", show_byte(*.0))]
    UnknownTag(u8),
    #[error("pgoutput {message} message: {field} needs {needed} bytes, {left} left")]
    Truncated {
        message: &'static str,
        field: &'static str,
        needed: usize,
        left: usize,
    },
    #[error("pgoutput {message} message: {field} has no terminating NUL")]
    Unterminated {
        message: &'static str,
        field: &'static str,
    },
    #[error("pgoutput {message} message: {field} is not UTF-8")]
    NotUtf8 {
        message: &'static str,
        field: &'static str,
    },
    #[error("pgoutput {message} message: {field} is negative ({value})")]
    NegativeLength {
        message: &'static str,
        field: &'static str,
        value: i32,
    },
    #[error("pgoutput {message} message: unknown {field} {}", show_byte(*.found))]
    UnknownKind {
        message: &'static str,
        field: &'static str,
        found: u8,
    },
    #[error(
        "pgoutput {message} message: {count} {field} need at least {needed} bytes, {left} left"
    )]
    TooMany {
        message: &'static str,
        field: &'static str,
        count: usize,
        needed: usize,
        left: usize,
    },
    #[error("pgoutput {message} message: {left} bytes left over after the message")]
    Trailing { message: &'static str, left: usize },
    #[error(
        "pgoutput {message} message for relation {relation}, which no Relation message described"
    )]
    UnknownRelation {
        message: &'static str,
        relation: u32,
    },
    #[error(
        "pgoutput {message} message for {table}: the tuple has {found} columns, its Relation message {expected}"
    )]
    ColumnCount {
        message: &'static str,
        table: TableName,
        expected: usize,
        found: usize,
    },
    #[error("{table} has no column {column}")]
    NoColumn { table: TableName, column: String },
    #[error("column {column} of {table}: {source}")]
    Value {
        table: TableName,
        column: String,
        #[source]
        source: ValueError,
    },
}

fn show_byte(b: u8) -> String {
    if b.is_ascii_graphic() {
        format!("'{}' ({b:#04x})", b as char)
    } else {
        format!("{b:#04x}")
    }
}

/// A Begin's or Commit's time (microseconds since 2000-01-01 UTC), or None
/// when it is outside what `DateTime` holds.
pub fn pg_timestamp(micros: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_micros(micros.checked_add(PG_EPOCH_OFFSET_MICROS)?)
}

/// Decodes one pgoutput message (copying it; see [`decode_bytes`]).
pub fn decode(data: &[u8]) -> Result<Message, DecodeError> {
    decode_bytes(Bytes::copy_from_slice(data))
}

/// Decodes one pgoutput message; datums share `data`'s buffer.
pub fn decode_bytes(data: Bytes) -> Result<Message, DecodeError> {
    let tag = *data.first().ok_or(DecodeError::Empty)?;
    let message = name_of(tag)?;
    let mut r = Reader {
        buf: &data,
        pos: 1,
        message,
    };
    let decoded = match tag {
        b'B' => Message::Begin {
            final_lsn: r.u64("final LSN")?,
            commit_time_micros: r.i64("commit time")?,
            xid: r.u32("xid")?,
        },
        b'C' => Message::Commit {
            flags: r.u8("flags")?,
            commit_lsn: r.u64("commit LSN")?,
            end_lsn: r.u64("end LSN")?,
            commit_time_micros: r.i64("commit time")?,
        },
        b'O' => Message::Origin {
            commit_lsn: r.u64("commit LSN")?,
            name: r.string("origin name")?,
        },
        b'R' => Message::Relation(relation(&mut r)?),
        b'Y' => Message::Type {
            id: r.u32("type OID")?,
            namespace: r.string("namespace")?,
            name: r.string("type name")?,
        },
        b'I' => insert(&mut r)?,
        b'U' => update(&mut r)?,
        b'D' => delete(&mut r)?,
        b'T' => truncate(&mut r)?,
        _ => logical_message(&mut r)?,
    };
    r.finish()?;
    Ok(decoded)
}

fn name_of(tag: u8) -> Result<&'static str, DecodeError> {
    Ok(match tag {
        b'B' => "Begin",
        b'C' => "Commit",
        b'O' => "Origin",
        b'R' => "Relation",
        b'Y' => "Type",
        b'I' => "Insert",
        b'U' => "Update",
        b'D' => "Delete",
        b'T' => "Truncate",
        b'M' => "Message",
        other => return Err(DecodeError::UnknownTag(other)),
    })
}

/// The smallest encoding of one Relation column: flags, an empty name's
/// NUL, type OID and modifier.
const MIN_RELATION_COLUMN: usize = 1 + 1 + 4 + 4;

fn relation(r: &mut Reader<'_>) -> Result<Relation, DecodeError> {
    let id = r.u32("relation OID")?;
    let namespace = r.string("namespace")?;
    let name = r.string("relation name")?;
    let replica_identity = r.u8("replica identity")?;
    let count = r.count_u16("columns", MIN_RELATION_COLUMN)?;
    let mut columns = Vec::with_capacity(count);
    for _ in 0..count {
        columns.push(RelationColumn {
            key: r.u8("column flags")? & 1 == 1,
            name: r.string("column name")?,
            type_oid: r.u32("column type OID")?,
            type_modifier: r.i32("column type modifier")?,
        });
    }
    Ok(Relation {
        id,
        namespace,
        name,
        replica_identity,
        columns,
    })
}

fn insert(r: &mut Reader<'_>) -> Result<Message, DecodeError> {
    let relation = r.u32("relation OID")?;
    r.expect_kind("tuple kind", b'N')?;
    Ok(Message::Insert {
        relation,
        new: tuple(r)?,
    })
}

fn update(r: &mut Reader<'_>) -> Result<Message, DecodeError> {
    let relation = r.u32("relation OID")?;
    let old = match r.u8("tuple kind")? {
        b'N' => None,
        b'K' => Some(OldTuple::Key(tuple(r)?)),
        b'O' => Some(OldTuple::Full(tuple(r)?)),
        found => return Err(r.unknown_kind("tuple kind", found)),
    };
    if old.is_some() {
        r.expect_kind("new tuple kind", b'N')?;
    }
    Ok(Message::Update {
        relation,
        old,
        new: tuple(r)?,
    })
}

fn delete(r: &mut Reader<'_>) -> Result<Message, DecodeError> {
    let relation = r.u32("relation OID")?;
    let old = match r.u8("tuple kind")? {
        b'K' => OldTuple::Key(tuple(r)?),
        b'O' => OldTuple::Full(tuple(r)?),
        found => return Err(r.unknown_kind("tuple kind", found)),
    };
    Ok(Message::Delete { relation, old })
}

fn truncate(r: &mut Reader<'_>) -> Result<Message, DecodeError> {
    let count = r.u32("relation count")?;
    let options = r.u8("options")?;
    let count = r.check_count("relations", usize::try_from(count).unwrap_or(usize::MAX), 4)?;
    let mut relations = Vec::with_capacity(count);
    for _ in 0..count {
        relations.push(r.u32("relation OID")?);
    }
    Ok(Message::Truncate { relations, options })
}

fn logical_message(r: &mut Reader<'_>) -> Result<Message, DecodeError> {
    let flags = r.u8("flags")?;
    let lsn = r.u64("LSN")?;
    let prefix = r.string("prefix")?;
    let length = r.length("content length")?;
    Ok(Message::LogicalMessage {
        flags,
        lsn,
        prefix,
        content: r.bytes("content", length)?,
    })
}

fn tuple(r: &mut Reader<'_>) -> Result<Tuple, DecodeError> {
    // Every column takes at least its kind byte.
    let count = r.count_u16("tuple columns", 1)?;
    let mut datums = Vec::with_capacity(count);
    for _ in 0..count {
        datums.push(match r.u8("column kind")? {
            b'n' => Datum::Null,
            b'u' => Datum::UnchangedToast,
            b't' => {
                let length = r.length("text value length")?;
                Datum::Text(r.bytes("text value", length)?)
            }
            b'b' => {
                let length = r.length("binary value length")?;
                Datum::Binary(r.bytes("binary value", length)?)
            }
            found => return Err(r.unknown_kind("column kind", found)),
        });
    }
    Ok(Tuple(datums))
}

/// A cursor over one message; every read checks what is left.
struct Reader<'a> {
    buf: &'a Bytes,
    pos: usize,
    message: &'static str,
}

impl Reader<'_> {
    fn left(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    fn truncated(&self, field: &'static str, needed: usize) -> DecodeError {
        DecodeError::Truncated {
            message: self.message,
            field,
            needed,
            left: self.left(),
        }
    }

    fn take<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        let end = self.pos.checked_add(N);
        let bytes = end
            .and_then(|end| self.buf.get(self.pos..end))
            .and_then(|s| <[u8; N]>::try_from(s).ok())
            .ok_or_else(|| self.truncated(field, N))?;
        self.pos += N;
        Ok(bytes)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(u8::from_be_bytes(self.take(field)?))
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.take(field)?))
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.take(field)?))
    }

    fn i32(&mut self, field: &'static str) -> Result<i32, DecodeError> {
        Ok(i32::from_be_bytes(self.take(field)?))
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.take(field)?))
    }

    fn i64(&mut self, field: &'static str) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.take(field)?))
    }

    /// An Int32 length, refused when negative.
    fn length(&mut self, field: &'static str) -> Result<usize, DecodeError> {
        let value = self.i32(field)?;
        usize::try_from(value).map_err(|_| DecodeError::NegativeLength {
            message: self.message,
            field,
            value,
        })
    }

    /// An Int16 count of items that take at least `min_size` bytes each.
    fn count_u16(&mut self, field: &'static str, min_size: usize) -> Result<usize, DecodeError> {
        let count = self.u16(field)?;
        self.check_count(field, usize::from(count), min_size)
    }

    /// `count` items of at least `min_size` bytes must fit in what is left,
    /// so that a forged count never sizes an allocation.
    fn check_count(
        &self,
        field: &'static str,
        count: usize,
        min_size: usize,
    ) -> Result<usize, DecodeError> {
        let needed = count.saturating_mul(min_size);
        if needed > self.left() {
            return Err(DecodeError::TooMany {
                message: self.message,
                field,
                count,
                needed,
                left: self.left(),
            });
        }
        Ok(count)
    }

    fn bytes(&mut self, field: &'static str, length: usize) -> Result<Bytes, DecodeError> {
        if length > self.left() {
            return Err(self.truncated(field, length));
        }
        let bytes = self.buf.slice(self.pos..self.pos + length);
        self.pos += length;
        Ok(bytes)
    }

    /// A NUL-terminated UTF-8 string.
    fn string(&mut self, field: &'static str) -> Result<String, DecodeError> {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        let nul = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or(DecodeError::Unterminated {
                message: self.message,
                field,
            })?;
        let text = rest.get(..nul).unwrap_or_default();
        let text = std::str::from_utf8(text).map_err(|_| DecodeError::NotUtf8 {
            message: self.message,
            field,
        })?;
        self.pos += nul + 1;
        Ok(text.to_string())
    }

    fn unknown_kind(&self, field: &'static str, found: u8) -> DecodeError {
        DecodeError::UnknownKind {
            message: self.message,
            field,
            found,
        }
    }

    fn expect_kind(&mut self, field: &'static str, kind: u8) -> Result<(), DecodeError> {
        match self.u8(field)? {
            found if found == kind => Ok(()),
            found => Err(self.unknown_kind(field, found)),
        }
    }

    fn finish(&self) -> Result<(), DecodeError> {
        match self.left() {
            0 => Ok(()),
            left => Err(DecodeError::Trailing {
                message: self.message,
                left,
            }),
        }
    }
}

/// The relations seen so far on one stream (a new Relation message for an
/// id replaces the old one: columns added, dropped, renamed, reordered).
#[derive(Debug, Default, Clone)]
pub struct Relations {
    by_id: HashMap<u32, Arc<Described>>,
}

/// A relation with its table name, shared by the changes made under it.
#[derive(Debug)]
struct Described {
    relation: Relation,
    table: TableName,
}

/// What a row message did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Insert,
    Update,
    Delete,
    Truncate,
}

/// One row message, its columns readable by name under the relation it
/// was sent with.
#[derive(Debug, Clone)]
pub struct Change {
    /// The changed table (for a Truncate, the first of [`Change::truncated`]).
    pub table: TableName,
    pub kind: ChangeKind,
    described: Arc<Described>,
    new: Option<Tuple>,
    old: Option<OldTuple>,
    truncated: Vec<TableName>,
    truncate_options: u8,
}

impl Relations {
    pub fn new() -> Self {
        Relations::default()
    }

    /// Decodes one message, remembers Relation messages, and turns row
    /// messages into a `Change` naming its table and its columns by name.
    /// Other messages (Begin, Commit, Type, ...) give `None`.
    pub fn apply(&mut self, data: &[u8]) -> Result<Option<Change>, DecodeError> {
        self.apply_message(decode(data)?)
    }

    /// [`Relations::apply`] without copying the message.
    pub fn apply_bytes(&mut self, data: Bytes) -> Result<Option<Change>, DecodeError> {
        self.apply_message(decode_bytes(data)?)
    }

    /// [`Relations::apply`] for a message already decoded.
    pub fn apply_message(&mut self, message: Message) -> Result<Option<Change>, DecodeError> {
        let (kind, relation, old, new) = match message {
            Message::Relation(relation) => {
                let table = TableName::of(&relation);
                self.by_id
                    .insert(relation.id, Arc::new(Described { relation, table }));
                return Ok(None);
            }
            Message::Insert { relation, new } => (ChangeKind::Insert, relation, None, Some(new)),
            Message::Update { relation, old, new } => {
                (ChangeKind::Update, relation, old, Some(new))
            }
            Message::Delete { relation, old } => (ChangeKind::Delete, relation, Some(old), None),
            Message::Truncate { relations, options } => return self.truncate(&relations, options),
            Message::Begin { .. }
            | Message::Commit { .. }
            | Message::Origin { .. }
            | Message::Type { .. }
            | Message::LogicalMessage { .. } => return Ok(None),
        };
        let message = name_of_kind(kind);
        let described = self.described(message, relation)?;
        for tuple in old.iter().map(OldTuple::tuple).chain(new.iter()) {
            check_width(message, &described, tuple)?;
        }
        Ok(Some(Change {
            table: described.table.clone(),
            kind,
            described,
            new,
            old,
            truncated: Vec::new(),
            truncate_options: 0,
        }))
    }

    /// The last Relation message for `id`.
    pub fn get(&self, id: u32) -> Option<&Relation> {
        self.by_id.get(&id).map(|d| &d.relation)
    }

    fn described(&self, message: &'static str, id: u32) -> Result<Arc<Described>, DecodeError> {
        self.by_id
            .get(&id)
            .cloned()
            .ok_or(DecodeError::UnknownRelation {
                message,
                relation: id,
            })
    }

    fn truncate(&self, ids: &[u32], options: u8) -> Result<Option<Change>, DecodeError> {
        let described = ids
            .iter()
            .map(|&id| self.described("Truncate", id))
            .collect::<Result<Vec<_>, _>>()?;
        let Some(first) = described.first() else {
            return Ok(None);
        };
        Ok(Some(Change {
            table: first.table.clone(),
            kind: ChangeKind::Truncate,
            described: first.clone(),
            new: None,
            old: None,
            truncated: described.iter().map(|d| d.table.clone()).collect(),
            truncate_options: options,
        }))
    }
}

fn name_of_kind(kind: ChangeKind) -> &'static str {
    match kind {
        ChangeKind::Insert => "Insert",
        ChangeKind::Update => "Update",
        ChangeKind::Delete => "Delete",
        ChangeKind::Truncate => "Truncate",
    }
}

fn check_width(
    message: &'static str,
    described: &Described,
    tuple: &Tuple,
) -> Result<(), DecodeError> {
    let expected = described.relation.columns.len();
    if tuple.0.len() != expected {
        return Err(DecodeError::ColumnCount {
            message,
            table: described.table.clone(),
            expected,
            found: tuple.0.len(),
        });
    }
    Ok(())
}

impl Change {
    /// The relation the change was sent under.
    pub fn relation(&self) -> &Relation {
        &self.described.relation
    }

    /// The row the change is about: the new row (Insert, Update), or the
    /// old one (Delete: for a `K` old tuple only its key columns are set).
    pub fn row(&self) -> Option<Row<'_>> {
        match (&self.new, &self.old) {
            (Some(new), _) => Some(self.row_of(new)),
            (None, Some(old)) => Some(self.row_of(old.tuple())),
            (None, None) => None,
        }
    }

    /// The old row of an Update (when sent) or a Delete.
    pub fn old(&self) -> Option<Row<'_>> {
        self.old.as_ref().map(|old| self.row_of(old.tuple()))
    }

    /// The old tuple as sent: key columns only, or the whole old row.
    pub fn old_tuple(&self) -> Option<&OldTuple> {
        self.old.as_ref()
    }

    fn row_of<'a>(&'a self, tuple: &'a Tuple) -> Row<'a> {
        Row {
            table: &self.described.table,
            relation: &self.described.relation,
            tuple,
        }
    }

    /// The new row's column (Insert, Update), or the old key's (Delete).
    pub fn column(&self, name: &str) -> Option<&Datum> {
        self.row()?.column(name)
    }

    /// An `int2`, `int4` or `int8` column of [`Change::row`].
    pub fn i64(&self, name: &str) -> Result<Option<i64>, DecodeError> {
        self.existing_row(name)?.i64(name)
    }

    /// A `text`, `varchar` or any other column sent as UTF-8 text (such as
    /// a domain over text) of [`Change::row`].
    pub fn text(&self, name: &str) -> Result<Option<&str>, DecodeError> {
        self.existing_row(name)?.text(name)
    }

    /// A `timestamptz` (or `timestamp`, taken as UTC) column of
    /// [`Change::row`].
    pub fn timestamp(&self, name: &str) -> Result<Option<DateTime<Utc>>, DecodeError> {
        self.existing_row(name)?.timestamp(name)
    }

    /// A `bool` column of [`Change::row`].
    pub fn bool(&self, name: &str) -> Result<Option<bool>, DecodeError> {
        self.existing_row(name)?.bool(name)
    }

    fn existing_row(&self, name: &str) -> Result<Row<'_>, DecodeError> {
        self.row().ok_or_else(|| DecodeError::NoColumn {
            table: self.table.clone(),
            column: name.to_string(),
        })
    }

    /// The tables a Truncate emptied (empty for other kinds).
    pub fn truncated(&self) -> &[TableName] {
        &self.truncated
    }

    /// A Truncate's options: bit 1 CASCADE, bit 2 RESTART IDENTITY.
    pub fn truncate_options(&self) -> u8 {
        self.truncate_options
    }
}

/// One tuple of a change, its columns read by name.
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    table: &'a TableName,
    relation: &'a Relation,
    tuple: &'a Tuple,
}

impl<'a> Row<'a> {
    pub fn column(&self, name: &str) -> Option<&'a Datum> {
        self.find(name).ok().map(|(_, datum)| datum)
    }

    fn find(&self, name: &str) -> Result<(&'a RelationColumn, &'a Datum), DecodeError> {
        self.relation
            .columns
            .iter()
            .zip(&self.tuple.0)
            .find(|(column, _)| column.name == name)
            .ok_or_else(|| DecodeError::NoColumn {
                table: self.table.clone(),
                column: name.to_string(),
            })
    }

    fn read<T>(
        &self,
        name: &str,
        convert: impl FnOnce(&'a RelationColumn, &'a Datum) -> Result<Option<T>, ValueError>,
    ) -> Result<Option<T>, DecodeError> {
        let (column, datum) = self.find(name)?;
        convert(column, datum).map_err(|source| DecodeError::Value {
            table: self.table.clone(),
            column: name.to_string(),
            source,
        })
    }

    /// An `int2`, `int4` or `int8` column; None when Null.
    pub fn i64(&self, name: &str) -> Result<Option<i64>, DecodeError> {
        self.read(name, value::i64)
    }

    /// A column sent as UTF-8 text, whatever its type; None when Null.
    pub fn text(&self, name: &str) -> Result<Option<&'a str>, DecodeError> {
        self.read(name, |_, datum| value::text(datum))
    }

    /// A `timestamptz` (or `timestamp`, taken as UTC) column; None when
    /// Null; `infinity` is an error.
    pub fn timestamp(&self, name: &str) -> Result<Option<DateTime<Utc>>, DecodeError> {
        self.read(name, value::timestamp)
    }

    /// A `bool` column; None when Null.
    pub fn bool(&self, name: &str) -> Result<Option<bool>, DecodeError> {
        self.read(name, value::bool)
    }
}

#[cfg(test)]
mod tests;
