//! Hand-built messages of every kind, the captured ones in
//! `tests/fixtures/pgoutput/`, and proptests: arbitrary bytes and
//! mutations of the captured messages never make the decoder panic.

use std::sync::LazyLock;

use proptest::prelude::*;

use super::*;

const TEXT_FIXTURE: &str = include_str!("../../../tests/fixtures/pgoutput/text.hex");
const BINARY_FIXTURE: &str = include_str!("../../../tests/fixtures/pgoutput/binary.hex");

fn from_hex(line: &str) -> Vec<u8> {
    line.as_bytes()
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
        .collect()
}

fn fixture(text: &str) -> Vec<Vec<u8>> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(from_hex)
        .collect()
}

/// Both captured streams' messages.
fn captured() -> &'static [Vec<u8>] {
    static CAPTURED: LazyLock<Vec<Vec<u8>>> = LazyLock::new(|| {
        let mut all = fixture(TEXT_FIXTURE);
        all.extend(fixture(BINARY_FIXTURE));
        all
    });
    &CAPTURED
}

/// Builds a message field by field.
#[derive(Default)]
struct Build(Vec<u8>);

impl Build {
    fn tag(tag: u8) -> Build {
        Build(vec![tag])
    }
    fn u8(mut self, v: u8) -> Build {
        self.0.push(v);
        self
    }
    fn u16(mut self, v: u16) -> Build {
        self.0.extend(v.to_be_bytes());
        self
    }
    fn u32(mut self, v: u32) -> Build {
        self.0.extend(v.to_be_bytes());
        self
    }
    fn i32(mut self, v: i32) -> Build {
        self.0.extend(v.to_be_bytes());
        self
    }
    fn u64(mut self, v: u64) -> Build {
        self.0.extend(v.to_be_bytes());
        self
    }
    fn i64(mut self, v: i64) -> Build {
        self.0.extend(v.to_be_bytes());
        self
    }
    fn str(mut self, s: &str) -> Build {
        self.0.extend(s.as_bytes());
        self.0.push(0);
        self
    }
    fn raw(mut self, b: &[u8]) -> Build {
        self.0.extend(b);
        self
    }
    /// A tuple: `None` is Null, `Some(b"\0u")` stands for unchanged TOAST.
    fn tuple(mut self, kind: u8, datums: &[Option<&[u8]>]) -> Build {
        self.0.push(kind);
        self = self.u16(datums.len() as u16);
        for datum in datums {
            self = match datum {
                None => self.u8(b'n'),
                Some(b"\0u") => self.u8(b'u'),
                Some(b) => self.u8(b't').i32(b.len() as i32).raw(b),
            };
        }
        self
    }
}

const ID: u32 = 16_400;

/// `public.sites (id int8 key, domain text, inserted_at timestamptz)`.
fn sites_relation() -> Build {
    Build::tag(b'R')
        .u32(ID)
        .str("public")
        .str("sites")
        .u8(b'd')
        .u16(3)
        .u8(1)
        .str("id")
        .u32(20)
        .i32(-1)
        .u8(0)
        .str("domain")
        .u32(25)
        .i32(-1)
        .u8(0)
        .str("inserted_at")
        .u32(1184)
        .i32(-1)
}

#[test]
fn begin_and_commit() {
    let begin = Build::tag(b'B').u64(0x1_0000_0010).i64(1_000_000).u32(42);
    assert_eq!(
        decode(&begin.0).unwrap(),
        Message::Begin {
            final_lsn: 0x1_0000_0010,
            commit_time_micros: 1_000_000,
            xid: 42
        }
    );
    assert_eq!(
        pg_timestamp(1_000_000).unwrap().to_rfc3339(),
        "2000-01-01T00:00:01+00:00"
    );
    let commit = Build::tag(b'C').u8(0).u64(7).u64(8).i64(-5);
    assert_eq!(
        decode(&commit.0).unwrap(),
        Message::Commit {
            flags: 0,
            commit_lsn: 7,
            end_lsn: 8,
            commit_time_micros: -5
        }
    );
}

#[test]
fn origin_type_and_logical_message() {
    let origin = Build::tag(b'O').u64(9).str("node_a");
    assert_eq!(
        decode(&origin.0).unwrap(),
        Message::Origin {
            commit_lsn: 9,
            name: "node_a".into()
        }
    );
    let typ = Build::tag(b'Y').u32(16_385).str("").str("text");
    assert_eq!(
        decode(&typ.0).unwrap(),
        Message::Type {
            id: 16_385,
            namespace: String::new(),
            name: "text".into()
        }
    );
    let message = Build::tag(b'M').u8(1).u64(3).str("p").i32(2).raw(b"hi");
    assert_eq!(
        decode(&message.0).unwrap(),
        Message::LogicalMessage {
            flags: 1,
            lsn: 3,
            prefix: "p".into(),
            content: Bytes::from_static(b"hi")
        }
    );
}

#[test]
fn relation() {
    let Message::Relation(r) = decode(&sites_relation().0).unwrap() else {
        panic!("not a relation");
    };
    assert_eq!(
        (r.id, r.namespace.as_str(), r.name.as_str()),
        (ID, "public", "sites")
    );
    assert_eq!(r.replica_identity, b'd');
    assert_eq!(
        r.columns[0],
        RelationColumn {
            key: true,
            name: "id".into(),
            type_oid: 20,
            type_modifier: -1
        }
    );
    assert!(!r.columns[1].key);
    assert_eq!(r.columns[2].type_oid, 1184);
}

#[test]
fn insert_update_delete_truncate() {
    let row: &[Option<&[u8]>] = &[Some(b"1"), None, Some(b"\0u")];
    let insert = Build::tag(b'I').u32(ID).tuple(b'N', row);
    let new = Tuple(vec![
        Datum::Text(Bytes::from_static(b"1")),
        Datum::Null,
        Datum::UnchangedToast,
    ]);
    assert_eq!(
        decode(&insert.0).unwrap(),
        Message::Insert {
            relation: ID,
            new: new.clone()
        }
    );
    let update = Build::tag(b'U').u32(ID).tuple(b'N', row);
    assert_eq!(
        decode(&update.0).unwrap(),
        Message::Update {
            relation: ID,
            old: None,
            new: new.clone()
        }
    );
    for (kind, old) in [
        (b'K', OldTuple::Key(new.clone())),
        (b'O', OldTuple::Full(new.clone())),
    ] {
        let update = Build::tag(b'U').u32(ID).tuple(kind, row).tuple(b'N', row);
        assert_eq!(
            decode(&update.0).unwrap(),
            Message::Update {
                relation: ID,
                old: Some(old.clone()),
                new: new.clone()
            }
        );
        let delete = Build::tag(b'D').u32(ID).tuple(kind, row);
        assert_eq!(
            decode(&delete.0).unwrap(),
            Message::Delete { relation: ID, old }
        );
    }
    let truncate = Build::tag(b'T').u32(2).u8(3).u32(ID).u32(ID + 1);
    assert_eq!(
        decode(&truncate.0).unwrap(),
        Message::Truncate {
            relations: vec![ID, ID + 1],
            options: 3
        }
    );
    let binary = Build::tag(b'I')
        .u32(ID)
        .u8(b'N')
        .u16(1)
        .u8(b'b')
        .i32(2)
        .raw(&[0, 7]);
    assert_eq!(
        decode(&binary.0).unwrap(),
        Message::Insert {
            relation: ID,
            new: Tuple(vec![Datum::Binary(Bytes::from_static(&[0, 7]))])
        }
    );
}

#[test]
fn malformed_messages_are_named_errors() {
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (vec![], "empty pgoutput message"),
        (vec![b'Z'], "unknown pgoutput message tag 'Z' (0x5a)"),
        (
            Build::tag(b'B').u64(1).0,
            "pgoutput Begin message: commit time needs 8 bytes, 0 left",
        ),
        (
            Build::tag(b'Y').u32(1).raw(b"public").0,
            "pgoutput Type message: namespace has no terminating NUL",
        ),
        (
            Build::tag(b'Y').u32(1).raw(&[0xff, 0]).str("t").0,
            "pgoutput Type message: namespace is not UTF-8",
        ),
        // A column count of 65535 with 3 bytes left.
        (
            Build::tag(b'I').u32(ID).u8(b'N').u16(65535).raw(b"nnn").0,
            "pgoutput Insert message: 65535 tuple columns need at least 65535 bytes, 3 left",
        ),
        (
            Build::tag(b'R').u32(ID).str("s").str("t").u8(b'd').u16(2).0,
            "pgoutput Relation message: 2 columns need at least 20 bytes, 0 left",
        ),
        (
            Build::tag(b'T').u32(u32::MAX).u8(0).u32(1).0,
            "pgoutput Truncate message: 4294967295 relations need at least 17179869180 bytes, 4 left",
        ),
        (
            Build::tag(b'I').u32(ID).u8(b'N').u16(1).u8(b't').i32(-1).0,
            "pgoutput Insert message: text value length is negative (-1)",
        ),
        (
            Build::tag(b'I')
                .u32(ID)
                .u8(b'N')
                .u16(1)
                .u8(b't')
                .i32(i32::MAX)
                .raw(b"ab")
                .0,
            "pgoutput Insert message: text value needs 2147483647 bytes, 2 left",
        ),
        (
            Build::tag(b'I').u32(ID).u8(b'N').u16(1).u8(b'x').0,
            "pgoutput Insert message: unknown column kind 'x' (0x78)",
        ),
        (
            Build::tag(b'I').u32(ID).u8(b'K').u16(0).0,
            "pgoutput Insert message: unknown tuple kind 'K' (0x4b)",
        ),
        (
            Build::tag(b'D').u32(ID).u8(b'N').u16(0).0,
            "pgoutput Delete message: unknown tuple kind 'N' (0x4e)",
        ),
        (
            Build::tag(b'U').u32(ID).tuple(b'K', &[]).tuple(b'K', &[]).0,
            "pgoutput Update message: unknown new tuple kind 'K' (0x4b)",
        ),
        (
            Build::tag(b'C').u8(0).u64(1).u64(2).i64(3).u8(0).0,
            "pgoutput Commit message: 1 bytes left over after the message",
        ),
    ];
    for (bytes, want) in cases {
        assert_eq!(decode(&bytes).unwrap_err().to_string(), want, "{bytes:?}");
    }
}

fn sites() -> Relations {
    let mut relations = Relations::new();
    assert!(relations.apply(&sites_relation().0).unwrap().is_none());
    relations
}

#[test]
fn changes_read_columns_by_name() {
    let mut relations = sites();
    let insert = Build::tag(b'I').u32(ID).tuple(
        b'N',
        &[
            Some(b"7"),
            Some(b"a.example"),
            Some(b"2026-12-02 09:40:30.5+05:30"),
        ],
    );
    let change = relations.apply(&insert.0).unwrap().unwrap();
    assert_eq!(change.kind, ChangeKind::Insert);
    assert_eq!(change.table.to_string(), "public.sites");
    assert_eq!(change.i64("id").unwrap(), Some(7));
    assert_eq!(change.text("domain").unwrap(), Some("a.example"));
    assert_eq!(
        change
            .timestamp("inserted_at")
            .unwrap()
            .unwrap()
            .to_rfc3339(),
        "2026-12-02T04:10:30.500+00:00"
    );
    assert!(change.old().is_none());
    assert!(change.truncated().is_empty());

    let delete = Build::tag(b'D')
        .u32(ID)
        .tuple(b'K', &[Some(b"7"), None, None]);
    let change = relations.apply(&delete.0).unwrap().unwrap();
    assert_eq!(change.kind, ChangeKind::Delete);
    assert_eq!(change.i64("id").unwrap(), Some(7));
    assert_eq!(change.text("domain").unwrap(), None);
    assert!(matches!(change.old_tuple(), Some(OldTuple::Key(_))));

    let infinite = Build::tag(b'I')
        .u32(ID)
        .tuple(b'N', &[Some(b"x"), Some(b"\0u"), Some(b"infinity")]);
    let change = relations.apply(&infinite.0).unwrap().unwrap();
    let errors = [
        change.timestamp("inserted_at").unwrap_err().to_string(),
        change.text("domain").unwrap_err().to_string(),
        change.i64("id").unwrap_err().to_string(),
        change.i64("domain").unwrap_err().to_string(),
        change.i64("nope").unwrap_err().to_string(),
    ];
    assert_eq!(
        errors,
        [
            "column inserted_at of public.sites: it is infinity or -infinity",
            "column domain of public.sites: an unchanged TOAST value, which the message does not carry",
            "column id of public.sites: its text is not an integer",
            "column domain of public.sites: its type (OID 25) is not int2, int4 or int8",
            "public.sites has no column nope",
        ]
    );
}

#[test]
fn binary_values_by_type() {
    let mut relations = Relations::new();
    let relation = Build::tag(b'R').u32(1).str("").str("t").u8(b'f').u16(5);
    let relation = [("a", 21), ("b", 23), ("c", 20), ("d", 1114), ("e", 16)]
        .iter()
        .fold(relation, |b, (name, oid)| {
            b.u8(0).str(name).u32(*oid).i32(-1)
        });
    relations.apply(&relation.0).unwrap();
    let values: [&[u8]; 5] = [
        &(-2i16).to_be_bytes(),
        &70_000i32.to_be_bytes(),
        &(1i64 << 40).to_be_bytes(),
        &86_400_000_000i64.to_be_bytes(),
        &[1],
    ];
    let insert = values
        .iter()
        .fold(Build::tag(b'I').u32(1).u8(b'N').u16(5), |b, v| {
            b.u8(b'b').i32(v.len() as i32).raw(v)
        });
    let change = relations.apply(&insert.0).unwrap().unwrap();
    assert_eq!(change.table.to_string(), "pg_catalog.t");
    assert_eq!(change.i64("a").unwrap(), Some(-2));
    assert_eq!(change.i64("b").unwrap(), Some(70_000));
    assert_eq!(change.i64("c").unwrap(), Some(1 << 40));
    assert_eq!(
        change.timestamp("d").unwrap().unwrap().to_rfc3339(),
        "2000-01-02T00:00:00+00:00"
    );
    assert_eq!(change.bool("e").unwrap(), Some(true));
    // A width that does not match the type.
    let short = Build::tag(b'I')
        .u32(1)
        .u8(b'N')
        .u16(5)
        .raw(&[b'b', 0, 0, 0, 1, 0])
        .raw(b"nnnn");
    let change = relations.apply(&short.0).unwrap().unwrap();
    assert!(change.i64("a").unwrap_err().to_string().contains("binary"));
}

#[test]
fn a_new_relation_message_replaces_the_old() {
    let mut relations = sites();
    let insert = Build::tag(b'I')
        .u32(ID)
        .tuple(b'N', &[Some(b"1"), Some(b"a"), None]);
    let before = relations.apply(&insert.0).unwrap().unwrap();
    // Columns dropped and reordered, one added.
    let altered = Build::tag(b'R')
        .u32(ID)
        .str("public")
        .str("sites")
        .u8(b'd')
        .u16(2)
        .u8(0)
        .str("note")
        .u32(25)
        .i32(-1)
        .u8(1)
        .str("id")
        .u32(20)
        .i32(-1);
    relations.apply(&altered.0).unwrap();
    let after = relations
        .apply(
            &Build::tag(b'I')
                .u32(ID)
                .tuple(b'N', &[Some(b"hi"), Some(b"2")])
                .0,
        )
        .unwrap()
        .unwrap();
    assert_eq!(after.i64("id").unwrap(), Some(2));
    assert_eq!(after.text("note").unwrap(), Some("hi"));
    assert!(after.column("domain").is_none());
    // A change decoded before still reads under its own relation.
    assert_eq!(before.text("domain").unwrap(), Some("a"));
    // A tuple of the old width no longer fits.
    let e = relations.apply(&insert.0).unwrap_err();
    assert_eq!(
        e.to_string(),
        "pgoutput Insert message for public.sites: the tuple has 3 columns, its Relation message 2"
    );
}

#[test]
fn truncate_and_unknown_relations() {
    let mut relations = sites();
    let other = Build::tag(b'R')
        .u32(ID + 1)
        .str("public")
        .str("goals")
        .u8(b'd')
        .u16(0);
    relations.apply(&other.0).unwrap();
    let truncate = Build::tag(b'T').u32(2).u8(1).u32(ID).u32(ID + 1);
    let change = relations.apply(&truncate.0).unwrap().unwrap();
    assert_eq!(change.kind, ChangeKind::Truncate);
    assert_eq!(change.table.name, "sites");
    let names: Vec<String> = change.truncated().iter().map(|t| t.to_string()).collect();
    assert_eq!(names, ["public.sites", "public.goals"]);
    assert_eq!(change.truncate_options(), 1);
    assert!(change.row().is_none());
    assert!(change.i64("id").is_err());

    let unknown = Build::tag(b'I').u32(99).tuple(b'N', &[]);
    assert_eq!(
        relations.apply(&unknown.0).unwrap_err().to_string(),
        "pgoutput Insert message for relation 99, which no Relation message described"
    );
    assert!(
        relations
            .apply(&Build::tag(b'T').u32(1).u8(0).u32(99).0)
            .is_err()
    );
}

/// The captured stream decodes whole, and its values are the test's.
#[test]
fn captured_streams_decode() {
    for fixture_text in [TEXT_FIXTURE, BINARY_FIXTURE] {
        let mut relations = Relations::new();
        let changes: Vec<Change> = fixture(fixture_text)
            .iter()
            .filter_map(|m| relations.apply(m).unwrap())
            .collect();
        let site = changes.iter().find(|c| c.table.name == "sites").unwrap();
        assert_eq!(site.text("domain").unwrap(), Some("one.example.com"));
        assert_eq!(
            site.timestamp("inserted_at").unwrap().unwrap().to_rfc3339(),
            "2026-12-02T04:10:30+00:00"
        );
        let delivery = changes
            .iter()
            .find(|c| c.table.name == "webhook_deliveries" && c.kind == ChangeKind::Insert)
            .unwrap();
        assert_eq!(delivery.text("id").unwrap(), Some("msg_pgoutput01"));
        assert_eq!(
            delivery
                .timestamp("next_attempt_at")
                .unwrap()
                .unwrap()
                .to_rfc3339(),
            "2026-12-02T04:10:30.123456+00:00"
        );
        assert!(changes.iter().any(|c| c.kind == ChangeKind::Truncate));
        assert!(
            changes
                .iter()
                .any(|c| c.column("custom_props") == Some(&Datum::UnchangedToast))
        );
    }
}

/// The relations of both captured streams, so that mutated row messages
/// get past the relation lookup.
fn captured_relations() -> Relations {
    static RELATIONS: LazyLock<Relations> = LazyLock::new(|| {
        let mut relations = Relations::new();
        for message in captured() {
            if message.first() == Some(&b'R') {
                relations.apply(message).unwrap();
            }
        }
        relations
    });
    RELATIONS.clone()
}

/// Decodes and reads every column every way; none of it may panic.
fn exercise(relations: &mut Relations, bytes: &[u8]) {
    let _ = decode(bytes);
    if let Ok(Some(change)) = relations.apply(bytes) {
        for row in [change.row(), change.old()].into_iter().flatten() {
            for column in &change.relation().columns {
                let _ = row.i64(&column.name);
                let _ = row.text(&column.name);
                let _ = row.timestamp(&column.name);
                let _ = row.bool(&column.name);
            }
        }
    }
}

#[test]
fn every_truncation_and_huge_length_of_captured_messages() {
    let mut relations = captured_relations();
    for message in captured() {
        assert!(decode(message).is_ok());
        for end in 0..message.len() {
            let cut = message.get(..end).unwrap();
            exercise(&mut relations, cut);
            // A message cut short is never taken as whole.
            assert!(decode(cut).is_err(), "{cut:?}");
        }
        for at in 1..message.len() {
            for huge in [&[0xff, 0xff][..], &[0x7f, 0xff, 0xff, 0xff], &[0xff; 4]] {
                let mut forged = message.clone();
                for (i, b) in huge.iter().enumerate() {
                    if let Some(slot) = forged.get_mut(at + i) {
                        *slot = *b;
                    }
                }
                exercise(&mut relations, &forged);
            }
        }
    }
}

const TAGS: &[u8] = b"BCORYIUDTM";

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let mut relations = captured_relations();
        exercise(&mut relations, &bytes);
    }

    #[test]
    fn arbitrary_bodies_after_a_known_tag_never_panic(
        tag in proptest::sample::select(TAGS),
        body in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let mut relations = captured_relations();
        let mut bytes = vec![tag];
        bytes.extend(body);
        exercise(&mut relations, &bytes);
    }

    #[test]
    fn flipped_bytes_of_captured_messages_never_panic(
        pick in any::<prop::sample::Index>(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..6),
    ) {
        let messages = captured();
        let mut message = pick.get(messages).clone();
        for (at, mask) in flips {
            let i = at.index(message.len());
            if let Some(b) = message.get_mut(i) {
                *b ^= mask;
            }
        }
        let mut relations = captured_relations();
        exercise(&mut relations, &message);
    }
}
