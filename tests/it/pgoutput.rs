//! The pgoutput decoder against messages from a real server: every change
//! kind on Plausible's and the daemon's tables, read through a logical slot
//! with `pg_logical_slot_peek_binary_changes` in the text format (in a zone
//! with a half-hour offset) and in the binary one, decoded through
//! `Relations::apply`.
//!
//! With `PGOUTPUT_CAPTURE=1` the test also writes the captured messages to
//! `tests/fixtures/pgoutput/`, which the decoder's unit tests and proptests
//! use as seeds.

use chrono::{DateTime, Utc};
use tokio_postgres::Client;

use plausible_webhooks::store::pgoutput::{
    Change, ChangeKind, Datum, DecodeError, Message, OldTuple, Relations, decode,
};

use crate::postgres_schema::SECRET;
use crate::support::TestPostgres;

const PUBLICATION: &str = "pgoutput_test";

/// The changes, one transaction each; the comments name what each adds.
const CHANGES: &[&str] = &[
    "INSERT INTO sites (id, domain, inserted_at, updated_at)
       VALUES (1, 'one.example.com', '2026-12-02 04:10:30', '2026-12-02 04:10:30')",
    // NULLs, a timestamptz with microseconds.
    "INSERT INTO webhooks (id, site_id, url, secret, event_types, spike_threshold,
                           previous_secret, previous_secret_expires_at)
       VALUES (1, 1, 'https://hooks.example.com/in', '{SECRET}', ARRAY['traffic.spike'], 10,
               '{SECRET}', '2026-12-02 04:10:30.123456+00')",
    // A jsonb large enough to be TOASTed out of line.
    "INSERT INTO goals (id, site_id, event_name, display_name, custom_props, inserted_at, updated_at)
       SELECT 10, 1, 'Signup', 'Signup', jsonb_object_agg('k' || i, md5(i::text)),
              '2026-12-02 04:10:30', '2026-12-02 04:10:30'
         FROM generate_series(1, 5000) AS i",
    // The TOASTed value is sent as unchanged.
    "UPDATE goals SET display_name = 'Sign up' WHERE id = 10",
    // A domain over text (its own Type message).
    r#"INSERT INTO webhook_deliveries (id, webhook_id, event_type, payload, next_attempt_at)
       VALUES ('msg_pgoutput01', 1, 'webhook.test',
               '{"type":"webhook.test","timestamp":"2026-01-01T00:00:00Z","data":{}}',
               '2026-12-02 04:10:30.123456+00')"#,
    // A second Relation message for sites.
    "ALTER TABLE sites ADD COLUMN note text",
    "INSERT INTO sites (id, domain, note, inserted_at, updated_at)
       VALUES (2, 'two.example.com', 'second', '2026-12-02 04:10:30', '2026-12-02 04:10:30')",
    // Old rows in full ('O').
    "ALTER TABLE sites REPLICA IDENTITY FULL",
    "UPDATE sites SET timezone = 'Europe/Berlin' WHERE id = 2",
    // A changed key: the old key ('K').
    "UPDATE goals SET id = 11 WHERE id = 10",
    "DELETE FROM goals WHERE id = 11",
    "DELETE FROM sites WHERE id = 2",
    "SELECT pg_logical_emit_message(true, 'plausible-webhooks', 'hello')",
    "TRUNCATE webhook_deliveries CASCADE",
];

/// The messages of the slot, as they come.
async fn peek(client: &Client, slot: &str, binary: bool) -> Vec<Vec<u8>> {
    let rows = client
        .query(
            "SELECT data FROM pg_logical_slot_peek_binary_changes($1, NULL, NULL,
               'proto_version', '1', 'publication_names', $2, 'messages', 'true',
               'binary', $3)",
            &[&slot, &PUBLICATION, &if binary { "true" } else { "false" }],
        )
        .await
        .unwrap();
    rows.iter().map(|row| row.get::<_, Vec<u8>>(0)).collect()
}

/// The messages in the text format (TimeZone Asia/Kolkata, and a non-ISO
/// DateStyle), and in the binary one; the slot is dropped before anything
/// is checked.
struct Captured {
    text: Vec<Vec<u8>>,
    text_sql_datestyle: Vec<Vec<u8>>,
    binary: Vec<Vec<u8>>,
}

async fn capture() -> Captured {
    let pg = TestPostgres::migrated().await;
    let client = pg.client().await;
    let slot = format!("{}_slot", pg.name);
    client
        .batch_execute(&format!(
            "CREATE PUBLICATION {PUBLICATION} FOR TABLE webhooks, goals, sites, webhook_deliveries"
        ))
        .await
        .unwrap();
    client
        .execute(
            "SELECT pg_create_logical_replication_slot($1, 'pgoutput')",
            &[&slot],
        )
        .await
        .unwrap();
    for sql in CHANGES {
        client
            .batch_execute(&sql.replace("{SECRET}", SECRET))
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    client
        .batch_execute("SET TimeZone = 'Asia/Kolkata'")
        .await
        .unwrap();
    let text = peek(&client, &slot, false).await;
    client
        .batch_execute("SET DateStyle = 'SQL, DMY'")
        .await
        .unwrap();
    let text_sql_datestyle = peek(&client, &slot, false).await;
    let binary = peek(&client, &slot, true).await;
    client
        .execute("SELECT pg_drop_replication_slot($1)", &[&slot])
        .await
        .unwrap();
    Captured {
        text,
        text_sql_datestyle,
        binary,
    }
}

fn changes(messages: &[Vec<u8>]) -> Vec<Change> {
    let mut relations = Relations::new();
    messages
        .iter()
        .filter_map(|m| relations.apply(m).unwrap_or_else(|e| panic!("{e}: {m:?}")))
        .collect()
}

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().to_utc()
}

#[tokio::test]
async fn captured_messages_decode_in_text_and_binary() {
    let captured = capture().await;
    if std::env::var_os("PGOUTPUT_CAPTURE").is_some() {
        save_fixture(
            "text.hex",
            "text format, TimeZone Asia/Kolkata",
            &captured.text,
        );
        save_fixture("binary.hex", "binary 'true'", &captured.binary);
    }

    check_messages(&captured.text);
    check_messages(&captured.binary);
    let text = changes(&captured.text);
    let binary = changes(&captured.binary);
    check_changes(&text);
    check_changes(&binary);
    check_formats(&text, |d| matches!(d, Datum::Text(_)));
    check_formats(&binary, |d| matches!(d, Datum::Binary(_)));

    // Another DateStyle: the text cannot be read, and the error says which
    // column and why.
    let other = changes(&captured.text_sql_datestyle);
    let e = other[4].timestamp("next_attempt_at").unwrap_err();
    assert!(matches!(e, DecodeError::Value { .. }), "{e}");
    let message = e.to_string();
    assert!(
        message.contains("next_attempt_at") && message.contains("DateStyle"),
        "{message}"
    );
}

/// The messages that are not changes: transactions, the Type of the
/// delivery id's domain, the logical message.
fn check_messages(messages: &[Vec<u8>]) {
    let decoded: Vec<Message> = messages.iter().map(|m| decode(m).unwrap()).collect();
    let count = |f: fn(&Message) -> bool| decoded.iter().filter(|m| f(m)).count();
    assert_eq!(count(|m| matches!(m, Message::Begin { .. })), 12);
    assert_eq!(count(|m| matches!(m, Message::Commit { .. })), 12);
    // The domain's Type message names its base type (empty namespace:
    // pg_catalog) under the domain's own OID, which its column carries.
    let id_type = decoded
        .iter()
        .find_map(|m| match m {
            Message::Relation(r) if r.name == "webhook_deliveries" => r
                .columns
                .iter()
                .find(|c| c.name == "id")
                .map(|c| c.type_oid),
            _ => None,
        })
        .unwrap();
    assert!(decoded.iter().any(|m| matches!(m,
        Message::Type { id, name, namespace }
            if *id == id_type && name == "text" && namespace.is_empty())));
    assert!(decoded.iter().any(|m| matches!(m,
        Message::LogicalMessage { flags: 1, prefix, content, .. }
            if prefix == "plausible-webhooks" && content.as_ref() == b"hello")));
    let sites_relations = decoded
        .iter()
        .filter(|m| matches!(m, Message::Relation(r) if r.name == "sites"))
        .count();
    assert!(sites_relations >= 2, "{sites_relations}");
    for message in &decoded {
        if let Message::Begin {
            commit_time_micros, ..
        } = message
        {
            let at = plausible_webhooks::store::pgoutput::pg_timestamp(*commit_time_micros);
            assert!(
                at.is_some_and(|at| at > utc("2026-01-01T00:00:00Z")),
                "{at:?}"
            );
        }
    }
}

fn check_changes(changes: &[Change]) {
    let kinds: Vec<(ChangeKind, &str)> = changes
        .iter()
        .map(|c| (c.kind, c.table.name.as_str()))
        .collect();
    use ChangeKind::*;
    assert_eq!(
        kinds,
        [
            (Insert, "sites"),
            (Insert, "webhooks"),
            (Insert, "goals"),
            (Update, "goals"),
            (Insert, "webhook_deliveries"),
            (Insert, "sites"),
            (Update, "sites"),
            (Update, "goals"),
            (Delete, "goals"),
            (Delete, "sites"),
            (Truncate, "webhook_deliveries"),
        ]
    );
    assert!(changes.iter().all(|c| c.table.schema == "public"));
    check_inserts(changes);
    check_toast(&changes[2], &changes[3]);
    check_new_column(&changes[0], &changes[5]);
    check_old_rows(changes);
    let truncate = &changes[10];
    assert_eq!(truncate.truncated().len(), 1);
    assert_eq!(truncate.truncated()[0].name, "webhook_deliveries");
    assert_eq!(truncate.truncate_options() & 1, 1, "CASCADE");
    assert!(truncate.column("id").is_none());
}

fn check_inserts(changes: &[Change]) {
    let site = &changes[0];
    assert_eq!(site.i64("id").unwrap(), Some(1));
    assert_eq!(site.text("domain").unwrap(), Some("one.example.com"));
    assert_eq!(site.text("timezone").unwrap(), Some("Etc/UTC"));
    assert_eq!(
        site.timestamp("inserted_at").unwrap(),
        Some(utc("2026-12-02T04:10:30Z"))
    );
    assert!(site.old().is_none());

    let webhook = &changes[1];
    assert_eq!(webhook.i64("id").unwrap(), Some(1));
    assert_eq!(webhook.i64("site_id").unwrap(), Some(1));
    assert_eq!(webhook.i64("spike_threshold").unwrap(), Some(10));
    assert_eq!(webhook.i64("drop_threshold").unwrap(), None);
    assert_eq!(webhook.i64("cooldown_minutes").unwrap(), Some(720));
    assert_eq!(
        webhook.text("url").unwrap(),
        Some("https://hooks.example.com/in")
    );
    assert_eq!(webhook.text("last_error").unwrap(), None);
    assert_eq!(webhook.column("goal_ids"), Some(&Datum::Null));
    assert_eq!(webhook.bool("enabled").unwrap(), Some(true));
    assert_eq!(
        webhook.timestamp("previous_secret_expires_at").unwrap(),
        Some(utc("2026-12-02T04:10:30.123456Z"))
    );
    assert_eq!(webhook.timestamp("disabled_at").unwrap(), None);
    assert!(webhook.timestamp("inserted_at").unwrap().is_some());
    // Asked for the wrong type, or a column that is not there.
    assert!(matches!(webhook.i64("url"), Err(DecodeError::Value { .. })));
    assert!(matches!(
        webhook.timestamp("site_id"),
        Err(DecodeError::Value { .. })
    ));
    assert!(matches!(
        webhook.i64("nope"),
        Err(DecodeError::NoColumn { .. })
    ));

    let delivery = &changes[4];
    assert_eq!(delivery.text("id").unwrap(), Some("msg_pgoutput01"));
    assert_eq!(delivery.i64("webhook_id").unwrap(), Some(1));
    assert_eq!(delivery.i64("attempts").unwrap(), Some(0));
    assert_eq!(
        delivery.timestamp("next_attempt_at").unwrap(),
        Some(utc("2026-12-02T04:10:30.123456Z"))
    );
    assert_eq!(delivery.timestamp("leased_until").unwrap(), None);
}

fn check_toast(insert: &Change, update: &Change) {
    assert!(
        matches!(insert.column("custom_props"), Some(Datum::Text(b) | Datum::Binary(b)) if b.len() > 100_000)
    );
    assert_eq!(insert.i64("scroll_threshold").unwrap(), Some(-1));
    assert_eq!(insert.text("page_path").unwrap(), None);
    assert_eq!(update.i64("id").unwrap(), Some(10));
    assert_eq!(update.text("display_name").unwrap(), Some("Sign up"));
    assert_eq!(update.column("custom_props"), Some(&Datum::UnchangedToast));
    let e = update.text("custom_props").unwrap_err();
    assert!(e.to_string().contains("custom_props"), "{e}");
    assert!(update.old().is_none(), "the key did not change");
}

/// After ALTER TABLE ADD COLUMN the second Relation message names the new
/// column; the first change still reads under the old one.
fn check_new_column(first: &Change, second: &Change) {
    assert!(first.relation().columns.iter().all(|c| c.name != "note"));
    assert!(first.column("note").is_none());
    assert_eq!(
        second.relation().columns.len(),
        first.relation().columns.len() + 1
    );
    assert_eq!(second.i64("id").unwrap(), Some(2));
    assert_eq!(second.text("note").unwrap(), Some("second"));
}

fn check_old_rows(changes: &[Change]) {
    // REPLICA IDENTITY FULL on sites: the whole old row.
    let update = &changes[6];
    assert_eq!(update.relation().replica_identity, b'f');
    assert!(matches!(update.old_tuple(), Some(OldTuple::Full(_))));
    let old = update.old().unwrap();
    assert_eq!(old.text("timezone").unwrap(), Some("Etc/UTC"));
    assert_eq!(old.text("note").unwrap(), Some("second"));
    assert_eq!(update.text("timezone").unwrap(), Some("Europe/Berlin"));
    let delete = &changes[9];
    assert!(matches!(delete.old_tuple(), Some(OldTuple::Full(_))));
    assert_eq!(delete.i64("id").unwrap(), Some(2));
    assert_eq!(delete.text("domain").unwrap(), Some("two.example.com"));
    assert_eq!(delete.text("timezone").unwrap(), Some("Europe/Berlin"));

    // The default identity on goals: the key only, the rest Null.
    let update = &changes[7];
    assert!(matches!(update.old_tuple(), Some(OldTuple::Key(_))));
    assert_eq!(update.old().unwrap().i64("id").unwrap(), Some(10));
    assert_eq!(
        update.old().unwrap().column("display_name"),
        Some(&Datum::Null)
    );
    assert_eq!(update.i64("id").unwrap(), Some(11));
    assert_eq!(update.column("custom_props"), Some(&Datum::UnchangedToast));
    let delete = &changes[8];
    assert!(matches!(delete.old_tuple(), Some(OldTuple::Key(_))));
    assert_eq!(delete.i64("id").unwrap(), Some(11));
    assert_eq!(delete.text("display_name").unwrap(), None);
    let key: Vec<&str> = delete
        .relation()
        .columns
        .iter()
        .filter(|c| c.key)
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(key, ["id"]);
}

/// Every datum with a value is in the format asked for.
fn check_formats(changes: &[Change], in_format: fn(&Datum) -> bool) {
    for change in changes {
        for row in [change.row(), change.old()].into_iter().flatten() {
            for column in &change.relation().columns {
                let datum = row.column(&column.name).unwrap();
                if !matches!(datum, Datum::Null | Datum::UnchangedToast) {
                    assert!(
                        in_format(datum),
                        "{}.{}: {datum:?}",
                        change.table,
                        column.name
                    );
                }
            }
        }
    }
}

/// Writes messages as hex, one a line, leaving out those over 2 KiB.
fn save_fixture(file: &str, format: &str, messages: &[Vec<u8>]) {
    let mut out = format!(
        "# pgoutput v1 messages ({format}) captured by tests/it/pgoutput.rs\n\
         # (PGOUTPUT_CAPTURE=1 cargo test --test it pgoutput), one a line in hex,\n\
         # in stream order; messages over 2 KiB are left out.\n"
    );
    for message in messages {
        if message.len() > 2048 {
            out.push_str(&format!("# left out: a {} byte message\n", message.len()));
            continue;
        }
        for byte in message {
            out.push_str(&format!("{byte:02x}"));
        }
        out.push('\n');
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pgoutput");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(file), out).unwrap();
}
