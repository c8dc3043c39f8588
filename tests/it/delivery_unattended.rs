//! The delivery scheduler left alone: fenced outcomes (a late worker after a
//! replay or another worker's success), a host clock that is off, shutdown
//! while Postgres is away, a row it cannot read, and an inner task that
//! fails.

use std::time::{Duration, Instant};

use chrono::Utc;
use plausible_webhooks::config::PostgresUrl;
use plausible_webhooks::delivery::schedule::Scheduler;
use plausible_webhooks::store::deliveries::{
    self, Attempt, Claimed, DeadEndpoints, ErrorKind, Outcome, Status,
};
use plausible_webhooks::telemetry::health::Heartbeat;
use tokio::sync::watch;
use tokio_postgres::Client;

use crate::delivery::{Setup, start, test_config};
use crate::postgres_schema::SECRET;
use crate::support::proxy::Proxy;
use crate::support::{TestPostgres, wait_for};

/// A database with one webhook and one delivery, and a pool: for driving
/// the store as two workers would, without a scheduler.
async fn outbox() -> (TestPostgres, Client, deadpool_postgres::Pool, String) {
    let db = TestPostgres::migrated().await;
    let client = db.client().await;
    client
        .batch_execute("INSERT INTO sites (id, domain) VALUES (1, 'one.example.com')")
        .await
        .unwrap();
    let webhook: i64 = client
        .query_one(
            "INSERT INTO webhooks (site_id, url, secret, event_types, spike_threshold) VALUES (1, 'https://hooks.example.com/x', $1, ARRAY['traffic.spike'], 10) RETURNING id",
            &[&SECRET],
        )
        .await
        .unwrap()
        .get(0);
    let id: String = client
        .query_one(
            "INSERT INTO webhook_deliveries (webhook_id, event_type, payload) VALUES ($1, 'webhook.test', '{}') RETURNING id",
            &[&webhook],
        )
        .await
        .unwrap()
        .get(0);
    let pool = plausible_webhooks::store::pool(&test_config(&db).postgres).unwrap();
    (db, client, pool, id)
}

fn dead() -> DeadEndpoints {
    DeadEndpoints {
        after_secs: 3600.0,
        reason: "dead".into(),
    }
}

/// Leases `id` for `secs`, as a worker does.
async fn lease(pool: &deadpool_postgres::Pool, id: &str, secs: f64) -> Claimed {
    let mut leased = deliveries::lease(pool, &[id], secs).await.unwrap();
    assert_eq!(leased.len(), 1, "{id} is leased");
    leased.pop().unwrap().expect("the row reads")
}

/// The outcome of a request made on `claimed`'s lease.
fn outcome(claimed: &Claimed, status: Status, code: i32) -> Outcome {
    let now = Utc::now();
    let failed = status != Status::Succeeded;
    Outcome {
        id: claimed.id.clone(),
        webhook_id: claimed.webhook_id,
        lease_token: claimed.lease_token.clone(),
        status,
        requested: true,
        next_attempt_at: (status == Status::Pending).then(|| now + chrono::TimeDelta::hours(1)),
        attempted_at: now,
        status_code: Some(code),
        error: failed.then(|| format!("HTTP {code}")),
        delivered_at: (status == Status::Succeeded).then_some(now),
        attempt: Some(Attempt {
            started_at: now,
            duration_ms: 5,
            status_code: Some(code),
            error_kind: failed.then_some(ErrorKind::Status),
            error: failed.then(|| format!("HTTP {code}")),
            snippet: Some(format!("answered {code}")),
        }),
        disable: None,
    }
}

async fn state(client: &Client, id: &str) -> (String, i32, Option<String>, Option<i32>) {
    let row = client
        .query_one(
            "SELECT status, attempts, last_error, last_status_code FROM webhook_deliveries WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1), row.get(2), row.get(3))
}

async fn attempt_rows(client: &Client, id: &str) -> Vec<(i32, Option<i32>)> {
    client
        .query(
            "SELECT attempt, status_code FROM webhook_delivery_attempts WHERE delivery_id = $1 ORDER BY attempt",
            &[&id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_outcome_after_a_replay_does_not_overwrite_it() {
    let (_db, client, pool, id) = outbox().await;
    // Worker A leases, and its lease runs out while its request goes on.
    let a = lease(&pool, &id, 0.2).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    // Worker B takes the delivery over, which fails for good.
    let b = lease(&pool, &id, 30.0).await;
    assert_ne!(a.lease_token, b.lease_token, "each lease has its own token");
    let recorded = deliveries::record(&pool, &[outcome(&b, Status::Failed, 500)], &dead())
        .await
        .unwrap();
    assert!(recorded.fenced.is_empty());
    // The web app replays it, with the documented statement.
    let replayed = client
        .execute(
            "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = now() WHERE id = $1 AND status = 'failed'",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(replayed, 1);
    // A's late success arrives: it must not settle the replay.
    let late = outcome(&a, Status::Succeeded, 200);
    let recorded = deliveries::record(&pool, std::slice::from_ref(&late), &dead())
        .await
        .unwrap();
    assert_eq!(recorded.fenced, vec![id.clone()]);
    let (status, attempts, last_error, code) = state(&client, &id).await;
    assert_eq!(status, "pending", "the replay stands");
    assert_eq!(last_error.as_deref(), Some("HTTP 500"), "B's result stands");
    assert_eq!(code, Some(500));
    assert_eq!(attempts, 2, "both requests are counted");
    assert_eq!(
        attempt_rows(&client, &id).await,
        [(1, Some(500)), (2, Some(200))],
        "the late attempt is logged with a number of its own"
    );
    // Written again (a commit whose answer was lost), it is not counted twice.
    deliveries::record(&pool, &[late], &dead()).await.unwrap();
    assert_eq!(attempt_rows(&client, &id).await.len(), 2);
    // The replay is leased afresh.
    let c = lease(&pool, &id, 30.0).await;
    assert_eq!(c.attempts, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_outcome_after_another_workers_success_does_not_overwrite_it() {
    let (_db, client, pool, id) = outbox().await;
    let a = lease(&pool, &id, 0.2).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let b = lease(&pool, &id, 30.0).await;
    deliveries::record(&pool, &[outcome(&b, Status::Succeeded, 200)], &dead())
        .await
        .unwrap();
    // A's late failure, which would schedule a retry.
    let recorded = deliveries::record(&pool, &[outcome(&a, Status::Pending, 503)], &dead())
        .await
        .unwrap();
    assert_eq!(recorded.fenced, vec![id.clone()]);
    let (status, attempts, last_error, code) = state(&client, &id).await;
    assert_eq!(
        (status.as_str(), last_error, code),
        ("succeeded", None, Some(200))
    );
    assert_eq!(attempts, 2);
    assert_eq!(
        attempt_rows(&client, &id).await,
        [(1, Some(200)), (2, Some(503))]
    );
    let delivered: bool = client
        .query_one(
            "SELECT delivered_at IS NOT NULL FROM webhook_deliveries WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    assert!(delivered);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outcome_whose_lease_ran_out_untouched_is_still_recorded() {
    let (_db, client, pool, id) = outbox().await;
    let a = lease(&pool, &id, 0.2).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let recorded = deliveries::record(&pool, &[outcome(&a, Status::Succeeded, 200)], &dead())
        .await
        .unwrap();
    assert!(recorded.fenced.is_empty(), "nobody took it over");
    assert_eq!(state(&client, &id).await.0, "succeeded");
}

/// A scheduler whose host clock reads `skew` ahead (or behind) Postgres's.
async fn skewed(skew: Duration, ahead: bool) -> Setup {
    start(
        |c| c.delivery.retry_schedule_secs = vec![100],
        |s| s.with_host_clock_skew(skew, ahead),
    )
    .await
}

async fn delivers_on_postgres_time(ahead: bool) {
    let s = skewed(Duration::from_secs(30), ahead).await;
    let ok = s.webhook("/ok").await;
    // A new delivery goes out at once, not 30 s late (until_status waits
    // at most 10 s).
    let id = s.enqueue(ok, "").await;
    assert_eq!(s.until_status(&id, "succeeded").await, 1);
    // A retry is due 100 s (plus at most 20 % jitter) after the attempt,
    // on Postgres's clock.
    let failing = s.webhook("/status/500").await;
    let id = s.enqueue(failing, "").await;
    wait_for(
        "the first attempt is recorded",
        Duration::from_secs(10),
        async || {
            s.attempts(&id).await.len() == 1
                && s.client
                    .query_one(
                        "SELECT leased_until IS NULL FROM webhook_deliveries WHERE id = $1",
                        &[&id],
                    )
                    .await
                    .unwrap()
                    .get::<_, bool>(0)
        },
    )
    .await;
    let row = s
        .client
        .query_one(
            "SELECT extract(epoch FROM next_attempt_at - now())::float8, extract(epoch FROM now() - last_attempt_at)::float8 FROM webhook_deliveries WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    let (until_retry, since_attempt): (f64, f64) = (row.get(0), row.get(1));
    assert!(
        (85.0..=121.0).contains(&until_retry),
        "the retry is due in {until_retry:.1} s by Postgres's clock"
    );
    assert!(
        (-3.0..=10.0).contains(&since_attempt),
        "the attempt was {since_attempt:.1} s ago by Postgres's clock"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_clock_30_s_ahead_delivers_on_postgres_time() {
    delivers_on_postgres_time(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_clock_30_s_behind_delivers_on_postgres_time() {
    delivers_on_postgres_time(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_while_postgres_is_away_ends_within_a_bound() {
    let mut s = start(|_| {}, |s| s).await;
    // Stop the direct scheduler; run one that reaches Postgres through a
    // proxy the test can cut.
    s.stop.send(true).unwrap();
    (&mut s.running).await.unwrap();
    let (proxy, proxied) = Proxy::for_postgres_url(s.config.postgres.url.expose()).await;
    let mut config = s.config.clone();
    config.postgres.url = PostgresUrl::new(proxied);
    let pool = plausible_webhooks::store::pool(&config.postgres).unwrap();
    let scheduler = Scheduler::new(&config, pool, s.stream.registry.clone()).unwrap();
    let (stop, stop_rx) = watch::channel(false);
    let mut running = tokio::spawn(scheduler.run(stop_rx, Heartbeat::detached()));
    let webhook = s.webhook("/delay").await;
    let first = s.enqueue(webhook, "").await;
    assert_eq!(s.until_status(&first, "succeeded").await, 1);
    // Requests in flight (each answered after 0.8 s) when Postgres goes.
    s.client
        .execute(
            "INSERT INTO webhook_deliveries (webhook_id, event_type, payload) SELECT $1, 'webhook.test', '{}' FROM generate_series(1, 20)",
            &[&webhook],
        )
        .await
        .unwrap();
    wait_for(
        "requests are in flight",
        Duration::from_secs(10),
        async || s.receiver.received().len() > 1,
    )
    .await;
    proxy.blackhole();
    stop.send(true).unwrap();
    let bound = Duration::from_secs(2 * s.config.delivery.request_timeout_secs + 10);
    let started = Instant::now();
    let ended = tokio::time::timeout(bound, &mut running).await;
    assert!(
        ended.is_ok(),
        "run returned within {bound:?} (still running after {:?})",
        started.elapsed()
    );
    ended.unwrap().expect("run did not panic");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_it_cannot_read_is_failed_and_the_rest_flow() {
    let s = start(|c| c.delivery.resync_interval_secs = 1, |s| s).await;
    let webhook = s.webhook("/ok").await;
    s.client
        .execute(
            "INSERT INTO webhook_deliveries (webhook_id, event_type, payload) SELECT $1, 'webhook.test', '{}' FROM generate_series(1, 50)",
            &[&webhook],
        )
        .await
        .unwrap();
    // The row, as the web app could write it before V9's
    // constraint (which now refuses it: bad_rows.rs tests that); the
    // scheduler must still read around one that is there.
    s.client
        .batch_execute(
            "ALTER TABLE webhook_deliveries DROP CONSTRAINT webhook_deliveries_next_attempt_at_finite",
        )
        .await
        .unwrap();
    let bad: String = s
        .client
        .query_one(
            "INSERT INTO webhook_deliveries (webhook_id, event_type, payload, next_attempt_at) VALUES ($1, 'webhook.test', '{\"type\":\"webhook.test\",\"timestamp\":\"2026-01-01T00:00:00Z\",\"data\":{}}', '-infinity') RETURNING id",
            &[&webhook],
        )
        .await
        .unwrap()
        .get(0);
    s.client
        .execute(
            "INSERT INTO webhook_deliveries (webhook_id, event_type, payload) SELECT $1, 'webhook.test', '{}' FROM generate_series(1, 50)",
            &[&webhook],
        )
        .await
        .unwrap();
    wait_for(
        "the others are delivered",
        Duration::from_secs(20),
        async || {
            let left: i64 = s
            .client
            .query_one(
                "SELECT count(*) FROM webhook_deliveries WHERE status <> 'succeeded' AND id <> $1",
                &[&bad],
            )
            .await
            .unwrap()
            .get(0);
            left == 0
        },
    )
    .await;
    assert_eq!(
        s.until_status(&bad, "failed").await,
        0,
        "failed without a request"
    );
    let last_error: String = s
        .client
        .query_one(
            "SELECT last_error FROM webhook_deliveries WHERE id = $1",
            &[&bad],
        )
        .await
        .unwrap()
        .get(0);
    assert!(last_error.contains("next_attempt_at"), "{last_error}");
    // Several full reads later, the scheduler still runs.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!s.running.is_finished(), "the scheduler is still running");
    let later = s.enqueue(webhook, "").await;
    assert_eq!(s.until_status(&later, "succeeded").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inner_task_that_fails_makes_run_return() {
    for task in ["delivery resync", "delivery listener", "outcome writer"] {
        let mut s = start(|_| {}, |s| s.with_failing_inner_task(task)).await;
        // Not stopped: run returns by itself, so that the supervisor
        // starts the scheduler afresh.
        let ended = tokio::time::timeout(Duration::from_secs(20), &mut s.running).await;
        assert!(ended.is_ok(), "{task}: run returned");
        ended.unwrap().expect("run itself did not panic");
        assert!(!*s.stop.borrow());
    }
}
