//! Discord webhooks: `{"content", "embeds": [...], "allowed_mentions":
//! {"parse": []}}`, within Discord's embed limits (a title's 256
//! characters, a description's 4,096, 25 fields of 256 and 1,024, 6,000
//! in all, 2,000 for `content`). `allowed_mentions` with nothing to parse
//! means no text can ping anyone; on top of it, text from the web app or
//! from visitors has Discord's markdown escaped with backslashes, and every
//! `@` is followed by a zero-width space, so that `@everyone` shows as
//! text even where it is copied elsewhere.

use serde_json::{Value, json};

use super::{Message, cut, message, shown};

const TITLE_MAX: usize = 256;
const DESCRIPTION_MAX: usize = 4096;
const FIELD_NAME_MAX: usize = 256;
const FIELD_VALUE_MAX: usize = 1024;
const FIELDS_MAX: usize = 25;
const CONTENT_MAX: usize = 2000;
/// Discord's limit on all of an embed's text together.
const EMBED_TOTAL_MAX: usize = 6000;
/// The embed's colour: Plausible's indigo.
const COLOUR: u32 = 0x5850EC;

/// The Discord body for a standard payload.
pub fn body(payload: &Value) -> Value {
    render(&message(payload))
}

fn render(m: &Message) -> Value {
    let title = cut(&escape(&m.title), TITLE_MAX);
    let description = cut(&escape(&m.summary), DESCRIPTION_MAX);
    let mut budget =
        EMBED_TOTAL_MAX.saturating_sub(title.chars().count() + description.chars().count());
    let mut fields = Vec::new();
    let named = m
        .facts
        .iter()
        .map(|(label, value)| (label.clone(), vec![value.clone()], true))
        .chain(
            m.lists
                .iter()
                .map(|(label, items)| (label.clone(), shown(items), false)),
        );
    for (label, lines, inline) in named.take(FIELDS_MAX) {
        let name = cut(&escape(&label), FIELD_NAME_MAX);
        let lines: Vec<String> = lines.iter().map(|l| escape(l)).collect();
        let value = cut(&lines.join("\n"), FIELD_VALUE_MAX);
        let size = name.chars().count() + value.chars().count();
        if size > budget {
            break;
        }
        budget -= size;
        fields.push(json!({"name": name, "value": value, "inline": inline}));
    }
    let mut embed = json!({
        "title": title,
        "description": description,
        "color": COLOUR,
        "fields": fields,
    });
    if let Some(link) = &m.link {
        embed["url"] = Value::String(link.clone());
    }
    if let Some(at) = &m.timestamp {
        embed["timestamp"] = Value::String(at.clone());
    }
    json!({
        "content": cut(&escape(&m.fallback()), CONTENT_MAX),
        "embeds": [embed],
        "allowed_mentions": {"parse": []},
    })
}

/// Discord's markdown escaped, and mentions broken.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' | '*' | '_' | '~' | '`' | '|' | '>' | '#' | '-' | '[' | ']' | '(' | ')' | ':' => {
                out.push('\\');
                out.push(c);
            }
            '@' => out.push_str("@\u{200B}"),
            '<' => out.push_str("<\u{200B}"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::samples;
    use super::*;

    #[test]
    fn every_event_type_fits_discords_limits() {
        for payload in samples::all().iter().chain(samples::hostile().iter()) {
            let b = body(payload);
            assert_eq!(b["allowed_mentions"]["parse"], json!([]));
            assert!(b["content"].as_str().unwrap().chars().count() <= CONTENT_MAX);
            let embed = &b["embeds"][0];
            let mut total = embed["title"].as_str().unwrap().chars().count()
                + embed["description"].as_str().unwrap().chars().count();
            let fields = embed["fields"].as_array().unwrap();
            assert!(fields.len() <= FIELDS_MAX);
            for f in fields {
                let name = f["name"].as_str().unwrap().chars().count();
                let value = f["value"].as_str().unwrap().chars().count();
                assert!(name <= FIELD_NAME_MAX && value <= FIELD_VALUE_MAX);
                total += name + value;
            }
            assert!(total <= EMBED_TOTAL_MAX);
        }
    }

    #[test]
    fn nothing_from_visitors_can_mention_or_format() {
        for payload in samples::hostile() {
            let text = body(&payload).to_string();
            for mention in ["@everyone", "@here", "<@U", "<#C", "<!"] {
                assert!(!text.contains(mention), "{mention} in {text}");
            }
            assert!(!text.contains("javascript:"), "{text}");
        }
        assert_eq!(escape("*b* @everyone"), "\\*b\\* @\u{200B}everyone");
    }

    #[test]
    fn a_huge_list_stays_within_the_embed_budget() {
        let mut payload = samples::all()[0].clone();
        let pages: Vec<Value> = (0..200)
            .map(|i| json!({"page": format!("/{}", "p".repeat(900) + &i.to_string()), "visitors": 1}))
            .collect();
        payload["data"]["top_pages"] = Value::Array(pages);
        let b = body(&payload);
        let fields = b["embeds"][0]["fields"].as_array().unwrap();
        assert!(!fields.is_empty());
        assert!(fields[0]["value"].as_str().unwrap().ends_with('…'));
    }
}
