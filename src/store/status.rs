//! The status page's and admin API's reads: bounded, indexed queries over
//! the outbox (no full scan of `webhook_deliveries`; the page's queries are
//! checked with EXPLAIN in the tests). Replays and test deliveries are
//! `store::manage`'s, shared with the CLI.
//!
//! Rows come from the web app and receivers: every value is read with
//! `try_get`, and a time the daemon cannot represent shows as absent. The
//! URL is returned as stored, for the caller to redact (`crate::redact`);
//! secrets, signing keys and header values are never read.

use chrono::{DateTime, Utc};
use tokio_postgres::{GenericClient, Row};

use super::StoreError;
use super::deliveries::Status;
use super::manage::DeliveryInfo;

/// The daemon's outbox at a glance.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Overview {
    pub pending: i64,
    /// Deliveries inserted in the last 24 hours that failed for good.
    pub failed_day: i64,
    /// Successful deliveries a minute, over the last ten minutes.
    pub delivered_per_minute: f64,
    /// Enabled webhooks whose every attempt has failed since `failing_since`.
    pub failing_webhooks: i64,
    /// The replica holding the trigger lease, if one does.
    pub leader: Option<String>,
    /// Postgres's clock minus the trigger engine's cursor, in seconds.
    pub trigger_lag_secs: Option<f64>,
    pub now: DateTime<Utc>,
    pub goal: GoalShare,
}

/// The share of events delivered within 30 s of their triggering insert.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct GoalShare {
    pub hour_events: i64,
    pub hour_fast: i64,
    pub day_events: i64,
    pub day_fast: i64,
}

impl GoalShare {
    /// The hour's and the day's share, when they had events.
    pub fn shares(&self) -> (Option<f64>, Option<f64>) {
        let share = |fast: i64, all: i64| (all > 0).then(|| fast as f64 / all as f64);
        (
            share(self.hour_fast, self.hour_events),
            share(self.day_fast, self.day_events),
        )
    }
}

/// A webhook's settings (secrets left out) and health.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WebhookHealth {
    pub id: i64,
    pub site_id: i64,
    pub site_domain: String,
    /// As stored: redact before showing it.
    #[serde(skip)]
    pub url: String,
    pub format: String,
    pub signatures: Vec<String>,
    pub description: String,
    pub enabled: bool,
    pub event_types: Vec<String>,
    pub spike_threshold: Option<i32>,
    pub spike_window_minutes: Option<i32>,
    pub drop_threshold: Option<i32>,
    pub cooldown_minutes: Option<i32>,
    pub goal_ids: Option<Vec<i64>>,
    pub goal_interval_seconds: Option<i32>,
    pub max_per_minute: Option<i32>,
    /// The names of its custom headers (their values are secrets).
    pub header_names: Vec<String>,
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub disabled_reason: Option<String>,
    pub disabled_at: Option<DateTime<Utc>>,
    pub failing_since: Option<DateTime<Utc>>,
    pub last_success_at: Option<DateTime<Utc>>,
    pub inserted_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    pub pending: i64,
    /// Deliveries inserted in the last 24 hours that failed for good.
    pub failed_day: i64,
}

impl WebhookHealth {
    fn from_row(row: &Row) -> Result<WebhookHealth, StoreError> {
        let strings = |name: &str| -> Vec<String> {
            row.try_get::<_, Vec<Option<String>>>(name)
                .map(|v| v.into_iter().flatten().collect())
                .unwrap_or_default()
        };
        let goal_ids: Option<Vec<Option<i64>>> = row.try_get("goal_ids").unwrap_or_default();
        Ok(WebhookHealth {
            id: row.try_get("id")?,
            site_id: row.try_get("site_id")?,
            site_domain: row.try_get("domain")?,
            url: row.try_get("url")?,
            format: row.try_get("format")?,
            signatures: strings("signatures"),
            description: row.try_get("description")?,
            enabled: row.try_get("enabled")?,
            event_types: strings("event_types"),
            spike_threshold: row.try_get("spike_threshold").ok().flatten(),
            spike_window_minutes: row.try_get("spike_window_minutes").ok(),
            drop_threshold: row.try_get("drop_threshold").ok().flatten(),
            cooldown_minutes: row.try_get("cooldown_minutes").ok(),
            goal_ids: goal_ids.map(|ids| ids.into_iter().flatten().collect()),
            goal_interval_seconds: row.try_get("goal_interval_seconds").ok(),
            max_per_minute: row.try_get("max_per_minute").ok().flatten(),
            header_names: strings("header_names"),
            previous_secret_expires_at: time(row, "previous_secret_expires_at"),
            last_error: row.try_get("last_error").ok().flatten(),
            disabled_reason: row.try_get("disabled_reason").ok().flatten(),
            disabled_at: time(row, "disabled_at"),
            failing_since: time(row, "failing_since"),
            last_success_at: time(row, "last_success_at"),
            inserted_at: time(row, "inserted_at"),
            updated_at: time(row, "updated_at"),
            pending: row.try_get("pending")?,
            failed_day: row.try_get("failed_day")?,
        })
    }

    /// Healthy, failing, disabled or not in use: the page's one word.
    pub fn health(&self) -> &'static str {
        if !self.enabled {
            "disabled"
        } else if self.last_error.is_some() {
            "invalid"
        } else if self.failing_since.is_some() {
            "failing"
        } else {
            "healthy"
        }
    }
}

/// A webhook's last 24 hours.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct WebhookStats {
    pub attempts: i64,
    pub succeeded_attempts: i64,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    /// 24 entries, the oldest hour first: (succeeded, failed, pending).
    pub hourly: Vec<HourCount>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct HourCount {
    pub hours_ago: i32,
    pub succeeded: i64,
    pub failed: i64,
    pub pending: i64,
}

impl HourCount {
    pub fn total(&self) -> i64 {
        self.succeeded + self.failed + self.pending
    }
}

impl WebhookStats {
    /// The share of attempts that got a 2xx, when there were any.
    pub fn success_rate(&self) -> Option<f64> {
        (self.attempts > 0).then(|| self.succeeded_attempts as f64 / self.attempts as f64)
    }
}

/// A position in a webhook's delivery log: the last row shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub inserted_at: DateTime<Utc>,
    pub id: String,
}

impl Cursor {
    /// Where the next page starts after `delivery`.
    pub fn after(delivery: &DeliveryInfo) -> Cursor {
        Cursor {
            inserted_at: delivery.inserted_at,
            id: delivery.id.clone(),
        }
    }

    /// `<microseconds since the epoch>.<id>`: opaque to clients, and safe
    /// in a URL (ids are `msg_` and `[A-Za-z0-9_-]`).
    pub fn encode(&self) -> String {
        format!("{}.{}", self.inserted_at.timestamp_micros(), self.id)
    }

    pub fn decode(text: &str) -> Option<Cursor> {
        let (micros, id) = text.split_once('.')?;
        let inserted_at = DateTime::from_timestamp_micros(micros.parse().ok()?)?;
        let id_ok = !id.is_empty()
            && id.len() <= 68
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        id_ok.then(|| Cursor {
            inserted_at,
            id: id.to_string(),
        })
    }
}

/// What a delivery list is narrowed to.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub status: Option<Status>,
    pub event_type: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub after: Option<Cursor>,
}

pub async fn overview(client: &impl GenericClient) -> Result<Overview, StoreError> {
    let row = client
        .query_one(include_str!("sql/status/overview.sql"), &[])
        .await?;
    let goal = client
        .query_one(include_str!("sql/status/goal_share.sql"), &[])
        .await?;
    let delivered_10m: i64 = row.try_get("delivered_10m")?;
    Ok(Overview {
        pending: row.try_get("pending")?,
        failed_day: row.try_get("failed_day")?,
        delivered_per_minute: delivered_10m as f64 / 10.0,
        failing_webhooks: row.try_get("failing_webhooks")?,
        leader: row.try_get("leader")?,
        trigger_lag_secs: row.try_get("trigger_lag_secs").ok().flatten(),
        now: row.try_get("now")?,
        goal: GoalShare {
            hour_events: goal.try_get("hour_events")?,
            hour_fast: goal.try_get("hour_fast")?,
            day_events: goal.try_get("day_events")?,
            day_fast: goal.try_get("day_fast")?,
        },
    })
}

/// Every webhook (at most 1,000), by site.
pub async fn webhooks(client: &impl GenericClient) -> Result<Vec<WebhookHealth>, StoreError> {
    client
        .query(include_str!("sql/status/webhooks.sql"), &[&None::<i64>])
        .await?
        .iter()
        .map(WebhookHealth::from_row)
        .collect()
}

pub async fn webhook(
    client: &impl GenericClient,
    id: i64,
) -> Result<Option<WebhookHealth>, StoreError> {
    client
        .query_opt(include_str!("sql/status/webhooks.sql"), &[&Some(id)])
        .await?
        .as_ref()
        .map(WebhookHealth::from_row)
        .transpose()
}

pub async fn webhook_stats(
    client: &impl GenericClient,
    id: i64,
) -> Result<WebhookStats, StoreError> {
    let row = client
        .query_one(include_str!("sql/status/webhook_stats.sql"), &[&id])
        .await?;
    let mut hourly: Vec<HourCount> = (0..24)
        .rev()
        .map(|hours_ago| HourCount {
            hours_ago,
            succeeded: 0,
            failed: 0,
            pending: 0,
        })
        .collect();
    for r in client
        .query(include_str!("sql/status/webhook_hourly.sql"), &[&id])
        .await?
    {
        let hours_ago: i32 = r.try_get("hours_ago")?;
        if let Some(slot) = usize::try_from(23 - hours_ago)
            .ok()
            .and_then(|i| hourly.get_mut(i))
        {
            slot.succeeded = r.try_get("succeeded")?;
            slot.failed = r.try_get("failed")?;
            slot.pending = r.try_get("pending")?;
        }
    }
    Ok(WebhookStats {
        attempts: row.try_get("attempts")?,
        succeeded_attempts: row.try_get("succeeded")?,
        p50_ms: row.try_get("p50_ms")?,
        p95_ms: row.try_get("p95_ms")?,
        hourly,
    })
}

/// A page of a webhook's deliveries, newest first.
pub async fn deliveries(
    client: &impl GenericClient,
    webhook_id: i64,
    filter: &DeliveryFilter,
    limit: i64,
) -> Result<Vec<DeliveryInfo>, StoreError> {
    let status = filter.status.map(Status::as_str);
    let after_at = filter.after.as_ref().map(|c| c.inserted_at);
    let after_id = filter.after.as_ref().map(|c| c.id.as_str());
    client
        .query(
            include_str!("sql/status/deliveries.sql"),
            &[
                &webhook_id,
                &status,
                &filter.event_type,
                &filter.since,
                &filter.until,
                &after_at,
                &after_id,
                &limit,
            ],
        )
        .await?
        .iter()
        .map(|r| DeliveryInfo::from_row(r, false))
        .collect()
}

/// A time column, absent when NULL or not representable.
fn time(row: &Row, name: &str) -> Option<DateTime<Utc>> {
    row.try_get::<_, Option<DateTime<Utc>>>(name).ok().flatten()
}

/// The plans of the pages' queries (`EXPLAIN`, text), by name, for the
/// tests and the bench to check that none scans the whole outbox.
pub async fn explain(
    client: &impl GenericClient,
    webhook_id: i64,
    delivery_id: &str,
) -> Result<Vec<(&'static str, String)>, StoreError> {
    let none_time = None::<DateTime<Utc>>;
    let none_text = None::<String>;
    let limit = 50i64;
    let statements: Vec<(
        &'static str,
        &str,
        Vec<&(dyn tokio_postgres::types::ToSql + Sync)>,
    )> = vec![
        ("overview", include_str!("sql/status/overview.sql"), vec![]),
        (
            "goal_share",
            include_str!("sql/status/goal_share.sql"),
            vec![],
        ),
        (
            "webhooks",
            include_str!("sql/status/webhooks.sql"),
            vec![&None::<i64>],
        ),
        (
            "webhook_stats",
            include_str!("sql/status/webhook_stats.sql"),
            vec![&webhook_id],
        ),
        (
            "webhook_hourly",
            include_str!("sql/status/webhook_hourly.sql"),
            vec![&webhook_id],
        ),
        (
            "deliveries",
            include_str!("sql/status/deliveries.sql"),
            vec![
                &webhook_id,
                &none_text,
                &none_text,
                &none_time,
                &none_time,
                &none_time,
                &none_text,
                &limit,
            ],
        ),
        (
            "delivery",
            include_str!("sql/manage/delivery_get.sql"),
            vec![&delivery_id],
        ),
    ];
    let mut plans = Vec::new();
    for (name, sql, params) in statements {
        let rows = client.query(&format!("EXPLAIN {sql}"), &params).await?;
        let plan: Vec<String> = rows.iter().filter_map(|r| r.try_get(0).ok()).collect();
        plans.push((name, plan.join("\n")));
    }
    Ok(plans)
}
