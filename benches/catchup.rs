//! Catch-up benchmark on real ClickHouse 18.16 and Postgres (the test
//! harness's servers): the trigger engine comes back after an outage during
//! which ClickHouse took events at a steady rate, and steps through the
//! backlog while live traffic keeps arriving at the same rate.
//!
//! The outage's events are generated inside ClickHouse (`INSERT … SELECT
//! FROM numbers()`), spread over the outage; the insert log
//! (`webhooks_inserts`) is rewritten so that each 5-second batch appears
//! inserted when it happened, as Plausible's ingest buffer would have
//! inserted it. The engine's cursor is set to the outage's start; then the
//! engine runs as in the daemon (`TriggerEngine::run`, leadership
//! included) with 10,000 sites carrying goal webhooks.
//!
//! Prints the time from start until the cursor is within 10 s of
//! ClickHouse's clock, the steps taken, the process's peak RSS (VmHWM)
//! before and after, and checks that every completion was counted once.
//!
//! Run with `cargo bench --bench catchup`. BENCH_OUTAGE_MINUTES (default 60)
//! sets the outage; BENCH_EVENTS_PER_MINUTE (default 1000000) the rate of
//! the outage and of the live traffic during catch-up.

mod support;

use std::time::{Duration, Instant};

use plausible_webhooks::analytics::Analytics;
use plausible_webhooks::config::Config;
use plausible_webhooks::telemetry::health::Heartbeat;
use plausible_webhooks::triggers::TriggerEngine;
use support::{SECRET, env_or};
use tokio::sync::watch;

const SITES: u64 = 10_000;
/// Rows per `INSERT … SELECT` while loading the outage.
const LOAD_CHUNK: u64 = 5_000_000;

fn main() {
    if !support::benchmarking("catchup") {
        return;
    }
    let minutes = env_or("BENCH_OUTAGE_MINUTES", 60);
    let per_minute = env_or("BENCH_EVENTS_PER_MINUTE", 1_000_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(minutes, per_minute));
}

async fn run(minutes: u64, per_minute: u64) {
    let (config, db) = setup().await;
    let analytics = Analytics::new(&config.clickhouse);

    // The outage: `minutes` of events ending now, then the insert log as
    // Plausible's 5-second batches would have left it.
    let end = server_now(&analytics).await;
    let start = end - minutes as u32 * 60;
    let total = minutes * per_minute;
    let loading = Instant::now();
    let mut offset = 0;
    while offset < total {
        let n = LOAD_CHUNK.min(total - offset);
        analytics
            .execute(&analytics.render(&events_sql(offset, n, total, start, end)))
            .await
            .expect("load events");
        offset += n;
    }
    let partitions: Vec<String> = analytics_client(&analytics)
        .query(&format!(
            "SELECT DISTINCT partition FROM system.parts WHERE database = '{}' AND table = 'webhooks_inserts' AND active",
            analytics.database()
        ))
        .fetch_all()
        .await
        .expect("partitions");
    for partition in partitions {
        analytics
            .execute(&analytics.render(&format!(
                "ALTER TABLE {{database}}.webhooks_inserts DROP PARTITION {partition}"
            )))
            .await
            .expect("drop partition");
    }
    analytics
        .execute(&analytics.render(
            "INSERT INTO {database}.webhooks_inserts (inserted_at, site_id, minute)
             SELECT toDateTime(intDiv(toUInt32(timestamp), 5) * 5 + 5) AS at, site_id, toStartOfMinute(timestamp) AS m
             FROM {database}.{events_table}
             GROUP BY at, site_id, m",
        ))
        .await
        .expect("insert log");
    println!(
        "catchup: loaded {total} events over {minutes} min ({per_minute}/min) in {:.0?}",
        loading.elapsed()
    );
    db.execute(
        "INSERT INTO webhook_cursors (stream, position) VALUES ('triggers', to_timestamp($1::bigint))
         ON CONFLICT (stream) DO UPDATE SET position = EXCLUDED.position",
        &[&i64::from(start)],
    )
    .await
    .expect("cursor");

    let pool = plausible_webhooks::store::pool(&config.postgres).expect("pool");
    let (stop, stop_rx) = watch::channel(false);
    let registry = support::loaded_registry(&config, &pool, stop_rx.clone()).await;
    let rss_before = vm_hwm_kib();

    // Live traffic at the same rate while the engine catches up.
    let (live_stop, live_stop_rx) = watch::channel(false);
    let live = tokio::spawn(live_traffic(analytics.clone(), per_minute, live_stop_rx));
    let engine = TriggerEngine::new(&config, pool.clone(), analytics.clone(), registry.clone());
    let started = Instant::now();
    let running = tokio::spawn(engine.run(stop_rx.clone(), Heartbeat::detached()));
    let mut steps = 0u64;
    let mut last = i64::from(start);
    let caught_up = loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let cursor = cursor(&db).await;
        if cursor != last {
            steps += 1;
            last = cursor;
        }
        let now = i64::from(server_now(&analytics).await);
        if now - cursor <= 10 {
            break started.elapsed();
        }
        if started.elapsed() > Duration::from_secs(1800) {
            panic!("not caught up after 30 minutes: {}s behind", now - cursor);
        }
    };
    let rss_after = vm_hwm_kib();
    println!(
        "catchup: {minutes} min behind at {per_minute}/min, back to real time in {caught_up:.1?} ({steps} cursor moves seen), live traffic continuing"
    );
    println!("catchup: peak RSS (VmHWM) {rss_before} KiB before, {rss_after} KiB after");

    // Every completion counted once: stop the traffic and let the engine
    // count the last of it, then compare with ClickHouse.
    let _ = live_stop.send(true);
    let live_inserted = live.await.expect("live traffic");
    let expected: u64 = analytics_client(&analytics)
        .query(&analytics.render(
            "SELECT count() FROM {database}.{events_table}
             WHERE name = 'Signup' OR (name = 'pageview' AND startsWith(pathname, '/blog/'))",
        ))
        .fetch_one()
        .await
        .expect("expected");
    let settling = Instant::now();
    let mut counted = 0;
    while settling.elapsed() < Duration::from_secs(120) {
        counted = db
            .query_one(
                "SELECT coalesce(sum(completions), 0)::bigint FROM webhook_goal_counts",
                &[],
            )
            .await
            .expect("counts")
            .get::<_, i64>(0) as u64;
        if counted >= expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let _ = stop.send(true);
    let _ = running.await;
    println!(
        "catchup: {counted} completions counted, {expected} in ClickHouse ({live_inserted} live events during catch-up; the last counted {:.1?} after the traffic stopped)",
        settling.elapsed()
    );
    assert_eq!(counted, expected, "every completion counted once");
}

/// `n` events of `total` spread evenly over `start..end`: 5% `Signup`,
/// the rest pageviews over eight paths (three match the `/blog/**` goal).
fn events_sql(offset: u64, n: u64, total: u64, start: u32, end: u32) -> String {
    let span = u64::from(end - start);
    format!(
        "INSERT INTO {{database}}.{{events_table}} (timestamp, name, site_id, user_id, session_id, pathname)
         SELECT toDateTime({start} + intDiv((number + {offset}) * {span}, {total})),
                if((number + {offset}) % 20 = 0, 'Signup', 'pageview'),
                intHash64(number + {offset}) % {SITES} + 1,
                intHash64(number + {offset} + 1) % 1000000,
                intHash64(number + {offset} + 1) % 1000000,
                ['/', '/pricing', '/blog/a', '/blog/b/c', '/docs', '/about', '/blog/x', '/login'][(number + {offset}) % 8 + 1]
         FROM numbers({n})"
    )
}

/// A 5-second batch at `per_minute`, stamped now, until stopped.
async fn live_traffic(
    analytics: Analytics,
    per_minute: u64,
    mut stop: watch::Receiver<bool>,
) -> u64 {
    let batch = per_minute / 12;
    let mut inserted = 0u64;
    let mut ticks = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.wait_for(|s| *s) => return inserted,
        }
        let sql = format!(
            "INSERT INTO {{database}}.{{events_table}} (timestamp, name, site_id, user_id, session_id, pathname)
             SELECT now(),
                    if(number % 20 = 0, 'Signup', 'pageview'),
                    intHash64(number + {inserted}) % {SITES} + 1,
                    intHash64(number + {inserted} + 7) % 1000000,
                    intHash64(number + {inserted} + 7) % 1000000,
                    ['/', '/pricing', '/blog/a', '/blog/b/c', '/docs', '/about', '/blog/x', '/login'][number % 8 + 1]
             FROM numbers({batch})"
        );
        analytics
            .execute(&analytics.render(&sql))
            .await
            .expect("live batch");
        inserted += batch;
    }
}

async fn cursor(db: &tokio_postgres::Client) -> i64 {
    db.query_one(
        "SELECT extract(epoch FROM position)::bigint FROM webhook_cursors WHERE stream = 'triggers'",
        &[],
    )
    .await
    .expect("cursor")
    .get(0)
}

async fn server_now(analytics: &Analytics) -> u32 {
    analytics_client(analytics)
        .query("SELECT toUInt32(now())")
        .fetch_one()
        .await
        .expect("now")
}

fn analytics_client(analytics: &Analytics) -> clickhouse::Client {
    let servers = support::servers::servers();
    clickhouse::Client::default()
        .with_url(&servers.clickhouse_url)
        .with_user(&servers.clickhouse_user)
        .with_password(&servers.clickhouse_password)
        .with_database(analytics.database())
        .with_validation(false)
}

/// The process's peak resident set, from /proc/self/status.
fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

async fn setup() -> (Config, tokio_postgres::Client) {
    let name = format!("bench_catchup_{}", std::process::id());
    let (mut config, db) = support::database(&name).await;
    db.batch_execute(&format!(
        "INSERT INTO sites (id, domain) SELECT i, 'site' || i || '.example.com' FROM generate_series(1, {SITES}) i;
         INSERT INTO goals (site_id, event_name, display_name) SELECT i, 'Signup', 'Signup' FROM generate_series(1, {SITES}) i;
         INSERT INTO goals (site_id, page_path, display_name) SELECT i, '/blog/**', 'Blog' FROM generate_series(1, {SITES}) i;
         INSERT INTO webhooks (site_id, url, secret, event_types, spike_threshold, goal_interval_seconds)
           SELECT i, 'https://hooks.example.com/' || i, '{SECRET}', ARRAY['traffic.spike', 'goal.completed'], 1000000, 60
           FROM generate_series(1, {SITES}) i;"
    ))
    .await
    .expect("seed");
    support::clickhouse_database(&mut config.clickhouse, &name).await;
    // Catch-up ticks query more than live ones.
    config.clickhouse.request_timeout_secs = 120;
    (config, db)
}
