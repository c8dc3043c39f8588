//! What the pages and the API show of the store's rows: times in words,
//! figures rounded, URLs redacted (`crate::redact`), the chart's bars. The
//! pages escape every value (askama escapes HTML by default).

use chrono::{DateTime, Utc};

use crate::store::manage::AttemptInfo;
use crate::store::manage::DeliveryInfo as Delivery;
use crate::store::status::{HourCount, Overview, WebhookHealth, WebhookStats};

/// A webhook's URL as it may be shown (`redact::webhook_url`).
pub(super) fn shown_url(webhook: &WebhookHealth) -> String {
    crate::redact::webhook_url(&webhook.url, &webhook.format)
}

pub(super) fn time(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(
        || "—".to_string(),
        |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    )
}

pub(super) fn percent(share: Option<f64>) -> String {
    share.map_or_else(|| "—".to_string(), |s| format!("{:.1} %", s * 100.0))
}

fn millis(ms: Option<f64>) -> String {
    ms.map_or_else(|| "—".to_string(), |ms| format!("{ms:.0} ms"))
}

fn or_dash(value: Option<&str>) -> String {
    value.filter(|v| !v.is_empty()).unwrap_or("—").to_string()
}

/// The overview's figures, as shown.
pub(super) struct Figures {
    pub per_minute: String,
    pub trigger_lag: String,
    pub leader: String,
    pub goal_hour: String,
    pub goal_hour_detail: String,
    pub goal_day: String,
    pub goal_day_detail: String,
}

impl Figures {
    pub(super) fn of(overview: &Overview) -> Figures {
        let (hour, day) = overview.goal.shares();
        let g = &overview.goal;
        Figures {
            per_minute: format!("{:.1}", overview.delivered_per_minute),
            trigger_lag: overview
                .trigger_lag_secs
                .map_or_else(|| "—".to_string(), |s| format!("{:.0} s", s.max(0.0))),
            leader: or_dash(overview.leader.as_deref()),
            goal_hour: percent(hour),
            goal_hour_detail: format!("{} of {} events", g.hour_fast, g.hour_events),
            goal_day: percent(day),
            goal_day_detail: format!("{} of {} events", g.day_fast, g.day_events),
        }
    }
}

/// One site of the overview's table.
pub(super) struct SiteRows {
    pub domain: String,
    pub webhooks: Vec<WebhookRow>,
}

pub(super) struct WebhookRow {
    pub id: i64,
    pub url: String,
    pub description: String,
    pub health: &'static str,
    pub pending: i64,
    pub failed_day: i64,
    pub last_success: String,
    pub failing_since: String,
    pub problem: String,
}

impl WebhookRow {
    fn of(w: &WebhookHealth) -> WebhookRow {
        WebhookRow {
            id: w.id,
            url: shown_url(w),
            description: w.description.clone(),
            health: w.health(),
            pending: w.pending,
            failed_day: w.failed_day,
            last_success: time(w.last_success_at),
            failing_since: time(w.failing_since),
            problem: or_dash(
                w.disabled_reason
                    .as_deref()
                    .filter(|_| !w.enabled)
                    .or(w.last_error.as_deref()),
            ),
        }
    }
}

pub(super) fn sites(webhooks: &[WebhookHealth]) -> Vec<SiteRows> {
    let mut sites: Vec<SiteRows> = Vec::new();
    for w in webhooks {
        match sites.last_mut() {
            Some(site) if site.domain == w.site_domain => site.webhooks.push(WebhookRow::of(w)),
            _ => sites.push(SiteRows {
                domain: w.site_domain.clone(),
                webhooks: vec![WebhookRow::of(w)],
            }),
        }
    }
    sites
}

/// A webhook's settings and state, label and value, secrets left out.
pub(super) fn settings(w: &WebhookHealth) -> Vec<(&'static str, String)> {
    let number = |n: Option<i32>| n.map_or_else(|| "—".to_string(), |n| n.to_string());
    vec![
        ("Site", format!("{} (id {})", w.site_domain, w.site_id)),
        ("URL", shown_url(w)),
        ("Format", w.format.clone()),
        ("Signatures", w.signatures.join(", ")),
        ("Secret", "never shown".to_string()),
        ("Description", or_dash(Some(&w.description))),
        ("Enabled", if w.enabled { "yes" } else { "no" }.to_string()),
        ("Events", w.event_types.join(", ")),
        ("Spike threshold", number(w.spike_threshold)),
        ("Spike window (minutes)", number(w.spike_window_minutes)),
        ("Drop threshold", number(w.drop_threshold)),
        ("Cooldown (minutes)", number(w.cooldown_minutes)),
        (
            "Goals",
            w.goal_ids.as_ref().map_or_else(
                || "every goal".to_string(),
                |ids| {
                    ids.iter()
                        .map(i64::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            ),
        ),
        ("Goal interval (seconds)", number(w.goal_interval_seconds)),
        ("Max per minute", number(w.max_per_minute)),
        (
            "Custom headers",
            if w.header_names.is_empty() {
                "—".to_string()
            } else {
                format!("{} (values hidden)", w.header_names.join(", "))
            },
        ),
        ("Previous secret until", time(w.previous_secret_expires_at)),
    ]
}

pub(super) fn state(w: &WebhookHealth, stats: &WebhookStats) -> Vec<(&'static str, String)> {
    vec![
        ("Health", w.health().to_string()),
        ("Last error", or_dash(w.last_error.as_deref())),
        ("Disabled reason", or_dash(w.disabled_reason.as_deref())),
        ("Disabled at", time(w.disabled_at)),
        ("Failing since", time(w.failing_since)),
        ("Last success", time(w.last_success_at)),
        (
            "Attempts (24 h)",
            format!(
                "{} ({} with a 2xx)",
                stats.attempts, stats.succeeded_attempts
            ),
        ),
        ("Success rate (24 h)", percent(stats.success_rate())),
        ("Latency p50 (24 h)", millis(stats.p50_ms)),
        ("Latency p95 (24 h)", millis(stats.p95_ms)),
        ("Pending now", w.pending.to_string()),
    ]
}

/// One hour's bar of the chart: three stacked rectangles.
pub(super) struct Bar {
    pub x: i64,
    pub title: String,
    pub succeeded: (i64, i64),
    pub failed: (i64, i64),
    pub pending: (i64, i64),
}

pub(super) const CHART_HEIGHT: i64 = 100;
pub(super) const BAR_WIDTH: i64 = 20;

pub(super) fn bars(hourly: &[HourCount]) -> (Vec<Bar>, i64) {
    let max = hourly
        .iter()
        .map(HourCount::total)
        .max()
        .unwrap_or(0)
        .max(1);
    let scale = |n: i64| (n * CHART_HEIGHT + max - 1) / max;
    let bars = hourly
        .iter()
        .enumerate()
        .map(|(i, h)| {
            // Running totals scaled, then differenced: a bar never rises
            // above the chart however the segments round.
            let to_s = scale(h.succeeded);
            let to_f = scale(h.succeeded + h.failed);
            let to_p = scale(h.succeeded + h.failed + h.pending);
            let (s, f, p) = (to_s, to_f - to_s, to_p - to_f);
            let base = CHART_HEIGHT;
            Bar {
                x: i as i64 * BAR_WIDTH,
                title: format!(
                    "{} h ago: {} succeeded, {} failed, {} pending",
                    h.hours_ago, h.succeeded, h.failed, h.pending
                ),
                succeeded: (base - s, s),
                failed: (base - s - f, f),
                pending: (base - s - f - p, p),
            }
        })
        .collect();
    (bars, max)
}

/// A delivery in a list.
pub(super) struct DeliveryRow {
    pub id: String,
    pub event_type: String,
    pub status: &'static str,
    pub attempts: i32,
    pub code: String,
    pub error: String,
    pub inserted_at: String,
    pub next_attempt_at: String,
}

impl DeliveryRow {
    pub(super) fn of(d: &Delivery) -> DeliveryRow {
        DeliveryRow {
            id: d.id.clone(),
            event_type: d.event_type.clone(),
            status: d.status.as_str(),
            attempts: d.attempts,
            code: d
                .last_status_code
                .map_or_else(|| "—".to_string(), |c| c.to_string()),
            error: or_dash(d.last_error.as_deref()),
            inserted_at: time(Some(d.inserted_at)),
            next_attempt_at: if d.status == crate::store::deliveries::Status::Pending {
                time(d.next_attempt_at)
            } else {
                "—".to_string()
            },
        }
    }
}

pub(super) fn delivery_summary(d: &Delivery) -> Vec<(&'static str, String)> {
    let pending = d.status == crate::store::deliveries::Status::Pending;
    vec![
        ("Event", d.event_type.clone()),
        ("Status", d.status.as_str().to_string()),
        ("Attempts", d.attempts.to_string()),
        (
            "Next attempt",
            if pending {
                time(d.next_attempt_at)
            } else {
                "none (finished)".to_string()
            },
        ),
        ("Triggered at", time(d.triggered_at)),
        ("Inserted at", time(Some(d.inserted_at))),
        ("Delivered at", time(d.delivered_at)),
        (
            "Last status code",
            d.last_status_code
                .map_or_else(|| "—".to_string(), |c| c.to_string()),
        ),
        ("Last error", or_dash(d.last_error.as_deref())),
    ]
}

pub(super) fn pretty_payload(d: &Delivery) -> String {
    match &d.payload {
        Some(serde_json::Value::String(raw)) => raw.clone(),
        Some(value) => serde_json::to_string_pretty(value).unwrap_or_default(),
        None => String::new(),
    }
}

pub(super) struct AttemptRow {
    pub attempt: i32,
    pub started_at: String,
    pub duration: String,
    pub code: String,
    pub error: String,
    pub snippet: String,
}

impl AttemptRow {
    pub(super) fn of(a: &AttemptInfo) -> AttemptRow {
        AttemptRow {
            attempt: a.attempt,
            started_at: time(Some(a.started_at)),
            duration: format!("{} ms", a.duration_ms),
            code: a
                .status_code
                .map_or_else(|| "—".to_string(), |c| c.to_string()),
            error: match (&a.error_kind, &a.error) {
                (Some(kind), Some(error)) => format!("{kind}: {error}"),
                (Some(kind), None) => kind.clone(),
                (None, Some(error)) => error.clone(),
                (None, None) => "—".to_string(),
            },
            snippet: a.response_snippet.clone().unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bar_never_rises_above_the_chart() {
        let hour = |s, f, p| HourCount {
            hours_ago: 0,
            succeeded: s,
            failed: f,
            pending: p,
        };
        let (drawn, max) = bars(&[hour(1, 1, 1), hour(0, 1, 0), hour(7, 0, 2)]);
        assert_eq!(max, 9);
        for bar in &drawn {
            assert!(bar.pending.0 >= 0, "{:?}", bar.pending);
            assert!(bar.succeeded.1 + bar.failed.1 + bar.pending.1 <= CHART_HEIGHT);
        }
        let full = &drawn[2];
        assert_eq!(full.pending.0, 0, "the tallest bar fills the chart exactly");
        // Three segments of a third each: rounded one by one they made 102.
        let (thirds, _) = bars(&[hour(1, 1, 1)]);
        assert_eq!(thirds[0].pending.0, 0, "{:?}", thirds[0].pending);
    }
}
