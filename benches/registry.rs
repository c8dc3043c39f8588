//! Registry benchmarks on real PostgreSQL (the test harness's throwaway
//! server): COMMIT-to-applied latency over 1,000 updates, and the full
//! load of 100,000 webhooks across 20,000 sites (time and memory).
//!
//! Run with `cargo bench --bench registry`. Prints its figures; the
//! numbers in docs/benchmarks.md come from here.

mod support;

use plausible_webhooks::telemetry::health::Heartbeat;
use std::time::{Duration, Instant};

use plausible_webhooks::changes::ChangeStream;
use plausible_webhooks::config::Config;
use plausible_webhooks::registry::RegistryHandle;
use support::SECRET;
use tokio::sync::watch;

fn main() {
    // `cargo test --all-targets` runs benches as tests: do nothing then.
    if !support::benchmarking("registry") {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        latency().await;
        full_load().await;
    });
}

async fn start(config: &Config) -> (RegistryHandle, watch::Sender<bool>, Duration) {
    let pool = plausible_webhooks::store::pool(&config.postgres).expect("pool");
    let registry = RegistryHandle::default();
    let stream = ChangeStream::new(config, pool, registry.clone()).expect("stream");
    let (stop, stop_rx) = watch::channel(false);
    let mut version = registry.subscribe();
    let started = Instant::now();
    tokio::spawn(stream.run(stop_rx, Heartbeat::detached()));
    version.changed().await.expect("loaded");
    (registry, stop, started.elapsed())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

async fn latency() {
    let (config, client) = support::database("bench_registry_latency").await;
    client
        .batch_execute(&format!(
            "INSERT INTO sites (id, domain) SELECT i, 'site' || i || '.example.com' FROM generate_series(1, 1000) i;
             INSERT INTO webhooks (site_id, url, secret, event_types, spike_threshold)
             SELECT i, 'https://hooks.example.com/' || i, '{SECRET}', ARRAY['traffic.spike'], 1
             FROM generate_series(1, 1000) i;"
        ))
        .await
        .expect("seed");
    let (registry, stop, _) = start(&config).await;
    let ids: Vec<i64> = client
        .query("SELECT id FROM webhooks ORDER BY id", &[])
        .await
        .expect("ids")
        .iter()
        .map(|r| r.get(0))
        .collect();
    let update = client
        .prepare("UPDATE webhooks SET spike_threshold = $2 WHERE id = $1")
        .await
        .expect("prepare");
    let mut samples = Vec::with_capacity(1000);
    for (i, id) in ids.iter().enumerate() {
        let threshold = 1000 + i as i32;
        let mut version = registry.subscribe();
        let started = Instant::now();
        // Autocommit: the statement returns once the COMMIT is done.
        client
            .execute(&update, &[id, &threshold])
            .await
            .expect("update");
        loop {
            let applied = registry
                .webhook(*id)
                .and_then(|w| w.spike)
                .is_some_and(|s| s.threshold == threshold as u32);
            if applied {
                break;
            }
            version.changed().await.expect("registry alive");
        }
        samples.push(started.elapsed());
    }
    let _ = stop.send(true);
    samples.sort();
    let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
    println!(
        "registry: commit-to-applied latency over {} updates",
        samples.len()
    );
    println!(
        "  p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms  mean {:.2} ms",
        ms(percentile(&samples, 0.50)),
        ms(percentile(&samples, 0.99)),
        ms(samples[samples.len() - 1]),
        ms(mean)
    );
}

async fn full_load() {
    let (config, client) = support::database("bench_registry_load").await;
    let seeded = Instant::now();
    support::seed_full_load(&client).await;
    println!(
        "registry: seeded 100,000 webhooks, 20,000 sites, 40,000 goals in {:.1} s",
        seeded.elapsed().as_secs_f64()
    );
    let before = rss_kib();
    let (registry, stop, elapsed) = start(&config).await;
    let after = rss_kib();
    let stats = registry.stats();
    println!(
        "registry: full load of {} webhooks, {} sites, {} goals in {:.0} ms",
        stats.webhooks,
        stats.sites,
        stats.goals,
        ms(elapsed)
    );
    println!(
        "  resident memory: {:.1} MiB before, {:.1} MiB after (+{:.1} MiB), peak {:.1} MiB",
        before.0 as f64 / 1024.0,
        after.0 as f64 / 1024.0,
        (after.0 as f64 - before.0 as f64) / 1024.0,
        after.1 as f64 / 1024.0
    );
    let _ = stop.send(true);
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// (VmRSS, VmHWM) of this process, in KiB.
fn rss_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}
