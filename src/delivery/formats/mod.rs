//! Chat formats: messages for Slack and Discord incoming webhooks, built at
//! delivery time from the stored standard payload (the outbox keeps one
//! canonical body; a webhook's format can change without touching it).
//!
//! [`Message`] is what a message says about an event, whichever service
//! shows it; `slack` and `discord` render it within each service's limits,
//! and escape everything that came from the web app or from visitors
//! (goal names, page paths, sources, domains) so that it can neither ping
//! a channel nor inject markup.

pub mod discord;
pub mod slack;

use bytes::Bytes;
use serde_json::Value;

use crate::registry::model::Format;

/// Why no chat message could be built.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("the payload is not JSON ({0}), so no {1} message can be built from it")]
    NotJson(#[source] serde_json::Error, Format),
}

/// The body sent for a stored payload in `format`: the payload itself for
/// `standard`, a chat message built from it otherwise.
pub fn render(format: Format, payload: &str) -> Result<Bytes, RenderError> {
    let body = match format {
        Format::Standard => return Ok(Bytes::copy_from_slice(payload.as_bytes())),
        Format::Slack => slack::body,
        Format::Discord => discord::body,
    };
    let parsed: Value =
        serde_json::from_str(payload).map_err(|e| RenderError::NotJson(e, format))?;
    // A `Value` always serialises.
    Ok(Bytes::from(body(&parsed).to_string()))
}

/// What a chat service's answer said when it means the hook is gone for
/// good: the attempt's `error`, and the webhook's `disabled_reason`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revoked {
    pub error: String,
    pub reason: String,
}

/// Whether an answer of `format`'s service says its hook was revoked or
/// deleted. `body` is the start of the response body.
pub fn revoked(format: Format, status: u16, body: &str) -> Option<Revoked> {
    match format {
        Format::Standard => None,
        Format::Slack => slack::revoked(status, body),
        Format::Discord => discord::revoked(status, body),
    }
}

/// At most this many items of a list are shown; the rest are counted.
pub const MAX_LIST_ITEMS: usize = 10;

/// What a chat message says, before any service's markup. Every string is
/// raw text: each renderer escapes it for its service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub title: String,
    pub summary: String,
    /// Short label and value pairs (a goal's completions, a threshold).
    pub facts: Vec<(String, String)>,
    /// Labelled lists (top pages, top sources).
    pub lists: Vec<(String, Vec<String>)>,
    /// The dashboard, when the payload has an http(s) link.
    pub link: Option<String>,
    pub timestamp: Option<String>,
}

/// The message for a standard payload (`{"type", "timestamp", "data"}`).
/// A payload the daemon did not write (a test from the web app) may lack
/// any field: what is missing is left out, never an error.
pub fn message(payload: &Value) -> Message {
    let kind = text(payload, &["type"]);
    let data = &payload["data"];
    let domain = text(data, &["site", "domain"]);
    let mut message = match kind.as_str() {
        "traffic.spike" => spike(data, &domain),
        "traffic.drop" => drop(data, &domain),
        "goal.completed" => goal(data, &domain),
        "webhook.test" => test(data),
        other => Message {
            title: format!("Plausible event {other}"),
            summary: cut(&data.to_string(), 500),
            ..Message::empty()
        },
    };
    message.link = link(data);
    message.timestamp = payload["timestamp"].as_str().map(str::to_string);
    message
}

impl Message {
    fn empty() -> Message {
        Message {
            title: String::new(),
            summary: String::new(),
            facts: Vec::new(),
            lists: Vec::new(),
            link: None,
            timestamp: None,
        }
    }

    /// One plain line for notifications and clients that show no blocks.
    pub fn fallback(&self) -> String {
        format!("{}: {}", self.title, self.summary)
    }
}

fn spike(data: &Value, domain: &str) -> Message {
    let window = number(data, "window_minutes");
    let counted = |key: &str, name: &str| -> Vec<String> {
        data[key]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .map(|i| format!("{} ({} visitors)", text(i, &[name]), number(i, "visitors")))
                    .collect()
            })
            .unwrap_or_default()
    };
    Message {
        title: format!("Traffic spike on {domain}"),
        summary: format!(
            "{} visitors in the last {window} minutes, at or above the threshold of {}.",
            number(data, "visitors"),
            number(data, "threshold")
        ),
        lists: vec![
            ("Top pages".into(), counted("top_pages", "page")),
            ("Top sources".into(), counted("top_sources", "source")),
        ]
        .into_iter()
        .filter(|(_, items)| !items.is_empty())
        .collect(),
        ..Message::empty()
    }
}

fn drop(data: &Value, domain: &str) -> Message {
    Message {
        title: format!("Traffic drop on {domain}"),
        summary: format!(
            "{} visitors in the last {} hours, below the threshold of {}.",
            number(data, "visitors"),
            number(data, "window_hours"),
            number(data, "threshold")
        ),
        ..Message::empty()
    }
}

fn goal(data: &Value, domain: &str) -> Message {
    let name = text(data, &["goal", "name"]);
    let completions = number(data, "completions");
    let visitors = number(data, "visitors");
    let from = text(data, &["interval", "from"]);
    let to = text(data, &["interval", "to"]);
    let mut facts = vec![
        ("Goal".into(), name.clone()),
        ("Completions".into(), completions.to_string()),
        ("Visitors".into(), visitors.to_string()),
    ];
    if data["revenue"].is_object() {
        let amount = text(data, &["revenue", "amount"]);
        let currency = text(data, &["revenue", "currency"]);
        facts.push(("Revenue".into(), format!("{amount} {currency}")));
    }
    facts.push(("Interval".into(), format!("{from} to {to}")));
    Message {
        title: format!("Goal completed on {domain}: {name}"),
        summary: format!(
            "{completions} completion{} by {visitors} visitor{} between {from} and {to}.",
            plural(completions),
            plural(visitors)
        ),
        facts,
        ..Message::empty()
    }
}

fn test(data: &Value) -> Message {
    let site = match &data["site_id"] {
        Value::Null => String::new(),
        id => format!(" for site {id}"),
    };
    Message {
        title: "Test from plausible-webhooks".into(),
        summary: format!("This webhook works: a test delivery{site} arrived."),
        ..Message::empty()
    }
}

/// The dashboard link, if it is an http(s) URL.
fn link(data: &Value) -> Option<String> {
    data["dashboard_url"]
        .as_str()
        .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
        .filter(|u| u.len() <= 2000 && url::Url::parse(u).is_ok())
        .map(str::to_string)
}

fn text(value: &Value, path: &[&str]) -> String {
    let mut v = value;
    for key in path {
        v = &v[*key];
    }
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn number(value: &Value, key: &str) -> u64 {
    value[key].as_u64().unwrap_or(0)
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// `s` cut to at most `max` characters, with an ellipsis when cut.
pub fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Escaped text cut to at most `max` characters as sent: `escape` runs
/// first, and a cut never splits an entity (`&amp;`). (A cut between an
/// `@` and the joiner that breaks it leaves `@…`, which mentions nobody.)
pub fn cut_escaped(raw: &str, max: usize, escape: impl Fn(&str) -> String) -> String {
    let escaped = escape(raw);
    if escaped.chars().count() <= max {
        return escaped;
    }
    let mut out: String = escaped.chars().take(max.saturating_sub(1)).collect();
    if let Some(amp) = out.rfind('&')
        && !out[amp..].contains(';')
    {
        out.truncate(amp);
    }
    out.push('…');
    out
}

/// The first `MAX_LIST_ITEMS` items, and "and N more" for the rest.
pub fn shown(items: &[String]) -> Vec<String> {
    let mut out: Vec<String> = items.iter().take(MAX_LIST_ITEMS).cloned().collect();
    if items.len() > MAX_LIST_ITEMS {
        out.push(format!("and {} more", items.len() - MAX_LIST_ITEMS));
    }
    out
}

#[cfg(test)]
pub(crate) mod samples {
    use serde_json::Value;

    /// One payload of each event type, as the daemon writes them (shared
    /// with the integration tests).
    pub fn all() -> Vec<Value> {
        serde_json::from_str(include_str!(
            "../../../tests/fixtures/payloads/samples.json"
        ))
        .expect("samples.json")
    }

    /// Goals whose names, and a spike whose pages and sources, carry every
    /// kind of markup and mention a visitor or the web app could send.
    pub fn hostile() -> Vec<Value> {
        serde_json::from_str(include_str!(
            "../../../tests/fixtures/payloads/hostile.json"
        ))
        .expect("hostile.json")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_type_says_what_happened() {
        let messages: Vec<Message> = samples::all().iter().map(message).collect();
        assert_eq!(messages[0].title, "Traffic spike on shop.example.com");
        assert!(
            messages[0]
                .summary
                .starts_with("250 visitors in the last 5 minutes")
        );
        assert_eq!(messages[0].lists[0].1[0], "/launch (180 visitors)");
        assert_eq!(messages[1].title, "Traffic drop on shop.example.com");
        assert_eq!(
            messages[2].title,
            "Goal completed on shop.example.com: Signup"
        );
        assert!(
            messages[2]
                .summary
                .starts_with("12 completions by 9 visitors")
        );
        assert_eq!(messages[3].title, "Test from plausible-webhooks");
        assert!(messages[3].link.is_none());
        assert!(messages[0].link.is_some());
    }

    #[test]
    fn a_revenue_goal_shows_its_revenue() {
        let mut goal = samples::all()[2].clone();
        assert!(!message(&goal).facts.iter().any(|f| f.0 == "Revenue"));
        goal["data"]["revenue"] = serde_json::json!({"amount": "12.501", "currency": "EUR"});
        let facts = message(&goal).facts;
        assert!(
            facts.contains(&("Revenue".into(), "12.501 EUR".into())),
            "{facts:?}"
        );
    }

    #[test]
    fn a_link_that_is_not_http_is_dropped() {
        assert!(message(&samples::hostile()[0]).link.is_none());
    }

    #[test]
    fn long_lists_are_cut_with_a_count() {
        let items: Vec<String> = (0..14).map(|i| format!("/p{i}")).collect();
        let shown = shown(&items);
        assert_eq!(shown.len(), MAX_LIST_ITEMS + 1);
        assert_eq!(shown.last().unwrap(), "and 4 more");
    }

    #[test]
    fn standard_sends_the_stored_bytes_and_chat_formats_build_a_message() {
        let stored = r#"{"type": "webhook.test",  "data": {}}"#;
        assert_eq!(render(Format::Standard, stored).unwrap(), stored.as_bytes());
        let slack: Value = serde_json::from_slice(&render(Format::Slack, stored).unwrap()).unwrap();
        assert!(slack["blocks"].is_array());
        let discord: Value =
            serde_json::from_slice(&render(Format::Discord, stored).unwrap()).unwrap();
        assert_eq!(discord["allowed_mentions"]["parse"], serde_json::json!([]));
        // Not JSON: an error, never a panic; standard sends it as stored.
        let error = render(Format::Slack, "{not json").unwrap_err().to_string();
        assert!(
            error.starts_with("the payload is not JSON (")
                && error.ends_with("so no slack message can be built from it"),
            "{error}"
        );
        assert!(render(Format::Standard, "{not json").is_ok());
    }

    #[test]
    fn a_payload_missing_fields_still_makes_a_message() {
        let m = message(&serde_json::json!({"type": "goal.completed"}));
        assert_eq!(m.title, "Goal completed on : ");
        let m = message(&serde_json::json!({"type": "something.new", "data": {"a": 1}}));
        assert_eq!(m.title, "Plausible event something.new");
    }
}
