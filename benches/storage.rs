//! Storage benchmark on the test harness's PostgreSQL 15 and ClickHouse
//! 18.16: what the daemon keeps, per unit of traffic.
//!
//! - Postgres: 100,000 finished deliveries (realistic `goal.completed`,
//!   `traffic.spike` and `webhook.test` payloads, one attempt each with a
//!   short response), measured with `pg_total_relation_size` of
//!   `webhook_deliveries` and `webhook_delivery_attempts` (heap, TOAST and
//!   every index) after a VACUUM.
//! - ClickHouse: events inserted into `events_v2` at 1,000,000 a minute of
//!   event time, in 5-second batches as Plausible's ingest buffers them,
//!   over 10,000 sites with a skewed (Zipf-like) spread of traffic, 50
//!   paths per site plus a long tail, 5,000,000 visitors, some custom
//!   events with properties and some scroll events; the view tables'
//!   `bytes_on_disk` from `system.parts` after `OPTIMIZE … FINAL` (merged,
//!   as they are in steady state).
//!
//! Then the steady-state size for BENCH_EVENTS_PER_MINUTE events a minute
//! and BENCH_DELIVERIES_PER_DAY deliveries a day with the default retention.
//!
//! Run with `cargo bench --bench storage`. BENCH_DELIVERIES (default
//! 100000) and BENCH_MINUTES (default 3, of 1,000,000 events each) set the
//! sample sizes.

mod support;

use serde::Deserialize;
use support::{Event, env_or};

const SITES: u64 = 10_000;
const VISITORS: u64 = 5_000_000;
const EVENTS_PER_MINUTE: u64 = 1_000_000;
/// Days a finished delivery is kept (`retention.deliveries_days`).
const DELIVERY_DAYS: f64 = 30.0;
/// The longest the minute tables keep a month: the whole month, and the
/// retention's 48 hours plus a day of slack into the next.
const MINUTE_TABLE_DAYS: f64 = 31.0 + 3.0;
/// The longest `webhooks_inserts` keeps a day: two days back, a day of
/// slack, and the day itself.
const INSERTS_DAYS: f64 = 4.0;

#[derive(Deserialize, clickhouse::Row)]
struct TableSize {
    table: String,
    rows: u64,
    bytes: u64,
}

fn main() {
    if !support::benchmarking("storage") {
        return;
    }
    let deliveries: u64 = env_or("BENCH_DELIVERIES", 100_000);
    let minutes: u64 = env_or("BENCH_MINUTES", 3);
    let per_day: u64 = env_or("BENCH_DELIVERIES_PER_DAY", 10_000);
    let per_minute: u64 = env_or("BENCH_EVENTS_PER_MINUTE", EVENTS_PER_MINUTE);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let per_delivery = postgres(deliveries).await;
        let tables = clickhouse(minutes).await;
        steady_state(per_delivery, &tables, per_day, per_minute);
    });
}

/// Bytes per finished delivery with one attempt, everything included.
async fn postgres(deliveries: u64) -> f64 {
    let name = format!("bench_storage_{}", std::process::id());
    let (_, db) = support::database(&name).await;
    db.batch_execute(&format!(
        "INSERT INTO sites (id, domain) SELECT i, 'site' || i || '.example.com' FROM generate_series(1, 1000) i;
         INSERT INTO webhooks (site_id, url, secret, event_types, spike_threshold)
           SELECT i, 'https://hooks.example.com/plausible/' || i, '{secret}', ARRAY['traffic.spike', 'goal.completed'], 100
           FROM generate_series(1, 1000) i;",
        secret = support::SECRET
    ))
    .await
    .expect("seed");
    let started = std::time::Instant::now();
    db.batch_execute(&format!(
        "INSERT INTO webhook_deliveries (webhook_id, event_type, payload, status, attempts, dedupe_key,
                                         last_attempt_at, last_status_code, delivered_at, inserted_at, updated_at)
         SELECT 1 + i % 1000,
                CASE WHEN i % 20 = 0 THEN 'traffic.spike' WHEN i % 100 = 1 THEN 'webhook.test' ELSE 'goal.completed' END,
                CASE WHEN i % 20 = 0 THEN json_build_object(
                    'type', 'traffic.spike', 'timestamp', to_char(t, 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
                    'data', json_build_object(
                        'site', json_build_object('id', 1 + i % 1000, 'domain', 'site' || (1 + i % 1000) || '.example.com'),
                        'visitors', 180 + i % 50, 'threshold', 150, 'window_minutes', 5,
                        'top_pages', json_build_array(json_build_object('page', '/pricing', 'visitors', 61),
                                                      json_build_object('page', '/', 'visitors', 40),
                                                      json_build_object('page', '/blog/launch', 'visitors', 22)),
                        'top_sources', json_build_array(json_build_object('source', 'Hacker News', 'visitors', 90),
                                                        json_build_object('source', 'Google', 'visitors', 31),
                                                        json_build_object('source', 'Direct / None', 'visitors', 12)),
                        'dashboard_url', 'https://plausible.io/site' || (1 + i % 1000) || '.example.com?period=realtime'))
                ELSE json_build_object(
                    'type', 'goal.completed', 'timestamp', to_char(t, 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
                    'data', json_build_object(
                        'site', json_build_object('id', 1 + i % 1000, 'domain', 'site' || (1 + i % 1000) || '.example.com'),
                        'goal', json_build_object('id', 10000 + i % 3000, 'name', 'Signup', 'kind', 'event'),
                        'completions', 1 + i % 7, 'visitors', 1 + i % 5, 'interval_seconds', 60,
                        'dashboard_url', 'https://plausible.io/site' || (1 + i % 1000) || '.example.com?period=day&filters=((is,goal,(Signup)))'))
                END,
                'succeeded', 1, 'goal:' || (10000 + i % 3000) || ':' || i,
                t, 200, t, t, t
         FROM generate_series(1, {deliveries}) AS i,
              LATERAL (SELECT now() - make_interval(secs => i) AS t) AS at;
         INSERT INTO webhook_delivery_attempts (delivery_id, attempt, started_at, duration_ms, status_code, response_snippet)
         SELECT id, 1, last_attempt_at, 40 + length(id) % 200, 200, '{{\"ok\":true}}' FROM webhook_deliveries;"
    ))
    .await
    .expect("deliveries");
    // VACUUM runs outside a transaction: one statement per call.
    for table in ["webhook_deliveries", "webhook_delivery_attempts"] {
        db.batch_execute(&format!("VACUUM ANALYZE {table}"))
            .await
            .expect("vacuum");
    }
    let row = db
        .query_one(
            "SELECT pg_total_relation_size('webhook_deliveries'), pg_indexes_size('webhook_deliveries'),
                    pg_total_relation_size('webhook_delivery_attempts'), pg_indexes_size('webhook_delivery_attempts'),
                    (SELECT avg(octet_length(payload::text))::float8 FROM webhook_deliveries)",
            &[],
        )
        .await
        .expect("sizes");
    let (deliveries_total, deliveries_indexes): (i64, i64) = (row.get(0), row.get(1));
    let (attempts_total, attempts_indexes): (i64, i64) = (row.get(2), row.get(3));
    let payload: f64 = row.get(4);
    let n = deliveries as f64;
    let per_delivery = (deliveries_total + attempts_total) as f64 / n;
    println!(
        "storage: postgres: {deliveries} finished deliveries with one attempt each (payload {payload:.0} B on average), inserted in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    println!(
        "storage: postgres: webhook_deliveries {:.0} B/delivery ({:.0} B of it indexes); webhook_delivery_attempts {:.0} B/attempt ({:.0} B indexes); together {per_delivery:.0} B per delivery",
        deliveries_total as f64 / n,
        deliveries_indexes as f64 / n,
        attempts_total as f64 / n,
        attempts_indexes as f64 / n,
    );
    per_delivery
}

/// Rows and bytes on disk per view table after `minutes` minutes of
/// 1,000,000 events each.
async fn clickhouse(minutes: u64) -> Vec<(String, f64, f64)> {
    let name = format!("bench_storage_{}", std::process::id());
    let mut config = plausible_webhooks::config::Config::defaults().clickhouse;
    support::clickhouse_database(&mut config, &name).await;
    let admin = clickhouse::Client::default()
        .with_url(&config.url)
        .with_user(&config.user)
        .with_password(config.password.expose())
        .with_validation(false);
    let client = admin.clone().with_database(&name);

    let started = std::time::Instant::now();
    let start = 1_790_000_000u32 - 1_790_000_000 % 60;
    let mut rng = 0x2545_f491_4f6c_dd1d_u64;
    let batch = EVENTS_PER_MINUTE / 12;
    for b in 0..minutes * 12 {
        let batch_start = start + (b as u32) * 5;
        let mut insert = client.insert::<Event>("events_v2").await.expect("insert");
        for _ in 0..batch {
            insert
                .write(&random_event(&mut rng, batch_start))
                .await
                .expect("write");
        }
        insert.end().await.expect("end");
    }
    let events = minutes * batch * 12;
    println!(
        "storage: clickhouse: inserted {events} events ({minutes} minutes of event time at 1,000,000 a minute) in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    for table in [
        "webhooks_site_minutes",
        "webhooks_goal_minutes",
        "webhooks_inserts",
    ] {
        client
            .query(&format!("OPTIMIZE TABLE {name}.{table} FINAL"))
            .execute()
            .await
            .expect("optimize");
    }
    let sizes: Vec<TableSize> = client
        .query(
            "SELECT table, toUInt64(sum(rows)) AS rows, toUInt64(sum(bytes_on_disk)) AS bytes
             FROM system.parts WHERE database = ? AND active AND table LIKE 'webhooks_%'
             GROUP BY table ORDER BY table",
        )
        .bind(&name)
        .fetch_all()
        .await
        .expect("sizes");
    let millions = events as f64 / 1e6;
    let mut out = Vec::new();
    for s in sizes {
        println!(
            "storage: clickhouse: {}: {} rows, {:.0} B on disk = {:.2} MiB per million events ({:.0} B/row)",
            s.table,
            s.rows,
            s.bytes,
            s.bytes as f64 / millions / 1_048_576.0,
            s.bytes as f64 / s.rows.max(1) as f64,
        );
        out.push((s.table, s.bytes as f64 / millions, s.rows as f64 / millions));
    }
    out
}

/// The size at steady state for the given volume with default retention.
fn steady_state(per_delivery: f64, tables: &[(String, f64, f64)], per_day: u64, per_minute: u64) {
    let deliveries = per_day as f64 * DELIVERY_DAYS;
    println!(
        "storage: steady state: {per_day} deliveries/day kept {DELIVERY_DAYS} days = {deliveries:.0} deliveries = {:.1} MiB in Postgres",
        deliveries * per_delivery / 1_048_576.0
    );
    let millions_per_day = per_minute as f64 * 1440.0 / 1e6;
    let mut total = 0.0;
    for (table, bytes_per_million, _) in tables {
        let days = if table == "webhooks_inserts" {
            INSERTS_DAYS
        } else {
            MINUTE_TABLE_DAYS
        };
        let bytes = bytes_per_million * millions_per_day * days;
        total += bytes;
        println!(
            "storage: steady state: {table} at {per_minute} events/min, at most {days} days kept: {:.2} GiB",
            bytes / 1_073_741_824.0
        );
    }
    println!(
        "storage: steady state: ClickHouse view tables at most {:.2} GiB in all",
        total / 1_073_741_824.0
    );
}

const SOURCES: [&str; 5] = ["", "Google", "Twitter", "Hacker News", "DuckDuckGo"];
const PLANS: [&str; 3] = ["free", "pro", "business"];

fn random_event(rng: &mut u64, batch_start: u32) -> Event {
    let r = next(rng);
    // Zipf-like: site k gets traffic in proportion to about 1/k.
    let u = (r >> 11) as f64 / (1u64 << 53) as f64;
    let site_id = ((SITES as f64).powf(u) as u64).clamp(1, SITES);
    let kind = (r >> 20) % 100;
    let (name, scroll_depth) = match kind {
        0..=89 => ("pageview", 0),
        90..=94 => ("Signup", 0),
        _ => ("engagement", ((r >> 30) % 101) as u8),
    };
    let s = next(rng);
    // 50 paths per site, skewed, and 2 % of a long tail of unique ones.
    let pathname = if s.is_multiple_of(50) {
        format!("/post/{}", s >> 20)
    } else {
        format!("/page/{}", ((s >> 8) % 50).min((s >> 16) % 50))
    };
    let (meta_key, meta_value) = if name == "Signup" {
        (vec!["plan"], vec![PLANS[(s >> 30) as usize % PLANS.len()]])
    } else {
        (vec![], vec![])
    };
    Event {
        // Up to 5 s into the batch, as a buffered ingest delivers them.
        timestamp: batch_start + ((r >> 40) % 5) as u32,
        name,
        site_id,
        user_id: next(rng) % VISITORS,
        session_id: r,
        pathname,
        meta_key,
        meta_value,
        scroll_depth,
        referrer_source: SOURCES[((r >> 12) % SOURCES.len() as u64) as usize],
    }
}

fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}
