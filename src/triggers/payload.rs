//! The JSON bodies of the events the triggers emit. Aggregates only: no
//! payload carries a user id, a session id, an IP or any other per-visitor
//! value. `contracts/*.json` holds a JSON Schema for each type, and the
//! contract tests validate real payloads against them.

use chrono::{DateTime, Utc};
use serde::Serialize;

/// The Standard Webhooks envelope: `type`, `timestamp`, `data`.
#[derive(Debug, Serialize)]
pub struct Envelope<T> {
    #[serde(rename = "type")]
    pub event_type: &'static str,
    pub timestamp: String,
    pub data: T,
}

impl<T: Serialize> Envelope<T> {
    pub fn new(event_type: &'static str, at: DateTime<Utc>, data: T) -> Self {
        Envelope {
            event_type,
            timestamp: rfc3339(at),
            data,
        }
    }

    pub fn to_json(&self) -> String {
        // Serialising plain structs of strings and numbers cannot fail.
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

pub fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[derive(Debug, Clone, Serialize)]
pub struct SiteRef {
    pub id: i64,
    pub domain: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct PageCount {
    pub page: String,
    pub visitors: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SourceCount {
    pub source: String,
    pub visitors: u64,
}

/// `traffic.spike`
#[derive(Debug, Clone, Serialize)]
pub struct Spike {
    pub site: SiteRef,
    /// Distinct visitors in the window.
    pub visitors: u64,
    pub threshold: u32,
    pub window_minutes: u32,
    pub top_pages: Vec<PageCount>,
    pub top_sources: Vec<SourceCount>,
    pub dashboard_url: String,
}

/// `traffic.drop`
#[derive(Debug, Clone, Serialize)]
pub struct Drop {
    pub site: SiteRef,
    /// Distinct visitors in the last 12 hours.
    pub visitors: u64,
    pub threshold: u32,
    pub window_hours: u32,
    pub dashboard_url: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct GoalRef {
    pub id: i64,
    pub name: String,
    /// `event`, `page` or `scroll`.
    pub kind: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct Interval {
    pub from: String,
    pub to: String,
}

/// `goal.completed`
#[derive(Debug, Clone, Serialize)]
pub struct GoalCompleted {
    pub site: SiteRef,
    pub goal: GoalRef,
    /// Completions counted into this delivery (each exactly once).
    pub completions: u64,
    /// Distinct visitors who completed the goal in the interval's minutes,
    /// at most `completions`.
    pub visitors: u64,
    /// For a revenue goal (one with a currency): the revenue of the
    /// interval's completions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revenue: Option<Revenue>,
    pub interval: Interval,
    pub dashboard_url: String,
}

/// Revenue in a currency. The amount is a decimal string with three
/// places (`"123.450"`), as Plausible keeps it, so that it stays exact.
#[derive(Debug, Clone, Serialize)]
pub struct Revenue {
    pub amount: String,
    pub currency: String,
}

/// Text as visitors sent it (a page path, a source), cut to at most
/// `VISITOR_TEXT_MAX` characters: a payload stays far below the outbox's
/// 256 KiB, whatever ClickHouse holds, so that it is never refused.
pub fn visitor_text(text: &str) -> String {
    if text.chars().count() <= VISITOR_TEXT_MAX {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(VISITOR_TEXT_MAX - 1).collect();
    cut.push('…');
    cut
}

/// See [`visitor_text`].
pub const VISITOR_TEXT_MAX: usize = 1024;

/// `{base}/{domain}` with the domain as one path segment, and a query.
pub fn dashboard_url(base: &str, domain: &str, query: &str) -> String {
    match url::Url::parse(base) {
        Ok(mut url) => {
            if let Ok(mut segments) = url.path_segments_mut() {
                segments.pop_if_empty().push(domain);
            }
            url.set_query(Some(query));
            url.to_string()
        }
        Err(_) => format!("{}/{domain}?{query}", base.trim_end_matches('/')),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visitor_text_is_cut() {
        assert_eq!(visitor_text("/a"), "/a");
        let long = "x".repeat(5000);
        assert_eq!(visitor_text(&long).chars().count(), VISITOR_TEXT_MAX);
    }

    #[test]
    fn dashboard_links() {
        assert_eq!(
            dashboard_url("https://plausible.io", "example.com", "period=realtime"),
            "https://plausible.io/example.com?period=realtime"
        );
        assert_eq!(
            dashboard_url("https://stats.example.org/", "a b.com", "period=day"),
            "https://stats.example.org/a%20b.com?period=day"
        );
    }
}
