//! The traffic half of `scripts/demo`: starts a webhook receiver on
//! 127.0.0.1 that checks signatures, creates a site with two goals and a
//! webhook pointing at it, sends Plausible-like events into ClickHouse (with
//! a spike of visitors), and prints each webhook as it arrives. Reads the
//! daemon's own environment variables for the two databases; runs until
//! Ctrl-C, or for DEMO_SECONDS.

#[path = "../tests/it/support/receiver.rs"]
mod receiver;

use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use chrono::DateTime;
use plausible_webhooks::delivery::signing::{Keys, sign};
use plausible_webhooks::registry::model::SigningSecret;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

#[derive(serde::Serialize, clickhouse::Row)]
struct Event {
    timestamp: u32,
    name: &'static str,
    site_id: u64,
    user_id: u64,
    session_id: u64,
    pathname: &'static str,
    referrer_source: &'static str,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let var = |name: &str| std::env::var(name).map_err(|_| anyhow::anyhow!("{name} is not set"));
    let (db, connection) = tokio_postgres::connect(
        &var("PLAUSIBLE_WEBHOOKS_POSTGRES__URL")?,
        tokio_postgres::NoTls,
    )
    .await?;
    tokio::spawn(connection);
    let clickhouse = clickhouse::Client::default()
        .with_url(var("PLAUSIBLE_WEBHOOKS_CLICKHOUSE__URL")?)
        .with_database(var("PLAUSIBLE_WEBHOOKS_CLICKHOUSE__DATABASE")?)
        .with_validation(false);
    let seconds: u64 = std::env::var("DEMO_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(u64::MAX);

    let receiver = receiver::Receiver::start().await;
    let hook = receiver.url("/plausible");
    db.batch_execute(&format!(
        "INSERT INTO sites (id, domain) VALUES (1, 'demo.example.com') ON CONFLICT DO NOTHING;
         INSERT INTO goals (site_id, event_name, display_name) VALUES (1, 'Signup', 'Signup');
         INSERT INTO goals (site_id, page_path, display_name) VALUES (1, '/blog/**', 'Visit /blog/**');
         INSERT INTO webhooks (site_id, url, secret, event_types, spike_threshold, goal_interval_seconds, description)
         VALUES (1, '{hook}', '{SECRET}', ARRAY['traffic.spike', 'goal.completed'], 8, 10, 'demo');"
    ))
    .await?;
    println!("demo: receiver listening at {hook}");
    println!(
        "demo: site demo.example.com, goals Signup and /blog/**, a webhook for spikes (8 visitors in 5 minutes) and goals (at most one delivery per goal every 10 s)"
    );
    let key =
        base64::engine::general_purpose::STANDARD.decode(SECRET.trim_start_matches("whsec_"))?;
    let secret = SigningSecret::new(key, None);

    let started = Instant::now();
    let mut printed = 0;
    let mut user = 1_000u64;
    let mut second = 0u64;
    while started.elapsed() < Duration::from_secs(seconds) {
        // A visitor or two every second; a burst of ten at 15 s.
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)?
            .as_secs() as u32;
        let mut events = Vec::new();
        let visitors = if second == 15 { 10 } else { 1 + second % 2 };
        for i in 0..visitors {
            user += 1;
            let path = ["/", "/blog/hello", "/pricing", "/blog/launch"][(user % 4) as usize];
            events.push(Event {
                timestamp: now,
                name: "pageview",
                site_id: 1,
                user_id: user,
                session_id: user,
                pathname: path,
                referrer_source: ["", "Google", "Hacker News"][(i % 3) as usize],
            });
            if user.is_multiple_of(3) {
                events.push(Event {
                    name: "Signup",
                    pathname: "/register",
                    ..events[events.len() - 1]
                });
            }
        }
        let mut insert = clickhouse.insert::<Event>("events_v2").await?;
        for e in &events {
            insert.write(e).await?;
        }
        insert.end().await?;

        let arrived = receiver.received();
        for request in &arrived[printed..] {
            let h = &request.headers;
            let at = h
                .get("webhook-timestamp")
                .and_then(|t| t.parse::<i64>().ok())
                .and_then(|t| DateTime::from_timestamp(t, 0));
            let valid = match (h.get("webhook-id"), at, h.get("webhook-signature")) {
                (Some(id), Some(at), Some(signature)) => sign(
                    id,
                    at,
                    &request.body,
                    Keys::v1(std::slice::from_ref(&secret)),
                )
                .is_some_and(|expected| signature.split(' ').any(|s| s == expected.signature)),
                _ => false,
            };
            let payload: serde_json::Value = serde_json::from_slice(&request.body)?;
            println!(
                "\n[{:>3} s] received {} {} (signature {})\n{}",
                started.elapsed().as_secs(),
                payload["type"].as_str().unwrap_or("?"),
                h.get("webhook-id").map_or("", String::as_str),
                if valid { "valid" } else { "INVALID" },
                serde_json::to_string_pretty(&payload["data"])?
            );
        }
        printed = arrived.len();
        second += 1;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    println!("\ndemo: {printed} webhooks received");
    Ok(())
}
