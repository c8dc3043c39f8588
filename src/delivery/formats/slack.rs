//! Slack incoming webhooks: `{"text": <fallback>, "blocks": [...]}` with
//! Block Kit, within Slack's documented limits (a header's 150 characters,
//! a section's 3,000, ten fields of 2,000, 50 blocks). Every piece of text
//! from the web app or from visitors is a `plain_text` object (no markup is
//! rendered in it) and is escaped too: `&`, `<` and `>` become entities,
//! so `<!channel>` or `<@U123>` cannot mention anyone, and a bare
//! `@channel`, `@here` or `@everyone` is broken by a word joiner.

use serde_json::{Value, json};

use super::{Message, cut, message, shown};

const HEADER_MAX: usize = 150;
const SECTION_MAX: usize = 3000;
const FIELD_MAX: usize = 2000;
const FIELDS_MAX: usize = 10;
const FALLBACK_MAX: usize = 3000;

/// The Slack body for a standard payload.
pub fn body(payload: &Value) -> Value {
    render(&message(payload))
}

fn render(m: &Message) -> Value {
    let mut blocks = vec![
        json!({"type": "header", "text": plain(&cut(&m.title, HEADER_MAX))}),
        json!({"type": "section", "text": plain(&cut(&m.summary, SECTION_MAX))}),
    ];
    if !m.facts.is_empty() {
        let fields: Vec<Value> = m
            .facts
            .iter()
            .take(FIELDS_MAX)
            .map(|(label, value)| plain(&cut(&format!("{label}\n{value}"), FIELD_MAX)))
            .collect();
        blocks.push(json!({"type": "section", "fields": fields}));
    }
    for (label, items) in &m.lists {
        let list = format!("{label}\n{}", shown(items).join("\n"));
        blocks.push(json!({"type": "section", "text": plain(&cut(&list, SECTION_MAX))}));
    }
    if let Some(link) = &m.link {
        blocks.push(json!({"type": "actions", "elements": [{
            "type": "button",
            "text": {"type": "plain_text", "text": "Open the dashboard"},
            "url": link,
        }]}));
    }
    if let Some(at) = &m.timestamp {
        blocks.push(json!({"type": "context", "elements": [plain(&cut(at, 100))]}));
    }
    json!({
        "text": escape(&cut(&m.fallback(), FALLBACK_MAX)),
        "blocks": blocks,
    })
}

fn plain(text: &str) -> Value {
    json!({"type": "plain_text", "text": escape(text), "emoji": false})
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
            assert!(b["text"].as_str().unwrap().chars().count() <= FALLBACK_MAX + 50);
            for block in blocks {
                if block["type"] == "header" {
                    assert!(
                        block["text"]["text"].as_str().unwrap().chars().count() <= HEADER_MAX * 5
                    );
                }
                if let Some(fields) = block["fields"].as_array() {
                    assert!(fields.len() <= FIELDS_MAX);
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
