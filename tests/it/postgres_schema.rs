//! The Postgres schema: migrations, the per-site cap, check constraints and
//! NOTIFY triggers.

use std::time::Duration;

use futures_util::StreamExt;
use tokio_postgres::error::SqlState;
use tokio_postgres::{AsyncMessage, Client, GenericClient, NoTls};

use crate::support::TestPostgres;

/// A valid secret: `whsec_` and 24 base64-encoded bytes.
pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

async fn insert_site(client: &Client, id: i64) {
    client
        .execute(
            "INSERT INTO sites (id, domain) VALUES ($1, $2)",
            &[&id, &format!("site{id}.example.com")],
        )
        .await
        .expect("insert site");
}

/// Inserts a webhook with valid defaults, where `overrides` replaces some
/// columns with SQL expressions.
async fn insert_webhook(
    client: &impl GenericClient,
    site_id: i64,
    overrides: &[(&str, &str)],
) -> Result<i64, tokio_postgres::Error> {
    let mut columns = vec![
        ("site_id", site_id.to_string()),
        ("url", "'https://hooks.example.com/plausible'".to_string()),
        ("secret", format!("'{SECRET}'")),
        (
            "event_types",
            "ARRAY['traffic.spike', 'goal.completed']".to_string(),
        ),
        ("spike_threshold", "100".to_string()),
    ];
    for (column, value) in overrides {
        match columns.iter_mut().find(|(c, _)| c == column) {
            Some(entry) => entry.1 = value.to_string(),
            None => columns.push((column, value.to_string())),
        }
    }
    let names: Vec<&str> = columns.iter().map(|(c, _)| *c).collect();
    let values: Vec<&str> = columns.iter().map(|(_, v)| v.as_str()).collect();
    let sql = format!(
        "INSERT INTO webhooks ({}) VALUES ({}) RETURNING id",
        names.join(", "),
        values.join(", ")
    );
    client.query_one(&sql, &[]).await.map(|row| row.get(0))
}

#[tokio::test]
async fn migrations_apply_on_an_empty_database_and_reapply_as_a_no_op() {
    let db = TestPostgres::with_plausible().await;
    let mut client = db.client().await;
    let applied = plausible_webhooks::store::migrate(&mut client)
        .await
        .unwrap();
    // Every migration, up to the newest (numbers may have gaps).
    let latest = plausible_webhooks::store::latest_version();
    assert!(
        applied
            .last()
            .is_some_and(|m| m.starts_with(&format!("V{latest}__"))),
        "{applied:?}"
    );
    assert_eq!(
        plausible_webhooks::store::schema_version(&client)
            .await
            .unwrap(),
        plausible_webhooks::store::latest_version()
    );
    plausible_webhooks::store::check_schema(&client)
        .await
        .unwrap();

    let again = plausible_webhooks::store::migrate(&mut client)
        .await
        .unwrap();
    assert!(again.is_empty(), "second run applied {again:?}");

    for table in [
        "webhooks",
        "webhook_deliveries",
        "webhook_delivery_attempts",
        "webhook_cursors",
    ] {
        let row = client
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
            .await
            .unwrap();
        assert!(row.get::<_, bool>(0), "{table} exists");
    }
}

#[tokio::test]
async fn migrating_without_plausibles_tables_says_so() {
    let db = TestPostgres::empty().await;
    let mut client = db.client().await;
    let err = plausible_webhooks::store::migrate(&mut client)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("`sites` table"), "{err}");
}

#[tokio::test]
async fn an_unmigrated_database_is_reported_as_behind() {
    let db = TestPostgres::with_plausible().await;
    let client = db.client().await;
    let err = plausible_webhooks::store::check_schema(&client)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("run `plausible-webhooks migrate`"),
        "{err}"
    );
}

#[tokio::test]
async fn the_eleventh_webhook_of_a_site_is_rejected() {
    let db = TestPostgres::migrated().await;
    let client = db.client().await;
    insert_site(&client, 42).await;
    insert_site(&client, 43).await;
    for _ in 0..10 {
        insert_webhook(&client, 42, &[]).await.unwrap();
    }
    let err = insert_webhook(&client, 42, &[]).await.unwrap_err();
    let db_err = err.as_db_error().expect("a database error");
    assert_eq!(db_err.message(), "site 42 already has 10 webhooks");
    assert_eq!(db_err.code(), &SqlState::CHECK_VIOLATION);
    assert_eq!(db_err.constraint(), Some("webhooks_per_site_limit"));

    // Other sites are unaffected, and moving a webhook onto a full site is
    // refused too.
    let other = insert_webhook(&client, 43, &[]).await.unwrap();
    let err = client
        .execute("UPDATE webhooks SET site_id = 42 WHERE id = $1", &[&other])
        .await
        .unwrap_err();
    assert_eq!(
        err.as_db_error().map(|e| e.message()),
        Some("site 42 already has 10 webhooks")
    );
    // Updating a webhook of a full site is fine.
    client
        .execute(
            "UPDATE webhooks SET enabled = false WHERE site_id = 42 AND id = (SELECT min(id) FROM webhooks WHERE site_id = 42)",
            &[],
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_inserts_cannot_exceed_the_cap() {
    let db = TestPostgres::migrated().await;
    let client = db.client().await;
    insert_site(&client, 7).await;
    for _ in 0..8 {
        insert_webhook(&client, 7, &[]).await.unwrap();
    }
    // Four transactions race for the last two places.
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let url = db.url.clone();
        tasks.push(tokio::spawn(async move {
            let mut client = crate::support::connect(&url).await;
            let tx = client.transaction().await.unwrap();
            let result = insert_webhook(&tx, 7, &[]).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            match result {
                Ok(_) => tx.commit().await.is_ok(),
                Err(_) => false,
            }
        }));
    }
    let mut committed = 0;
    for task in tasks {
        if task.await.unwrap() {
            committed += 1;
        }
    }
    assert_eq!(committed, 2);
    let count: i64 = client
        .query_one("SELECT count(*) FROM webhooks WHERE site_id = 7", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 10);
}

#[tokio::test]
async fn every_check_constraint_rejects_a_bad_row() {
    let db = TestPostgres::migrated().await;
    let client = db.client().await;
    insert_site(&client, 1).await;

    // A valid row goes in.
    let id = insert_webhook(&client, 1, &[]).await.unwrap();

    let cases: &[(&str, &[(&str, &str)])] = &[
        ("webhooks_url_format", &[("url", "'ftp://example.com/x'")]),
        ("webhooks_url_format", &[("url", "'https://'")]),
        ("webhooks_url_format", &[("url", "'https://exa mple.com/'")]),
        (
            "webhooks_url_format",
            &[("url", "'https://user@example.com/'")],
        ),
        (
            "webhooks_url_format",
            &[("url", "'https://example.com/' || repeat('a', 2100)")],
        ),
        ("webhooks_secret_format", &[("secret", "'not-a-secret'")]),
        ("webhooks_secret_format", &[("secret", "'whsec_c2hvcnQ='")]),
        (
            "webhooks_secret_format",
            &[(
                "secret",
                "'whsec_' || encode(decode(repeat('ab', 65), 'hex'), 'base64')",
            )],
        ),
        ("webhooks_secret_format", &[("secret", "'whsec_!!!!'")]),
        (
            "webhooks_previous_secret_format",
            &[
                ("previous_secret", "'nope'"),
                ("previous_secret_expires_at", "now()"),
            ],
        ),
        (
            "webhooks_previous_secret_expiry",
            &[("previous_secret", &format!("'{SECRET}'"))],
        ),
        (
            "webhooks_description_length",
            &[("description", "repeat('x', 501)")],
        ),
        (
            "webhooks_event_types_known",
            &[("event_types", "ARRAY['traffic.spike', 'page.viewed']")],
        ),
        (
            "webhooks_event_types_known",
            &[("event_types", "ARRAY[]::text[]")],
        ),
        (
            "webhooks_event_types_known",
            &[("event_types", "ARRAY['traffic.spike', NULL]")],
        ),
        ("webhooks_spike_threshold", &[("spike_threshold", "0")]),
        ("webhooks_spike_threshold", &[("spike_threshold", "NULL")]),
        ("webhooks_spike_window", &[("spike_window_minutes", "0")]),
        ("webhooks_spike_window", &[("spike_window_minutes", "61")]),
        (
            "webhooks_drop_threshold",
            &[("event_types", "ARRAY['traffic.drop']")],
        ),
        ("webhooks_drop_threshold", &[("drop_threshold", "-3")]),
        ("webhooks_cooldown", &[("cooldown_minutes", "0")]),
        ("webhooks_goal_ids", &[("goal_ids", "ARRAY[]::bigint[]")]),
        (
            "webhooks_goal_ids",
            &[("goal_ids", "ARRAY[1, NULL]::bigint[]")],
        ),
        ("webhooks_goal_interval", &[("goal_interval_seconds", "0")]),
        (
            "webhooks_goal_interval",
            &[("goal_interval_seconds", "86401")],
        ),
        ("webhooks_disabled", &[("disabled_reason", "'gone'")]),
    ];
    for (constraint, overrides) in cases {
        let err = insert_webhook(&client, 1, overrides)
            .await
            .expect_err(&format!("{overrides:?} must be rejected"));
        let db_err = err.as_db_error().expect("a database error");
        assert_eq!(
            db_err.code(),
            &SqlState::CHECK_VIOLATION,
            "{overrides:?}: {db_err}"
        );
        assert_eq!(
            db_err.constraint(),
            Some(*constraint),
            "{overrides:?}: {db_err}"
        );
    }

    // An unknown site is refused by the foreign key.
    let err = insert_webhook(&client, 999, &[]).await.unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::FOREIGN_KEY_VIOLATION));

    // Deliveries.
    let delivery_cases: &[(&str, &str)] = &[
        ("webhook_deliveries_id_format", "id => 'evil id'"),
        (
            "webhook_deliveries_event_type_known",
            "event_type => 'page.viewed'",
        ),
        ("webhook_deliveries_payload_object", "payload => '[1, 2]'"),
        (
            "webhook_deliveries_payload_size",
            "payload => json_build_object('x', repeat('a', 300000))",
        ),
        ("webhook_deliveries_status_known", "status => 'lost'"),
        ("webhook_deliveries_attempts", "attempts => -1"),
        ("webhook_deliveries_dedupe_key", "dedupe_key => ''"),
    ];
    for (constraint, assignment) in delivery_cases {
        let (column, value) = assignment.split_once(" => ").unwrap();
        let mut columns = vec![
            ("webhook_id", id.to_string()),
            ("event_type", "'webhook.test'".to_string()),
            ("payload", "'{\"type\": \"webhook.test\"}'".to_string()),
        ];
        match columns.iter_mut().find(|(c, _)| *c == column) {
            Some(entry) => entry.1 = value.to_string(),
            None => columns.push((column, value.to_string())),
        }
        let sql = format!(
            "INSERT INTO webhook_deliveries ({}) VALUES ({})",
            columns
                .iter()
                .map(|(c, _)| *c)
                .collect::<Vec<_>>()
                .join(", "),
            columns
                .iter()
                .map(|(_, v)| v.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        let err = client.execute(&sql, &[]).await.expect_err(assignment);
        let db_err = err.as_db_error().expect("a database error");
        assert_eq!(
            db_err.constraint(),
            Some(*constraint),
            "{assignment}: {db_err}"
        );
    }
    // The same dedupe key twice for one webhook.
    let insert = "INSERT INTO webhook_deliveries (webhook_id, event_type, payload, dedupe_key) VALUES ($1, 'webhook.test', '{}', 'k1') RETURNING id";
    let delivery_id: String = client.query_one(insert, &[&id]).await.unwrap().get(0);
    assert!(delivery_id.starts_with("msg_"), "{delivery_id}");
    let err = client.query_one(insert, &[&id]).await.unwrap_err();
    assert_eq!(
        err.as_db_error().and_then(|e| e.constraint()),
        Some("webhook_deliveries_dedupe")
    );

    // Attempts.
    let attempt_cases: &[(&str, &str)] = &[
        ("webhook_delivery_attempts_attempt", "0, 10, 200, NULL"),
        ("webhook_delivery_attempts_duration", "1, -5, 200, NULL"),
        ("webhook_delivery_attempts_status_code", "1, 10, 99, NULL"),
        (
            "webhook_delivery_attempts_snippet",
            "1, 10, 200, repeat('x', 70000)",
        ),
    ];
    for (constraint, values) in attempt_cases {
        let sql = format!(
            "INSERT INTO webhook_delivery_attempts (delivery_id, attempt, duration_ms, status_code, response_snippet, started_at) VALUES ($1, {values}, now())"
        );
        let err = client
            .execute(&sql, &[&delivery_id])
            .await
            .expect_err(values);
        assert_eq!(
            err.as_db_error().and_then(|e| e.constraint()),
            Some(*constraint),
            "{values}"
        );
    }

    // Cursors.
    for (constraint, sql) in [
        (
            "webhook_cursors_stream_format",
            "INSERT INTO webhook_cursors (stream, position) VALUES ('Bad Stream!', now())",
        ),
        (
            "webhook_cursors_state_object",
            "INSERT INTO webhook_cursors (stream, position, state) VALUES ('ok', now(), '[]')",
        ),
    ] {
        let err = client.execute(sql, &[]).await.expect_err(sql);
        assert_eq!(
            err.as_db_error().and_then(|e| e.constraint()),
            Some(constraint)
        );
    }
}

/// A connection that LISTENs and yields the notifications it receives.
async fn listen(
    url: &str,
    channels: &[&str],
) -> (
    Client,
    tokio::sync::mpsc::UnboundedReceiver<(String, String)>,
) {
    let (client, mut connection) = tokio_postgres::connect(url, NoTls).await.unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = messages.next().await {
            if let AsyncMessage::Notification(n) = message {
                let _ = tx.send((n.channel().to_string(), n.payload().to_string()));
            }
        }
    });
    for channel in channels {
        client
            .batch_execute(&format!("LISTEN {channel}"))
            .await
            .unwrap();
    }
    (client, rx)
}

async fn next(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<(String, String)>,
) -> (String, serde_json::Value) {
    let (channel, payload) = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("a notification within 5 s")
        .expect("the listener is alive");
    (
        channel,
        serde_json::from_str(&payload).expect("payload is JSON"),
    )
}

#[tokio::test]
async fn notify_announces_changes_with_id_and_operation() {
    let db = TestPostgres::migrated().await;
    let client = db.client().await;
    insert_site(&client, 5).await;
    let (_listener, mut rx) =
        listen(&db.url, &["webhooks_changed", "webhook_deliveries_changed"]).await;

    let id = insert_webhook(&client, 5, &[]).await.unwrap();
    assert_eq!(
        next(&mut rx).await,
        (
            "webhooks_changed".into(),
            serde_json::json!({"op": "INSERT", "id": id})
        )
    );
    client
        .execute("UPDATE webhooks SET enabled = false WHERE id = $1", &[&id])
        .await
        .unwrap();
    assert_eq!(
        next(&mut rx).await,
        (
            "webhooks_changed".into(),
            serde_json::json!({"op": "UPDATE", "id": id})
        )
    );

    // A new delivery, and a failed one set back to pending (a replay), with
    // its webhook and due time.
    let (delivery, due): (String, String) = {
        let row = client
            .query_one(
                "INSERT INTO webhook_deliveries (webhook_id, event_type, payload) VALUES ($1, 'webhook.test', '{}') RETURNING id, to_json(next_attempt_at)::text",
                &[&id],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    let due: serde_json::Value = serde_json::from_str(&due).unwrap();
    assert_eq!(
        next(&mut rx).await,
        (
            "webhook_deliveries_changed".into(),
            serde_json::json!({"op": "INSERT", "id": delivery, "webhook_id": id, "next_attempt_at": due})
        )
    );
    // Neither a success, nor a retry scheduled later, nor a failure.
    client
        .execute(
            "UPDATE webhook_deliveries SET next_attempt_at = next_attempt_at + interval '1 minute' WHERE id = $1",
            &[&delivery],
        )
        .await
        .unwrap();
    client
        .execute(
            "UPDATE webhook_deliveries SET status = 'failed' WHERE id = $1",
            &[&delivery],
        )
        .await
        .unwrap();
    client
        .execute(
            "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = '2030-01-01T00:00:00Z' WHERE id = $1",
            &[&delivery],
        )
        .await
        .unwrap();
    let (channel, replay) = next(&mut rx).await;
    assert_eq!(channel, "webhook_deliveries_changed");
    assert_eq!(
        (&replay["op"], &replay["id"], &replay["webhook_id"]),
        (
            &serde_json::json!("UPDATE"),
            &serde_json::json!(delivery),
            &serde_json::json!(id)
        )
    );
    let at = replay["next_attempt_at"].as_str().unwrap();
    assert_eq!(
        chrono::DateTime::parse_from_rfc3339(at).unwrap(),
        chrono::DateTime::parse_from_rfc3339("2030-01-01T00:00:00Z").unwrap()
    );
    // A pending delivery brought forward.
    client
        .execute(
            "UPDATE webhook_deliveries SET next_attempt_at = '2029-01-01T00:00:00Z' WHERE id = $1",
            &[&delivery],
        )
        .await
        .unwrap();
    assert_eq!(next(&mut rx).await.1["op"], "UPDATE");

    client
        .execute("DELETE FROM webhooks WHERE id = $1", &[&id])
        .await
        .unwrap();
    assert_eq!(
        next(&mut rx).await,
        (
            "webhooks_changed".into(),
            serde_json::json!({"op": "DELETE", "id": id})
        )
    );
    assert!(rx.try_recv().is_err(), "nothing else was announced");

    // Deleting a site removes its webhooks, each announced.
    let second = insert_webhook(&client, 5, &[]).await.unwrap();
    assert_eq!(next(&mut rx).await.1["op"], "INSERT");
    client
        .execute("DELETE FROM sites WHERE id = 5", &[])
        .await
        .unwrap();
    assert_eq!(
        next(&mut rx).await,
        (
            "webhooks_changed".into(),
            serde_json::json!({"op": "DELETE", "id": second})
        )
    );
}

#[tokio::test]
async fn updated_at_is_kept_current() {
    let db = TestPostgres::migrated().await;
    let client = db.client().await;
    insert_site(&client, 9).await;
    let id = insert_webhook(&client, 9, &[("updated_at", "now() - interval '1 day'")])
        .await
        .unwrap();
    client
        .execute(
            "UPDATE webhooks SET description = 'x' WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    let fresh: bool = client
        .query_one(
            "SELECT updated_at > now() - interval '1 minute' FROM webhooks WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    assert!(fresh);
}

/// The receiver options of V12: every constraint refuses what the registry
/// refuses, and the header rules agree with `registry::headers` name by
/// name, including every reserved one.
#[tokio::test]
async fn receiver_option_constraints_agree_with_the_registry() {
    use base64::Engine;
    use plausible_webhooks::registry::headers;
    let db = TestPostgres::migrated().await;
    let client = db.client().await;
    insert_site(&client, 1).await;

    let key64 = {
        let key = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
        let mut bytes = key.to_bytes().to_vec();
        bytes.extend_from_slice(key.verifying_key().as_bytes());
        format!(
            "whsk_{}",
            base64::engine::general_purpose::STANDARD.encode(bytes)
        )
    };
    let key32 = format!(
        "whsk_{}",
        base64::engine::general_purpose::STANDARD.encode([9u8; 32])
    );
    for ok in [
        vec![("format", "'slack'".to_string())],
        vec![("format", "'discord'".into())],
        vec![
            ("signatures", "ARRAY['v1', 'v1a']".into()),
            ("signing_key", format!("'{key64}'")),
        ],
        vec![
            ("signatures", "ARRAY['v1a']".into()),
            ("signing_key", format!("'{key32}'")),
            ("previous_signing_key", format!("'{key64}'")),
            ("previous_signing_key_expires_at", "now()".into()),
        ],
        vec![("max_per_minute", "60".into())],
    ] {
        let overrides: Vec<(&str, &str)> = ok.iter().map(|(c, v)| (*c, v.as_str())).collect();
        insert_webhook(&client, 1, &overrides)
            .await
            .unwrap_or_else(|e| panic!("{ok:?}: {e}"));
        client.execute("DELETE FROM webhooks", &[]).await.unwrap();
    }

    let refused: &[(&str, &[(&str, &str)])] = &[
        ("webhooks_format_known", &[("format", "'teams'")]),
        (
            "webhooks_signatures_known",
            &[("signatures", "ARRAY['v2']")],
        ),
        (
            "webhooks_signatures_known",
            &[("signatures", "ARRAY[]::text[]")],
        ),
        (
            "webhooks_signatures_known",
            &[("signatures", "ARRAY['v1', NULL]")],
        ),
        (
            "webhooks_v1a_needs_signing_key",
            &[("signatures", "ARRAY['v1a']")],
        ),
        (
            "webhooks_signing_key_format",
            &[("signing_key", "'whsec_abc'")],
        ),
        (
            "webhooks_signing_key_format",
            &[("signing_key", "'whsk_c2hvcnQ='")],
        ),
        (
            "webhooks_previous_signing_key_format",
            &[
                ("previous_signing_key", "'x'"),
                ("previous_signing_key_expires_at", "now()"),
            ],
        ),
        (
            "webhooks_previous_signing_key_expires_at_finite",
            &[
                (
                    "previous_signing_key",
                    "'whsk_CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk='",
                ),
                ("previous_signing_key_expires_at", "'infinity'"),
            ],
        ),
        ("webhooks_max_per_minute", &[("max_per_minute", "0")]),
        ("webhooks_max_per_minute", &[("max_per_minute", "6001")]),
        ("webhooks_headers_valid", &[("headers", "'[]'")]),
        ("webhooks_headers_valid", &[("headers", "'null'")]),
    ];
    for (constraint, overrides) in refused {
        let err = insert_webhook(&client, 1, overrides)
            .await
            .expect_err(constraint);
        assert_eq!(
            err.as_db_error().and_then(|e| e.constraint()),
            Some(*constraint),
            "{overrides:?}: {err}"
        );
    }

    // Header objects: the database and the registry say the same of each.
    let mut objects: Vec<serde_json::Value> = headers::RESERVED
        .iter()
        .flat_map(|name| {
            [
                serde_json::json!({ *name: "x" }),
                serde_json::json!({ name.to_uppercase(): "x" }),
            ]
        })
        .collect();
    objects.extend([
        serde_json::json!({"Webhook-Anything": "x"}),
        serde_json::json!({"Authorization": "Bearer abc"}),
        serde_json::json!({"X-Api-Key": "a\tb ~!"}),
        serde_json::json!({"X-Many": "x".repeat(headers::MAX_VALUE)}),
        serde_json::json!({"X-Long": "x".repeat(headers::MAX_VALUE + 1)}),
        serde_json::json!({"x".repeat(headers::MAX_NAME): "v"}),
        serde_json::json!({"x".repeat(headers::MAX_NAME + 1): "v"}),
        serde_json::json!({"bad name": "x"}),
        serde_json::json!({"": "x"}),
        serde_json::json!({"X-Num": 1}),
        serde_json::json!({"X-Null": null}),
        serde_json::json!({"X-Crlf": "a\r\nb"}),
        serde_json::json!({"X-Utf8": "é"}),
        serde_json::json!({"X-Ctl": "a\u{1}b"}),
        serde_json::json!({"Webhooks": "x", "Hostname": "y", "Te-X": "z"}),
        serde_json::Value::Object(
            (0..headers::MAX_HEADERS)
                .map(|i| (format!("x-{i}"), serde_json::json!("v")))
                .collect(),
        ),
        serde_json::Value::Object(
            (0..=headers::MAX_HEADERS)
                .map(|i| (format!("x-{i}"), serde_json::json!("v")))
                .collect(),
        ),
    ]);
    for object in objects {
        let registry = headers::parse(&object).is_ok();
        let database = client
            .query_one(
                "SELECT plausible_webhooks_headers_valid($1::jsonb)",
                &[&object],
            )
            .await
            .unwrap()
            .get::<_, bool>(0);
        assert_eq!(registry, database, "{object}");
    }
}
