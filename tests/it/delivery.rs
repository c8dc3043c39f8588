//! The delivery scheduler end to end: outbox rows in Postgres, real
//! receivers on 127.0.0.1, retries, 410, Retry-After, expired leases and
//! endpoint disabling.

use plausible_webhooks::telemetry::health::Heartbeat;
use std::time::Duration;

use plausible_webhooks::config::Config;
use plausible_webhooks::delivery::schedule::Scheduler;
use tokio::sync::watch;
use tokio_postgres::Client;

use crate::postgres_schema::SECRET;
use crate::registry::{Running, eventually, run_change_stream};
use crate::support::receiver::Receiver;
use crate::support::{TestPostgres, config_pg, wait_for};

pub(crate) struct Setup {
    _db: TestPostgres,
    pub(crate) client: Client,
    pub(crate) stream: Running,
    pub(crate) receiver: Receiver,
    pub(crate) config: Config,
    pub(crate) stop: watch::Sender<bool>,
    /// The scheduler's `run`.
    pub(crate) running: tokio::task::JoinHandle<()>,
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

pub(crate) fn test_config(db: &TestPostgres) -> Config {
    let mut config = config_pg(db);
    config.delivery.allow_http = true;
    config.delivery.allowed_cidrs = vec!["127.0.0.0/8".into()];
    config.delivery.request_timeout_secs = 2;
    config.delivery.connect_timeout_secs = 1;
    config.delivery.retry_schedule_secs = vec![1, 1];
    config.delivery.disable_endpoint_after_secs = 3600;
    config
}

async fn setup() -> Setup {
    setup_with(|_| {}).await
}

async fn setup_with(tweak: impl FnOnce(&mut Config)) -> Setup {
    start(tweak, |scheduler| scheduler).await
}

/// A database with site 1, the change stream, a receiver, and a scheduler
/// passed through `scheduler` before it runs.
pub(crate) async fn start(
    tweak: impl FnOnce(&mut Config),
    scheduler: impl FnOnce(Scheduler) -> Scheduler,
) -> Setup {
    let db = TestPostgres::migrated().await;
    let mut config = test_config(&db);
    tweak(&mut config);
    let client = db.client().await;
    client
        .batch_execute("INSERT INTO sites (id, domain) VALUES (1, 'one.example.com')")
        .await
        .unwrap();
    let stream = run_change_stream(&config).await;
    let pool = plausible_webhooks::store::pool(&config.postgres).unwrap();
    let built = scheduler(Scheduler::new(&config, pool, stream.registry.clone()).unwrap());
    let (stop, stop_rx) = watch::channel(false);
    let running = tokio::spawn(built.run(stop_rx, Heartbeat::detached()));
    Setup {
        _db: db,
        client,
        stream,
        receiver: Receiver::start().await,
        config,
        stop,
        running,
    }
}

impl Setup {
    /// A webhook pointing at the receiver's `path`; waits until active.
    pub(crate) async fn webhook(&self, path: &str) -> i64 {
        let id: i64 = self
            .client
            .query_one(
                "INSERT INTO webhooks (site_id, url, secret, event_types, spike_threshold) VALUES (1, $1, $2, ARRAY['traffic.spike'], 10) RETURNING id",
                &[&self.receiver.url(path).as_str(), &SECRET],
            )
            .await
            .unwrap()
            .get(0);
        eventually(&self.stream.registry, "the webhook is active", |r| {
            r.webhook(id).is_some()
        })
        .await;
        id
    }

    pub(crate) async fn enqueue(&self, webhook: i64, extra: &str) -> String {
        self.client
            .query_one(
                &format!("INSERT INTO webhook_deliveries (webhook_id, event_type, payload{}) VALUES ($1, 'webhook.test', '{{\"type\": \"webhook.test\"}}'{}) RETURNING id",
                    if extra.is_empty() { "" } else { ", leased_until" },
                    if extra.is_empty() { String::new() } else { format!(", {extra}") }),
                &[&webhook],
            )
            .await
            .unwrap()
            .get(0)
    }

    /// Waits until the delivery's status is `status`; returns its attempts.
    pub(crate) async fn until_status(&self, id: &str, status: &str) -> i32 {
        let mut attempts = 0;
        wait_for(
            &format!("delivery {id} is {status}"),
            Duration::from_secs(10),
            async || {
                let row = self
                    .client
                    .query_one(
                        "SELECT status, attempts FROM webhook_deliveries WHERE id = $1",
                        &[&id],
                    )
                    .await
                    .unwrap();
                attempts = row.get(1);
                row.get::<_, String>(0) == status
            },
        )
        .await;
        attempts
    }

    /// Waits until no delivery is left unsucceeded.
    pub(crate) async fn until_all_succeeded(&self) {
        wait_for(
            "every delivery succeeded",
            Duration::from_secs(20),
            async || {
                let left: i64 = self
                    .client
                    .query_one(
                        "SELECT count(*) FROM webhook_deliveries WHERE status <> 'succeeded'",
                        &[],
                    )
                    .await
                    .unwrap()
                    .get(0);
                left == 0
            },
        )
        .await;
    }

    pub(crate) async fn attempts(&self, id: &str) -> Vec<(i32, Option<i32>, Option<String>)> {
        self.client
            .query(
                "SELECT attempt, status_code, error_kind FROM webhook_delivery_attempts WHERE delivery_id = $1 ORDER BY attempt",
                &[&id],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_arrives_signed_and_is_logged() {
    let s = setup().await;
    let webhook = s.webhook("/ok").await;
    let id = s.enqueue(webhook, "").await;
    assert_eq!(s.until_status(&id, "succeeded").await, 1);
    let got = s.receiver.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].headers["webhook-id"], id);
    assert_eq!(got[0].body, br#"{"type": "webhook.test"}"#);
    assert_eq!(s.attempts(&id).await, vec![(1, Some(200), None)]);
    let row = s
        .client
        .query_one("SELECT delivered_at IS NOT NULL, last_status_code, leased_until IS NULL FROM webhook_deliveries WHERE id = $1", &[&id])
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0));
    assert_eq!(row.get::<_, Option<i32>>(1), Some(200));
    assert!(row.get::<_, bool>(2), "the lease is released");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_endpoint_is_retried_on_schedule_then_failed() {
    let s = setup().await;
    let webhook = s.webhook("/status/500").await;
    let id = s.enqueue(webhook, "").await;
    // One attempt and the two retries of the schedule.
    assert_eq!(s.until_status(&id, "failed").await, 3);
    assert_eq!(
        s.attempts(&id).await,
        vec![
            (1, Some(500), Some("status".into())),
            (2, Some(500), Some("status".into())),
            (3, Some(500), Some("status".into())),
        ]
    );
    let ids: Vec<String> = s
        .receiver
        .received()
        .iter()
        .map(|r| r.headers["webhook-id"].clone())
        .collect();
    assert_eq!(
        ids,
        vec![id.clone(), id.clone(), id.clone()],
        "one id across retries"
    );

    // A replay by the web app: back to pending, sent again promptly.
    s.client
        .execute("UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = now() WHERE id = $1", &[&id])
        .await
        .unwrap();
    assert_eq!(s.until_status(&id, "failed").await, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_disables_the_webhook_and_retry_after_is_honoured() {
    let s = setup().await;
    let gone = s.webhook("/status/410").await;
    let id = s.enqueue(gone, "").await;
    s.until_status(&id, "failed").await;
    let row = s
        .client
        .query_one(
            "SELECT enabled, disabled_reason FROM webhooks WHERE id = $1",
            &[&gone],
        )
        .await
        .unwrap();
    assert!(!row.get::<_, bool>(0));
    assert!(row.get::<_, String>(1).contains("410"));
    assert_eq!(
        s.attempts(&id).await,
        vec![(1, Some(410), Some("gone".into()))]
    );

    let slow = s.webhook("/retry-after").await;
    let id = s.enqueue(slow, "").await;
    // The attempt and the delivery's new state are one transaction.
    wait_for(
        "the first attempt is recorded",
        Duration::from_secs(5),
        async || !s.attempts(&id).await.is_empty(),
    )
    .await;
    let wait: f64 = s
        .client
        .query_one(
            "SELECT extract(epoch FROM next_attempt_at - now())::float8 FROM webhook_deliveries WHERE id = $1 AND status = 'pending'",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        (100.0..=121.0).contains(&wait),
        "Retry-After: 120 honoured, got {wait}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_leased_by_a_dead_worker_is_sent_when_the_lease_expires() {
    let s = setup().await;
    let webhook = s.webhook("/ok").await;
    // As a crashed worker would leave it: leased, never recorded.
    let id = s.enqueue(webhook, "now() + interval '1 second'").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        s.receiver.received().is_empty(),
        "not while the lease holds"
    );
    assert_eq!(s.until_status(&id, "succeeded").await, 1);
    assert_eq!(s.receiver.received()[0].headers["webhook-id"], id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_failing_for_the_configured_period_is_disabled() {
    let s = setup().await;
    let webhook = s.webhook("/status/503").await;
    // Unchanged for three hours and failing for two, longer than the
    // configured hour. (The touch trigger would stamp the update.)
    s.client
        .batch_execute(&format!(
            "ALTER TABLE webhooks DISABLE TRIGGER webhooks_touch_updated_at;
             UPDATE webhooks SET updated_at = now() - interval '3 hours' WHERE id = {webhook};
             ALTER TABLE webhooks ENABLE TRIGGER webhooks_touch_updated_at;
             INSERT INTO webhook_endpoint_health (webhook_id, failing_since)
               VALUES ({webhook}, now() - interval '2 hours');"
        ))
        .await
        .unwrap();
    let id = s.enqueue(webhook, "").await;
    wait_for(
        "the webhook is disabled",
        Duration::from_secs(5),
        async || {
            let enabled: bool = s
                .client
                .query_one("SELECT enabled FROM webhooks WHERE id = $1", &[&webhook])
                .await
                .unwrap()
                .get(0);
            !enabled
        },
    )
    .await;
    let reason: String = s
        .client
        .query_one(
            "SELECT disabled_reason FROM webhooks WHERE id = $1",
            &[&webhook],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        reason.contains("1 hours") || reason.contains("failed for"),
        "{reason}"
    );
    // Its pending delivery is given up once the registry drops it.
    s.until_status(&id, "failed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_receivers_backlog_does_not_hold_up_the_others() {
    let s = setup_with(|c| {
        c.delivery.max_in_flight = 4;
        c.delivery.max_in_flight_per_endpoint = 2;
    })
    .await;
    let slow = s.webhook("/delay").await;
    let fast = s.webhook("/ok").await;
    // 40 deliveries to the slow one (0.8 s each, two at a time: 16 s), then
    // five to the fast one.
    s.client
        .execute(
            "INSERT INTO webhook_deliveries (webhook_id, event_type, payload) SELECT $1, 'webhook.test', '{}' FROM generate_series(1, 40)",
            &[&slow],
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = std::time::Instant::now();
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(s.enqueue(fast, "").await);
    }
    for id in &ids {
        s.until_status(id, "succeeded").await;
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the fast webhook waited {:?} behind the slow one",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn re_enabling_a_webhook_starts_its_failure_clock_again() {
    let s = setup().await;
    let webhook = s.webhook("/status/503").await;
    // Failing for two hours, then the web app edits the webhook (as when it
    // re-enables one).
    s.client
        .execute(
            "INSERT INTO webhook_endpoint_health (webhook_id, failing_since) VALUES ($1, now() - interval '2 hours')",
            &[&webhook],
        )
        .await
        .unwrap();
    s.client
        .execute(
            "UPDATE webhooks SET description = 'fixed' WHERE id = $1",
            &[&webhook],
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let id = s.enqueue(webhook, "").await;
    s.until_status(&id, "failed").await;
    let row = s
        .client
        .query_one(
            "SELECT w.enabled, h.failing_since > now() - interval '1 minute' FROM webhooks w JOIN webhook_endpoint_health h ON h.webhook_id = w.id WHERE w.id = $1",
            &[&webhook],
        )
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0), "still enabled");
    assert!(row.get::<_, bool>(1), "the clock started again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_schedulers_send_each_delivery_once() {
    let s = setup().await;
    let webhook = s.webhook("/ok").await;
    // A second daemon's scheduler on the same outbox.
    let pool = plausible_webhooks::store::pool(&s.config.postgres).unwrap();
    let second = Scheduler::new(&s.config, pool, s.stream.registry.clone()).unwrap();
    let (stop, stop_rx) = watch::channel(false);
    let running = tokio::spawn(second.run(stop_rx, Heartbeat::detached()));
    s.client
        .execute(
            "INSERT INTO webhook_deliveries (webhook_id, event_type, payload) SELECT $1, 'webhook.test', '{}' FROM generate_series(1, 400)",
            &[&webhook],
        )
        .await
        .unwrap();
    s.until_all_succeeded().await;
    let received = s.receiver.received();
    let ids: std::collections::HashSet<&str> = received
        .iter()
        .map(|r| r.headers["webhook-id"].as_str())
        .collect();
    assert_eq!(ids.len(), 400, "every delivery arrived");
    assert_eq!(received.len(), 400, "none arrived twice");
    let attempts: i64 = s
        .client
        .query_one("SELECT count(*) FROM webhook_delivery_attempts", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(attempts, 400);
    stop.send(true).unwrap();
    running.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_no_notification_announced_is_found_by_the_full_read() {
    let s = setup_with(|c| c.delivery.resync_interval_secs = 1).await;
    let webhook = s.webhook("/ok").await;
    s.client
        .batch_execute(
            "ALTER TABLE webhook_deliveries DISABLE TRIGGER webhook_deliveries_notify_insert",
        )
        .await
        .unwrap();
    let id = s.enqueue(webhook, "").await;
    assert_eq!(s.until_status(&id, "succeeded").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_delivery_brought_forward_is_sent_at_once() {
    let s = setup_with(|c| c.delivery.resync_interval_secs = 3600).await;
    let webhook = s.webhook("/ok").await;
    let id: String = s
        .client
        .query_one(
            "INSERT INTO webhook_deliveries (webhook_id, event_type, payload, next_attempt_at) VALUES ($1, 'webhook.test', '{}', now() + interval '1 hour') RETURNING id",
            &[&webhook],
        )
        .await
        .unwrap()
        .get(0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(s.receiver.received().is_empty(), "not before it is due");
    s.client
        .execute(
            "UPDATE webhook_deliveries SET next_attempt_at = now() WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    // Within until_status's 10 s, long before the next full read.
    assert_eq!(s.until_status(&id, "succeeded").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_attempt_starts_on_a_lease_that_could_run_out_before_it_ends() {
    // One request at a time to a receiver that never answers: each attempt
    // lasts the 3 s timeout, and a lease 2 × 3 + 5 = 11 s. Of four
    // deliveries leased together, the fourth would start 9 s in with 2 s
    // of lease left; it is taken again once that lease has run out.
    let s = setup_with(|c| {
        c.delivery.request_timeout_secs = 3;
        c.delivery.max_in_flight_per_endpoint = 1;
    })
    .await;
    let webhook = s.webhook("/timeout").await;
    s.client
        .execute(
            "INSERT INTO webhook_deliveries (webhook_id, event_type, payload) SELECT $1, 'webhook.test', '{}' FROM generate_series(1, 4)",
            &[&webhook],
        )
        .await
        .unwrap();
    let attempts = async || -> Vec<(String, i32, f64)> {
        s.client
            .query(
                "SELECT delivery_id::text, attempt, extract(epoch FROM started_at)::float8 FROM webhook_delivery_attempts ORDER BY started_at",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect()
    };
    wait_for(
        "four attempts are recorded",
        Duration::from_secs(30),
        async || attempts().await.len() >= 4,
    )
    .await;
    let attempts = attempts().await;
    let ids: std::collections::HashSet<&str> = attempts.iter().map(|a| a.0.as_str()).collect();
    assert_eq!(ids.len(), 4, "one attempt each: {attempts:?}");
    assert!(attempts.iter().all(|a| a.1 == 1), "{attempts:?}");
    let span = attempts[3].2 - attempts[0].2;
    assert!(
        span >= 10.5,
        "the fourth started {span:.1} s after the first, within the lease it would have outlived"
    );
}
