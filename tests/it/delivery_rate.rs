//! The per-webhook rate limit (`webhooks.max_per_minute`) end to end: a
//! limited webhook's requests are spaced, another webhook's are not held
//! up, a held-back delivery is never an attempt, and a limit removed lets
//! the backlog go at once.

use std::time::Duration;

use crate::delivery::{Setup, start};
use crate::registry::eventually;
use crate::support::wait_for;

/// The limit's burst: one request, then one every 60/n s.
const BURST: usize = 1;
/// What the scheduler's clock (Postgres's, as measured from the host, within
/// half a round trip) may be off from Postgres's own, which the bound's
/// start is read from.
const CLOCK_SLACK: f64 = 0.25;

/// A scheduler that reads the outbox in full only at start, so that only
/// the notifications and its own schedule put deliveries in its timeline.
async fn setup() -> Setup {
    start(|c| c.delivery.resync_interval_secs = 3600, |s| s).await
}

/// Sets a webhook's limit and waits until the registry has it.
async fn limit(s: &Setup, webhook: i64, per_minute: Option<i32>) {
    s.client
        .execute(
            "UPDATE webhooks SET max_per_minute = $2 WHERE id = $1",
            &[&webhook, &per_minute],
        )
        .await
        .unwrap();
    let want = per_minute.map(|n| n as u32);
    eventually(&s.stream.registry, "the limit is in the registry", |r| {
        r.webhook(webhook).is_some_and(|w| w.max_per_minute == want)
    })
    .await;
}

/// Postgres's clock, in seconds since the epoch.
async fn pg_now(s: &Setup) -> f64 {
    s.client
        .query_one("SELECT extract(epoch FROM clock_timestamp())::float8", &[])
        .await
        .unwrap()
        .get(0)
}

/// `count` deliveries to each webhook, in one statement.
async fn enqueue_each(s: &Setup, webhooks: &[i64], count: i32) {
    s.client
        .execute(
            "INSERT INTO webhook_deliveries (webhook_id, event_type, payload)
             SELECT w, 'webhook.test', '{}' FROM unnest($1::bigint[]) w, generate_series(1, $2)",
            &[&webhooks, &count],
        )
        .await
        .unwrap();
}

async fn succeeded(s: &Setup, webhook: i64) -> i64 {
    s.client
        .query_one(
            "SELECT count(*) FROM webhook_deliveries WHERE webhook_id = $1 AND status = 'succeeded'",
            &[&webhook],
        )
        .await
        .unwrap()
        .get(0)
}

/// The start times of a webhook's attempts (seconds since the epoch),
/// soonest first.
async fn attempt_starts(s: &Setup, webhook: i64) -> Vec<f64> {
    s.client
        .query(
            "SELECT extract(epoch FROM a.started_at)::float8 FROM webhook_delivery_attempts a
               JOIN webhook_deliveries d ON d.id = a.delivery_id
              WHERE d.webhook_id = $1 ORDER BY a.started_at",
            &[&webhook],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

fn received_at(s: &Setup, path: &str) -> usize {
    s.receiver
        .received()
        .iter()
        .filter(|r| r.path == path)
        .count()
}

/// `count` deliveries to a webhook limited to `per_minute` and as many to
/// an unlimited one, enqueued together: the unlimited one's all succeed
/// while the limited one is within its budget, the limited one's k-th
/// request starts no earlier than start + (k − burst)·60/n s, and each
/// delivery has exactly one attempt. Returns how long the limited ones
/// took, from the enqueueing to the last attempt's start.
async fn limited_beside_unlimited(per_minute: i32, count: i32, limit_wait: Duration) -> f64 {
    let s = setup().await;
    let limited = s.webhook("/limited").await;
    limit(&s, limited, Some(per_minute)).await;
    let free = s.webhook("/free").await;
    let interval = 60.0 / f64::from(per_minute);
    let started = pg_now(&s).await;
    enqueue_each(&s, &[limited, free], count).await;

    wait_for(
        "the unlimited webhook's deliveries succeed",
        Duration::from_secs(20),
        async || succeeded(&s, free).await == i64::from(count),
    )
    .await;
    // Read before the time, so the budget is the one at that time or later.
    let sent = received_at(&s, "/limited");
    let budget = BURST as f64 + (pg_now(&s).await - started) / interval;
    assert!(
        sent as f64 <= budget + 1.0,
        "{sent} requests to the limited webhook when the unlimited one was done, over its budget of {budget:.1}"
    );
    assert!(
        sent < count as usize,
        "the unlimited webhook's deliveries were held up behind the limited one's"
    );

    wait_for(
        "the limited webhook's deliveries succeed",
        limit_wait,
        async || succeeded(&s, limited).await == i64::from(count),
    )
    .await;
    let starts = attempt_starts(&s, limited).await;
    assert_eq!(starts.len(), count as usize, "one attempt each");
    for (k, at) in starts.iter().enumerate().map(|(i, at)| (i + 1, at)) {
        let earliest = started + k.saturating_sub(BURST) as f64 * interval - CLOCK_SLACK;
        assert!(
            *at >= earliest,
            "request {k} started {:.3} s after the start, before the limit allows ({:.3} s)",
            at - started,
            earliest - started
        );
    }
    let attempts: Vec<(i32, i64)> = s
        .client
        .query(
            "SELECT attempts, count(*) FROM webhook_deliveries GROUP BY attempts",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        attempts,
        [(1, 2 * i64::from(count))],
        "held back is not an attempt"
    );
    assert_eq!(received_at(&s, "/limited"), count as usize);
    starts.last().copied().unwrap_or(started) - started
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limited_webhook_is_spaced_while_another_is_not_held_up() {
    let took = limited_beside_unlimited(600, 30, Duration::from_secs(30)).await;
    println!("30 deliveries at 600 a minute took {took:.2} s");
}

/// The test: about two minutes by design.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_and_twenty_deliveries_at_sixty_a_minute_take_two_minutes() {
    let took = limited_beside_unlimited(60, 120, Duration::from_secs(240)).await;
    println!("120 deliveries at 60 a minute took {took:.1} s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_limit_lets_the_held_back_backlog_go_at_once() {
    let s = setup().await;
    let webhook = s.webhook("/limited").await;
    limit(&s, webhook, Some(1)).await;
    enqueue_each(&s, &[webhook], 10).await;
    wait_for(
        "the first delivery succeeds",
        Duration::from_secs(10),
        async || succeeded(&s, webhook).await == 1,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(received_at(&s, "/limited"), 1, "one a minute");
    // The held-back ones are untouched: never leased, never attempted, due
    // when they were.
    let untouched: i64 = s
        .client
        .query_one(
            "SELECT count(*) FROM webhook_deliveries
              WHERE status = 'pending' AND attempts = 0 AND leased_until IS NULL
                AND last_attempt_at IS NULL AND next_attempt_at = inserted_at",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(untouched, 9);

    // Long before the next minute's slot.
    limit(&s, webhook, None).await;
    s.until_all_succeeded().await;
    let attempts: Vec<i32> = s
        .client
        .query("SELECT attempts FROM webhook_deliveries", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(attempts, [1; 10]);
    assert_eq!(received_at(&s, "/limited"), 10);
}
