//! The traffic half of `scripts/demo`: creates a site with two goals and a
//! webhook in Postgres, sends Plausible-like events into ClickHouse (with a
//! spike of visitors), and prints each event the daemon puts in the outbox
//! as it arrives. Reads the daemon's own environment variables for the two
//! databases; runs until Ctrl-C, or for DEMO_SECONDS.

use std::collections::HashSet;
use std::time::{Duration, Instant, SystemTime};

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

    db.batch_execute(&format!(
        "INSERT INTO sites (id, domain) VALUES (1, 'demo.example.com') ON CONFLICT DO NOTHING;
         INSERT INTO goals (site_id, event_name, display_name) VALUES (1, 'Signup', 'Signup');
         INSERT INTO goals (site_id, page_path, display_name) VALUES (1, '/blog/**', 'Visit /blog/**');
         INSERT INTO webhooks (site_id, url, secret, event_types, spike_threshold, goal_interval_seconds, description)
         VALUES (1, 'https://hooks.example.com/plausible', '{SECRET}',
                 ARRAY['traffic.spike', 'goal.completed'], 8, 10, 'demo');"
    ))
    .await?;
    println!(
        "demo: site demo.example.com, goals Signup and /blog/**, a webhook for spikes (8 visitors in 5 minutes) and goals (at most one delivery per goal every 10 s)"
    );

    let started = Instant::now();
    let mut seen = HashSet::new();
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

        for row in db
            .query(
                "SELECT id, event_type, payload::text FROM webhook_deliveries ORDER BY inserted_at, id",
                &[],
            )
            .await?
        {
            let id: String = row.get(0);
            if seen.insert(id.clone()) {
                let kind: String = row.get(1);
                let payload: serde_json::Value = serde_json::from_str(row.get::<_, &str>(2))?;
                println!(
                    "\n[{:>3} s] {kind} queued as {id}\n{}",
                    started.elapsed().as_secs(),
                    serde_json::to_string_pretty(&payload["data"])?
                );
            }
        }
        second += 1;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    println!("\ndemo: {} deliveries queued", seen.len());
    Ok(())
}
