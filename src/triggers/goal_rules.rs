//! Goal completions: matching event keys to goals as Plausible does, and
//! the per-webhook throttle with a leading edge.

use crate::analytics::trigger_reads::{GoalFilter, KeyCount, PathFilter};
use crate::registry::{Goal, GoalKind, PathPattern};

/// Does an event key complete the goal?
pub fn matches(goal: &Goal, key: &KeyCount) -> bool {
    let kind_matches = match &goal.kind {
        GoalKind::Event { name } => key.name == *name,
        GoalKind::Page { path } => key.name == "pageview" && path.matches(&key.pathname),
        GoalKind::Scroll { path, threshold } => {
            key.name == "engagement"
                && path.matches(&key.pathname)
                && key.scroll_depth >= *threshold
                && key.scroll_depth <= 100
        }
    };
    kind_matches
        && goal
            .custom_props
            .iter()
            .all(|(k, v)| prop_value(key, k) == v)
}

/// The value of a custom property, `""` when absent (as ClickHouse's
/// `prop_values[indexOf(prop_keys, k)]` gives).
fn prop_value<'a>(key: &'a KeyCount, name: &str) -> &'a str {
    key.prop_keys
        .iter()
        .position(|k| k == name)
        .and_then(|i| key.prop_values.get(i))
        .map_or("", String::as_str)
}

/// The goal as plain values for the visitors queries.
pub fn filter(goal: &Goal) -> GoalFilter {
    let (name, path, min, max) = match &goal.kind {
        GoalKind::Event { name } => (name.clone(), None, 0, 255),
        GoalKind::Page { path } => ("pageview".to_string(), Some(path), 0, 255),
        GoalKind::Scroll { path, threshold } => {
            ("engagement".to_string(), Some(path), *threshold, 100)
        }
    };
    GoalFilter {
        name,
        path: path.map_or(PathFilter::Any, path_filter),
        path_regex: path.map_or_else(String::new, path_regex),
        min_scroll_depth: min,
        max_scroll_depth: max,
        props: goal.custom_props.clone(),
    }
}

/// The batch query's form of a path pattern, derived from
/// [`PathPattern::alternatives`]: exact text, a glob of parts for a
/// single alternative, or (with `|`) only the regex.
pub fn path_filter(path: &PathPattern) -> PathFilter {
    if let PathPattern::Exact(p) = path {
        return PathFilter::Exact(p.clone());
    }
    match path.alternatives().as_slice() {
        [alternative] => {
            let parts = &alternative.parts;
            let prefix = parts.first().copied().unwrap_or("").to_string();
            let suffix = if parts.len() > 1 {
                parts.last().copied().unwrap_or("").to_string()
            } else {
                String::new()
            };
            let middles = parts
                .iter()
                .skip(1)
                .take(parts.len().saturating_sub(2))
                .filter(|m| !m.is_empty())
                .map(|m| m.to_string())
                .collect();
            PathFilter::Glob {
                prefix,
                middles,
                suffix,
            }
        }
        _ => PathFilter::RegexOnly,
    }
}

/// The pattern as ClickHouse's `match` takes it.
pub fn path_regex(path: &PathPattern) -> String {
    path.regex()
}

/// One webhook's throttle for one goal, in server seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Throttle {
    pub last_sent_at: Option<u32>,
    pub pending: u64,
    /// The first minute of the pending completions.
    pub pending_from: Option<u32>,
}

impl Throttle {
    /// Adds new completions first seen in `minute`.
    pub fn add(&mut self, completions: u64, minute: u32) {
        if completions == 0 {
            return;
        }
        self.pending += completions;
        self.pending_from = Some(self.pending_from.map_or(minute, |m| m.min(minute)));
    }

    /// If a delivery is due at `now`, takes the pending completions and
    /// the interval's first minute, and starts a new interval.
    pub fn take_due(&mut self, now: u32, interval_secs: u32) -> Option<(u64, u32)> {
        let quiet = self
            .last_sent_at
            .is_none_or(|last| now.saturating_sub(last) >= interval_secs);
        if self.pending == 0 || !quiet {
            return None;
        }
        let taken = (self.pending, self.pending_from.unwrap_or(now - now % 60));
        self.pending = 0;
        self.pending_from = None;
        self.last_sent_at = Some(now);
        Some(taken)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str, path: &str, depth: u8, props: &[(&str, &str)]) -> KeyCount {
        KeyCount {
            site_id: 1,
            minute: 0,
            name: name.into(),
            pathname: path.into(),
            scroll_depth: depth,
            prop_keys: props.iter().map(|p| p.0.to_string()).collect(),
            prop_values: props.iter().map(|p| p.1.to_string()).collect(),
            completions: 1,
        }
    }

    fn goal(kind: GoalKind, props: &[(&str, &str)]) -> Goal {
        Goal {
            id: 1,
            site_id: 1,
            display_name: "g".into(),
            kind,
            custom_props: props
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            currency: None,
        }
    }

    /// The batch query's glob condition (goal_visitors_batch.sql), written
    /// out in Rust over bytes as ClickHouse's `length`, `substring` and
    /// `position` read them.
    fn sql_glob(prefix: &str, middles: &[String], suffix: &str, path: &str) -> bool {
        let (p, s) = (path.as_bytes(), prefix.len() + suffix.len());
        if p.len() < s || !p.starts_with(prefix.as_bytes()) || !p.ends_with(suffix.as_bytes()) {
            return false;
        }
        let mut window = &p[prefix.len()..p.len() - suffix.len()];
        for m in middles.iter().take(2) {
            match window.windows(m.len()).position(|w| w == m.as_bytes()) {
                Some(at) => window = &window[at + m.len()..],
                None => return false,
            }
        }
        true
    }

    #[test]
    fn the_sql_glob_agrees_with_the_matcher_on_generated_paths() {
        let mut generator = crate::registry::generate::Gen(0x2545_f491_4f6c_dd1d);
        let mut globs = 0;
        for _ in 0..5_000 {
            let pattern = PathPattern::new(&generator.pattern());
            for _ in 0..10 {
                let path = generator.path_for(pattern.as_str());
                let derived = match path_filter(&pattern) {
                    PathFilter::Exact(p) => p == path,
                    PathFilter::Glob {
                        prefix,
                        middles,
                        suffix,
                    } if middles.len() <= 2 => {
                        globs += 1;
                        sql_glob(&prefix, &middles, &suffix, &path)
                    }
                    // Asked for with the regex, one goal a query.
                    _ => continue,
                };
                assert_eq!(derived, pattern.matches(&path), "{pattern:?} on {path:?}");
            }
        }
        assert!(globs > 5_000, "globs were tried: {globs}");
    }

    #[test]
    fn every_property_is_checked_and_an_absent_one_reads_empty() {
        let many = goal(
            GoalKind::Event { name: "E".into() },
            &[("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")],
        );
        let all = [("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")];
        assert!(matches(&many, &key("E", "/", 0, &all)));
        assert!(
            !matches(&many, &key("E", "/", 0, &all[..3])),
            "the fourth is checked too"
        );
        let unset = goal(GoalKind::Event { name: "E".into() }, &[("k", "")]);
        assert!(matches(&unset, &key("E", "/", 0, &[("x", "y")])));
        assert!(matches(&unset, &key("E", "/", 0, &[("k", "")])));
        assert!(!matches(&unset, &key("E", "/", 0, &[("k", "v")])));
        // The first value of a repeated key is the event's, as `indexOf`.
        let first = goal(GoalKind::Event { name: "E".into() }, &[("k", "2")]);
        assert!(!matches(
            &first,
            &key("E", "/", 0, &[("k", "1"), ("k", "2")])
        ));
    }

    #[test]
    fn matching() {
        let signup = goal(
            GoalKind::Event {
                name: "Signup".into(),
            },
            &[("plan", "pro")],
        );
        assert!(matches(
            &signup,
            &key("Signup", "/x", 0, &[("plan", "pro")])
        ));
        assert!(!matches(
            &signup,
            &key("Signup", "/x", 0, &[("plan", "free")])
        ));
        assert!(!matches(&signup, &key("Signup", "/x", 0, &[])));
        let empty_prop = goal(GoalKind::Event { name: "E".into() }, &[("k", "")]);
        assert!(matches(&empty_prop, &key("E", "/", 0, &[])));

        let blog = goal(
            GoalKind::Page {
                path: PathPattern::new("/blog/**"),
            },
            &[],
        );
        assert!(matches(&blog, &key("pageview", "/blog/a/b", 0, &[])));
        assert!(!matches(&blog, &key("Signup", "/blog/a", 0, &[])));
        let scroll = goal(
            GoalKind::Scroll {
                path: PathPattern::new("/blog/*"),
                threshold: 50,
            },
            &[],
        );
        assert!(matches(&scroll, &key("engagement", "/blog/x", 50, &[])));
        assert!(matches(&scroll, &key("engagement", "/blog/x", 100, &[])));
        assert!(!matches(&scroll, &key("engagement", "/blog/x", 49, &[])));
        assert!(!matches(&scroll, &key("engagement", "/blog/x", 255, &[])));
        assert!(!matches(&scroll, &key("pageview", "/blog/x", 80, &[])));
    }

    #[test]
    fn globs() {
        let glob = |p: &str| path_filter(&PathPattern::new(p));
        assert_eq!(
            glob("/blog/**"),
            PathFilter::Glob {
                prefix: "/blog/".into(),
                middles: vec![],
                suffix: "".into()
            }
        );
        assert_eq!(
            glob("/docs/*/install/*/x"),
            PathFilter::Glob {
                prefix: "/docs/".into(),
                middles: vec!["/install/".into()],
                suffix: "/x".into()
            }
        );
        assert_eq!(glob("/x"), PathFilter::Exact("/x".into()));
    }

    #[test]
    fn alternatives_are_left_to_the_regex() {
        assert_eq!(
            path_filter(&PathPattern::new("/a/*|/b/*")),
            PathFilter::RegexOnly
        );
        assert_eq!(
            path_filter(&PathPattern::new("/a|/b")),
            PathFilter::Exact("/a|/b".into())
        );
        assert_eq!(path_regex(&PathPattern::new("/a/*|/b/*")), "^/a/.*|/b/.*$");
    }

    #[test]
    fn throttle_has_a_leading_edge() {
        let mut t = Throttle::default();
        t.add(1, 60);
        assert_eq!(t.take_due(65, 60), Some((1, 60)), "the first goes at once");
        t.add(2, 60);
        t.add(3, 120);
        assert_eq!(t.take_due(100, 60), None, "within the interval: held");
        assert_eq!(t.take_due(125, 60), Some((5, 60)), "then all at once");
        assert_eq!(t.take_due(300, 60), None, "nothing pending");
        t.add(1, 300);
        assert_eq!(t.take_due(301, 60), Some((1, 300)), "quiet again: at once");
    }
}
