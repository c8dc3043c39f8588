//! What the daemon knows about a site: its active webhooks and its goals,
//! validated and ready for the triggers and delivery.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};

/// The event types a webhook can subscribe to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventType {
    TrafficSpike,
    TrafficDrop,
    GoalCompleted,
}

impl EventType {
    pub const ALL: [EventType; 3] = [
        EventType::TrafficSpike,
        EventType::TrafficDrop,
        EventType::GoalCompleted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::TrafficSpike => "traffic.spike",
            EventType::TrafficDrop => "traffic.drop",
            EventType::GoalCompleted => "goal.completed",
        }
    }

    pub fn parse(s: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A signing secret: the key bytes, and when it stops signing (for the
/// previous secret during a rotation).
#[derive(Clone, PartialEq, Eq)]
pub struct SigningSecret {
    key: Vec<u8>,
    pub expires_at: Option<DateTime<Utc>>,
}

impl SigningSecret {
    pub fn new(key: Vec<u8>, expires_at: Option<DateTime<Utc>>) -> Self {
        SigningSecret { key, expires_at }
    }

    pub fn key(&self) -> &[u8] {
        &self.key
    }

    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_none_or(|at| now < at)
    }
}

impl fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningSecret")
            .field("key", &"[redacted]")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// The shape of a webhook's requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// The Standard Webhooks envelope (`{"type", "timestamp", "data"}`).
    Standard,
    /// A Slack incoming webhook's `{"text", "blocks"}`.
    Slack,
    /// A Discord webhook's `{"content", "embeds", "allowed_mentions"}`.
    Discord,
}

impl Format {
    pub const ALL: [Format; 3] = [Format::Standard, Format::Slack, Format::Discord];

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Standard => "standard",
            Format::Slack => "slack",
            Format::Discord => "discord",
        }
    }

    pub fn parse(s: &str) -> Option<Format> {
        Format::ALL.into_iter().find(|f| f.as_str() == s)
    }

    /// Whether the URL itself is the credential (a chat service's hook).
    pub fn url_is_secret(self) -> bool {
        self != Format::Standard
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A Standard Webhooks signature scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// HMAC-SHA256 with the shared secret (`whsec_`).
    V1,
    /// Ed25519 with the signing key (`whsk_`); receivers verify with the
    /// public key (`whpk_`).
    V1a,
}

impl Scheme {
    pub const ALL: [Scheme; 2] = [Scheme::V1, Scheme::V1a];

    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::V1 => "v1",
            Scheme::V1a => "v1a",
        }
    }

    pub fn parse(s: &str) -> Option<Scheme> {
        Scheme::ALL.into_iter().find(|f| f.as_str() == s)
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An Ed25519 signing key (`v1a`), and when it stops signing (for the
/// previous key during a rotation).
#[derive(Clone, PartialEq, Eq)]
pub struct AsymmetricKey {
    key: ed25519_dalek::SigningKey,
    pub expires_at: Option<DateTime<Utc>>,
}

impl AsymmetricKey {
    pub fn new(key: ed25519_dalek::SigningKey, expires_at: Option<DateTime<Utc>>) -> Self {
        AsymmetricKey { key, expires_at }
    }

    pub fn key(&self) -> &ed25519_dalek::SigningKey {
        &self.key
    }

    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_none_or(|at| now < at)
    }
}

impl fmt::Debug for AsymmetricKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsymmetricKey")
            .field("key", &"[redacted]")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpikeRule {
    /// Distinct visitors in the window at or above which the spike fires.
    pub threshold: u32,
    pub window_minutes: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DropRule {
    /// Distinct visitors in the trailing 12 hours below which the drop fires.
    pub threshold: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoalRule {
    /// `None` for every goal of the site.
    pub goal_ids: Option<Vec<i64>>,
    /// At most one delivery per goal per interval.
    pub interval: Duration,
}

/// An active webhook: valid, enabled, and within its site's cap. Its
/// `Debug` shows the URL as `crate::redact` does (a chat hook's URL is its
/// credential).
#[derive(Clone, PartialEq)]
pub struct Webhook {
    pub id: i64,
    pub site_id: i64,
    pub url: url::Url,
    pub format: Format,
    /// The signatures each request carries; never empty.
    pub schemes: Vec<Scheme>,
    /// The current secret first; a rotated-out one after it.
    pub secrets: Vec<SigningSecret>,
    /// For `v1a`: the current signing key first; a rotated-out one after it.
    pub signing_keys: Vec<AsymmetricKey>,
    /// Fixed headers of the webhook's own, validated; values are marked
    /// sensitive (they often hold an API key).
    pub headers: Vec<(hyper::header::HeaderName, hyper::header::HeaderValue)>,
    /// At most this many requests a minute; `None` is no limit.
    pub max_per_minute: Option<u32>,
    pub spike: Option<SpikeRule>,
    pub drop: Option<DropRule>,
    pub goals: Option<GoalRule>,
    /// Quiet period after a spike or a drop fired.
    pub cooldown: Duration,
    pub inserted_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhook")
            .field("id", &self.id)
            .field("site_id", &self.site_id)
            .field(
                "url",
                &crate::redact::url(self.url.as_str(), self.format.url_is_secret()),
            )
            .field("format", &self.format)
            .field("schemes", &self.schemes)
            .field("secrets", &self.secrets)
            .field("signing_keys", &self.signing_keys)
            .field("headers", &self.headers)
            .field("max_per_minute", &self.max_per_minute)
            .field("spike", &self.spike)
            .field("drop", &self.drop)
            .field("goals", &self.goals)
            .field("cooldown", &self.cooldown)
            .field("inserted_at", &self.inserted_at)
            .field("updated_at", &self.updated_at)
            .finish()
    }
}

impl Webhook {
    pub fn subscribes_to(&self, event: EventType) -> bool {
        match event {
            EventType::TrafficSpike => self.spike.is_some(),
            EventType::TrafficDrop => self.drop.is_some(),
            EventType::GoalCompleted => self.goals.is_some(),
        }
    }

    /// The secrets that sign at `now`.
    pub fn active_secrets(&self, now: DateTime<Utc>) -> impl Iterator<Item = &SigningSecret> {
        self.secrets.iter().filter(move |s| s.is_active(now))
    }
}

/// A page path as a goal matches it: plain equality, or a pattern in which
/// `*` and `**` both match any run of characters, anchored at both ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathPattern {
    Exact(String),
    Wildcard(String),
}

impl PathPattern {
    pub fn new(path: &str) -> PathPattern {
        if path.contains('*') {
            PathPattern::Wildcard(path.to_string())
        } else {
            PathPattern::Exact(path.to_string())
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            PathPattern::Exact(p) | PathPattern::Wildcard(p) => p,
        }
    }

    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathPattern::Exact(p) => p == path,
            PathPattern::Wildcard(p) => wildcard_match(p, path),
        }
    }
}

/// `*` (and `**`, the same here) matches any run of characters.
fn wildcard_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, rest) = match parts.split_first() {
        Some(x) => x,
        None => return text.is_empty(),
    };
    let Some(mut remaining) = text.strip_prefix(first) else {
        return false;
    };
    let Some((last, middle)) = rest.split_last() else {
        return remaining.is_empty();
    };
    for part in middle {
        match remaining.find(part) {
            Some(at) => remaining = &remaining[at + part.len()..],
            None => return false,
        }
    }
    remaining.len() >= last.len() && remaining.ends_with(last)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GoalKind {
    /// A custom event: `name = event_name`.
    Event { name: String },
    /// A pageview whose path matches.
    Page { path: PathPattern },
    /// An engagement event on a matching path scrolled to at least
    /// `threshold` percent.
    Scroll { path: PathPattern, threshold: u8 },
}

impl GoalKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            GoalKind::Event { .. } => "event",
            GoalKind::Page { .. } => "page",
            GoalKind::Scroll { .. } => "scroll",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Goal {
    pub id: i64,
    pub site_id: i64,
    pub display_name: String,
    pub kind: GoalKind,
    /// Property filters: each `(key, value)` must match the event's.
    pub custom_props: Vec<(String, String)>,
}

/// A site with at least one active webhook.
#[derive(Debug, Clone, PartialEq)]
pub struct Site {
    pub id: i64,
    pub domain: String,
    pub timezone: String,
    /// Oldest first, at most 10.
    pub webhooks: Vec<std::sync::Arc<Webhook>>,
    pub goals: Vec<std::sync::Arc<Goal>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_as_plausible_does() {
        let p = PathPattern::new("/blog/*");
        assert!(p.matches("/blog/"));
        assert!(p.matches("/blog/post"));
        assert!(p.matches("/blog/a/b"));
        assert!(!p.matches("/blog"));
        let p = PathPattern::new("/docs/**/install");
        assert!(p.matches("/docs/v1/install"));
        assert!(p.matches("/docs/a/b/install"));
        assert!(!p.matches("/docs/install/x"));
        let p = PathPattern::new("*a*a*");
        assert!(p.matches("aa"));
        assert!(!p.matches("a"));
        let p = PathPattern::new("/x");
        assert!(p.matches("/x") && !p.matches("/x/"));
        assert!(PathPattern::new("*").matches(""));
    }
}
