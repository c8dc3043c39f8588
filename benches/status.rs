//! Status page benchmark on the test harness's PostgreSQL: render times of
//! the overview, a webhook's page and a delivery's page with 1,000,000
//! deliveries in the outbox.
//!
//! The outbox is filled with generate_series: BENCH_DELIVERIES (default
//! 1,000,000) deliveries, one attempt each, for 100 webhooks of 50 sites,
//! spread evenly over the 30 days that retention keeps by default (so about
//! 33,000 a day), 2 % failed, the rest succeeded, with a triggering time
//! 1 to 40 s before delivery; then VACUUM ANALYZE. The admin server runs in
//! this process; each page is fetched BENCH_RENDERS (default 200) times over
//! HTTP on loopback (one connection each, bearer token), after 20 warm-up
//! fetches, and p50/p95 of the whole request are printed. The pages'
//! queries are EXPLAINed first: none may scan `webhook_deliveries` or
//! `webhook_delivery_attempts` whole.
//!
//! Run with `cargo bench --bench status`.

mod support;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use plausible_webhooks::config::Secret;
use plausible_webhooks::http::AdminServer;
use plausible_webhooks::telemetry::health::Health;
use support::env_or;

const TOKEN: &str = "bench-token";

fn main() {
    if !support::benchmarking("status") {
        return;
    }
    let deliveries = env_or("BENCH_DELIVERIES", 1_000_000);
    let renders = env_or("BENCH_RENDERS", 200) as usize;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(deliveries, renders));
}

async fn run(deliveries: u64, renders: usize) {
    let name = format!("bench_status_{}", std::process::id());
    let (mut config, db) = support::database(&name).await;
    let started = Instant::now();
    fill(&db, deliveries).await;
    println!(
        "filled {deliveries} deliveries and attempts in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    explain(&db).await;

    config.http.listen = "127.0.0.1:0".parse().expect("address");
    config.http.admin_token = Secret::new(TOKEN);
    let pool = plausible_webhooks::store::pool(&config.postgres).expect("pool");
    let analytics = plausible_webhooks::analytics::Analytics::new(&config.clickhouse);
    let admin = AdminServer::bind(&config.http, pool, analytics, Health::default(), None)
        .await
        .expect("bind");
    let addr = admin.local_addr().expect("address").to_string();
    tokio::spawn(admin.serve(std::future::pending()));

    let delivery: String = db
        .query_one(
            "SELECT id FROM webhook_deliveries WHERE webhook_id = 7 ORDER BY inserted_at DESC LIMIT 1",
            &[],
        )
        .await
        .expect("a delivery")
        .get(0);
    let pages = [
        ("overview", "/".to_string()),
        ("webhook", "/webhooks/7".to_string()),
        ("delivery", format!("/deliveries/{delivery}")),
    ];
    println!("| page | renders | p50 | p95 | max |");
    println!("|---|---|---|---|---|");
    for (page, path) in pages {
        let addr = addr.clone();
        let times = tokio::task::spawn_blocking(move || {
            for _ in 0..20 {
                fetch(&addr, &path);
            }
            let mut times: Vec<Duration> = (0..renders)
                .map(|_| {
                    let t = Instant::now();
                    fetch(&addr, &path);
                    t.elapsed()
                })
                .collect();
            times.sort();
            times
        })
        .await
        .expect("renders");
        let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
        println!(
            "| {page} | {renders} | {:.1} ms | {:.1} ms | {:.1} ms |",
            ms(at(0.5)),
            ms(at(0.95)),
            ms(times[times.len() - 1])
        );
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn fill(db: &tokio_postgres::Client, deliveries: u64) {
    db.batch_execute(&format!(
        "INSERT INTO sites (id, domain) SELECT i, 'site' || i || '.example.com' FROM generate_series(1, 50) i;
         INSERT INTO webhooks (id, site_id, url, secret, event_types)
           SELECT i, 1 + i % 50, 'https://hooks.example.com/plausible/' || i, '{secret}', ARRAY['goal.completed']
           FROM generate_series(1, 100) i;
         INSERT INTO webhook_endpoint_health (webhook_id, failing_since, last_success_at)
           SELECT i, CASE WHEN i % 10 = 0 THEN now() - interval '1 hour' END, now() - interval '2 hours'
           FROM generate_series(1, 100) i;
         INSERT INTO webhook_deliveries (webhook_id, event_type, payload, status, attempts, dedupe_key,
                                         last_attempt_at, last_status_code, last_error, delivered_at,
                                         inserted_at, updated_at, triggered_at)
         SELECT 1 + i % 100, 'goal.completed',
                json_build_object('type', 'goal.completed', 'timestamp', t,
                    'data', json_build_object('site', json_build_object('id', 1 + i % 50),
                        'goal', json_build_object('id', i % 3000, 'name', 'Signup', 'kind', 'event'),
                        'completions', 1 + i % 7, 'visitors', 1 + i % 5)),
                CASE WHEN i % 50 = 0 THEN 'failed' ELSE 'succeeded' END, 1, 'goal:' || i,
                t, CASE WHEN i % 50 = 0 THEN 500 ELSE 200 END,
                CASE WHEN i % 50 = 0 THEN 'the endpoint answered 500' END,
                CASE WHEN i % 50 = 0 THEN NULL ELSE t + make_interval(secs => 1 + i % 40) END,
                t, t, t - interval '1 second'
         FROM generate_series(1, {deliveries}) AS i,
              LATERAL (SELECT now() - make_interval(secs => i * (30 * 86400.0 / {deliveries})) AS t) AS at;
         INSERT INTO webhook_delivery_attempts (delivery_id, attempt, started_at, duration_ms, status_code, response_snippet)
         SELECT id, 1, last_attempt_at, 40 + length(id) % 200, last_status_code, '{{\"ok\":true}}'
         FROM webhook_deliveries;",
        secret = support::SECRET
    ))
    .await
    .expect("fill");
    for table in ["webhook_deliveries", "webhook_delivery_attempts"] {
        db.batch_execute(&format!("VACUUM ANALYZE {table}"))
            .await
            .expect("vacuum");
    }
}

/// Fails the bench if a page query scans the outbox whole.
async fn explain(db: &tokio_postgres::Client) {
    let delivery: String = db
        .query_one("SELECT id FROM webhook_deliveries LIMIT 1", &[])
        .await
        .expect("a delivery")
        .get(0);
    let plans = plausible_webhooks::store::status::explain(db, 7, &delivery)
        .await
        .expect("explain");
    for (name, plan) in plans {
        assert!(
            !plan.contains("Seq Scan on webhook_deliveries")
                && !plan.contains("Seq Scan on webhook_delivery_attempts"),
            "{name} scans the outbox:\n{plan}"
        );
    }
    println!("EXPLAIN: no page query scans webhook_deliveries or webhook_delivery_attempts");
}

fn fetch(addr: &str, path: &str) {
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("response");
    assert!(
        response.starts_with(b"HTTP/1.1 200"),
        "{path}: {}",
        String::from_utf8_lossy(&response[..response.len().min(300)])
    );
}
