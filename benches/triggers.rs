//! Trigger engine benchmark on real ClickHouse 18.16 and Postgres (the test
//! harness's servers): 10,000 sites with webhooks, events inserted at
//! 1,000,000 a minute (in 5-second batches, as Plausible's ingest buffers
//! them), the engine ticking every second.
//!
//! Prints, per tick, the daemon's CPU time (the engine runs on a thread of
//! its own; its CPU clock counts only its work, ClickHouse's and Postgres's
//! servers are other processes) and wall time; and the latency from a probe
//! event's insert to its delivery row's commit (p50, p95, p99).
//!
//! Run with `cargo bench --bench triggers`. BENCH_SECONDS (default 90) sets
//! how long the load runs; BENCH_EVENTS_PER_MINUTE (default 1000000) its rate.

mod support;

use std::time::{Duration, Instant, SystemTime};

use plausible_webhooks::analytics::Analytics;
use plausible_webhooks::config::Config;
use plausible_webhooks::triggers::TriggerEngine;
use support::{Event, SECRET, env_or};
use tokio::sync::watch;

const SITES: u64 = 10_000;
/// Sites past the load's that carry probes with a 1 s goal interval.
const PROBES: u64 = 10;

fn main() {
    if !support::benchmarking("triggers") {
        return;
    }
    let seconds: u64 = env_or("BENCH_SECONDS", 90);
    let per_minute: u64 = env_or("BENCH_EVENTS_PER_MINUTE", 1_000_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(seconds, per_minute));
}

async fn run(seconds: u64, per_minute: u64) {
    let config = setup().await;
    let pool = plausible_webhooks::store::pool(&config.postgres).expect("pool");

    let (stop, stop_rx) = watch::channel(false);
    let registry = support::loaded_registry(&config, &pool, stop_rx.clone()).await;
    println!("triggers: registry holds {:?}", registry.stats());

    // The engine on a thread of its own, so its CPU clock is its own.
    let engine_config = config.clone();
    let engine_registry = registry.clone();
    let engine_stop = stop_rx.clone();
    let engine = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let pool = plausible_webhooks::store::pool(&engine_config.postgres).expect("pool");
            let mut engine = TriggerEngine::new(
                &engine_config,
                pool,
                Analytics::new(&engine_config.clickhouse),
                engine_registry,
            );
            engine.load().await.expect("load");
            let mut samples = Vec::new();
            let mut ticks = tokio::time::interval(Duration::from_secs(1));
            while !*engine_stop.borrow() {
                ticks.tick().await;
                let cpu = thread_cpu();
                let wall = Instant::now();
                let report = engine.tick().await;
                let sample = (wall.elapsed(), thread_cpu() - cpu);
                match report {
                    Ok(report) => samples.push((sample.0, sample.1, report)),
                    Err(e) => eprintln!("tick failed: {e}"),
                }
            }
            samples
        })
    });

    // Load: 5-second batches at the requested rate, plus a probe event per
    // probe site every 2 seconds.
    let client = clickhouse::Client::default()
        .with_url(&config.clickhouse.url)
        .with_database(&config.clickhouse.database)
        .with_validation(false);
    let mut rng = 0x2545_f491_4f6c_dd1d_u64;
    let batch = per_minute / 12;
    let started = Instant::now();
    let mut probes: Vec<(u64, SystemTime)> = Vec::new();
    let mut next_batch = Duration::ZERO;
    let mut next_probe = Duration::ZERO;
    let mut inserted = 0u64;
    let mut insert_time = Duration::ZERO;
    while started.elapsed() < Duration::from_secs(seconds) {
        let elapsed = started.elapsed();
        if elapsed >= next_batch {
            let t = Instant::now();
            let mut insert = client.insert::<Event>("events_v2").await.expect("insert");
            let now = unix_now();
            for _ in 0..batch {
                let event = random_event(&mut rng, now);
                insert.write(&event).await.expect("write");
            }
            insert.end().await.expect("end");
            inserted += batch;
            insert_time += t.elapsed();
            next_batch += Duration::from_secs(5);
        }
        if elapsed >= next_probe {
            let at = SystemTime::now();
            let mut insert = client.insert::<Event>("events_v2").await.expect("insert");
            for p in 0..PROBES {
                let site = SITES + 1 + p;
                insert
                    .write(&Event {
                        timestamp: unix_now(),
                        name: "Probe",
                        site_id: site,
                        user_id: next(&mut rng),
                        session_id: 1,
                        pathname: "/".into(),
                        meta_key: vec![],
                        meta_value: vec![],
                        scroll_depth: 0,
                        referrer_source: "",
                    })
                    .await
                    .expect("write");
                probes.push((site, at));
            }
            insert.end().await.expect("end");
            next_probe += Duration::from_secs(2);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let _ = stop.send(true);
    let samples = engine.join().expect("engine thread");

    println!(
        "triggers: inserted {inserted} events in {:.0} s ({:.0}/min; insert calls took {:.1} s in all)",
        started.elapsed().as_secs_f64(),
        inserted as f64 * 60.0 / started.elapsed().as_secs_f64(),
        insert_time.as_secs_f64()
    );
    // Ticks once the load has run a minute (the first ones see an empty table).
    let steady: Vec<_> = samples.iter().skip(60).collect();
    let steady = if steady.is_empty() {
        samples.iter().collect()
    } else {
        steady
    };
    let mut cpu: Vec<Duration> = steady.iter().map(|s| s.1).collect();
    let mut wall: Vec<Duration> = steady.iter().map(|s| s.0).collect();
    cpu.sort();
    wall.sort();
    let buckets: usize =
        steady.iter().map(|s| s.2.changed_buckets).sum::<usize>() / steady.len().max(1);
    let deliveries: usize = steady
        .iter()
        .map(|s| s.2.goal_deliveries + s.2.spikes)
        .sum();
    println!(
        "triggers: {} ticks measured; changed buckets per tick {buckets}; deliveries {deliveries}",
        steady.len()
    );
    println!(
        "  daemon CPU per tick: p50 {:.1} ms  p95 {:.1} ms  max {:.1} ms",
        ms(pct(&cpu, 0.5)),
        ms(pct(&cpu, 0.95)),
        ms(cpu[cpu.len() - 1])
    );
    let mut busy: Vec<Duration> = steady
        .iter()
        .filter(|s| s.2.changed_buckets >= (SITES as usize) / 2)
        .map(|s| s.1)
        .collect();
    busy.sort();
    println!(
        "  daemon CPU per busy tick (after an ingest batch, changes on at least half the sites; {} ticks): p50 {:.1} ms  max {:.1} ms",
        busy.len(),
        ms(pct(&busy, 0.5)),
        ms(busy.last().copied().unwrap_or_default())
    );
    let mut clickhouse: Vec<Duration> = steady.iter().map(|s| s.2.clickhouse_time).collect();
    clickhouse.sort();
    println!(
        "  ClickHouse query time per tick: p50 {:.1} ms  p95 {:.1} ms  max {:.1} ms",
        ms(pct(&clickhouse, 0.5)),
        ms(pct(&clickhouse, 0.95)),
        ms(clickhouse[clickhouse.len() - 1])
    );
    println!(
        "  wall time per tick (ClickHouse and Postgres included): p50 {:.1} ms  p95 {:.1} ms  max {:.1} ms",
        ms(pct(&wall, 0.5)),
        ms(pct(&wall, 0.95)),
        ms(wall[wall.len() - 1])
    );

    // Probe latency: each probe's delivery row (one per probe, as the
    // goal interval is 1 s and probes come every 2 s).
    let db = pool.get().await.expect("client");
    let rows = db
        .query(
            "SELECT w.site_id, extract(epoch FROM d.inserted_at)::float8 FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id WHERE w.site_id > $1 ORDER BY d.inserted_at",
            &[&(SITES as i64)],
        )
        .await
        .expect("deliveries");
    let mut by_site: std::collections::HashMap<i64, Vec<f64>> = Default::default();
    for row in &rows {
        by_site.entry(row.get(0)).or_default().push(row.get(1));
    }
    let mut latencies = Vec::new();
    for (site, at) in &probes {
        let at = at
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        if let Some(delivered) = by_site
            .get(&(*site as i64))
            .and_then(|ds| ds.iter().find(|d| **d >= at && **d < at + 30.0))
        {
            latencies.push(Duration::from_secs_f64(delivered - at));
        }
    }
    latencies.sort();
    println!(
        "triggers: insert-to-delivery-row latency over {} of {} probes: p50 {:.0} ms  p95 {:.0} ms  p99 {:.0} ms  max {:.0} ms",
        latencies.len(),
        probes.len(),
        ms(pct(&latencies, 0.5)),
        ms(pct(&latencies, 0.95)),
        ms(pct(&latencies, 0.99)),
        ms(latencies.last().copied().unwrap_or_default())
    );
}

async fn setup() -> Config {
    let name = format!("bench_triggers_{}", std::process::id());
    let (mut config, db) = support::database(&name).await;
    db.batch_execute(&format!(
        "INSERT INTO sites (id, domain) SELECT i, 'site' || i || '.example.com' FROM generate_series(1, {total}) i;
         INSERT INTO goals (site_id, event_name, display_name) SELECT i, 'Signup', 'Signup' FROM generate_series(1, {SITES}) i;
         INSERT INTO goals (site_id, page_path, display_name) SELECT i, '/blog/**', 'Blog' FROM generate_series(1, {SITES}) i;
         INSERT INTO goals (site_id, event_name, display_name) SELECT i, 'Probe', 'Probe' FROM generate_series({first_probe}, {total}) i;
         INSERT INTO webhooks (site_id, url, secret, event_types, spike_threshold, goal_interval_seconds)
           SELECT i, 'https://hooks.example.com/' || i, '{SECRET}', ARRAY['traffic.spike', 'goal.completed'], 1000000, 60
           FROM generate_series(1, {SITES}) i;
         INSERT INTO webhooks (site_id, url, secret, event_types, goal_interval_seconds)
           SELECT i, 'https://hooks.example.com/' || i, '{SECRET}', ARRAY['goal.completed'], 1
           FROM generate_series({first_probe}, {total}) i;",
        total = SITES + PROBES,
        first_probe = SITES + 1,
    ))
    .await
    .expect("seed");

    support::clickhouse_database(&mut config.clickhouse, &name).await;
    config
}

const PATHS: [&str; 8] = [
    "/",
    "/pricing",
    "/blog/a",
    "/blog/b/c",
    "/docs",
    "/about",
    "/blog/x",
    "/login",
];
const SOURCES: [&str; 4] = ["", "Google", "Twitter", "Hacker News"];

fn random_event(rng: &mut u64, now: u32) -> Event {
    let r = next(rng);
    let site_id = 1 + r % SITES;
    let kind = (r >> 20) % 100;
    let (name, scroll_depth) = match kind {
        0..=89 => ("pageview", 0),
        90..=94 => ("Signup", 0),
        _ => ("engagement", ((r >> 30) % 101) as u8),
    };
    Event {
        // Up to 5 s old, as a buffered ingest delivers them.
        timestamp: now - ((r >> 40) % 5) as u32,
        name,
        site_id,
        user_id: next(rng) % 50_000_000,
        session_id: r,
        pathname: PATHS[((r >> 8) % PATHS.len() as u64) as usize].to_string(),
        meta_key: vec![],
        meta_value: vec![],
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

fn unix_now() -> u32 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0)
}

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
