//! Retention: old finished deliveries and their attempts go while the
//! scheduler delivers at full speed; pending ones stay however old; the
//! trigger state of deleted goals goes; old ClickHouse partitions are
//! dropped and recent ones kept.

use std::collections::HashSet;
use std::time::Duration;

use plausible_webhooks::analytics::{apply_migrations, embedded_migrations};
use plausible_webhooks::config::Config;
use plausible_webhooks::delivery::schedule::Scheduler;
use plausible_webhooks::retention::Retention;
use plausible_webhooks::telemetry::health::Heartbeat;
use tokio::sync::watch;

use crate::postgres_schema::SECRET;
use crate::registry::{eventually, run_change_stream};
use crate::support::receiver::Receiver;
use crate::support::{TestClickhouse, TestPostgres, config, wait_for};

/// The retention pass's advisory lock key ("plwhretn").
const LOCK_KEY: i64 = 0x706c_7768_7265_746e;

fn retention_config(pg: &TestPostgres, ch: &TestClickhouse) -> Config {
    let mut config = config(pg, ch);
    config.delivery.allow_http = true;
    config.delivery.allowed_cidrs = vec!["127.0.0.0/8".into()];
    config.delivery.max_in_flight_per_endpoint = 32;
    config.retention.deliveries_days = 30;
    config
}

fn new_retention(config: &Config) -> Retention {
    let pool = plausible_webhooks::store::pool(&config.postgres).unwrap();
    let ch = plausible_webhooks::analytics::Analytics::new(&config.clickhouse);
    Retention::new(config, pool, ch)
}

async fn count(client: &tokio_postgres::Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.unwrap().get(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn retention_deletes_only_old_finished_deliveries_while_the_scheduler_runs() {
    let pg = TestPostgres::migrated().await;
    let ch = TestClickhouse::new().await;
    let config = retention_config(&pg, &ch);
    let client = pg.client().await;
    let receiver = Receiver::start().await;
    client
        .batch_execute("INSERT INTO sites (id, domain) VALUES (1, 'one.example.com')")
        .await
        .unwrap();
    let mut webhooks = Vec::new();
    for _ in 0..4 {
        let id: i64 = client
            .query_one(
                "INSERT INTO webhooks (site_id, url, secret, event_types, spike_threshold) VALUES (1, $1, $2, ARRAY['traffic.spike'], 10) RETURNING id",
                &[&receiver.url("/ok").as_str(), &SECRET],
            )
            .await
            .unwrap()
            .get(0);
        webhooks.push(id);
    }

    // Before the scheduler starts: 20,000 finished deliveries 40 days old,
    // each with one attempt (these go); finished ones a day old, and old
    // ones replayed and failed again yesterday (these stay); and old
    // pending ones (delivered, and kept).
    client
        .batch_execute(&format!(
            "INSERT INTO webhook_deliveries (webhook_id, event_type, payload, status, attempts, dedupe_key, inserted_at, updated_at)
             SELECT {w}, 'webhook.test', '{{\"type\":\"webhook.test\"}}', CASE WHEN i % 2 = 0 THEN 'succeeded' ELSE 'failed' END, 1,
                    'old:' || i, now() - interval '40 days', now() - interval '40 days'
             FROM generate_series(1, 20000) AS i;
             INSERT INTO webhook_delivery_attempts (delivery_id, attempt, started_at, duration_ms, status_code)
             SELECT id, 1, inserted_at, 12, 200 FROM webhook_deliveries WHERE dedupe_key LIKE 'old:%';
             INSERT INTO webhook_deliveries (webhook_id, event_type, payload, status, attempts, dedupe_key, inserted_at, updated_at)
             SELECT {w}, 'webhook.test', '{{\"type\":\"webhook.test\"}}', 'succeeded', 1,
                    'recent:' || i, now() - interval '1 day', now() - interval '1 day'
             FROM generate_series(1, 100) AS i;
             INSERT INTO webhook_deliveries (webhook_id, event_type, payload, status, attempts, dedupe_key, inserted_at, updated_at)
             SELECT {w}, 'webhook.test', '{{\"type\":\"webhook.test\"}}', 'failed', 2,
                    'replayed:' || i, now() - interval '40 days', now() - interval '1 day'
             FROM generate_series(1, 100) AS i;
             INSERT INTO webhook_deliveries (webhook_id, event_type, payload, dedupe_key, inserted_at, updated_at)
             SELECT {w}, 'webhook.test', '{{\"type\":\"webhook.test\"}}',
                    'old-pending:' || i, now() - interval '40 days', now() - interval '40 days'
             FROM generate_series(1, 200) AS i;",
            w = webhooks[0]
        ))
        .await
        .unwrap();

    let stream = run_change_stream(&config).await;
    for id in &webhooks {
        eventually(&stream.registry, "the webhook is active", |r| {
            r.webhook(*id).is_some()
        })
        .await;
    }
    let pool = plausible_webhooks::store::pool(&config.postgres).unwrap();
    let scheduler = Scheduler::new(&config, pool, stream.registry.clone()).unwrap();
    let (stop, stop_rx) = watch::channel(false);
    tokio::spawn(scheduler.run(stop_rx.clone(), Heartbeat::detached()));

    // New deliveries stream in while the retention pass runs.
    let retention = new_retention(&config);
    let pass = tokio::spawn(async move {
        retention
            .pass(&watch::channel(false).1, &Heartbeat::detached())
            .await
    });
    let mut new_ids = Vec::new();
    for batch in 0..30 {
        let rows = client
            .query(
                "INSERT INTO webhook_deliveries (webhook_id, event_type, payload)
                 SELECT ($1::bigint[])[1 + i % 4], 'webhook.test', '{\"type\":\"webhook.test\"}'
                 FROM generate_series(1, 100) AS i RETURNING id",
                &[&webhooks],
            )
            .await
            .unwrap();
        new_ids.extend(rows.iter().map(|r| r.get::<_, String>(0)));
        if batch % 5 == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let pruned = pass
        .await
        .unwrap()
        .unwrap()
        .expect("no other pass holds the lock");
    assert_eq!(pruned.deliveries, 20_000);
    assert_eq!(pruned.attempts, 20_000);

    wait_for(
        "every pending delivery is sent",
        Duration::from_secs(120),
        async || {
            count(
                &client,
                "SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'",
            )
            .await
                == 0
        },
    )
    .await;
    let delivered: HashSet<String> = receiver
        .received()
        .iter()
        .filter_map(|r| r.headers.get("webhook-id").cloned())
        .collect();
    for id in &new_ids {
        assert!(delivered.contains(id), "{id} was not delivered");
    }
    assert_eq!(
        count(&client, "SELECT count(*) FROM webhook_deliveries WHERE status = 'succeeded' AND dedupe_key LIKE 'manual:%'").await,
        new_ids.len() as i64
    );
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM webhook_deliveries WHERE dedupe_key LIKE 'old:%'"
        )
        .await,
        0
    );
    assert_eq!(
        count(&client, "SELECT count(*) FROM webhook_delivery_attempts a WHERE a.started_at < now() - interval '30 days'").await,
        0
    );
    assert_eq!(
        count(&client, "SELECT count(*) FROM webhook_deliveries WHERE dedupe_key LIKE 'recent:%' OR dedupe_key LIKE 'replayed:%'").await,
        200
    );
    assert_eq!(
        count(&client, "SELECT count(*) FROM webhook_deliveries WHERE dedupe_key LIKE 'old-pending:%' AND status = 'succeeded'").await,
        200
    );

    // A second pass finds nothing more: what is left is recent, or was
    // only just delivered.
    let again = new_retention(&config)
        .pass(&watch::channel(false).1, &Heartbeat::detached())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((again.deliveries, again.attempts), (0, 0));
    let _ = stop.send(true);
}

#[tokio::test(flavor = "multi_thread")]
async fn retention_removes_the_trigger_state_of_deleted_goals_and_webhooks() {
    let pg = TestPostgres::migrated().await;
    let ch = TestClickhouse::new().await;
    let config = retention_config(&pg, &ch);
    let client = pg.client().await;
    client
        .batch_execute(&format!(
            "INSERT INTO sites (id, domain) VALUES (1, 'one.example.com');
             INSERT INTO goals (id, site_id, event_name, display_name) VALUES (1, 1, 'Signup', 'Signup'), (2, 1, 'Buy', 'Buy');
             INSERT INTO webhooks (id, site_id, url, secret, event_types) VALUES
                 (10, 1, 'https://hooks.example.com/a', '{SECRET}', ARRAY['goal.completed']),
                 (11, 1, 'https://hooks.example.com/b', '{SECRET}', ARRAY['goal.completed']);
             INSERT INTO webhook_goal_counts (goal_id, minute, completions)
             SELECT g, date_trunc('minute', now()) - make_interval(mins => m), 1
             FROM unnest(ARRAY[1, 2, 999]) AS g, generate_series(0, 1499) AS m;
             INSERT INTO webhook_goal_throttle (webhook_id, goal_id, last_sent_at) VALUES
                 (10, 1, now()), (10, 2, now()), (10, 999, now()), (11, 1, now());
             INSERT INTO webhook_alert_state (webhook_id, event_type, last_fired_at) VALUES
                 (10, 'traffic.spike', now()), (11, 'traffic.spike', now());
             INSERT INTO webhook_endpoint_health (webhook_id, failing_since) VALUES (10, now()), (11, now());
             DELETE FROM goals WHERE id = 2;
             DELETE FROM webhooks WHERE id = 11;"
        ))
        .await
        .unwrap();
    // A deleted webhook's state cascades at once.
    for table in [
        "webhook_goal_throttle",
        "webhook_alert_state",
        "webhook_endpoint_health",
    ] {
        assert_eq!(
            count(
                &client,
                &format!("SELECT count(*) FROM {table} WHERE webhook_id = 11")
            )
            .await,
            0,
            "{table}"
        );
    }

    let pruned = new_retention(&config)
        .pass(&watch::channel(false).1, &Heartbeat::detached())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(pruned.goal_counts, 3000);
    assert_eq!(pruned.goal_throttles, 2);
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM webhook_goal_counts WHERE goal_id <> 1"
        )
        .await,
        0
    );
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM webhook_goal_counts WHERE goal_id = 1"
        )
        .await,
        1500
    );
    let left: Vec<(i64, i64)> = client
        .query(
            "SELECT webhook_id, goal_id FROM webhook_goal_throttle ORDER BY 1, 2",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(left, vec![(10, 1)]);
    assert_eq!(
        count(&client, "SELECT count(*) FROM webhook_alert_state").await,
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retention_pass_is_skipped_while_another_replica_runs_one() {
    let pg = TestPostgres::migrated().await;
    let ch = TestClickhouse::new().await;
    let config = retention_config(&pg, &ch);
    let other = pg.client().await;
    other
        .execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY])
        .await
        .unwrap();
    let retention = new_retention(&config);
    let stop = watch::channel(false).1;
    assert_eq!(
        retention.pass(&stop, &Heartbeat::detached()).await.unwrap(),
        None
    );
    other
        .execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY])
        .await
        .unwrap();
    assert!(
        retention
            .pass(&stop, &Heartbeat::detached())
            .await
            .unwrap()
            .is_some()
    );
    // The lock was released with the pass: the other session takes it.
    let row = other
        .query_one("SELECT pg_try_advisory_lock($1)", &[&LOCK_KEY])
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0));
}

/// The partitions of the view tables, as `table/partition`.
async fn view_partitions(ch: &TestClickhouse) -> HashSet<String> {
    plausible_webhooks::analytics::retention::partitions(&ch.analytics())
        .await
        .unwrap()
        .into_iter()
        .map(|p| format!("{}/{}", p.table.name(), p.value))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn retention_drops_old_clickhouse_partitions_and_keeps_recent_ones() {
    let pg = TestPostgres::migrated().await;
    let ch = TestClickhouse::new().await;
    apply_migrations(&ch.analytics(), embedded_migrations())
        .await
        .unwrap();
    let config = retention_config(&pg, &ch);
    let analytics = ch.analytics();
    let now = chrono::Utc::now();
    let old = now - chrono::Duration::days(70);
    let recent = now - chrono::Duration::hours(1);
    let month = |t: chrono::DateTime<chrono::Utc>| t.format("%Y%m").to_string();
    let day = |t: chrono::DateTime<chrono::Utc>| t.format("%Y%m%d").to_string();
    for at in [old, recent] {
        analytics
            .execute(&analytics.render(&format!(
                "INSERT INTO {{database}}.{{events_table}} (timestamp, name, site_id, user_id, session_id, pathname) VALUES ('{}', 'pageview', 1, 7, 8, '/')",
                at.format("%Y-%m-%d %H:%M:%S")
            )))
            .await
            .unwrap();
    }
    let old_insert = now - chrono::Duration::days(5);
    analytics
        .execute(&analytics.render(&format!(
            "INSERT INTO {{database}}.webhooks_inserts (inserted_at, site_id, minute) VALUES ('{}', 1, '{}')",
            old_insert.format("%Y-%m-%d %H:%M:%S"),
            old_insert.format("%Y-%m-%d %H:%M:00")
        )))
        .await
        .unwrap();
    let before = view_partitions(&ch).await;
    for table in ["webhooks_site_minutes", "webhooks_goal_minutes"] {
        assert!(
            before.contains(&format!("{table}/{}", month(old))),
            "{before:?}"
        );
        assert!(
            before.contains(&format!("{table}/{}", month(recent))),
            "{before:?}"
        );
    }
    assert!(
        before.contains(&format!("webhooks_inserts/{}", day(old_insert))),
        "{before:?}"
    );

    // While the trigger engine's cursor is still behind, nothing it has not
    // read is dropped.
    let client = pg.client().await;
    client
        .execute(
            "INSERT INTO webhook_cursors (stream, position) VALUES ('triggers', now() - interval '80 days')",
            &[],
        )
        .await
        .unwrap();
    let retention = new_retention(&config);
    let stop = watch::channel(false).1;
    let pruned = retention
        .pass(&stop, &Heartbeat::detached())
        .await
        .unwrap()
        .unwrap();
    assert!(pruned.partitions.is_empty(), "{:?}", pruned.partitions);
    assert_eq!(view_partitions(&ch).await, before);

    client
        .execute(
            "UPDATE webhook_cursors SET position = now() WHERE stream = 'triggers'",
            &[],
        )
        .await
        .unwrap();
    let pruned = retention
        .pass(&stop, &Heartbeat::detached())
        .await
        .unwrap()
        .unwrap();
    let after = view_partitions(&ch).await;
    for table in ["webhooks_site_minutes", "webhooks_goal_minutes"] {
        assert!(
            !after.contains(&format!("{table}/{}", month(old))),
            "{after:?}"
        );
        assert!(
            after.contains(&format!("{table}/{}", month(recent))),
            "{after:?}"
        );
    }
    assert!(
        !after.contains(&format!("webhooks_inserts/{}", day(old_insert))),
        "{after:?}"
    );
    assert!(
        after.contains(&format!("webhooks_inserts/{}", day(now)))
            || after.contains(&format!(
                "webhooks_inserts/{}",
                day(now - chrono::Duration::days(1))
            )),
        "{after:?}"
    );
    assert_eq!(pruned.partitions.len(), 3, "{:?}", pruned.partitions);
}

#[test]
fn the_retention_keys_are_bounded() {
    use plausible_webhooks::config::Sources;
    for (var, value, key) in [
        (
            "PLAUSIBLE_WEBHOOKS_RETENTION__DELIVERIES_DAYS",
            "0",
            "retention.deliveries_days",
        ),
        (
            "PLAUSIBLE_WEBHOOKS_RETENTION__DELIVERIES_DAYS",
            "3651",
            "retention.deliveries_days",
        ),
        (
            "PLAUSIBLE_WEBHOOKS_RETENTION__INTERVAL_SECS",
            "9",
            "retention.interval_secs",
        ),
        (
            "PLAUSIBLE_WEBHOOKS_RETENTION__INTERVAL_SECS",
            "86401",
            "retention.interval_secs",
        ),
    ] {
        let err = Config::load(&Sources {
            file: None,
            env: vec![(var.to_string(), value.to_string())],
        })
        .expect_err(var);
        let keys: Vec<&str> = err.problems().iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, [key], "{var}={value}");
    }
    let config = Config::load(&Sources {
        file: None,
        env: vec![(
            "PLAUSIBLE_WEBHOOKS_RETENTION__DELIVERIES_DAYS".to_string(),
            "3650".to_string(),
        )],
    })
    .unwrap();
    assert_eq!(config.retention.deliveries_days, 3650);
    assert_eq!(Config::defaults().retention.deliveries_days, 30);
    assert_eq!(Config::defaults().retention.interval_secs, 300);
}
