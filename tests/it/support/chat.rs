//! A Slack-like and a Discord-like incoming webhook on 127.0.0.1. Each
//! checks every body against its service's documented shape and limits,
//! and against mentions that could ping anyone, answers 400 (as the
//! services do) when the body does not fit, and otherwise answers on
//! purpose like the service, chosen by the URL's last path segment:
//!
//! - Slack (`/services/T…/B…/<answer>`): `ok` (200 `ok`), `no_service`
//!   (404 `no_service`), `archived` (410 `channel_is_archived`), `rate`
//!   (429 `rate_limited` with `Retry-After: 30`).
//! - Discord (`/api/webhooks/<id>/<token>-<answer>`): `ok` (204),
//!   `unknown` (404 `{"message": "Unknown Webhook", "code": 10015}`),
//!   `rate` (429 with the JSON `retry_after` of 42.5 seconds and no
//!   `Retry-After` header).
//!
//! Plain HTTP/1.1 over TCP, like `receiver.rs`, whose request reader it
//! shares.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use super::receiver::{Received, read_request};

/// The path segments that stand for the hook's credential: the tests check
/// that they never appear in what the daemon logs or records.
pub const SECRET: &str = "XXSECRETXX";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Slack,
    Discord,
}

/// One request, and what the receiver found wrong with its body.
#[derive(Debug, Clone)]
pub struct Checked {
    pub request: Received,
    pub problems: Vec<String>,
}

pub struct ChatReceiver {
    pub service: Service,
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<Checked>>>,
}

impl ChatReceiver {
    pub async fn start(service: Service) -> ChatReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let shared = log.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let log = shared.clone();
                tokio::spawn(async move {
                    let _ = serve(service, stream, log).await;
                });
            }
        });
        ChatReceiver { service, addr, log }
    }

    /// The hook's URL for an answer (`ok`, `no_service`, `unknown`, ...).
    pub fn url(&self, answer: &str) -> url::Url {
        let path = match self.service {
            Service::Slack => format!("/services/T0{SECRET}/B0{SECRET}/{answer}"),
            Service::Discord => format!("/api/webhooks/1234567890/tok{SECRET}-{answer}"),
        };
        url::Url::parse(&format!("http://{}{path}", self.addr)).expect("url")
    }

    pub fn received(&self) -> Vec<Checked> {
        self.log.lock().expect("lock").clone()
    }
}

async fn serve(
    service: Service,
    mut stream: TcpStream,
    log: Arc<Mutex<Vec<Checked>>>,
) -> std::io::Result<()> {
    while let Some(request) = read_request(&mut stream).await? {
        let problems = match service {
            Service::Slack => slack_problems(&request.body),
            Service::Discord => discord_problems(&request.body),
        };
        let answer = request
            .path
            .rsplit(['/', '-'])
            .next()
            .unwrap_or("")
            .to_string();
        let response = if !problems.is_empty() {
            respond(400, "text/plain", &[], &problems.join("; "))
        } else {
            match (service, answer.as_str()) {
                (Service::Slack, "no_service") => respond(404, "text/plain", &[], "no_service"),
                (Service::Slack, "archived") => {
                    respond(410, "text/plain", &[], "channel_is_archived")
                }
                (Service::Slack, "rate") => {
                    respond(429, "text/plain", &[("retry-after", "30")], "rate_limited")
                }
                (Service::Slack, _) => respond(200, "text/plain", &[], "ok"),
                (Service::Discord, "unknown") => respond(
                    404,
                    "application/json",
                    &[],
                    r#"{"message": "Unknown Webhook", "code": 10015}"#,
                ),
                (Service::Discord, "rate") => respond(
                    429,
                    "application/json",
                    &[],
                    r#"{"message": "You are being rate limited.", "retry_after": 42.5, "global": false}"#,
                ),
                (Service::Discord, _) => respond(204, "", &[], ""),
            }
        };
        log.lock()
            .expect("lock")
            .push(Checked { request, problems });
        stream.write_all(response.as_bytes()).await?;
    }
    Ok(())
}

fn respond(status: u16, content_type: &str, headers: &[(&str, &str)], body: &str) -> String {
    let mut head = format!(
        "HTTP/1.1 {status} Answer\r\ncontent-length: {}\r\n",
        body.len()
    );
    if !content_type.is_empty() {
        head.push_str(&format!("content-type: {content_type}\r\n"));
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    format!("{head}\r\n{body}")
}

/// Characters, as the services count them.
fn chars(v: &Value) -> usize {
    v.as_str().map_or(0, |s| s.chars().count())
}

/// Every string in a JSON value.
fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        Value::Object(o) => o.values().for_each(|x| strings(x, out)),
        _ => {}
    }
}

/// What keeps `body` from being a valid Slack incoming-webhook message
/// within Block Kit's limits, or could mention anyone.
pub fn slack_problems(body: &[u8]) -> Vec<String> {
    let mut p = Vec::new();
    let Ok(message) = serde_json::from_slice::<Value>(body) else {
        return vec!["invalid_payload: not JSON".into()];
    };
    if !(1..=40_000).contains(&chars(&message["text"])) {
        p.push("text must be a string of 1 to 40000 characters".into());
    }
    let blocks = message["blocks"].as_array().cloned().unwrap_or_default();
    if !(1..=50).contains(&blocks.len()) {
        p.push(format!("invalid_blocks: {} blocks (1 to 50)", blocks.len()));
    }
    for (i, block) in blocks.iter().enumerate() {
        let mut bad = |what: String| p.push(format!("invalid_blocks: block {i}: {what}"));
        match block["type"].as_str() {
            Some("header") => {
                text_object(&block["text"], 150, true, &mut bad);
            }
            Some("section") => {
                if block["text"].is_null() && block["fields"].is_null() {
                    bad("a section needs text or fields".into());
                }
                if !block["text"].is_null() {
                    text_object(&block["text"], 3000, false, &mut bad);
                }
                if let Some(fields) = block.get("fields") {
                    let fields = fields.as_array().cloned().unwrap_or_default();
                    if !(1..=10).contains(&fields.len()) {
                        bad(format!("{} fields (1 to 10)", fields.len()));
                    }
                    for f in &fields {
                        text_object(f, 2000, false, &mut bad);
                    }
                }
            }
            Some("actions") => {
                let elements = block["elements"].as_array().cloned().unwrap_or_default();
                if !(1..=25).contains(&elements.len()) {
                    bad(format!("{} elements (1 to 25)", elements.len()));
                }
                for e in &elements {
                    if e["type"] != "button" {
                        bad(format!("unexpected element {e}"));
                        continue;
                    }
                    text_object(&e["text"], 75, true, &mut bad);
                    let url = e["url"].as_str().unwrap_or("");
                    if url.chars().count() > 3000
                        || !(url.starts_with("https://") || url.starts_with("http://"))
                    {
                        bad(format!("button url {url:?}"));
                    }
                }
            }
            Some("context") => {
                let elements = block["elements"].as_array().cloned().unwrap_or_default();
                if !(1..=10).contains(&elements.len()) {
                    bad(format!("{} context elements (1 to 10)", elements.len()));
                }
                for e in &elements {
                    text_object(e, 3000, false, &mut bad);
                }
            }
            Some("divider") => {}
            other => bad(format!("unknown block type {other:?}")),
        }
        if chars(&block["block_id"]) > 255 {
            bad("block_id longer than 255".into());
        }
    }
    let mut texts = Vec::new();
    strings(&message, &mut texts);
    for t in texts {
        for active in ["<!", "<@", "<#", "@channel", "@here", "@everyone"] {
            if t.contains(active) {
                p.push(format!("mention {active:?} in {t:?}"));
            }
        }
    }
    p
}

fn text_object(v: &Value, max: usize, plain_only: bool, bad: &mut impl FnMut(String)) {
    match v["type"].as_str() {
        Some("plain_text") => {}
        Some("mrkdwn") if !plain_only => {
            if !v["emoji"].is_null() {
                bad("emoji is only for plain_text".into());
            }
        }
        other => bad(format!("text object of type {other:?}")),
    }
    if !(1..=max).contains(&chars(&v["text"])) {
        bad(format!(
            "text of {} characters (1 to {max}): {v}",
            chars(&v["text"])
        ));
    }
    if !v["emoji"].is_null() && !v["emoji"].is_boolean() {
        bad("emoji must be a boolean".into());
    }
}

/// What keeps `body` from being a valid Discord webhook message within
/// Discord's embed limits, or could mention anyone.
pub fn discord_problems(body: &[u8]) -> Vec<String> {
    let mut p = Vec::new();
    let Ok(message) = serde_json::from_slice::<Value>(body) else {
        return vec!["400: not JSON".into()];
    };
    if chars(&message["content"]) > 2000 {
        p.push("content longer than 2000".into());
    }
    let embeds = message["embeds"].as_array().cloned().unwrap_or_default();
    if embeds.len() > 10 {
        p.push(format!("{} embeds (at most 10)", embeds.len()));
    }
    if chars(&message["content"]) == 0 && embeds.is_empty() {
        p.push("Cannot send an empty message".into());
    }
    if message["allowed_mentions"]["parse"] != serde_json::json!([]) {
        p.push(format!(
            "allowed_mentions.parse is {}, not []",
            message["allowed_mentions"]["parse"]
        ));
    }
    let mut total = 0;
    for (i, embed) in embeds.iter().enumerate() {
        let mut bad = |what: String| p.push(format!("embeds.{i}: {what}"));
        for (key, max) in [("title", 256), ("description", 4096)] {
            if !embed[key].is_null() && !(1..=max).contains(&chars(&embed[key])) {
                bad(format!(
                    "{key} of {} characters (1 to {max})",
                    chars(&embed[key])
                ));
            }
            total += chars(&embed[key]);
        }
        if let Some(url) = embed.get("url")
            && url::Url::parse(url.as_str().unwrap_or("")).is_err()
        {
            bad(format!("url {url} is not a URL"));
        }
        if let Some(at) = embed.get("timestamp")
            && chrono::DateTime::parse_from_rfc3339(at.as_str().unwrap_or("")).is_err()
        {
            bad(format!("timestamp {at} is not ISO8601"));
        }
        if let Some(colour) = embed.get("color")
            && colour.as_u64().is_none_or(|c| c > 0xFF_FFFF)
        {
            bad(format!("color {colour}"));
        }
        let fields = embed["fields"].as_array().cloned().unwrap_or_default();
        if fields.len() > 25 {
            bad(format!("{} fields (at most 25)", fields.len()));
        }
        for f in &fields {
            if !(1..=256).contains(&chars(&f["name"])) || !(1..=1024).contains(&chars(&f["value"]))
            {
                bad(format!(
                    "field {f} out of bounds (name 1 to 256, value 1 to 1024)"
                ));
            }
            if !f["inline"].is_null() && !f["inline"].is_boolean() {
                bad("inline must be a boolean".into());
            }
            total += chars(&f["name"]) + chars(&f["value"]);
        }
        if chars(&embed["footer"]["text"]) > 2048 {
            bad("footer longer than 2048".into());
        }
        total += chars(&embed["footer"]["text"]) + chars(&embed["author"]["name"]);
    }
    if total > 6000 {
        p.push(format!("embeds hold {total} characters (at most 6000)"));
    }
    let mut texts = Vec::new();
    strings(&message, &mut texts);
    for t in texts {
        for active in ["@everyone", "@here", "<@", "<#", "<!"] {
            if t.contains(active) {
                p.push(format!("mention {active:?} in {t:?}"));
            }
        }
    }
    p
}
