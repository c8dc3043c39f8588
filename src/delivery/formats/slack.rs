//! Slack incoming webhooks: `{"text": <fallback>, "blocks": [...]}` with
//! Block Kit, within Slack's documented limits (a header's 150 characters,
//! a section's 3,000, ten fields of 2,000, 50 blocks). Every piece of text
//! from the web app or from visitors is a `plain_text` object (no markup is
//! rendered in it) and is escaped too: `&`, `<` and `>` become entities,
//! so `<!channel>` or `<@U123>` cannot mention anyone, and a bare
//! `@channel`, `@here` or `@everyone` is broken by a word joiner. Limits
//! are counted on the text as sent, entities included.
//!
//! Slack answers in plain text: `ok`, or an error code such as
//! `no_service` with a 4xx status; [`revoked`] reads the ones that mean
//! the hook is gone for good.

use serde_json::{Value, json};

use super::{Message, Revoked, cut_escaped, message, shown};

const HEADER_MAX: usize = 150;
const SECTION_MAX: usize = 3000;
const FIELD_MAX: usize = 2000;
const FIELDS_MAX: usize = 10;
const FALLBACK_MAX: usize = 3000;
const CONTEXT_MAX: usize = 100;

/// The Slack body for a standard payload.
pub fn body(payload: &Value) -> Value {
    render(&message(payload))
}

fn render(m: &Message) -> Value {
    let mut blocks = vec![
        json!({"type": "header", "text": plain(&m.title, HEADER_MAX)}),
        json!({"type": "section", "text": plain(&m.summary, SECTION_MAX)}),
    ];
    if !m.facts.is_empty() {
        let fields: Vec<Value> = m
            .facts
            .iter()
            .take(FIELDS_MAX)
            .map(|(label, value)| plain(&format!("{label}\n{value}"), FIELD_MAX))
            .collect();
        blocks.push(json!({"type": "section", "fields": fields}));
    }
    for (label, items) in &m.lists {
        let list = format!("{label}\n{}", shown(items).join("\n"));
        blocks.push(json!({"type": "section", "text": plain(&list, SECTION_MAX)}));
    }
    if let Some(link) = &m.link {
        blocks.push(json!({"type": "actions", "elements": [{
            "type": "button",
            "text": {"type": "plain_text", "text": "Open the dashboard"},
            "url": link,
        }]}));
    }
    if let Some(at) = m.timestamp.as_deref().filter(|at| !at.is_empty()) {
        blocks.push(json!({"type": "context", "elements": [plain(at, CONTEXT_MAX)]}));
    }
    json!({
        "text": cut_escaped(&m.fallback(), FALLBACK_MAX, escape),
        "blocks": blocks,
    })
}

/// A `plain_text` object of escaped text within `max` characters; never
/// empty (Slack refuses an empty text).
fn plain(text: &str, max: usize) -> Value {
    let text = if text.trim().is_empty() { "-" } else { text };
    json!({"type": "plain_text", "text": cut_escaped(text, max, escape), "emoji": false})
}

/// Slack's escaping, and broken broadcast mentions.
pub fn escape(text: &str) -> String {
    let escaped = text
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    ["@channel", "@here", "@everyone"]
        .iter()
        .fold(escaped, |s, mention| {
            s.replace(mention, &format!("@\u{2060}{}", &mention[1..]))
        })
}

/// Slack's answers that mean the hook is gone for good: the status and
/// the plain-text code, and what it means.
const REVOKED: [(u16, &str, &str); 6] = [
    (
        404,
        "no_service",
        "the incoming webhook was removed, or its app uninstalled",
    ),
    (404, "channel_not_found", "the channel was deleted"),
    (404, "team_disabled", "the Slack workspace was disabled"),
    (410, "channel_is_archived", "the channel is archived"),
    (
        403,
        "invalid_token",
        "the webhook's token is invalid or was revoked",
    ),
    (
        403,
        "action_prohibited",
        "a workspace admin has restricted posting to the channel",
    ),
];

/// Whether Slack's answer says the incoming webhook cannot be used again.
pub fn revoked(status: u16, body: &str) -> Option<Revoked> {
    let code = body.trim();
    let (_, code, meaning) = REVOKED
        .iter()
        .find(|(s, c, _)| *s == status && *c == code)?;
    let error = format!("Slack answered {status} {code}: {meaning}");
    Some(Revoked {
        reason: format!(
            "{error}; create a new incoming webhook in Slack and update the webhook's URL, then re-enable it"
        ),
        error,
    })
}

#[cfg(test)]
mod tests {
    use super::super::samples;
    use super::*;

    fn all_text(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) => out.push(s.clone()),
            Value::Array(a) => a.iter().for_each(|x| all_text(x, out)),
            Value::Object(o) => o.values().for_each(|x| all_text(x, out)),
            _ => {}
        }
    }

    #[test]
    fn every_event_type_fits_slacks_limits() {
        for payload in samples::all().iter().chain(samples::hostile().iter()) {
            let b = body(payload);
            let blocks = b["blocks"].as_array().unwrap();
            assert!(blocks.len() <= 50);
            assert!(b["text"].as_str().unwrap().chars().count() <= FALLBACK_MAX);
            let length = |v: &Value| v["text"].as_str().unwrap().chars().count();
            for block in blocks {
                match block["type"].as_str().unwrap() {
                    "header" => assert!((1..=HEADER_MAX).contains(&length(&block["text"]))),
                    "section" if block["fields"].is_array() => {
                        let fields = block["fields"].as_array().unwrap();
                        assert!(fields.len() <= FIELDS_MAX);
                        assert!(fields.iter().all(|f| (1..=FIELD_MAX).contains(&length(f))));
                    }
                    "section" => assert!((1..=SECTION_MAX).contains(&length(&block["text"]))),
                    _ => {}
                }
            }
        }
    }

    #[test]
    fn nothing_from_visitors_can_mention_or_format() {
        for payload in samples::hostile() {
            let mut texts = Vec::new();
            all_text(&body(&payload), &mut texts);
            for t in texts {
                assert!(!t.contains("<!"), "{t}");
                assert!(!t.contains("<@"), "{t}");
                assert!(!t.contains("<#"), "{t}");
                for mention in ["@channel", "@here", "@everyone"] {
                    assert!(!t.contains(mention), "{t}");
                }
            }
            // Markup characters stay, but only in plain_text objects.
            let b = body(&payload);
            for block in b["blocks"].as_array().unwrap() {
                let kind = &block["text"]["type"];
                assert!(kind.is_null() || *kind == "plain_text", "{block}");
            }
        }
    }

    #[test]
    fn a_cut_never_splits_an_entity() {
        let mut payload = samples::all()[2].clone();
        payload["data"]["goal"]["name"] = Value::String("&".repeat(400));
        let b = body(&payload);
        let header = b["blocks"][0]["text"]["text"].as_str().unwrap();
        assert!(header.chars().count() <= HEADER_MAX);
        assert!(header.ends_with("&amp;…"), "{header}");
    }

    #[test]
    fn answers_that_mean_the_hook_is_gone() {
        let no_service = revoked(404, "no_service").unwrap();
        assert_eq!(
            no_service.error,
            "Slack answered 404 no_service: the incoming webhook was removed, or its app uninstalled"
        );
        assert!(no_service.reason.contains("create a new incoming webhook"));
        assert!(revoked(410, "channel_is_archived\n").is_some());
        assert!(revoked(404, "channel_not_found").is_some());
        assert!(revoked(404, "team_disabled").is_some());
        assert!(revoked(403, "invalid_token").is_some());
        assert!(revoked(403, "action_prohibited").is_some());
        assert_eq!(revoked(400, "invalid_payload"), None);
        assert_eq!(revoked(404, "not found"), None);
        assert_eq!(revoked(410, "no_service"), None);
        assert_eq!(revoked(500, "rollup_error"), None);
    }

    #[test]
    fn escapes_slacks_three_characters() {
        assert_eq!(escape("a & <b> @here"), "a &amp; &lt;b&gt; @\u{2060}here");
    }

    #[test]
    fn a_long_goal_name_is_cut_to_the_header_limit() {
        let mut payload = samples::all()[2].clone();
        payload["data"]["goal"]["name"] = Value::String("x".repeat(500));
        let b = body(&payload);
        assert_eq!(
            b["blocks"][0]["text"]["text"]
                .as_str()
                .unwrap()
                .chars()
                .count(),
            HEADER_MAX
        );
    }
}
