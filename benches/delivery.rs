//! Delivery benchmark on real PostgreSQL (the test harness's server) and a
//! receiver on 127.0.0.1: how fast a backlog of 100,000 deliveries drains
//! to 1, 100 and 1,000 webhooks, with every state change in Postgres; and
//! the latency from a delivery row's commit to its receipt when the queue
//! is idle.
//!
//! Run with `cargo bench --bench delivery`. BENCH_BACKLOG (default 100000)
//! sets the backlog, BENCH_WEBHOOKS the webhook counts to drain to
//! (default `1,100,1000`), BENCH_PER_ENDPOINT `delivery.max_in_flight_per_endpoint`
//! (default: the config's default). DATABASE_URL runs it on an existing
//! server instead of the harness's throwaway one.

mod support;

use plausible_webhooks::telemetry::health::Heartbeat;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use plausible_webhooks::changes::ChangeStream;
use plausible_webhooks::config::Config;
use plausible_webhooks::delivery::schedule::Scheduler;
use plausible_webhooks::registry::RegistryHandle;
use support::SECRET;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

fn main() {
    if !support::benchmarking("delivery") {
        return;
    }
    let backlog: i64 = std::env::var("BENCH_BACKLOG")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let receiver = Receiver::start().await;
        let webhooks: Vec<i64> = std::env::var("BENCH_WEBHOOKS")
            .ok()
            .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
            .unwrap_or_else(|| vec![1, 100, 1000]);
        for webhooks in webhooks {
            drain(&receiver, webhooks, backlog).await;
        }
        latency(&receiver).await;
    });
}

/// A lean HTTP/1.1 keep-alive receiver: answers 200 to everything and
/// notes each `webhook-id` with its arrival time.
struct Receiver {
    addr: std::net::SocketAddr,
    arrivals: Arc<Mutex<Vec<(String, Instant)>>>,
}

impl Receiver {
    async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let arrivals: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
        let log = arrivals.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let log = log.clone();
                tokio::spawn(async move {
                    let _ = stream.set_nodelay(true);
                    let mut buf = Vec::with_capacity(8192);
                    let mut chunk = [0u8; 8192];
                    loop {
                        // Requests are small and come one at a time per
                        // connection: headers, then content-length bytes.
                        let head_end = loop {
                            if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                                break at + 4;
                            }
                            match stream.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        };
                        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
                        let length: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        let id = head
                            .lines()
                            .find_map(|l| l.strip_prefix("webhook-id:"))
                            .map(|v| v.trim().to_string())
                            .unwrap_or_default();
                        while buf.len() < head_end + length {
                            match stream.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        log.lock().expect("lock").push((id, Instant::now()));
                        buf.drain(..head_end + length);
                        if stream
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                });
            }
        });
        Receiver { addr, arrivals }
    }
}

async fn database(
    name: &str,
    receiver: &Receiver,
    webhooks: i64,
) -> (Config, tokio_postgres::Client) {
    let (mut config, db) = support::database(name).await;
    db.batch_execute(&format!(
        "INSERT INTO sites (id, domain) SELECT i, 'site' || i || '.example.com' FROM generate_series(1, {webhooks}) i;
         INSERT INTO webhooks (site_id, url, secret, event_types, spike_threshold)
         SELECT i, 'http://{}/hook/' || i, '{SECRET}', ARRAY['traffic.spike'], 10 FROM generate_series(1, {webhooks}) i;",
        receiver.addr
    ))
    .await
    .expect("seed");
    config.delivery.allow_http = true;
    config.delivery.allowed_cidrs = vec!["127.0.0.0/8".into()];
    if let Some(n) = std::env::var("BENCH_PER_ENDPOINT")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        config.delivery.max_in_flight_per_endpoint = n;
    }
    (config, db)
}

async fn start(config: &Config) -> watch::Sender<bool> {
    let pool = plausible_webhooks::store::pool(&config.postgres).expect("pool");
    let registry = RegistryHandle::default();
    let (stop, stop_rx) = watch::channel(false);
    let mut loaded = registry.subscribe();
    tokio::spawn(
        ChangeStream::new(config, pool.clone(), registry.clone())
            .expect("stream")
            .run(stop_rx.clone(), Heartbeat::detached()),
    );
    loaded.changed().await.expect("registry");
    tokio::spawn(
        Scheduler::new(config, pool, registry)
            .expect("scheduler")
            .run(stop_rx, Heartbeat::detached()),
    );
    stop
}

async fn drain(receiver: &Receiver, webhooks: i64, backlog: i64) {
    let (config, db) = database(&format!("bench_delivery_{webhooks}"), receiver, webhooks).await;
    db.batch_execute(&format!(
        "INSERT INTO webhook_deliveries (webhook_id, event_type, payload)
         SELECT 1 + (i % {webhooks}), 'traffic.spike', json_build_object('type', 'traffic.spike', 'n', i)
         FROM generate_series(1, {backlog}) i; ANALYZE webhook_deliveries;"
    ))
    .await
    .expect("backlog");
    receiver.arrivals.lock().expect("lock").clear();
    let started = Instant::now();
    let stop = start(&config).await;
    // Done when every row is recorded as succeeded. Postgres is asked only
    // once the receiver has had every delivery: counting rows while the
    // backlog drains would scan the table and take CPU from what is
    // measured.
    loop {
        if (receiver.arrivals.lock().expect("lock").len() as i64) < backlog
            && started.elapsed() < Duration::from_secs(600)
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        let pending: i64 = db
            .query_one(
                "SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'",
                &[],
            )
            .await
            .expect("count")
            .get(0);
        if pending == 0 {
            break;
        }
        if started.elapsed() > Duration::from_secs(600) {
            println!("delivery: gave up after 600 s with {pending} of {backlog} pending");
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed();
    let succeeded: i64 = db
        .query_one(
            "SELECT count(*) FROM webhook_deliveries WHERE status = 'succeeded'",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(succeeded, backlog, "every delivery succeeded");
    let received = receiver.arrivals.lock().expect("lock").len();
    let _ = stop.send(true);
    println!(
        "delivery: {backlog} deliveries to {webhooks} webhooks drained in {:.1} s: {:.0} a second ({received} requests received, all state in Postgres)",
        elapsed.as_secs_f64(),
        backlog as f64 / elapsed.as_secs_f64()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
}

async fn latency(receiver: &Receiver) {
    let (config, db) = database("bench_delivery_latency", receiver, 1).await;
    let stop = start(&config).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let insert = db
        .prepare("INSERT INTO webhook_deliveries (webhook_id, event_type, payload) VALUES (1, 'webhook.test', '{\"type\":\"webhook.test\"}') RETURNING id")
        .await
        .expect("prepare");
    let mut samples = Vec::new();
    'probes: for _ in 0..300 {
        let before = receiver.arrivals.lock().expect("lock").len();
        let id: String = db.query_one(&insert, &[]).await.expect("insert").get(0);
        let committed = Instant::now();
        loop {
            let arrived = {
                let arrivals = receiver.arrivals.lock().expect("lock");
                arrivals[before..]
                    .iter()
                    .find(|(a, _)| *a == id)
                    .map(|(_, at)| *at)
            };
            if let Some(at) = arrived {
                samples.push(at.saturating_duration_since(committed));
                break;
            }
            if committed.elapsed() > Duration::from_secs(30) {
                println!("delivery: {id} did not arrive within 30 s; latency probes stopped");
                break 'probes;
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop.send(true);
    if samples.is_empty() {
        return;
    }
    samples.sort();
    let pct =
        |p: f64| samples[((samples.len() as f64 * p).ceil() as usize).clamp(1, samples.len()) - 1];
    println!(
        "delivery: commit-to-receipt latency, idle queue, {} deliveries: p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
        samples.len(),
        pct(0.5).as_secs_f64() * 1000.0,
        pct(0.99).as_secs_f64() * 1000.0,
        samples[samples.len() - 1].as_secs_f64() * 1000.0
    );
}
