//! Turning rows into validated webhooks and goals. Every refusal is a
//! sentence a person can act on: the web app shows it as `last_error`.

use std::time::Duration;

use base64::Engine;

use super::keys::LENIENT;
use super::model::{
    AsymmetricKey, DropRule, EventType, Format, Goal, GoalKind, GoalRule, PathPattern, Scheme,
    SigningSecret, SpikeRule, Webhook,
};
use crate::egress::Policy;
use crate::store::goals::GoalRow;
use crate::store::webhooks::WebhookRow;

/// What webhook URLs may look like, from the delivery config.
#[derive(Debug, Clone, Default)]
pub struct UrlRules {
    pub allow_http: bool,
    pub policy: Policy,
}

pub fn webhook(row: &WebhookRow, rules: &UrlRules) -> Result<Webhook, String> {
    let url = url(&row.url, rules)?;

    let mut secrets = vec![SigningSecret::new(secret("secret", &row.secret)?, None)];
    match (&row.previous_secret, row.previous_secret_expires_at) {
        // Kept after it expires (it simply stops signing), so that the
        // registry does not depend on when a row was read.
        (Some(previous), Some(expires_at)) => {
            let key = secret("previous_secret", previous)?;
            secrets.push(SigningSecret::new(key, Some(expires_at)));
        }
        (None, None) => {}
        _ => {
            return Err(
                "previous_secret and previous_secret_expires_at must be set together".into(),
            );
        }
    }

    let format = Format::parse(&row.format).ok_or_else(|| {
        format!(
            "format {:?} is not known; use standard, slack or discord",
            row.format
        )
    })?;
    let schemes = schemes(&row.signatures)?;
    let signing_keys = signing_keys(row)?;
    if schemes.contains(&Scheme::V1a) && signing_keys.is_empty() {
        return Err("signatures names v1a, which needs a signing_key".into());
    }
    let headers = super::headers::parse(&row.headers)?;
    let max_per_minute = match row.max_per_minute {
        None => None,
        Some(n) => Some(in_range("max_per_minute", n, 1, 6000)?),
    };

    let mut events = Vec::new();
    for event in &row.event_types {
        let Some(name) = event else {
            return Err("event_types must not contain null".into());
        };
        match EventType::parse(name) {
            Some(t) => events.push(t),
            None => {
                return Err(format!(
                    "unknown event type {name:?}; known types are traffic.spike, traffic.drop and goal.completed"
                ));
            }
        }
    }
    if events.is_empty() {
        return Err("event_types must name at least one event type".into());
    }

    let spike = if events.contains(&EventType::TrafficSpike) {
        let threshold = positive("spike_threshold", row.spike_threshold, "traffic.spike")?;
        let window_minutes = in_range("spike_window_minutes", row.spike_window_minutes, 1, 60)?;
        Some(SpikeRule {
            threshold,
            window_minutes,
        })
    } else {
        None
    };
    let drop = if events.contains(&EventType::TrafficDrop) {
        Some(DropRule {
            threshold: positive("drop_threshold", row.drop_threshold, "traffic.drop")?,
        })
    } else {
        None
    };
    let goals = if events.contains(&EventType::GoalCompleted) {
        let goal_ids = match &row.goal_ids {
            None => None,
            Some(ids) => {
                let ids: Option<Vec<i64>> = ids.iter().copied().collect();
                match ids {
                    Some(ids) if !ids.is_empty() => Some(ids),
                    Some(_) => {
                        return Err(
                            "goal_ids must be null (all goals) or name at least one goal".into(),
                        );
                    }
                    None => return Err("goal_ids must not contain null".into()),
                }
            }
        };
        let interval = in_range(
            "goal_interval_seconds",
            row.goal_interval_seconds,
            1,
            86_400,
        )?;
        Some(GoalRule {
            goal_ids,
            interval: Duration::from_secs(u64::from(interval)),
        })
    } else {
        None
    };
    let cooldown = in_range("cooldown_minutes", row.cooldown_minutes, 1, 43_200)?;

    Ok(Webhook {
        id: row.id,
        site_id: row.site_id,
        url,
        format,
        schemes,
        secrets,
        signing_keys,
        headers,
        max_per_minute,
        spike,
        drop,
        goals,
        cooldown: Duration::from_secs(u64::from(cooldown) * 60),
        inserted_at: row.inserted_at,
        updated_at: row.updated_at,
    })
}

fn url(raw: &str, rules: &UrlRules) -> Result<url::Url, String> {
    let url = url::Url::parse(raw).map_err(|e| format!("url is not a valid URL: {e}"))?;
    match url.scheme() {
        "https" => {}
        "http" if rules.allow_http => {}
        "http" => return Err("url must use https".into()),
        other => return Err(format!("url scheme {other:?} is not supported; use https")),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("url must not contain a user name or password".into());
    }
    let Some(host) = url.host_str() else {
        return Err("url has no host".into());
    };
    if rules.policy.host_allowed(host) {
        return Ok(url);
    }
    if url.port() == Some(0) {
        return Err("url port 0 is not a valid port".into());
    }
    let lower = host.trim_end_matches('.').to_ascii_lowercase();
    if lower == "localhost" || lower.ends_with(".localhost") {
        return Err(format!(
            "url host {host} is local; webhooks may only target public addresses"
        ));
    }
    rules
        .policy
        .check_host_literal(host)
        .map_err(|e| format!("url host {e}"))?;
    Ok(url)
}

/// `whsec_` followed by standard base64 of 24 to 64 bytes.
fn secret(column: &str, value: &str) -> Result<Vec<u8>, String> {
    let Some(encoded) = value.strip_prefix("whsec_") else {
        return Err(format!("{column} must start with \"whsec_\""));
    };
    let key = LENIENT
        .decode(encoded)
        .map_err(|_| format!("{column} must be \"whsec_\" followed by base64"))?;
    if !(24..=64).contains(&key.len()) {
        return Err(format!(
            "{column} must decode to 24 to 64 bytes, not {}",
            key.len()
        ));
    }
    Ok(key)
}

/// The `signatures` column: `v1`, `v1a` or both, each once.
fn schemes(names: &[Option<String>]) -> Result<Vec<Scheme>, String> {
    let mut schemes = Vec::new();
    for name in names {
        let Some(name) = name else {
            return Err("signatures must not contain null".into());
        };
        let scheme = Scheme::parse(name).ok_or_else(|| {
            format!("signatures: {name:?} is not a signature scheme; use v1, v1a or both")
        })?;
        if !schemes.contains(&scheme) {
            schemes.push(scheme);
        }
    }
    if schemes.is_empty() {
        return Err("signatures must name v1, v1a or both".into());
    }
    Ok(schemes)
}

/// The Ed25519 keys: the current one first, then one being rotated out.
fn signing_keys(row: &WebhookRow) -> Result<Vec<AsymmetricKey>, String> {
    let mut keys = Vec::new();
    if let Some(key) = &row.signing_key {
        keys.push(AsymmetricKey::new(signing_key("signing_key", key)?, None));
    }
    match (
        &row.previous_signing_key,
        row.previous_signing_key_expires_at,
    ) {
        (Some(previous), Some(expires_at)) => {
            let key = signing_key("previous_signing_key", previous)?;
            keys.push(AsymmetricKey::new(key, Some(expires_at)));
        }
        (None, None) => {}
        _ => {
            return Err(
                "previous_signing_key and previous_signing_key_expires_at must be set together"
                    .into(),
            );
        }
    }
    Ok(keys)
}

/// `whsk_` followed by standard base64 of an Ed25519 seed (32 bytes) or of
/// the key pair, seed then public key (64 bytes, as Svix writes it).
fn signing_key(column: &str, value: &str) -> Result<ed25519_dalek::SigningKey, String> {
    super::keys::parse(column, value)
}

fn positive(column: &str, value: Option<i32>, event: &str) -> Result<u32, String> {
    match value {
        None => Err(format!("{column} is required for {event}")),
        Some(v) if v >= 1 => Ok(v as u32),
        Some(v) => Err(format!("{column} must be at least 1, not {v}")),
    }
}

fn in_range(column: &str, value: i32, min: i32, max: i32) -> Result<u32, String> {
    if (min..=max).contains(&value) {
        Ok(value as u32)
    } else {
        Err(format!(
            "{column} must be between {min} and {max}, not {value}"
        ))
    }
}

/// The longest goal name, event name or page path the daemon takes, in
/// bytes. Plausible's own forms stay far below it; the cap keeps one odd row
/// from making a payload larger than the outbox accepts (256 KiB) or a
/// ClickHouse query longer than its limit, which would stop every webhook's
/// triggers, not just this goal's.
const GOAL_TEXT_MAX: usize = 1024;
/// The most custom properties a goal may filter on. Plausible's form
/// allows 3; every one a row has, up to this sanity cap, is checked, and a
/// goal with more is refused (and logged), never cut short.
const GOAL_PROPS_MAX: usize = 16;
/// The event name Plausible reserves (its engagement events), which it
/// refuses as a goal.
const RESERVED_EVENT: &str = "engagement";

fn goal_text(id: i64, column: &str, value: &str) -> Result<(), String> {
    if value.len() > GOAL_TEXT_MAX {
        return Err(format!(
            "goal {id}: {column} is {} bytes long; at most {GOAL_TEXT_MAX} are supported",
            value.len()
        ));
    }
    Ok(())
}

pub fn goal(row: &GoalRow) -> Result<Goal, String> {
    goal_text(row.id, "display_name", &row.display_name)?;
    for (column, value) in [
        ("event_name", &row.event_name),
        ("page_path", &row.page_path),
    ] {
        if let Some(value) = value {
            goal_text(row.id, column, value)?;
        }
    }
    let kind = match (&row.event_name, &row.page_path) {
        (Some(name), None) if name == RESERVED_EVENT => {
            return Err(format!(
                "goal {}: the event name '{RESERVED_EVENT}' is reserved and cannot be used as a goal",
                row.id
            ));
        }
        (Some(name), None) => GoalKind::Event { name: name.clone() },
        (None, Some(path)) if row.scroll_threshold > -1 => {
            let threshold = u8::try_from(row.scroll_threshold)
                .ok()
                .filter(|t| *t <= 100)
                .ok_or_else(|| {
                    format!(
                        "goal {}: scroll_threshold {} is not between -1 and 100",
                        row.id, row.scroll_threshold
                    )
                })?;
            GoalKind::Scroll {
                path: PathPattern::new(path),
                threshold,
            }
        }
        (None, Some(path)) => GoalKind::Page {
            path: PathPattern::new(path),
        },
        _ => {
            return Err(format!(
                "goal {}: exactly one of event_name and page_path must be set",
                row.id
            ));
        }
    };
    let custom_props = match &row.custom_props {
        serde_json::Value::Object(map) if map.len() > GOAL_PROPS_MAX => {
            return Err(format!(
                "goal {}: {} custom properties; at most {GOAL_PROPS_MAX} are supported",
                row.id,
                map.len()
            ));
        }
        serde_json::Value::Object(map) => map
            .iter()
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => {
                    goal_text(row.id, "custom property name", k)?;
                    goal_text(row.id, "custom property value", s)?;
                    Ok((k.clone(), s.clone()))
                }
                _ => Err(format!(
                    "goal {}: custom property {k:?} is not a string",
                    row.id
                )),
            })
            .collect::<Result<Vec<_>, _>>()?,
        serde_json::Value::Null => Vec::new(),
        _ => return Err(format!("goal {}: custom_props is not an object", row.id)),
    };
    let currency = currency(row, &kind)?;
    Ok(Goal {
        id: row.id,
        site_id: row.site_id,
        display_name: row.display_name.clone(),
        kind,
        custom_props,
        currency,
    })
}

/// A revenue goal's currency: three capital letters (ISO 4217), kept for
/// event goals only (Plausible drops it from page goals).
fn currency(row: &GoalRow, kind: &GoalKind) -> Result<Option<String>, String> {
    let Some(code) = row.currency.as_deref() else {
        return Ok(None);
    };
    if !matches!(kind, GoalKind::Event { .. }) {
        return Ok(None);
    }
    if code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(Some(code.to_string()))
    } else {
        Err(format!(
            "goal {}: currency {code:?} is not a three-letter currency code",
            row.id
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    use crate::config::{Config, DeliveryConfig};

    fn row() -> WebhookRow {
        WebhookRow {
            id: 1,
            site_id: 2,
            site_domain: "example.com".into(),
            site_timezone: "Etc/UTC".into(),
            url: "https://hooks.example.com/x".into(),
            secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
            previous_secret: None,
            previous_secret_expires_at: None,
            event_types: vec![Some("traffic.spike".into())],
            spike_threshold: Some(10),
            spike_window_minutes: 5,
            drop_threshold: None,
            cooldown_minutes: 720,
            goal_ids: None,
            goal_interval_seconds: 60,
            format: "standard".into(),
            signatures: vec![Some("v1".into())],
            signing_key: None,
            previous_signing_key: None,
            previous_signing_key_expires_at: None,
            headers: serde_json::json!({}),
            max_per_minute: None,
            last_error: None,
            inserted_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    fn rules(delivery: impl FnOnce(&mut DeliveryConfig)) -> UrlRules {
        let mut config = Config::defaults().delivery;
        delivery(&mut config);
        UrlRules {
            allow_http: config.allow_http,
            policy: Policy::from_config(&config),
        }
    }

    fn error(change: impl FnOnce(&mut WebhookRow)) -> String {
        let mut r = row();
        change(&mut r);
        webhook(&r, &rules(|_| {})).unwrap_err()
    }

    #[test]
    fn a_valid_row_becomes_a_webhook() {
        let w = webhook(&row(), &rules(|_| {})).unwrap();
        assert_eq!(
            w.spike,
            Some(SpikeRule {
                threshold: 10,
                window_minutes: 5
            })
        );
        assert_eq!(w.cooldown, Duration::from_secs(720 * 60));
        assert_eq!(w.secrets.len(), 1);
        assert!(!format!("{w:?}").contains("MfKQ9r8"));
    }

    #[test]
    fn each_kind_of_bad_row_gets_a_readable_reason() {
        assert_eq!(
            error(|r| r.url = "http://hooks.example.com".into()),
            "url must use https"
        );
        assert_eq!(
            error(|r| r.url = "ftp://x.example".into()),
            "url scheme \"ftp\" is not supported; use https"
        );
        assert!(error(|r| r.url = "not a url".into()).starts_with("url is not a valid URL"));
        assert_eq!(
            error(|r| r.url = "https://10.1.2.3/hook".into()),
            "url host 10.1.2.3 is a private address; webhooks may only target public addresses"
        );
        assert_eq!(
            error(|r| r.url = "https://[::ffff:127.0.0.1]/".into()),
            "url host ::ffff:127.0.0.1 is a loopback address; webhooks may only target public addresses"
        );
        assert!(error(|r| r.url = "https://localhost:8080/".into()).contains("is local"));
        assert!(error(|r| r.url = "https://localhost./".into()).contains("is local"));
        assert!(error(|r| r.url = "https://a.localhost./".into()).contains("is local"));
        assert_eq!(
            error(|r| r.url = "https://example.com:0/".into()),
            "url port 0 is not a valid port"
        );
        assert_eq!(
            error(|r| r.url = "https://u:p@example.com/".into()),
            "url must not contain a user name or password"
        );
        assert_eq!(
            error(|r| r.secret = "abc".into()),
            "secret must start with \"whsec_\""
        );
        assert_eq!(
            error(|r| r.secret = "whsec_!!".into()),
            "secret must be \"whsec_\" followed by base64"
        );
        assert_eq!(
            error(|r| r.secret = "whsec_c2hvcnQ=".into()),
            "secret must decode to 24 to 64 bytes, not 5"
        );
        assert_eq!(
            error(|r| r.event_types = vec![Some("page.viewed".into())]),
            "unknown event type \"page.viewed\"; known types are traffic.spike, traffic.drop and goal.completed"
        );
        assert_eq!(
            error(|r| r.event_types = vec![]),
            "event_types must name at least one event type"
        );
        assert_eq!(
            error(|r| r.spike_threshold = None),
            "spike_threshold is required for traffic.spike"
        );
        assert_eq!(
            error(|r| r.spike_threshold = Some(0)),
            "spike_threshold must be at least 1, not 0"
        );
        assert_eq!(
            error(|r| r.spike_window_minutes = 90),
            "spike_window_minutes must be between 1 and 60, not 90"
        );
        assert_eq!(
            error(|r| {
                r.event_types = vec![Some("traffic.drop".into())];
            }),
            "drop_threshold is required for traffic.drop"
        );
        assert_eq!(
            error(|r| {
                r.event_types = vec![Some("goal.completed".into())];
                r.goal_ids = Some(vec![Some(1), None]);
            }),
            "goal_ids must not contain null"
        );
        assert_eq!(
            error(|r| r.previous_secret = Some("whsec_x".into())),
            "previous_secret and previous_secret_expires_at must be set together"
        );
    }

    /// The Ed25519 key pair Svix writes for seed 7 7 7 ...: seed, then
    /// public key.
    fn pair(seed: u8) -> String {
        let key = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
        let mut bytes = key.to_bytes().to_vec();
        bytes.extend_from_slice(key.verifying_key().as_bytes());
        format!(
            "whsk_{}",
            base64::engine::general_purpose::STANDARD.encode(bytes)
        )
    }

    #[test]
    fn receiver_options_are_read_and_checked() {
        let mut r = row();
        r.format = "slack".into();
        r.signatures = vec![Some("v1".into()), Some("v1a".into())];
        r.signing_key = Some(pair(7));
        r.headers = serde_json::json!({"X-Api-Key": "k"});
        r.max_per_minute = Some(60);
        let w = webhook(&r, &rules(|_| {})).unwrap();
        assert_eq!(w.format, Format::Slack);
        assert_eq!(w.schemes, vec![Scheme::V1, Scheme::V1a]);
        assert_eq!(w.signing_keys.len(), 1);
        assert_eq!(w.headers.len(), 1);
        assert_eq!(w.max_per_minute, Some(60));
        assert!(!format!("{w:?}").contains(&pair(7)[5..20]));
        // The 32-byte seed alone is a key too.
        let seed = format!(
            "whsk_{}",
            base64::engine::general_purpose::STANDARD.encode([7u8; 32])
        );
        r.signing_key = Some(seed);
        assert_eq!(
            webhook(&r, &rules(|_| {})).unwrap().signing_keys,
            w.signing_keys
        );

        assert_eq!(
            error(|r| r.format = "teams".into()),
            "format \"teams\" is not known; use standard, slack or discord"
        );
        assert_eq!(
            error(|r| r.signatures = vec![Some("v1a".into())]),
            "signatures names v1a, which needs a signing_key"
        );
        assert_eq!(
            error(|r| r.signatures = vec![Some("v2".into())]),
            "signatures: \"v2\" is not a signature scheme; use v1, v1a or both"
        );
        assert_eq!(
            error(|r| r.signatures = vec![]),
            "signatures must name v1, v1a or both"
        );
        assert_eq!(
            error(|r| r.signing_key = Some("whsk_c2hvcnQ=".into())),
            "signing_key must decode to 32 or 64 bytes, not 5"
        );
        let mut mismatched = pair(7);
        mismatched.replace_range(60..64, "AAAA");
        assert!(error(|r| r.signing_key = Some(mismatched)).contains("not the public key"));
        assert_eq!(
            error(|r| r.previous_signing_key = Some(pair(8))),
            "previous_signing_key and previous_signing_key_expires_at must be set together"
        );
        assert_eq!(
            error(|r| r.headers = serde_json::json!({"Webhook-Id": "x"})),
            "headers: Webhook-Id is set by the daemon and cannot be overridden"
        );
        assert_eq!(
            error(|r| r.max_per_minute = Some(0)),
            "max_per_minute must be between 1 and 6000, not 0"
        );
    }

    #[test]
    fn http_and_allowed_hosts_by_config() {
        let mut r = row();
        r.url = "http://127.0.0.1:9000/hook".into();
        let open = rules(|d| {
            d.allow_http = true;
            d.allowed_cidrs = vec!["127.0.0.0/8".into()];
        });
        assert!(webhook(&r, &open).is_ok());
        r.url = "https://localhost/hook".into();
        let hosts = rules(|d| d.allowed_hosts = vec!["localhost".into()]);
        assert!(webhook(&r, &hosts).is_ok());
    }

    #[test]
    fn an_expired_previous_secret_no_longer_signs() {
        let mut r = row();
        r.previous_secret = Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into());
        r.previous_secret_expires_at = Some(Utc::now() + chrono::Duration::hours(1));
        let w = webhook(&r, &rules(|_| {})).unwrap();
        assert_eq!(w.secrets.len(), 2);
        assert_eq!(w.active_secrets(Utc::now()).count(), 2);
        let later = Utc::now() + chrono::Duration::hours(2);
        assert_eq!(w.active_secrets(later).count(), 1);
    }

    #[test]
    fn engagement_goals_are_refused_and_revenue_goals_keep_their_currency() {
        let mut g = GoalRow {
            id: 7,
            site_id: 2,
            event_name: Some("engagement".into()),
            page_path: None,
            display_name: "Engaged".into(),
            scroll_threshold: -1,
            custom_props: serde_json::json!({}),
            currency: None,
        };
        assert_eq!(
            goal(&g).unwrap_err(),
            "goal 7: the event name 'engagement' is reserved and cannot be used as a goal"
        );
        g.event_name = Some("Purchase".into());
        g.currency = Some("EUR".into());
        assert_eq!(goal(&g).unwrap().currency.as_deref(), Some("EUR"));
        g.currency = Some("euro".into());
        assert!(goal(&g).unwrap_err().contains("currency"));
        g.event_name = None;
        g.page_path = Some("/checkout".into());
        assert_eq!(goal(&g).unwrap().currency, None, "page goals have none");
        g.custom_props = serde_json::json!({"a": "1", "b": "2", "c": "3", "d": ""});
        assert_eq!(goal(&g).unwrap().custom_props.len(), 4, "none is dropped");
    }

    #[test]
    fn goal_kinds() {
        let mut g = GoalRow {
            id: 1,
            site_id: 2,
            event_name: Some("Signup".into()),
            page_path: None,
            display_name: "Signup".into(),
            scroll_threshold: -1,
            custom_props: serde_json::json!({"plan": "pro"}),
            currency: None,
        };
        let event = goal(&g).unwrap();
        assert_eq!(
            event.kind,
            GoalKind::Event {
                name: "Signup".into()
            }
        );
        assert_eq!(event.custom_props, vec![("plan".into(), "pro".into())]);
        g.event_name = None;
        g.page_path = Some("/blog/**".into());
        assert_eq!(goal(&g).unwrap().kind.as_str(), "page");
        g.scroll_threshold = 75;
        assert_eq!(
            goal(&g).unwrap().kind,
            GoalKind::Scroll {
                path: PathPattern::Wildcard("/blog/**".into()),
                threshold: 75
            }
        );
        g.scroll_threshold = 101;
        assert!(goal(&g).is_err());
        g.scroll_threshold = -1;
        g.display_name = "é".repeat(600);
        assert_eq!(
            goal(&g).unwrap_err(),
            "goal 1: display_name is 1200 bytes long; at most 1024 are supported"
        );
        g.display_name = "Signup 🎉".into();
        g.custom_props =
            serde_json::Value::Object((0..17).map(|i| (format!("k{i}"), "v".into())).collect());
        assert_eq!(
            goal(&g).unwrap_err(),
            "goal 1: 17 custom properties; at most 16 are supported"
        );
        g.custom_props = serde_json::json!({"plan": "x".repeat(2000)});
        assert!(goal(&g).unwrap_err().contains("custom property value"));
        g.custom_props = serde_json::json!({});
        g.event_name = Some("x".into());
        assert!(goal(&g).is_err());
    }

    #[test]
    fn no_refusal_of_a_chat_url_quotes_its_secret_path() {
        let secret = "T0001/B0001/XXXXSECRETXXXX";
        for url in [
            format!("http://hooks.slack.com/services/{secret}"),
            format!("ftp://hooks.slack.com/services/{secret}"),
            format!("https://user:pw@hooks.slack.com/services/{secret}"),
            format!("https://hooks.slack.com:0/services/{secret}"),
            format!("https://10.1.2.3/services/{secret}"),
            format!("https://[::1]/services/{secret}"),
            format!("https://localhost/services/{secret}"),
            format!("https://hooks.slack.com:99999/services/{secret}"),
            format!("https://hooks slack.com/services/{secret}"),
            format!("services/{secret}"),
        ] {
            let e = error(|r| {
                r.format = "slack".into();
                r.url = url.clone();
            });
            assert!(!e.contains("SECRET") && !e.contains("T0001"), "{url}: {e}");
        }
        let mut r = row();
        r.format = "slack".into();
        r.url = format!("https://hooks.slack.com/services/{secret}");
        let w = webhook(&r, &rules(|_| {})).unwrap();
        let shown = format!("{w:?}");
        assert!(
            !shown.contains("SECRET") && shown.contains("hooks.slack.com"),
            "{shown}"
        );
    }
}
