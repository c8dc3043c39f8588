//! What the CLI shows of a webhook, in tables, `show` and JSON alike: its
//! URL through `crate::redact` (a chat hook's URL is a credential), the
//! public keys of its signing keys (never the keys), and the names of its
//! own headers with their values hidden.

use std::collections::BTreeMap;

use crate::redact;
use crate::registry::keys;
use crate::store::manage::{StoredKey, WebhookInfo};

use super::render::{opt, time};

#[derive(Debug, serde::Serialize)]
pub struct WebhookView<'a> {
    #[serde(flatten)]
    pub info: &'a WebhookInfo,
    /// As `redact::url` shows it.
    pub url: String,
    /// `whpk_…` of the current signing key, for the receiver.
    pub public_key: Option<String>,
    /// `whpk_…` of the signing key being rotated out.
    pub previous_public_key: Option<String>,
    /// Every header name, its value as `redact::HIDDEN`.
    pub headers: BTreeMap<&'a str, &'static str>,
}

impl<'a> WebhookView<'a> {
    pub fn of(info: &'a WebhookInfo) -> WebhookView<'a> {
        WebhookView {
            info,
            url: redact::webhook_url(&info.url, &info.format),
            public_key: public_key(info.signing_key.as_ref()),
            previous_public_key: public_key(info.previous_signing_key.as_ref()),
            headers: info
                .header_names
                .iter()
                .map(|name| (name.as_str(), redact::HIDDEN))
                .collect(),
        }
    }

    /// The header names, comma-separated, for a table cell.
    pub fn header_names(&self) -> String {
        if self.headers.is_empty() {
            return "-".into();
        }
        self.headers.keys().copied().collect::<Vec<_>>().join(",")
    }

    /// `show`: one setting a line.
    pub fn text(&self) -> String {
        let w = self.info;
        let mut lines: Vec<(&str, String)> = vec![
            ("id", w.id.to_string()),
            ("site", format!("{} ({})", w.site_domain, w.site_id)),
            ("url", self.url.clone()),
            ("format", w.format.clone()),
            ("description", w.description.clone()),
            ("enabled", if w.enabled { "yes" } else { "no" }.into()),
            ("events", w.event_types.join(",")),
            ("spike threshold", opt(w.spike_threshold)),
            ("spike window", format!("{}m", w.spike_window_minutes)),
            ("drop threshold", opt(w.drop_threshold)),
            ("cooldown", format!("{}m", w.cooldown_minutes)),
            (
                "goals",
                w.goal_ids.as_ref().map_or_else(
                    || "all".into(),
                    |ids| ids.iter().map(i64::to_string).collect::<Vec<_>>().join(","),
                ),
            ),
            ("goal interval", format!("{}s", w.goal_interval_seconds)),
            ("signatures", w.signatures.join(",")),
            ("public key", opt(self.public_key.as_deref())),
        ];
        if let Some(previous) = &self.previous_public_key {
            lines.push((
                "previous public key",
                format!(
                    "{previous} (signs until {})",
                    time(w.previous_signing_key_expires_at)
                ),
            ));
        }
        if w.previous_secret_expires_at.is_some() {
            lines.push((
                "previous secret signs until",
                time(w.previous_secret_expires_at),
            ));
        }
        lines.extend([
            (
                "headers",
                if self.headers.is_empty() {
                    "-".into()
                } else {
                    self.headers
                        .keys()
                        .map(|name| format!("{name}: {}", redact::HIDDEN))
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            ),
            (
                "max per minute",
                w.max_per_minute
                    .map_or_else(|| "none".into(), |n| n.to_string()),
            ),
            ("last error", opt(w.last_error.as_deref())),
            ("disabled because", opt(w.disabled_reason.as_deref())),
            ("failing since", time(w.failing_since)),
            ("last success", time(w.last_success_at)),
            ("created", time(Some(w.inserted_at))),
            ("updated", time(Some(w.updated_at))),
        ]);
        let width = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        lines
            .iter()
            .map(|(k, v)| {
                let v: String = v
                    .chars()
                    .map(|c| if c.is_control() { ' ' } else { c })
                    .collect();
                format!("{k:<width$}  {v}\n")
            })
            .collect()
    }
}

/// A stored key's public key; `None` for none, or one the registry refuses
/// (its `last_error` says why).
fn public_key(stored: Option<&StoredKey>) -> Option<String> {
    let key = keys::parse("signing_key", stored?.expose()).ok()?;
    Some(keys::public(&key))
}
