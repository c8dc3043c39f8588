//! Change-source benchmarks on real PostgreSQL (the test harness's
//! throwaway server, wal_level=logical), in both modes
//! (`changes.source = "notify"` and `"replication"`), each measurement on a
//! fresh database:
//!
//! 1. COMMIT-to-applied latency over 1,000 webhook updates, and COMMIT of
//!    a delivery INSERT to its hint (a NOTIFY on a LISTEN connection, or
//!    the delivery feed);
//! 2. the outbox fill rate: 4 connections inserting deliveries, 1 and 100
//!    rows a transaction, with the mode's machinery consuming them; the
//!    slot's lag when the writers stop, and how long the source takes to
//!    catch up;
//! 3. the reconnect cost with 100,000 webhooks loaded: the change stream's
//!    connection is terminated and a change committed just after is timed
//!    until applied, with the full reads counted.
//!
//! Run with `cargo bench --bench changes`. BENCH_UPDATES (default 1000)
//! sets the latency samples, BENCH_FILL_SECS (default 10) each fill run's
//! length, BENCH_KILLS (default 5) the reconnects measured. The bench's
//! own sessions (the writers) commit with `synchronous_commit = on`,
//! Postgres's default, although the harness's server is set to `off`:
//! a walsender sends only flushed WAL, so with `off` replication mode
//! waits for the WAL writer (`wal_writer_delay`, 200 ms). BENCH_ASYNC_COMMIT=1
//! keeps the server's `off`. The numbers in docs/benchmarks.md come from
//! here.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use metrics_exporter_prometheus::PrometheusHandle;
use plausible_webhooks::changes::ChangeStream;
use plausible_webhooks::config::{ChangeSource, Config};
use plausible_webhooks::delivery::feed::{Feed, Item};
use plausible_webhooks::registry::RegistryHandle;
use plausible_webhooks::store::replication as slots;
use plausible_webhooks::telemetry::health::Heartbeat;
use support::SECRET;
use tokio::sync::{broadcast, mpsc, watch};

const MODES: [ChangeSource; 2] = [ChangeSource::Notify, ChangeSource::Replication];

/// How long an update may take to reach the registry before it counts as
/// missed, and how many misses stop the latency probes.
const APPLY_WITHIN: Duration = Duration::from_secs(2);
const MAX_MISSED: usize = 10;

/// Concurrent writers of the fill-rate measurement.
const WRITERS: usize = 4;

/// The application_name of notify mode's LISTEN connection.
const LISTEN_APP: &str = "plausible-webhooks changes";

/// A delivery payload of a typical size (a spike event, about 400 bytes).
const PAYLOAD: &str = r#"{"type":"traffic.spike","timestamp":"2026-12-02T04:40:00Z","data":{"site":{"id":1,"domain":"site1.example.com"},"window_minutes":5,"visitors":1234,"threshold":1000,"previous_visitors":312,"top_pages":[{"path":"/blog/launch","visitors":612},{"path":"/","visitors":401},{"path":"/pricing","visitors":97}],"top_sources":[{"source":"news.ycombinator.com","visitors":803},{"source":"Direct / None","visitors":211}],"dashboard_url":"https://plausible.example.com/site1.example.com"}}"#;

fn main() {
    // `cargo test --all-targets` runs benches as tests: do nothing then.
    if !support::benchmarking("changes") {
        return;
    }
    let metrics = plausible_webhooks::telemetry::init_metrics().expect("metrics recorder");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    println!("changes: the writers' {}", commit_setting());
    runtime.block_on(async {
        for mode in MODES {
            latency(mode).await;
        }
        for rows in [1, 100] {
            for mode in MODES {
                fill(mode, rows).await;
            }
        }
        for mode in MODES {
            reconnect(mode, &metrics).await;
        }
    });
}

/// How the bench's sessions commit (see the module's comment).
fn commit_setting() -> &'static str {
    if support::env_or("BENCH_ASYNC_COMMIT", 0) == 1 {
        "SET synchronous_commit = off"
    } else {
        "SET synchronous_commit = on"
    }
}

fn label(mode: ChangeSource) -> &'static str {
    match mode {
        ChangeSource::Notify => "notify",
        ChangeSource::Replication => "replication",
    }
}

/// One measurement's database and its running change stream.
struct Bench {
    mode: ChangeSource,
    config: Config,
    client: tokio_postgres::Client,
    registry: RegistryHandle,
    feed: Feed,
    stop: watch::Sender<bool>,
}

/// A fresh database `name` fitted to `mode` as `migrate` fits it: in
/// replication mode the publications made and the NOTIFY triggers
/// disabled, and a slot of its own (named `name`).
async fn database(name: &str, mode: ChangeSource) -> (Config, tokio_postgres::Client) {
    // A slot left by an interrupted run would keep its database from
    // being dropped.
    let admin = support::connect(&support::servers::servers().postgres_admin_url).await;
    let _ = admin
        .execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1 AND NOT active",
            &[&name],
        )
        .await;
    let (mut config, client) = support::database(name).await;
    client
        .batch_execute(commit_setting())
        .await
        .expect("synchronous_commit");
    config.changes.source = mode;
    config.changes.slot_name = name.to_string();
    if mode == ChangeSource::Replication {
        slots::ensure_publications(&client)
            .await
            .expect("publications");
        slots::set_notify_triggers(&client, false)
            .await
            .expect("triggers off");
    }
    (config, client)
}

/// Starts the change stream (with the delivery feed in replication mode)
/// and returns once the registry has loaded and the stream is reading.
async fn start(config: Config, client: tokio_postgres::Client) -> (Bench, Duration) {
    let pool = plausible_webhooks::store::pool(&config.postgres).expect("pool");
    let registry = RegistryHandle::default();
    let feed = Feed::default();
    let mut stream = ChangeStream::new(&config, pool, registry.clone()).expect("stream");
    if config.changes.source == ChangeSource::Replication {
        stream = stream.with_feed(feed.clone());
    }
    let (stop, stop_rx) = watch::channel(false);
    let mut loaded = registry.subscribe();
    let started = Instant::now();
    tokio::spawn(stream.run(stop_rx, Heartbeat::detached()));
    loaded.changed().await.expect("loaded");
    let elapsed = started.elapsed();
    let bench = Bench {
        mode: config.changes.source,
        config,
        client,
        registry,
        feed,
        stop,
    };
    bench.wait_reading().await;
    (bench, elapsed)
}

impl Bench {
    fn slot(&self) -> String {
        self.config.changes.slot()
    }

    fn url(&self) -> &str {
        self.config.postgres.url.expose()
    }

    /// Until the stream reads changes: its LISTEN connection is there, or
    /// its slot is active.
    async fn wait_reading(&self) {
        let sql = match self.mode {
            ChangeSource::Notify => {
                "SELECT count(*) > 0 FROM pg_stat_activity WHERE application_name = $1 AND datname = current_database()"
            }
            ChangeSource::Replication => {
                "SELECT count(*) > 0 FROM pg_replication_slots WHERE slot_name = $1 AND active"
            }
        };
        let key = match self.mode {
            ChangeSource::Notify => LISTEN_APP.to_string(),
            ChangeSource::Replication => self.slot(),
        };
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(60) {
            let reading: bool = self
                .client
                .query_one(sql, &[&key])
                .await
                .expect("reading")
                .get(0);
            if reading {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("the {} change stream did not start", label(self.mode));
    }

    /// Terminates the stream's connection (its LISTEN connection, or the
    /// walsender that holds its slot), waiting until the backend is gone.
    async fn kill(&self) -> usize {
        let rows = match self.mode {
            ChangeSource::Notify => self
                .client
                .query(
                    "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE application_name = $1 AND datname = current_database()",
                    &[&LISTEN_APP],
                )
                .await,
            ChangeSource::Replication => self
                .client
                .query(
                    "SELECT pg_terminate_backend(active_pid, 5000) FROM pg_replication_slots WHERE slot_name = $1 AND active_pid IS NOT NULL",
                    &[&self.slot()],
                )
                .await,
        };
        rows.expect("terminate").len()
    }

    /// Stops the stream; in replication mode, drops its slot (which would
    /// otherwise keep WAL, and its database, forever).
    async fn finish(self) {
        let _ = self.stop.send(true);
        if self.mode != ChangeSource::Replication {
            return;
        }
        let slot = self.slot();
        let started = Instant::now();
        loop {
            match slots::slot(&self.client, &slot).await.expect("slot") {
                None => return,
                Some(s) if !s.active => break,
                Some(_) if started.elapsed() > Duration::from_secs(5) => {
                    self.kill().await;
                }
                Some(_) => {}
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        slots::drop_slot(&self.client, &slot)
            .await
            .expect("drop slot");
    }
}

/// Where a new delivery's hint arrives: a LISTEN on
/// `webhook_deliveries_changed` (notify mode, as the scheduler listens),
/// or the delivery feed (replication mode).
enum Hints {
    Listen {
        payloads: mpsc::UnboundedReceiver<String>,
        /// Holds the LISTEN connection open.
        _client: tokio_postgres::Client,
    },
    Feed(broadcast::Receiver<Item>),
}

impl Hints {
    async fn open(bench: &Bench) -> Hints {
        match bench.mode {
            ChangeSource::Notify => {
                let (client, payloads) = listen(bench.url(), "webhook_deliveries_changed").await;
                Hints::Listen {
                    payloads,
                    _client: client,
                }
            }
            ChangeSource::Replication => Hints::Feed(bench.feed.subscribe()),
        }
    }

    /// The next hinted delivery's id (None: the source is gone); `lagged`
    /// counts hints a feed subscriber missed.
    async fn next(&mut self, lagged: &AtomicU64) -> Option<String> {
        match self {
            Hints::Listen { payloads, .. } => {
                #[derive(serde::Deserialize)]
                struct Payload {
                    id: String,
                }
                let payload = payloads.recv().await?;
                serde_json::from_str::<Payload>(&payload).ok().map(|p| p.id)
            }
            Hints::Feed(rx) => loop {
                match rx.recv().await {
                    Ok(Item::Hint(hint)) => return Some(hint.id),
                    Ok(Item::Resync) => {}
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        lagged.fetch_add(n, Ordering::Relaxed);
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            },
        }
    }
}

/// A connection that LISTENs on `channel`; its notifications' payloads.
async fn listen(
    url: &str,
    channel: &str,
) -> (tokio_postgres::Client, mpsc::UnboundedReceiver<String>) {
    let (client, mut connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = messages.next().await {
            if let tokio_postgres::AsyncMessage::Notification(n) = message {
                let _ = tx.send(n.payload().to_string());
            }
        }
    });
    client
        .batch_execute(&format!("LISTEN {channel}"))
        .await
        .expect("listen");
    (client, rx)
}

/// `count` sites with a webhook each.
async fn seed(client: &tokio_postgres::Client, count: i64) {
    client
        .batch_execute(&format!(
            "INSERT INTO sites (id, domain) SELECT i, 'site' || i || '.example.com' FROM generate_series(1, {count}) i;
             INSERT INTO webhooks (site_id, url, secret, event_types, spike_threshold)
             SELECT i, 'https://hooks.example.com/' || i, '{SECRET}', ARRAY['traffic.spike'], 1
             FROM generate_series(1, {count}) i;"
        ))
        .await
        .expect("seed");
}

async fn latency(mode: ChangeSource) {
    let updates = support::env_or("BENCH_UPDATES", 1000) as i64;
    let name = format!("bench_changes_latency_{}", label(mode));
    let (config, client) = database(&name, mode).await;
    seed(&client, updates).await;
    let (bench, _) = start(config, client).await;
    let (samples, missed) = registry_latency(&bench, updates).await;
    report(
        &format!(
            "changes ({}): commit-to-applied latency over {} webhook updates",
            label(mode),
            samples.len()
        ),
        samples,
    );
    if !missed.is_empty() {
        println!(
            "  {} updates NOT applied within {} s (webhooks {missed:?}); the probes stop at {MAX_MISSED}",
            missed.len(),
            APPLY_WITHIN.as_secs()
        );
    }
    let samples = hint_latency(&bench, updates).await;
    let via = match mode {
        ChangeSource::Notify => "NOTIFY on a LISTEN connection",
        ChangeSource::Replication => "the delivery feed",
    };
    report(
        &format!(
            "changes ({}): delivery INSERT commit-to-hint latency ({via}) over {} inserts",
            label(mode),
            samples.len()
        ),
        samples,
    );
    bench.finish().await;
}

/// Each update autocommitted, timed until the registry shows it.
/// An update not applied within [`APPLY_WITHIN`] counts as missed (the
/// reconciliation would fix it, minutes later); after [`MAX_MISSED`] the
/// probes stop.
async fn registry_latency(bench: &Bench, updates: i64) -> (Vec<Duration>, Vec<i64>) {
    let update = bench
        .client
        .prepare("UPDATE webhooks SET spike_threshold = $2 WHERE id = $1")
        .await
        .expect("prepare");
    let mut samples = Vec::with_capacity(updates as usize);
    let mut missed = Vec::new();
    for i in 0..updates {
        let id = 1 + i;
        let threshold = 1000 + i as i32;
        let mut version = bench.registry.subscribe();
        let started = Instant::now();
        // Autocommit: the statement returns once the COMMIT is done.
        bench
            .client
            .execute(&update, &[&id, &threshold])
            .await
            .expect("update");
        let applied = tokio::time::timeout(APPLY_WITHIN, async {
            while !shows(&bench.registry, id, threshold) {
                version.changed().await.expect("registry alive");
            }
        })
        .await;
        match applied {
            Ok(()) => samples.push(started.elapsed()),
            Err(_) => missed.push(id),
        }
        if missed.len() >= MAX_MISSED {
            break;
        }
    }
    (samples, missed)
}

/// The registry holds webhook `id` with spike threshold `threshold`.
fn shows(registry: &RegistryHandle, id: i64, threshold: i32) -> bool {
    let spike = registry.webhook(id).and_then(|w| w.spike);
    spike.is_some_and(|s| i64::from(s.threshold) == i64::from(threshold))
}

/// Each delivery INSERT autocommitted, timed until its hint arrives.
async fn hint_latency(bench: &Bench, inserts: i64) -> Vec<Duration> {
    let mut hints = Hints::open(bench).await;
    let lagged = AtomicU64::new(0);
    let insert = bench
        .client
        .prepare(&format!(
            "INSERT INTO webhook_deliveries (webhook_id, event_type, payload) VALUES ($1, 'traffic.spike', '{PAYLOAD}') RETURNING id"
        ))
        .await
        .expect("prepare");
    let mut samples = Vec::with_capacity(inserts as usize);
    for i in 0..inserts {
        let webhook = 1 + i;
        let started = Instant::now();
        let id: String = bench
            .client
            .query_one(&insert, &[&webhook])
            .await
            .expect("insert")
            .get(0);
        let arrived = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(hinted) = hints.next(&lagged).await {
                if hinted == id {
                    return true;
                }
            }
            false
        })
        .await;
        if arrived != Ok(true) {
            println!("changes: the hint of {id} did not arrive within 30 s; probes stopped");
            break;
        }
        samples.push(started.elapsed());
    }
    samples
}

/// What the fill-rate writers did.
#[derive(Default)]
struct Written {
    rows: AtomicU64,
    commits: AtomicU64,
}

async fn fill(mode: ChangeSource, rows: i32) {
    let secs = support::env_or("BENCH_FILL_SECS", 10);
    let name = format!("bench_changes_fill_{}_{rows}", label(mode));
    let (config, client) = database(&name, mode).await;
    seed(&client, 100).await;
    let (bench, _) = start(config, client).await;
    let hinted = Arc::new(AtomicU64::new(0));
    let lagged = Arc::new(AtomicU64::new(0));
    let mut hints = Hints::open(&bench).await;
    let counter = {
        let (hinted, lagged) = (hinted.clone(), lagged.clone());
        tokio::spawn(async move {
            while hints.next(&lagged).await.is_some() {
                hinted.fetch_add(1, Ordering::Relaxed);
            }
        })
    };

    let written = Arc::new(Written::default());
    let started = Instant::now();
    let deadline = started + Duration::from_secs(secs);
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            tokio::spawn(write(
                bench.url().to_string(),
                w as i64,
                rows,
                deadline,
                written.clone(),
            ))
        })
        .collect();
    for writer in writers {
        writer.await.expect("writer");
    }
    let elapsed = started.elapsed();
    let stopped = Instant::now();
    let (wal_end, lag) = slot_lag(&bench).await;
    let total = written.rows.load(Ordering::Relaxed);
    let commits = written.commits.load(Ordering::Relaxed);
    let hints_at_stop = hinted.load(Ordering::Relaxed);
    let caught_up = wait_hints(&hinted, &lagged, total)
        .await
        .map(|_| stopped.elapsed());
    let confirmed = wait_confirmed(&bench, &wal_end)
        .await
        .map(|_| stopped.elapsed());
    counter.abort();

    println!(
        "changes ({}): outbox fill, {WRITERS} connections, {rows} row(s) a transaction, {:.1} s: {:.0} rows/s, {:.0} commits/s ({total} rows)",
        label(mode),
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        commits as f64 / elapsed.as_secs_f64(),
    );
    println!(
        "  at stop: {hints_at_stop} of {total} hinted ({} behind), slot lag {}; all hinted after {}, slot confirmed past the stop's WAL after {}; {} hints lagged",
        total.saturating_sub(hints_at_stop),
        lag.map_or("-".into(), |b| format!("{:.1} KiB", b as f64 / 1024.0)),
        caught_up.map_or("(not within 120 s)".into(), |d| format!("{:.0} ms", ms(d))),
        confirmed.map_or("-".into(), |d| format!("{:.0} ms", ms(d))),
        lagged.load(Ordering::Relaxed),
    );
    bench.finish().await;
}

/// One writer: autocommitted INSERTs of `rows` deliveries until
/// `deadline`.
async fn write(url: String, writer: i64, rows: i32, deadline: Instant, written: Arc<Written>) {
    let client = support::connect(&url).await;
    client
        .batch_execute(commit_setting())
        .await
        .expect("synchronous_commit");
    let insert = client
        .prepare(&format!(
            "INSERT INTO webhook_deliveries (webhook_id, event_type, payload)
             SELECT 1 + (($1::bigint * 25 + n) % 100), 'traffic.spike', '{PAYLOAD}'
             FROM generate_series(1, $2::int) n"
        ))
        .await
        .expect("prepare");
    while Instant::now() < deadline {
        let n = client
            .execute(&insert, &[&writer, &rows])
            .await
            .expect("insert");
        written.rows.fetch_add(n, Ordering::Relaxed);
        written.commits.fetch_add(1, Ordering::Relaxed);
    }
}

/// The server's WAL position now and (replication mode) how far the
/// slot's confirmed position is behind it.
async fn slot_lag(bench: &Bench) -> (String, Option<i64>) {
    let wal_end: String = bench
        .client
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .expect("wal lsn")
        .get(0);
    let lag = match bench.mode {
        ChangeSource::Notify => None,
        ChangeSource::Replication => slots::slot(&bench.client, &bench.slot())
            .await
            .expect("slot")
            .and_then(|s| s.lag_bytes),
    };
    (wal_end, lag)
}

/// Until `total` hints arrived (or were missed by a lagging subscriber).
async fn wait_hints(hinted: &AtomicU64, lagged: &AtomicU64, total: u64) -> Option<()> {
    let started = Instant::now();
    while hinted.load(Ordering::Relaxed) + lagged.load(Ordering::Relaxed) < total {
        if started.elapsed() > Duration::from_secs(120) {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Some(())
}

/// Until the slot's confirmed position passes `wal_end` (replication mode).
async fn wait_confirmed(bench: &Bench, wal_end: &str) -> Option<()> {
    if bench.mode != ChangeSource::Replication {
        return None;
    }
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(120) {
        let confirmed: bool = bench
            .client
            .query_one(
                "SELECT coalesce(confirmed_flush_lsn >= $2::text::pg_lsn, false) FROM pg_replication_slots WHERE slot_name = $1",
                &[&bench.slot(), &wal_end],
            )
            .await
            .expect("confirmed")
            .get(0);
        if confirmed {
            return Some(());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}

async fn reconnect(mode: ChangeSource, metrics: &PrometheusHandle) {
    let kills = support::env_or("BENCH_KILLS", 5);
    let name = format!("bench_changes_reconnect_{}", label(mode));
    let (config, client) = database(&name, mode).await;
    support::seed_full_load(&client).await;
    let (bench, load) = start(config, client).await;
    println!(
        "changes ({}): loaded {} webhooks in {:.0} ms",
        label(mode),
        bench.registry.stats().webhooks,
        ms(load)
    );
    let before = resyncs(metrics);
    let mut samples = Vec::new();
    for k in 0..kills as i64 {
        let id = 1 + k * 997;
        let threshold = 5000 + k as i32;
        let mut version = bench.registry.subscribe();
        let started = Instant::now();
        let killed = bench.kill().await;
        assert_eq!(killed, 1, "one change stream connection terminated");
        bench
            .client
            .execute(
                "UPDATE webhooks SET spike_threshold = $2 WHERE id = $1",
                &[&id, &threshold],
            )
            .await
            .expect("update");
        let applied = tokio::time::timeout(Duration::from_secs(60), async {
            while !shows(&bench.registry, id, threshold) {
                version.changed().await.expect("registry alive");
            }
        })
        .await;
        if applied.is_err() {
            println!("changes: webhook {id}'s update was not applied within 60 s of the kill");
            continue;
        }
        samples.push(started.elapsed());
        bench.wait_reading().await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let after = resyncs(metrics);
    let reads: Vec<String> = after
        .iter()
        .filter_map(|(reason, n)| {
            let delta = n - before.get(reason).copied().unwrap_or(0.0);
            (delta > 0.0).then(|| format!("{delta} {reason}"))
        })
        .collect();
    report(
        &format!(
            "changes ({}): {} reconnects with 100,000 webhooks loaded, kill to a change committed after it applied (full reads meanwhile: {})",
            label(mode),
            samples.len(),
            if reads.is_empty() {
                "none".to_string()
            } else {
                reads.join(", ")
            }
        ),
        samples,
    );
    bench.finish().await;
}

/// `plausible_webhooks_registry_resyncs_total`, by reason, as exported.
fn resyncs(metrics: &PrometheusHandle) -> BTreeMap<String, f64> {
    metrics
        .render()
        .lines()
        .filter_map(|line| line.strip_prefix("plausible_webhooks_registry_resyncs_total{"))
        .filter_map(|rest| {
            let (labels, value) = rest.rsplit_once(' ')?;
            let reason = labels
                .split("reason=\"")
                .nth(1)?
                .split('"')
                .next()?
                .to_string();
            Some((reason, value.parse().ok()?))
        })
        .collect()
}

fn report(title: &str, mut samples: Vec<Duration>) {
    println!("{title}");
    if samples.is_empty() {
        println!("  no samples");
        return;
    }
    samples.sort();
    let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
    println!(
        "  p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms  mean {:.2} ms",
        ms(percentile(&samples, 0.50)),
        ms(percentile(&samples, 0.99)),
        ms(samples[samples.len() - 1]),
        ms(mean)
    );
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
