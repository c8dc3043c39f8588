//! Bad rows: what the schema refuses (V9's finite times, with the
//! constraint named), what V9 fixes in rows written before it, and rows
//! Plausible's own tables can hold (odd sites, odd goals) inserted while a
//! real daemon delivers: nothing stops, and `/health/ready` stays honest.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::process::{Child, Stdio};
use std::time::Duration;

use tokio_postgres::Client;

use crate::postgres_schema::SECRET;
use crate::support::receiver::Receiver;
use crate::support::{TestClickhouse, TestPostgres, binary, config, config_env, wait_for};

/// The error of a statement Postgres refused: (SQLSTATE, constraint, message).
async fn refused(client: &Client, sql: &str) -> (String, String, String) {
    let e = client.batch_execute(sql).await.expect_err(sql);
    let db = e.as_db_error().expect("a database error");
    (
        db.code().code().to_string(),
        db.constraint().unwrap_or_default().to_string(),
        db.message().to_string(),
    )
}

async fn with_webhook() -> (TestPostgres, Client) {
    let pg = TestPostgres::migrated().await;
    let client = pg.client().await;
    client
        .batch_execute(&format!(
            "INSERT INTO sites (id, domain) VALUES (1, 'one.example.com');
             INSERT INTO webhooks (id, site_id, url, secret, event_types, spike_threshold)
               VALUES (1, 1, 'https://hooks.example.com/', '{SECRET}', ARRAY['traffic.spike'], 10);"
        ))
        .await
        .unwrap();
    (pg, client)
}

#[tokio::test]
async fn the_schema_refuses_times_that_are_not_finite() {
    let (_pg, client) = with_webhook().await;

    // The row that used to stop the delivery resync.
    let (code, constraint, message) = refused(
        &client,
        r#"INSERT INTO webhook_deliveries (webhook_id, event_type, payload, next_attempt_at)
VALUES (1, 'webhook.test', '{"type":"webhook.test","timestamp":"2026-01-01T00:00:00Z","data":{}}', '-infinity');"#,
    )
    .await;
    assert_eq!(code, "23514");
    assert_eq!(constraint, "webhook_deliveries_next_attempt_at_finite");
    assert!(
        message.contains("webhook_deliveries_next_attempt_at_finite"),
        "{message}"
    );

    // The last representable second, and NULLs, are still fine.
    client
        .batch_execute(
            "INSERT INTO webhook_deliveries (webhook_id, event_type, payload, next_attempt_at, leased_until)
             VALUES (1, 'webhook.test', '{}', '9999-12-31 23:59:59+00', NULL)",
        )
        .await
        .unwrap();

    for (sql, expected) in [
        (
            "INSERT INTO webhook_deliveries (webhook_id, event_type, payload, next_attempt_at) VALUES (1, 'webhook.test', '{}', 'infinity')",
            "webhook_deliveries_next_attempt_at_finite",
        ),
        (
            "INSERT INTO webhook_deliveries (webhook_id, event_type, payload, next_attempt_at) VALUES (1, 'webhook.test', '{}', '10000-01-01 00:00:00+00')",
            "webhook_deliveries_next_attempt_at_finite",
        ),
        (
            "INSERT INTO webhook_deliveries (webhook_id, event_type, payload, leased_until) VALUES (1, 'webhook.test', '{}', 'infinity')",
            "webhook_deliveries_leased_until_finite",
        ),
        (
            "INSERT INTO webhook_deliveries (webhook_id, event_type, payload, inserted_at) VALUES (1, 'webhook.test', '{}', '-infinity')",
            "webhook_deliveries_inserted_at_finite",
        ),
        (
            "UPDATE webhook_deliveries SET next_attempt_at = '-infinity'",
            "webhook_deliveries_next_attempt_at_finite",
        ),
        (
            &format!(
                "UPDATE webhooks SET previous_secret = '{SECRET}', previous_secret_expires_at = 'infinity' WHERE id = 1"
            ),
            "webhooks_previous_secret_expires_at_finite",
        ),
        (
            &format!(
                "INSERT INTO webhooks (site_id, url, secret, event_types, spike_threshold, inserted_at) VALUES (1, 'https://hooks.example.com/', '{SECRET}', ARRAY['traffic.spike'], 10, '-infinity')"
            ),
            "webhooks_inserted_at_finite",
        ),
        (
            "UPDATE webhooks SET disabled_reason = 'x', disabled_at = 'infinity' WHERE id = 1",
            "webhooks_disabled_at_finite",
        ),
        (
            "INSERT INTO webhook_cursors (stream, position) VALUES ('triggers', '-infinity')",
            "webhook_cursors_position_finite",
        ),
        (
            "INSERT INTO webhook_goal_counts (goal_id, minute, completions) VALUES (1, 'infinity', 1)",
            "webhook_goal_counts_minute_finite",
        ),
        (
            "INSERT INTO webhook_alert_state (webhook_id, event_type, last_fired_at) VALUES (1, 'traffic.spike', 'infinity')",
            "webhook_alert_state_last_fired_at_finite",
        ),
    ] {
        let (code, constraint, _) = refused(&client, sql).await;
        assert_eq!(
            (code.as_str(), constraint.as_str()),
            ("23514", expected),
            "{sql}"
        );
    }
}

#[tokio::test]
async fn v9_fixes_rows_written_before_it_then_adds_its_constraints() {
    let pg = TestPostgres::with_plausible().await;
    let client = pg.client().await;
    for sql in [
        include_str!("../../migrations/postgres/V1__webhooks.sql"),
        include_str!("../../migrations/postgres/V2__deliveries.sql"),
        include_str!("../../migrations/postgres/V3__cursors.sql"),
        include_str!("../../migrations/postgres/V4__goals_notify.sql"),
        include_str!("../../migrations/postgres/V5__trigger_state.sql"),
        include_str!("../../migrations/postgres/V6__endpoint_health.sql"),
        include_str!("../../migrations/postgres/V7__delivery_notify.sql"),
    ] {
        client.batch_execute(sql).await.unwrap();
    }
    client
        .batch_execute(&format!(
            "INSERT INTO sites (id, domain) VALUES (1, 'one.example.com');
             INSERT INTO webhooks (id, site_id, url, secret, previous_secret, previous_secret_expires_at, event_types, spike_threshold)
               VALUES (1, 1, 'https://hooks.example.com/', '{SECRET}', '{SECRET}', 'infinity', ARRAY['traffic.spike'], 10),
                      (2, 1, 'https://hooks.example.com/', '{SECRET}', '{SECRET}', '-infinity', ARRAY['traffic.spike'], 10);
             INSERT INTO webhook_deliveries (id, webhook_id, event_type, payload, next_attempt_at, leased_until, inserted_at)
               VALUES ('msg_minusinfinity', 1, 'webhook.test', '{{}}', '-infinity', 'infinity', '-infinity'),
                      ('msg_plusinfinity1', 1, 'webhook.test', '{{}}', 'infinity', NULL, now()),
                      ('msg_farfuture0001', 1, 'webhook.test', '{{}}', '20000-01-01 00:00:00+00', NULL, now());
             INSERT INTO webhook_goal_counts (goal_id, minute, completions)
               VALUES (1, 'infinity', 1), (1, date_trunc('minute', now()), 2);"
        ))
        .await
        .unwrap();

    client
        .batch_execute(include_str!(
            "../../migrations/postgres/V9__finite_times.sql"
        ))
        .await
        .unwrap();

    let expiry = |id: i64| {
        let client = &client;
        async move {
            client
                .query_one(
                    "SELECT previous_secret_expires_at::text FROM webhooks WHERE id = $1",
                    &[&id],
                )
                .await
                .unwrap()
                .get::<_, String>(0)
        }
    };
    assert_eq!(expiry(1).await, "9999-12-31 23:59:59+00");
    assert_eq!(expiry(2).await, "1970-01-01 00:00:00+00");
    let rows: Vec<(String, String, Option<String>, String)> = client
        .query(
            "SELECT id::text, next_attempt_at::text, leased_until::text, inserted_at::text
             FROM webhook_deliveries ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(rows[0].0, "msg_farfuture0001");
    assert_eq!(rows[0].1, "9999-12-31 23:59:59+00");
    assert_eq!(rows[1].0, "msg_minusinfinity");
    assert_eq!(rows[1].1, "1970-01-01 00:00:00+00");
    assert_eq!(rows[1].2, None, "a lease that never ends is cleared");
    assert_eq!(rows[1].3, "1970-01-01 00:00:00+00");
    assert_eq!(rows[2].1, "9999-12-31 23:59:59+00");
    let counts: i64 = client
        .query_one("SELECT count(*) FROM webhook_goal_counts", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(counts, 1, "the count of an impossible minute is gone");
}

/// The daemon, with its admin server on a known port.
struct Daemon {
    child: Child,
    admin: String,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn command(command: &str, env: &[(String, String)]) -> Child {
    binary()
        .arg(command)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// A GET on the admin server: its status and body.
fn get(admin: &str, path: &str) -> Option<(u16, String)> {
    let mut stream = std::net::TcpStream::connect(admin).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {admin}\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split(' ').nth(1)?.parse().ok()?;
    let body = response.split("\r\n\r\n").nth(1)?;
    Some((status, body.to_string()))
}

/// `/health/ready`: its status and JSON body.
fn ready(admin: &str) -> Option<(u16, serde_json::Value)> {
    let (status, body) = get(admin, "/health/ready")?;
    Some((status, serde_json::from_str(&body).ok()?))
}

async fn enqueue_tests(client: &Client, webhooks: &[i64]) -> Vec<String> {
    client
        .query(
            "INSERT INTO webhook_deliveries (webhook_id, event_type, payload)
             SELECT w, 'webhook.test', '{\"type\":\"webhook.test\",\"data\":{}}'
             FROM unnest($1::bigint[]) AS w, generate_series(1, 5) RETURNING id",
            &[&webhooks],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn odd_rows_in_plausibles_tables_do_not_stop_other_webhooks() {
    let pg = TestPostgres::with_plausible().await;
    let ch = TestClickhouse::new().await;
    let mut config = config(&pg, &ch);
    config.http.listen = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut env = config_env(&config);
    env.extend([
        (
            "PLAUSIBLE_WEBHOOKS_DELIVERY__ALLOW_HTTP".to_string(),
            "true".to_string(),
        ),
        (
            "PLAUSIBLE_WEBHOOKS_DELIVERY__ALLOWED_CIDRS".to_string(),
            "[\"127.0.0.0/8\"]".to_string(),
        ),
        (
            "PLAUSIBLE_WEBHOOKS_TRIGGERS__POLL_INTERVAL_MS".to_string(),
            "200".to_string(),
        ),
    ]);
    let mut migrate = command("migrate", &env);
    assert!(migrate.wait().unwrap().success());

    let receiver = Receiver::start().await;
    let client = pg.client().await;
    client
        .batch_execute(&format!(
            "INSERT INTO sites (id, domain) VALUES (1, 'one.example.com');
             INSERT INTO sites (id, domain, timezone, inserted_at, updated_at)
               VALUES (2, 'bücher.example', 'Mars/Olympus_Mons', 'infinity', '-infinity');
             INSERT INTO goals (id, site_id, event_name, display_name) VALUES (1, 2, 'Signup', '🎉 Signup — ünïcödé');
             INSERT INTO webhooks (id, site_id, url, secret, event_types, spike_threshold)
               VALUES (1, 1, '{a}', '{SECRET}', ARRAY['traffic.spike'], 2147483647);
             INSERT INTO webhooks (id, site_id, url, secret, event_types, goal_ids, goal_interval_seconds)
               VALUES (2, 2, '{b}', '{SECRET}', ARRAY['goal.completed'], ARRAY[1, -1, 9223372036854775807], 1);",
            a = receiver.url("/a"),
            b = receiver.url("/b"),
        ))
        .await
        .unwrap();
    let daemon = Daemon {
        child: command("run", &env),
        admin: config.http.listen.to_string(),
    };
    wait_for("the daemon is ready", Duration::from_secs(60), async || {
        ready(&daemon.admin).is_some_and(|(status, _)| status == 200)
    })
    .await;

    let mut expected: BTreeSet<String> =
        enqueue_tests(&client, &[1, 2]).await.into_iter().collect();

    // Goals Plausible's table can hold but the daemon cannot use, and one
    // with infinite timestamps: each is skipped or read; none stops the rest.
    client
        .batch_execute(&format!(
            "INSERT INTO goals (id, site_id, event_name, display_name) VALUES (2, 2, 'Big', '{big}');
             INSERT INTO goals (id, site_id, event_name, display_name, custom_props)
               VALUES (3, 2, 'Props', 'Props', (SELECT jsonb_object_agg('k' || i, 'v') FROM generate_series(1, 40) i));
             INSERT INTO goals (id, site_id, event_name, display_name, custom_props)
               VALUES (4, 2, 'Typed', 'Typed', '{{\"plan\": 1}}');
             INSERT INTO goals (id, site_id, page_path, display_name, scroll_threshold)
               VALUES (5, 2, '/blog/**', 'Scroll', 3000);
             INSERT INTO goals (id, site_id, event_name, display_name, inserted_at, updated_at)
               VALUES (6, 2, 'Forever', 'Forever', 'infinity', '-infinity');
             INSERT INTO goals (id, site_id, event_name, display_name, custom_props)
               VALUES (7, 2, 'Huge', 'Huge', jsonb_build_object('k', repeat('x', 300000)));
             UPDATE webhooks SET goal_ids = ARRAY[1, 2, 3, 4, 5, 6, 7] WHERE id = 2;",
            big = "x".repeat(300_000),
        ))
        .await
        .unwrap();
    // And the web app's row that used to stop the delivery resync: refused.
    let (code, constraint, _) = refused(
        &client,
        r#"INSERT INTO webhook_deliveries (webhook_id, event_type, payload, next_attempt_at)
VALUES (1, 'webhook.test', '{"type":"webhook.test","timestamp":"2026-01-01T00:00:00Z","data":{}}', '-infinity');"#,
    )
    .await;
    assert_eq!(
        (code.as_str(), constraint.as_str()),
        ("23514", "webhook_deliveries_next_attempt_at_finite")
    );
    expected.extend(enqueue_tests(&client, &[1, 2]).await);

    // Traffic for the goals: the good ones complete; the site's odd row and
    // its skipped goals do not stop the trigger engine.
    let analytics = ch.analytics();
    analytics
        .execute(&analytics.render(
            "INSERT INTO {database}.{events_table} (timestamp, name, site_id, user_id, session_id, pathname)
             VALUES (now(), 'Signup', 2, 1, 1, '/'), (now(), 'Big', 2, 2, 2, '/'), (now(), 'Forever', 2, 3, 3, '/'),
                    (now(), 'Props', 2, 4, 4, '/'), (now(), 'Huge', 2, 5, 5, '/')",
        ))
        .await
        .unwrap();

    wait_for(
        "every test delivery arrives",
        Duration::from_secs(60),
        async || {
            let got: BTreeSet<String> = receiver
                .received()
                .iter()
                .filter_map(|r| r.headers.get("webhook-id").cloned())
                .collect();
            expected.is_subset(&got)
        },
    )
    .await;
    let goal_of = |body: &[u8]| -> Option<i64> {
        let v: serde_json::Value = serde_json::from_slice(body).ok()?;
        (v["type"] == "goal.completed").then(|| v["data"]["goal"]["id"].as_i64())?
    };
    wait_for(
        "the good goals complete",
        Duration::from_secs(60),
        async || {
            let goals: BTreeSet<i64> = receiver
                .received()
                .iter()
                .filter_map(|r| goal_of(&r.body))
                .collect();
            goals.contains(&1) && goals.contains(&6)
        },
    )
    .await;
    let goals: BTreeSet<i64> = receiver
        .received()
        .iter()
        .filter_map(|r| goal_of(&r.body))
        .collect();
    for skipped in [2, 3, 7] {
        assert!(
            !goals.contains(&skipped),
            "goal {skipped} should be skipped: {goals:?}"
        );
    }
    let names: Vec<String> = receiver
        .received()
        .iter()
        .filter_map(|r| serde_json::from_slice::<serde_json::Value>(&r.body).ok())
        .filter(|v| v["data"]["goal"]["id"] == 1)
        .map(|v| {
            v["data"]["goal"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert_eq!(names[0], "🎉 Signup — ünïcödé");

    let (status, body) = ready(&daemon.admin).expect("/health/ready answers");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ready");
    assert_eq!(body["problems"], serde_json::json!([]));
    assert!(
        body["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["alive"] == true && t["restarts"] == 0),
        "{body}"
    );
    let tasks: Vec<&str> = body["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(tasks.contains(&"retention"), "{tasks:?}");
    // The retention task ran its first pass at start.
    wait_for(
        "a retention pass is counted",
        Duration::from_secs(30),
        async || {
            get(&daemon.admin, "/metrics").is_some_and(|(_, m)| {
                m.contains("plausible_webhooks_retention_passes_total{result=\"ok\"}")
            })
        },
    )
    .await;
    // Goal completions may still be arriving; once nothing is pending,
    // nothing has failed either.
    let count = |sql: &'static str| {
        let client = &client;
        async move { client.query_one(sql, &[]).await.unwrap().get::<_, i64>(0) }
    };
    wait_for("nothing is pending", Duration::from_secs(60), async || {
        count("SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'").await == 0
    })
    .await;
    assert_eq!(
        count("SELECT count(*) FROM webhook_deliveries WHERE status <> 'succeeded'").await,
        0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_webhook_with_an_infinite_time_gets_a_clear_last_error_and_the_rest_stay_active() {
    // A database without V9's constraint (dropped here) can hold one.
    let (pg, client) = with_webhook().await;
    client
        .batch_execute(&format!(
            "ALTER TABLE webhooks DROP CONSTRAINT webhooks_previous_secret_expires_at_finite;
             INSERT INTO webhooks (id, site_id, url, secret, previous_secret, previous_secret_expires_at, event_types, spike_threshold)
               VALUES (2, 1, 'https://hooks.example.com/b', '{SECRET}', '{SECRET}', 'infinity', ARRAY['traffic.spike'], 10),
                      (3, 1, 'https://hooks.example.com/c', '{SECRET}', '{SECRET}', '-infinity', ARRAY['traffic.spike'], 10);"
        ))
        .await
        .unwrap();
    let stream = crate::registry::run_change_stream(&crate::support::config_pg(&pg)).await;
    crate::registry::eventually(&stream.registry, "webhook 1 is active", |r| {
        r.webhook(1).is_some()
    })
    .await;
    let last_error = |id: i64| {
        let client = &client;
        async move {
            client
                .query_one("SELECT last_error FROM webhooks WHERE id = $1", &[&id])
                .await
                .unwrap()
                .get::<_, Option<String>>(0)
        }
    };
    wait_for(
        "both verdicts are written",
        Duration::from_secs(10),
        async || last_error(2).await.is_some() && last_error(3).await.is_some(),
    )
    .await;
    assert_eq!(
        last_error(2).await.as_deref(),
        Some("previous_secret_expires_at is infinity; it must be a finite time")
    );
    assert_eq!(
        last_error(3).await.as_deref(),
        Some("previous_secret_expires_at is -infinity; it must be a finite time")
    );
    let registry = stream.registry.read();
    assert!(registry.webhook(1).is_some());
    assert!(registry.webhook(2).is_none() && registry.webhook(3).is_none());
}
