//! Discord webhooks: `{"content", "embeds": [...], "allowed_mentions":
//! {"parse": []}}`, within Discord's embed limits (a title's 256
//! characters, a description's 4,096, 25 fields of 256 and 1,024, 6,000
//! in all, 2,000 for `content`). `allowed_mentions` with nothing to parse
//! means no text can ping anyone; on top of it, text from the web app or
//! from visitors has Discord's markdown escaped with backslashes, and every
//! `@` is followed by a zero-width space, so that `@everyone` shows as
//! text even where it is copied elsewhere.
//!
//! Discord answers errors with JSON (`{"message", "code"}`), and a 429
//! with `{"retry_after": <seconds>}`; [`revoked`] and [`retry_after`] read
//! them.

use std::time::Duration;

use serde_json::{Value, json};

use super::{Message, Revoked, cut, message, shown};

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
    // Discord refuses an empty field name or value.
    let filled = |s: String| {
        if s.trim().is_empty() {
            "-".to_string()
        } else {
            s
        }
    };
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
        let name = filled(cut(&escape(&label), FIELD_NAME_MAX));
        let lines: Vec<String> = lines.iter().map(|l| escape(l)).collect();
        let value = filled(cut(&lines.join("\n"), FIELD_VALUE_MAX));
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
    // Discord refuses a timestamp that is not ISO 8601.
    if let Some(at) = &m.timestamp
        && chrono::DateTime::parse_from_rfc3339(at).is_ok()
    {
        embed["timestamp"] = Value::String(at.clone());
    }
    json!({
        "content": cut(&escape(&m.fallback()), CONTENT_MAX),
        "embeds": [embed],
        "allowed_mentions": {"parse": []},
    })
}

/// Discord's markdown escaped, and mentions broken. Emphasis, code,
/// spoiler and link characters are escaped wherever they are; `#`, `-`
/// and `>` only where they start a line (a heading, a list, a quote), so
/// that times and paths stay readable.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut line_start = true;
    for c in text.chars() {
        match c {
            '\\' | '*' | '_' | '~' | '`' | '|' | '[' | ']' => {
                out.push('\\');
                out.push(c);
            }
            '#' | '-' | '>' if line_start => {
                out.push('\\');
                out.push(c);
            }
            '@' => out.push_str("@\u{200B}"),
            '<' => out.push_str("<\u{200B}"),
            _ => out.push(c),
        }
        line_start = c == '\n' || (line_start && c == ' ');
    }
    out
}

/// Discord's JSON error codes that mean the webhook is gone for good.
const REVOKED: [(u16, u64, &str); 3] = [
    (404, 10015, "Unknown Webhook: the webhook was deleted"),
    (
        404,
        10003,
        "Unknown Channel: the webhook's channel was deleted",
    ),
    (
        401,
        50027,
        "Invalid Webhook Token: the token in the URL is wrong or was reset",
    ),
];

/// Whether Discord's answer says the webhook cannot be used again.
pub fn revoked(status: u16, body: &str) -> Option<Revoked> {
    let answer: Value = serde_json::from_str(body).ok()?;
    let code = answer["code"].as_u64()?;
    let (_, code, meaning) = REVOKED
        .iter()
        .find(|(s, c, _)| *s == status && *c == code)?;
    let error = format!("Discord answered {status} (code {code}) {meaning}");
    Some(Revoked {
        reason: format!(
            "{error}; create a new webhook in the channel's Integrations settings and update the webhook's URL, then re-enable it"
        ),
        error,
    })
}

/// The wait a 429's JSON body asks for (`retry_after`, in seconds,
/// possibly fractional).
pub fn retry_after(body: &str) -> Option<Duration> {
    let answer: Value = serde_json::from_str(body).ok()?;
    seconds(answer["retry_after"].as_f64()?)
}

/// The wait `X-RateLimit-Reset-After` gives (seconds, possibly
/// fractional).
pub fn reset_after(header: &str) -> Option<Duration> {
    seconds(header.trim().parse().ok()?)
}

fn seconds(secs: f64) -> Option<Duration> {
    Duration::try_from_secs_f64(secs).ok()
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
        assert_eq!(escape("# h\n - l\n> q"), "\\# h\n \\- l\n\\> q");
        assert_eq!(escape("09:59 a-b (c) #1 x>y"), "09:59 a-b (c) #1 x>y");
        assert_eq!(escape("[x](https://e)"), "\\[x\\](https://e)");
    }

    #[test]
    fn an_empty_goal_name_and_a_bad_timestamp_are_not_sent() {
        let hostile = samples::hostile();
        let b = body(&hostile[3]);
        for f in b["embeds"][0]["fields"].as_array().unwrap() {
            assert!(!f["value"].as_str().unwrap().is_empty(), "{f}");
        }
        assert!(body(&hostile[1])["embeds"][0]["timestamp"].is_null());
        assert_eq!(
            body(&samples::all()[0])["embeds"][0]["timestamp"],
            "2026-12-01T10:00:00Z"
        );
    }

    #[test]
    fn answers_that_mean_the_webhook_is_gone() {
        let unknown = revoked(404, r#"{"message": "Unknown Webhook", "code": 10015}"#).unwrap();
        assert_eq!(
            unknown.error,
            "Discord answered 404 (code 10015) Unknown Webhook: the webhook was deleted"
        );
        assert!(unknown.reason.contains("create a new webhook"));
        assert!(
            revoked(
                401,
                r#"{"message": "Invalid Webhook Token", "code": 50027}"#
            )
            .is_some()
        );
        assert_eq!(
            revoked(404, r#"{"message": "404: Not Found", "code": 0}"#),
            None
        );
        assert_eq!(revoked(404, "<html>not found</html>"), None);
        assert_eq!(revoked(400, r#"{"code": 10015}"#), None);
    }

    #[test]
    fn reads_the_wait_a_429_asks_for() {
        let body =
            r#"{"message": "You are being rate limited.", "retry_after": 1.5, "global": false}"#;
        assert_eq!(retry_after(body), Some(Duration::from_millis(1500)));
        assert_eq!(
            retry_after(r#"{"retry_after": 64}"#),
            Some(Duration::from_secs(64))
        );
        assert_eq!(retry_after(r#"{"retry_after": -1}"#), None);
        assert_eq!(retry_after(r#"{"retry_after": "soon"}"#), None);
        assert_eq!(retry_after("slow down"), None);
        assert_eq!(reset_after(" 0.25"), Some(Duration::from_millis(250)));
        assert_eq!(reset_after("1e400"), None);
        assert_eq!(reset_after("NaN"), None);
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
