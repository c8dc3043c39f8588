//! Slack and Discord formats end to end: outbox rows in Postgres, the real
//! scheduler, and Slack-like and Discord-like receivers on 127.0.0.1 that
//! check every body against the service's documented shape and limits and
//! answer like the service (`support/chat.rs`).

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;

use crate::delivery::{Setup, start};
use crate::postgres_schema::SECRET as SIGNING_SECRET;
use crate::registry::eventually;
use crate::support::chat::{ChatReceiver, SECRET, Service};
use crate::support::wait_for;

fn payloads(file: &str) -> Vec<Value> {
    let path = format!(
        "{}/tests/fixtures/payloads/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// One payload of each event type (`webhook.test` included).
fn samples() -> Vec<Value> {
    payloads("samples.json")
}

/// Payloads whose goal names, pages and sources try every mention and
/// markup.
fn hostile() -> Vec<Value> {
    payloads("hostile.json")
}

fn format_of(service: Service) -> &'static str {
    match service {
        Service::Slack => "slack",
        Service::Discord => "discord",
    }
}

/// A webhook of `service`'s format at `url`; waits until it is active.
async fn chat_webhook(s: &Setup, url: &url::Url, service: Service) -> i64 {
    let id: i64 = s
        .client
        .query_one(
            "INSERT INTO webhooks (site_id, url, secret, event_types, spike_threshold) VALUES (1, $1, $2, ARRAY['traffic.spike'], 10) RETURNING id",
            &[&url.as_str(), &SIGNING_SECRET],
        )
        .await
        .unwrap()
        .get(0);
    s.client
        .execute(
            "UPDATE webhooks SET format = $2 WHERE id = $1",
            &[&id, &format_of(service)],
        )
        .await
        .unwrap();
    eventually(&s.stream.registry, "the chat webhook is active", |r| {
        r.webhook(id)
            .is_some_and(|w| w.format.as_str() == format_of(service))
    })
    .await;
    id
}

async fn enqueue(s: &Setup, webhook: i64, payload: &Value) -> String {
    s.client
        .query_one(
            "INSERT INTO webhook_deliveries (webhook_id, event_type, payload) VALUES ($1, $2, $3::text::json) RETURNING id",
            &[&webhook, &payload["type"].as_str().unwrap(), &payload.to_string()],
        )
        .await
        .unwrap()
        .get(0)
}

/// Whether the Standard Webhooks `v1` signature is over `body`.
fn signed_over(headers: &std::collections::HashMap<String, String>, body: &[u8]) -> bool {
    let key = STANDARD
        .decode(SIGNING_SECRET.strip_prefix("whsec_").unwrap())
        .unwrap();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(
        format!(
            "{}.{}.",
            headers["webhook-id"], headers["webhook-timestamp"]
        )
        .as_bytes(),
    );
    mac.update(body);
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    headers["webhook-signature"]
        .split(' ')
        .any(|s| s == expected)
}

/// Every event type, and every hostile payload, arrives as a valid message
/// of the service, signed over the bytes sent.
async fn every_event_type_arrives_valid(service: Service) -> Vec<Value> {
    let s = start(|_| {}, |scheduler| scheduler).await;
    let chat = ChatReceiver::start(service).await;
    let webhook = chat_webhook(&s, &chat.url("ok"), service).await;
    let all: Vec<Value> = samples().into_iter().chain(hostile()).collect();
    for payload in &all {
        let id = enqueue(&s, webhook, payload).await;
        s.until_status(&id, "succeeded").await;
    }
    let received = chat.received();
    assert_eq!(received.len(), all.len());
    let mut bodies = Vec::new();
    for got in received {
        assert!(
            got.problems.is_empty(),
            "{service:?} refuses the body: {:?}\n{}",
            got.problems,
            String::from_utf8_lossy(&got.request.body)
        );
        assert_eq!(got.request.headers["content-type"], "application/json");
        assert!(
            signed_over(&got.request.headers, &got.request.body),
            "the signature is over the body sent"
        );
        bodies.push(serde_json::from_slice(&got.request.body).unwrap());
    }
    bodies
}

/// Nothing a visitor or the web app wrote is active in the bytes sent.
fn assert_neutralised(raw: &str) {
    for active in [
        "<!channel>",
        "<!here>",
        "<!everyone>",
        "<!subteam",
        "<@U123ABC>",
        "<@W9>",
        "<#C42",
        "<https://evil.example|",
        "@everyone",
        "@here",
        "@channel",
        "javascript:",
    ] {
        assert!(!raw.contains(active), "{active} is active in {raw}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_type_arrives_as_a_valid_slack_message_that_mentions_nobody() {
    let bodies = every_event_type_arrives_valid(Service::Slack).await;
    let text = |b: &Value| b.to_string();
    // A spike: visitors against the threshold and window, pages, sources
    // and the dashboard.
    let spike = text(&bodies[0]);
    for said in [
        "Traffic spike on shop.example.com",
        "250 visitors in the last 5 minutes, at or above the threshold of 100",
        "/launch (180 visitors)",
        "Hacker News (150 visitors)",
        "https://plausible.example.com/shop.example.com?period=realtime",
    ] {
        assert!(spike.contains(said), "{said} in {spike}");
    }
    assert!(text(&bodies[1]).contains("Traffic drop on shop.example.com"));
    let goal = text(&bodies[2]);
    assert!(
        goal.contains(
            "12 completions by 9 visitors between 2026-12-01T09:59:00Z and 2026-12-01T10:00:00Z"
        ),
        "{goal}"
    );
    assert!(text(&bodies[3]).contains("Test from plausible-webhooks"));
    for body in &bodies[4..] {
        assert_neutralised(&body.to_string());
    }
    // The hostile text is shown, escaped, not dropped.
    let hostile_goal = bodies[4].to_string();
    assert!(hostile_goal.contains("&lt;!channel&gt;"), "{hostile_goal}");
    assert!(hostile_goal.contains("@\u{2060}everyone"), "{hostile_goal}");
    assert!(hostile_goal.contains("&amp; &gt;"), "{hostile_goal}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_type_arrives_as_a_valid_discord_message_that_mentions_nobody() {
    let bodies = every_event_type_arrives_valid(Service::Discord).await;
    let spike = &bodies[0]["embeds"][0];
    assert_eq!(spike["title"], "Traffic spike on shop.example.com");
    assert_eq!(
        spike["url"],
        "https://plausible.example.com/shop.example.com?period=realtime"
    );
    assert_eq!(spike["timestamp"], "2026-12-01T10:00:00Z");
    assert!(spike["fields"].to_string().contains("Hacker News"));
    let goal = &bodies[2]["embeds"][0];
    assert_eq!(goal["title"], "Goal completed on shop.example.com: Signup");
    assert!(goal["fields"].to_string().contains("Completions"));
    assert_eq!(
        bodies[3]["embeds"][0]["title"],
        "Test from plausible-webhooks"
    );
    for body in &bodies {
        assert_eq!(body["allowed_mentions"]["parse"], serde_json::json!([]));
    }
    for body in &bodies[4..] {
        assert_neutralised(&body.to_string());
    }
    let hostile_goal = bodies[4].to_string();
    assert!(hostile_goal.contains("@\u{200B}everyone"), "{hostile_goal}");
    assert!(hostile_goal.contains("\\\\*bold\\\\*"), "{hostile_goal}");
}

/// The delivery's status, the webhook's state and reason, and the
/// attempt's error kind and error.
async fn verdict(s: &Setup, delivery: &str, webhook: i64) -> (bool, String, String, String) {
    let hook = s
        .client
        .query_one(
            "SELECT enabled, disabled_reason FROM webhooks WHERE id = $1",
            &[&webhook],
        )
        .await
        .unwrap();
    let attempt = s
        .client
        .query_one(
            "SELECT error_kind, error FROM webhook_delivery_attempts WHERE delivery_id = $1",
            &[&delivery],
        )
        .await
        .unwrap();
    (
        hook.get(0),
        hook.get::<_, Option<String>>(1).unwrap_or_default(),
        attempt.get(0),
        attempt.get(1),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_or_deleted_hook_disables_the_webhook_with_the_reason() {
    let s = start(|_| {}, |scheduler| scheduler).await;
    let slack = ChatReceiver::start(Service::Slack).await;
    let discord = ChatReceiver::start(Service::Discord).await;
    let cases = [
        (
            chat_webhook(&s, &slack.url("no_service"), Service::Slack).await,
            "Slack answered 404 no_service",
            "create a new incoming webhook in Slack",
        ),
        (
            chat_webhook(&s, &slack.url("archived"), Service::Slack).await,
            "Slack answered 410 channel_is_archived",
            "create a new incoming webhook in Slack",
        ),
        (
            chat_webhook(&s, &discord.url("unknown"), Service::Discord).await,
            "Discord answered 404 (code 10015) Unknown Webhook",
            "create a new webhook in the channel's Integrations settings",
        ),
    ];
    for (webhook, said, todo) in cases {
        let id = enqueue(&s, webhook, &samples()[2]).await;
        assert_eq!(s.until_status(&id, "failed").await, 1, "not retried");
        let (enabled, reason, kind, error) = verdict(&s, &id, webhook).await;
        assert!(!enabled, "{said}: disabled");
        assert!(
            reason.starts_with(said) && reason.contains(todo),
            "{reason}"
        );
        assert_eq!(kind, "revoked");
        assert!(error.starts_with(said), "{error}");
    }
}

/// `next_attempt_at` less the end of the attempt, in seconds, from the
/// database.
async fn asked_wait(s: &Setup, delivery: &str) -> f64 {
    wait_for(
        "the first attempt is recorded",
        Duration::from_secs(10),
        async || !s.attempts(delivery).await.is_empty(),
    )
    .await;
    s.client
        .query_one(
            "SELECT extract(epoch FROM d.next_attempt_at - (a.started_at + a.duration_ms * interval '1 millisecond'))::float8
             FROM webhook_deliveries d JOIN webhook_delivery_attempts a ON a.delivery_id = d.id
             WHERE d.id = $1 AND d.status = 'pending'",
            &[&delivery],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_is_retried_when_the_service_asks() {
    let s = start(|_| {}, |scheduler| scheduler).await;
    let slack = ChatReceiver::start(Service::Slack).await;
    let discord = ChatReceiver::start(Service::Discord).await;
    // Slack's Retry-After: 30 (not the minute a silent 429 waits), and
    // Discord's JSON retry_after of 42.5 seconds.
    for (url, service, asked) in [
        (slack.url("rate"), Service::Slack, 30.0),
        (discord.url("rate"), Service::Discord, 42.5),
    ] {
        let webhook = chat_webhook(&s, &url, service).await;
        let id = enqueue(&s, webhook, &samples()[0]).await;
        let wait = asked_wait(&s, &id).await;
        assert!(
            (asked - 0.05..=asked + 1.0).contains(&wait),
            "{service:?} asked for {asked} s, next attempt in {wait} s"
        );
        let attempts = s.attempts(&id).await;
        assert_eq!(attempts, vec![(1, Some(429), Some("rate_limited".into()))]);
    }
}

/// Everything the daemon writes, for the log test.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// On one thread, so that every task of the daemon logs to the capture.
#[tokio::test(flavor = "current_thread")]
async fn a_chat_hooks_url_never_appears_in_logs_attempts_or_errors() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let s = start(|_| {}, |scheduler| scheduler).await;
    let slack = ChatReceiver::start(Service::Slack).await;
    // Revoked, rate limited, and a port where nothing listens (a
    // connection error).
    let revoked = chat_webhook(&s, &slack.url("no_service"), Service::Slack).await;
    let limited = chat_webhook(&s, &slack.url("rate"), Service::Slack).await;
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let mut url = slack.url("ok");
        url.set_port(Some(port)).unwrap();
        chat_webhook(&s, &url, Service::Slack).await
    };
    let mut ids = Vec::new();
    for webhook in [revoked, limited, closed] {
        ids.push(enqueue(&s, webhook, &samples()[0]).await);
    }
    s.until_status(&ids[0], "failed").await;
    for id in &ids[1..] {
        wait_for(
            "an attempt is recorded",
            Duration::from_secs(10),
            async || !s.attempts(id).await.is_empty(),
        )
        .await;
    }
    // A chat hook the registry refuses: its last_error names the host at
    // most.
    let refused: i64 = s
        .client
        .query_one(
            "INSERT INTO webhooks (site_id, url, secret, event_types, spike_threshold, format) VALUES (1, $1, $2, ARRAY['traffic.spike'], 10, 'slack') RETURNING id",
            &[&format!("https://10.1.2.3/services/T0{SECRET}/B0{SECRET}/x"), &SIGNING_SECRET],
        )
        .await
        .unwrap()
        .get(0);
    let mut last_error = String::new();
    wait_for(
        "the refused hook has a last_error",
        Duration::from_secs(10),
        async || {
            last_error = s
                .client
                .query_one("SELECT last_error FROM webhooks WHERE id = $1", &[&refused])
                .await
                .unwrap()
                .get::<_, Option<String>>(0)
                .unwrap_or_default();
            !last_error.is_empty()
        },
    )
    .await;
    assert!(last_error.contains("10.1.2.3"), "{last_error}");

    let recorded: Vec<String> = s
        .client
        .query(
            "SELECT coalesce(error, '') || ' ' || coalesce(response_snippet, '') FROM webhook_delivery_attempts
             UNION ALL SELECT coalesce(last_error, '') FROM webhook_deliveries
             UNION ALL SELECT coalesce(last_error, '') || ' ' || coalesce(disabled_reason, '') FROM webhooks",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let recorded = recorded.join("\n");
    assert!(recorded.contains("no_service"), "{recorded}");
    assert!(
        recorded.contains("Connection refused") || recorded.contains("connect"),
        "{recorded}"
    );
    assert!(!recorded.contains(SECRET), "{recorded}");
    // The writer logs the disabling after its commit, which the test may
    // have seen first.
    let logs = || String::from_utf8_lossy(&captured.0.lock().unwrap()).to_string();
    wait_for(
        "the capture has the disabling",
        Duration::from_secs(10),
        async || logs().contains("webhook disabled"),
    )
    .await;
    let logs = logs();
    assert!(!logs.contains(SECRET), "{logs}");
}

/// The contracts for the bodies the daemon sends.
fn schema(name: &str) -> jsonschema::Validator {
    let path = format!("{}/contracts/{name}", env!("CARGO_MANIFEST_DIR"));
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    jsonschema::validator_for(&schema).expect("the schema compiles")
}

#[test]
fn every_rendered_message_matches_its_contract() {
    use plausible_webhooks::delivery::formats::{discord, slack};
    let slack_schema = schema("slack.message.schema.json");
    let discord_schema = schema("discord.message.schema.json");
    let mut long = samples()[0].clone();
    long["data"]["top_pages"] = (0..40)
        .map(|i| serde_json::json!({"page": format!("/{}{i}", "p".repeat(200)), "visitors": i}))
        .collect();
    for payload in samples().iter().filter(|p| p["type"] != "webhook.test") {
        crate::triggers::check_contract(payload);
    }
    let payloads: Vec<Value> = samples()
        .into_iter()
        .chain(hostile())
        .chain([long])
        .collect();
    for payload in &payloads {
        for (name, validator, body) in [
            ("slack", &slack_schema, slack::body(payload)),
            ("discord", &discord_schema, discord::body(payload)),
        ] {
            let errors: Vec<String> = validator
                .iter_errors(&body)
                .map(|e| e.to_string())
                .collect();
            assert!(errors.is_empty(), "{name}: {errors:?}\n{body:#}");
            let problems = match name {
                "slack" => crate::support::chat::slack_problems(body.to_string().as_bytes()),
                _ => crate::support::chat::discord_problems(body.to_string().as_bytes()),
            };
            assert!(problems.is_empty(), "{name}: {problems:?}\n{body:#}");
        }
    }
    // The receivers' checks catch what escaping prevents.
    let raw = serde_json::json!({"text": "<!channel> hi", "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "@everyone"}}]});
    let problems = crate::support::chat::slack_problems(raw.to_string().as_bytes());
    assert!(problems.iter().any(|p| p.contains("<!")), "{problems:?}");
    let raw = serde_json::json!({"content": "@everyone", "embeds": [], "allowed_mentions": {"parse": ["everyone"]}});
    assert_eq!(
        crate::support::chat::discord_problems(raw.to_string().as_bytes()).len(),
        2
    );
    // And the contracts refuse what the services would.
    let mut too_many = slack::body(&samples()[0]);
    let header = too_many["blocks"][0].clone();
    too_many["blocks"] = (0..51).map(|_| header.clone()).collect();
    assert!(!slack_schema.is_valid(&too_many));
    let mut pinging = discord::body(&samples()[0]);
    pinging["allowed_mentions"]["parse"] = serde_json::json!(["everyone"]);
    assert!(!discord_schema.is_valid(&pinging));
}

#[test]
fn the_readmes_examples_are_what_the_daemon_sends() {
    use plausible_webhooks::delivery::formats::{discord, slack};
    let readme =
        std::fs::read_to_string(format!("{}/README.md", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let section = readme
        .split("## Slack and Discord")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("README has a Slack and Discord section");
    let examples: Vec<Value> = section
        .split("```json\n")
        .skip(1)
        .map(|block| serde_json::from_str(block.split("```").next().unwrap()).unwrap())
        .collect();
    let goal = &samples()[2];
    assert_eq!(examples, vec![slack::body(goal), discord::body(goal)]);
}
