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

/// A page path as a goal matches it, with Plausible's meaning, defined
/// here once. A path without `*` matches by equality. A path with `*` means
/// what Plausible's `page_regex` makes of it: the path regex-escaped (as
/// Elixir's `Regex.escape`), `|` restored (so `|` separates alternatives),
/// `**` and `*` both turned into `.*`, the whole wrapped in `^…$`. The
/// anchors bind only the outer ends: in `/a/*|/b/*` the first alternative
/// must start the path and the last must end it; one in the middle may
/// stand anywhere, and an empty alternative matches every path.
///
/// [`PathPattern::matches`] is that meaning; [`PathPattern::regex`] (the
/// RE2 pattern ClickHouse's `match` is given) and
/// [`PathPattern::alternatives`] (from which the triggers derive their SQL
/// glob prefilter) are derived from it and tested to agree with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathPattern {
    /// No `*`: the path itself.
    Exact(String),
    /// With `*`: Plausible's `page_regex`.
    Wildcard(String),
}

/// One alternative of a pattern: its literal parts, between which any run
/// of characters may stand, and which ends of the path it is held to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alternative<'a> {
    /// The text between the `*`s (empty parts where `*`s are adjacent or
    /// at an end).
    pub parts: Vec<&'a str>,
    /// Held to the start of the path (`^` binds it).
    pub starts: bool,
    /// Held to the end of the path (`$` binds it).
    pub ends: bool,
}

impl Alternative<'_> {
    /// Whether the path matches this alternative: as a glob of its parts,
    /// with any run of characters allowed before it unless it `starts` and
    /// after it unless it `ends`.
    pub fn matches(&self, path: &str) -> bool {
        let mut parts: Vec<&str> = Vec::with_capacity(self.parts.len() + 2);
        if !self.starts {
            parts.push("");
        }
        parts.extend(self.parts.iter().copied());
        if !self.ends {
            parts.push("");
        }
        glob_match(&parts, path)
    }
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

    /// Does the path complete the pattern? The one definition of matching.
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathPattern::Exact(p) => p == path,
            PathPattern::Wildcard(_) => self.alternatives().iter().any(|a| a.matches(path)),
        }
    }

    /// The pattern as alternatives: one for a path without `*` (held to
    /// both ends, no wildcard); for a wildcard pattern, one per `|`-separated
    /// piece, the first held to the start, the last to the end.
    pub fn alternatives(&self) -> Vec<Alternative<'_>> {
        match self {
            PathPattern::Exact(p) => vec![Alternative {
                parts: vec![p.as_str()],
                starts: true,
                ends: true,
            }],
            PathPattern::Wildcard(p) => {
                let pieces: Vec<&str> = p.split('|').collect();
                let last = pieces.len() - 1;
                pieces
                    .into_iter()
                    .enumerate()
                    .map(|(i, piece)| Alternative {
                        parts: piece.split('*').collect(),
                        starts: i == 0,
                        ends: i == last,
                    })
                    .collect()
            }
        }
    }

    /// The RE2 pattern with the same meaning, as ClickHouse's `match` reads
    /// it (`.` matches any character, a newline too): for a wildcard,
    /// exactly Plausible's `page_regex`; for a plain path, the escaped path
    /// held to both ends.
    pub fn regex(&self) -> String {
        match self {
            PathPattern::Exact(p) => format!("^{}$", regex_escape(p)),
            PathPattern::Wildcard(p) => {
                let escaped = regex_escape(p)
                    .replace("\\|", "|")
                    .replace("\\*\\*", ".*")
                    .replace("\\*", ".*");
                format!("^{escaped}$")
            }
        }
    }
}

/// Elixir's `Regex.escape`: a backslash before each of
/// `.^$*+?()[]{}|#-\`, tab, newline, vertical tab, form feed, carriage
/// return and space (the character itself follows the backslash).
fn regex_escape(s: &str) -> String {
    const ESCAPED: &str = ".^$*+?()[]{}|#-\\\t\n\u{b}\u{c}\r ";
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if ESCAPED.contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Whether `text` is `parts[0]`, then any run, then `parts[1]`, … then
/// `parts[n]`, with nothing before the first or after the last. One part:
/// equality.
fn glob_match(parts: &[&str], text: &str) -> bool {
    let Some((first, rest)) = parts.split_first() else {
        return text.is_empty();
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
    /// Property filters: each `(key, value)` must match the event's, a
    /// property the event lacks reading as `""`. Every one is checked.
    pub custom_props: Vec<(String, String)>,
    /// A revenue goal's currency (three capital letters), for event goals
    /// only, as Plausible keeps it: completions then carry the summed
    /// revenue.
    pub currency: Option<String>,
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
    use crate::registry::generate::Gen;

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

    #[test]
    fn a_bar_separates_alternatives_held_only_at_the_outer_ends() {
        let p = PathPattern::new("/a/*|/b/*");
        assert!(p.matches("/a/x"));
        assert!(p.matches("/b/x"));
        // `^/a/.*|/b/.*$`: the second alternative is not held to the start.
        assert!(p.matches("/x/b/y"));
        assert!(!p.matches("/x/a/y"), "the first is held to the start");
        let p = PathPattern::new("/a|/b|/c*");
        assert!(p.matches("/a/anything"), "`^/a` is a prefix");
        assert!(p.matches("/x/b/y"), "a middle alternative stands anywhere");
        assert!(p.matches("/z/c") && p.matches("/z/cc"));
        assert!(!p.matches("/z"));
        // An empty alternative matches every path.
        assert!(PathPattern::new("/a*|").matches("/zzz"));
        assert!(PathPattern::new("|/a*").matches("/zzz"));
        // Without `*`, Plausible compares for equality: `|` is literal.
        let p = PathPattern::new("/a|/b");
        assert!(p.matches("/a|/b") && !p.matches("/a"));
    }

    #[test]
    fn regex_metacharacters_are_literal() {
        let p = PathPattern::new("/a.b+(c)?*");
        assert!(p.matches("/a.b+(c)?"));
        assert!(p.matches("/a.b+(c)?/x"));
        assert!(!p.matches("/aXb+(c)?"));
        assert!(!p.matches("/a.bb(c)"));
        let p = PathPattern::new("/é/**/ü");
        assert!(p.matches("/é/x/y/ü") && !p.matches("/e/x/ü"));
    }

    /// Plausible's `page_regex` for tricky patterns, worked out by hand
    /// from its steps: `Regex.escape` (a backslash before each of
    /// `.^$*+?()[]{}|#-\` and whitespace), `\|` back to `|`, `\*\*` then
    /// `\*` to `.*`, then `^…$`.
    #[test]
    fn the_regex_is_plausibles_page_regex() {
        let cases: &[(&str, &str)] = &[
            ("/blog/*", r"^/blog/.*$"),
            ("/blog/**", r"^/blog/.*$"),
            ("/docs/**/install", r"^/docs/.*/install$"),
            ("/a/*|/b/*", r"^/a/.*|/b/.*$"),
            ("/a*||/b", r"^/a.*||/b$"),
            ("|*", r"^|.*$"),
            ("/a.b+c?(d)*", r"^/a\.b\+c\?\(d\).*$"),
            ("/[x]{2}^$*", r"^/\[x\]\{2\}\^\$.*$"),
            ("/#-*", r"^/\#\-.*$"),
            ("/a b*", r"^/a\ b.*$"),
            ("/tab\t*", "^/tab\\\t.*$"),
            ("/nl\n*", "^/nl\\\n.*$"),
            ("/back\\slash*", r"^/back\\slash.*$"),
            ("/back\\|*", r"^/back\\|.*$"),
            ("/back\\*", r"^/back\\.*$"),
            ("/***", r"^/.*.*$"),
            ("/é/*/ü", r"^/é/.*/ü$"),
            ("*", r"^.*$"),
            // Plain paths: escaped and held to both ends, `|` literal.
            ("/pricing", r"^/pricing$"),
            ("/a|/b", r"^/a\|/b$"),
            ("/a.b", r"^/a\.b$"),
        ];
        for (pattern, regex) in cases {
            assert_eq!(&PathPattern::new(pattern).regex(), regex, "{pattern:?}");
        }
    }

    /// Generated patterns and paths: the regex, as the `regex` crate reads
    /// it with `.` matching newlines (as ClickHouse's `match` does), agrees
    /// with the matcher.
    #[test]
    fn the_regex_agrees_with_the_matcher_on_generated_paths() {
        let mut generator = Gen(0x9e37_79b9_7f4a_7c15);
        let mut matched = 0;
        for _ in 0..3_000 {
            let pattern = PathPattern::new(&generator.pattern());
            let re = regex::Regex::new(&format!("(?s){}", pattern.regex()))
                .unwrap_or_else(|e| panic!("{pattern:?}: {e}"));
            for _ in 0..20 {
                let path = generator.path_for(pattern.as_str());
                let ours = pattern.matches(&path);
                assert_eq!(ours, re.is_match(&path), "{pattern:?} on {path:?}");
                matched += usize::from(ours);
            }
        }
        assert!(matched > 10_000, "the generator finds matches: {matched}");
    }
}
