//! Managing webhooks as an operator does (the `webhooks` CLI): the same rows
//! and the same contract (docs/schema.md) as the web app, so the two can be
//! used side by side. Secrets and header values are written here but never
//! read back; signing keys are read back only for the CLI to show their
//! public keys ([`StoredKey`] never shows itself).

use chrono::{DateTime, Utc};
use tokio_postgres::{GenericClient, Row};

use super::StoreError;
use super::deliveries::Status;

/// A site, as `--site DOMAIN|ID` names it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SiteRef {
    pub id: i64,
    pub domain: String,
}

/// A `whsk_` signing key as stored: its text reaches no output (`Debug`
/// redacts it, and it has no `Serialize`).
#[derive(Clone, PartialEq, Eq)]
pub struct StoredKey(String);

impl StoredKey {
    /// The key, to derive its public key from.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoredKey([redacted])")
    }
}

/// A webhook's settings and state, without its secrets. The URL, which may
/// itself be a credential (a chat service's hook), and the signing keys are
/// not serialized: the CLI shows them through `crate::redact` and as public
/// keys.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WebhookInfo {
    pub id: i64,
    pub site_id: i64,
    pub site_domain: String,
    #[serde(skip)]
    pub url: String,
    /// `standard`, `slack` or `discord`.
    pub format: String,
    /// `v1`, `v1a` or both.
    pub signatures: Vec<String>,
    #[serde(skip)]
    pub signing_key: Option<StoredKey>,
    #[serde(skip)]
    pub previous_signing_key: Option<StoredKey>,
    /// While a rotated-out signing key still signs.
    pub previous_signing_key_expires_at: Option<DateTime<Utc>>,
    /// The names of the webhook's own headers; their values are never read.
    #[serde(skip)]
    pub header_names: Vec<String>,
    pub max_per_minute: Option<i32>,
    pub description: String,
    pub enabled: bool,
    pub event_types: Vec<String>,
    pub spike_threshold: Option<i32>,
    pub spike_window_minutes: i32,
    pub drop_threshold: Option<i32>,
    pub cooldown_minutes: i32,
    pub goal_ids: Option<Vec<i64>>,
    pub goal_interval_seconds: i32,
    /// While a rotated-out secret still signs.
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub disabled_reason: Option<String>,
    pub disabled_at: Option<DateTime<Utc>>,
    pub failing_since: Option<DateTime<Utc>>,
    pub last_success_at: Option<DateTime<Utc>>,
    pub inserted_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl WebhookInfo {
    fn from_row(row: &Row) -> Result<WebhookInfo, StoreError> {
        let event_types: Vec<Option<String>> = row.try_get("event_types")?;
        let goal_ids: Option<Vec<Option<i64>>> = row.try_get("goal_ids")?;
        Ok(WebhookInfo {
            id: row.try_get("id")?,
            site_id: row.try_get("site_id")?,
            site_domain: row.try_get("domain")?,
            url: row.try_get("url")?,
            format: row.try_get("format")?,
            signatures: {
                let names: Vec<Option<String>> = row.try_get("signatures")?;
                names.into_iter().flatten().collect()
            },
            signing_key: row
                .try_get::<_, Option<String>>("signing_key")?
                .map(StoredKey),
            previous_signing_key: row
                .try_get::<_, Option<String>>("previous_signing_key")?
                .map(StoredKey),
            previous_signing_key_expires_at: row
                .try_get("previous_signing_key_expires_at")
                .ok()
                .flatten(),
            header_names: row
                .try_get::<_, Option<Vec<String>>>("header_names")?
                .unwrap_or_default(),
            max_per_minute: row.try_get("max_per_minute")?,
            description: row.try_get("description")?,
            enabled: row.try_get("enabled")?,
            event_types: event_types.into_iter().flatten().collect(),
            spike_threshold: row.try_get("spike_threshold")?,
            spike_window_minutes: row.try_get("spike_window_minutes")?,
            drop_threshold: row.try_get("drop_threshold")?,
            cooldown_minutes: row.try_get("cooldown_minutes")?,
            goal_ids: goal_ids.map(|ids| ids.into_iter().flatten().collect()),
            goal_interval_seconds: row.try_get("goal_interval_seconds")?,
            previous_secret_expires_at: row.try_get("previous_secret_expires_at")?,
            last_error: row.try_get("last_error")?,
            disabled_reason: row.try_get("disabled_reason")?,
            disabled_at: row.try_get("disabled_at")?,
            failing_since: row.try_get("failing_since")?,
            last_success_at: row.try_get("last_success_at")?,
            inserted_at: row.try_get("inserted_at")?,
            updated_at: row.try_get("updated_at")?,
        })
    }
}

/// The settings an operator chooses; everything else is the daemon's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub url: String,
    pub format: String,
    pub signatures: Vec<String>,
    /// A new `whsk_` key; `None` keeps the one there is (none, for a new
    /// webhook).
    pub signing_key: Option<String>,
    pub headers: HeaderChange,
    pub max_per_minute: Option<i32>,
    pub description: String,
    pub event_types: Vec<String>,
    pub spike_threshold: Option<i32>,
    pub spike_window_minutes: i32,
    pub drop_threshold: Option<i32>,
    pub cooldown_minutes: i32,
    pub goal_ids: Option<Vec<i64>>,
    pub goal_interval_seconds: i32,
}

impl Settings {
    /// The settings of an existing webhook, to change some of them.
    pub fn of(webhook: &WebhookInfo) -> Settings {
        Settings {
            url: webhook.url.clone(),
            format: webhook.format.clone(),
            signatures: webhook.signatures.clone(),
            signing_key: None,
            headers: HeaderChange::default(),
            max_per_minute: webhook.max_per_minute,
            description: webhook.description.clone(),
            event_types: webhook.event_types.clone(),
            spike_threshold: webhook.spike_threshold,
            spike_window_minutes: webhook.spike_window_minutes,
            drop_threshold: webhook.drop_threshold,
            cooldown_minutes: webhook.cooldown_minutes,
            goal_ids: webhook.goal_ids.clone(),
            goal_interval_seconds: webhook.goal_interval_seconds,
        }
    }
}

/// What becomes of a webhook's own headers: all dropped first (`clear`),
/// then those of `set` put in place, each replacing any of the same name in
/// any case. The database merges them, so that values already stored are
/// never read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HeaderChange {
    pub clear: bool,
    /// A JSON object of names and values.
    pub set: serde_json::Map<String, serde_json::Value>,
}

/// A delivery as the delivery log shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeliveryInfo {
    pub id: String,
    pub webhook_id: i64,
    pub event_type: String,
    pub status: Status,
    pub attempts: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub last_status_code: Option<i32>,
    pub last_error: Option<String>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub inserted_at: DateTime<Utc>,
    /// The insert into Plausible's events that triggered it (V13); absent
    /// for test deliveries.
    pub triggered_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<serde_json::Value>,
}

impl DeliveryInfo {
    /// A row of `webhook_deliveries` as the delivery log reads it (the
    /// operator's commands here, the status page in `store::status`).
    pub(super) fn from_row(row: &Row, with_payload: bool) -> Result<DeliveryInfo, StoreError> {
        let payload = if with_payload {
            let text: String = row.try_get("payload")?;
            Some(serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)))
        } else {
            None
        };
        Ok(DeliveryInfo {
            id: row.try_get("id")?,
            webhook_id: row.try_get("webhook_id")?,
            event_type: row.try_get("event_type")?,
            status: {
                let text: String = row.try_get("status")?;
                // The schema allows no other value (webhook_deliveries_status_known).
                Status::parse(&text).unwrap_or(Status::Failed)
            },
            attempts: row.try_get("attempts")?,
            // A timestamp the daemon cannot represent (infinity) shows as
            // absent rather than failing the whole listing.
            next_attempt_at: row.try_get("next_attempt_at").ok(),
            last_attempt_at: row.try_get("last_attempt_at").ok().flatten(),
            last_status_code: row.try_get("last_status_code")?,
            last_error: row.try_get("last_error")?,
            delivered_at: row.try_get("delivered_at").ok().flatten(),
            inserted_at: row.try_get("inserted_at")?,
            triggered_at: row.try_get("triggered_at").ok().flatten(),
            payload,
        })
    }
}

/// One HTTP attempt of a delivery.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AttemptInfo {
    pub attempt: i32,
    pub started_at: DateTime<Utc>,
    pub duration_ms: i32,
    pub status_code: Option<i32>,
    pub error_kind: Option<String>,
    pub error: Option<String>,
    pub response_snippet: Option<String>,
}

impl AttemptInfo {
    fn from_row(row: &Row) -> Result<AttemptInfo, StoreError> {
        Ok(AttemptInfo {
            attempt: row.try_get("attempt")?,
            started_at: row.try_get("started_at")?,
            duration_ms: row.try_get("duration_ms")?,
            status_code: row.try_get("status_code")?,
            error_kind: row.try_get("error_kind")?,
            error: row.try_get("error")?,
            response_snippet: row.try_get("response_snippet")?,
        })
    }
}

/// A site by id (when `name` is a number) or by domain.
pub async fn find_site(
    client: &impl GenericClient,
    name: &str,
) -> Result<Option<SiteRef>, StoreError> {
    let id: Option<i64> = name.parse().ok();
    let row = client
        .query_opt(include_str!("sql/manage/site_find.sql"), &[&id, &name])
        .await?;
    row.map(|r| {
        Ok(SiteRef {
            id: r.try_get(0)?,
            domain: r.try_get(1)?,
        })
    })
    .transpose()
}

/// A site's goal by id (when `name` is a number) or by display name.
pub async fn find_goal(
    client: &impl GenericClient,
    site_id: i64,
    name: &str,
) -> Result<Option<i64>, StoreError> {
    let id: Option<i64> = name.parse().ok();
    let row = client
        .query_opt(
            include_str!("sql/manage/goal_find.sql"),
            &[&site_id, &id, &name],
        )
        .await?;
    Ok(row.map(|r| r.try_get(0)).transpose()?)
}

pub async fn list_webhooks(
    client: &impl GenericClient,
    site_id: Option<i64>,
) -> Result<Vec<WebhookInfo>, StoreError> {
    client
        .query(
            include_str!("sql/manage/webhooks_list.sql"),
            &[&site_id, &None::<i64>],
        )
        .await?
        .iter()
        .map(WebhookInfo::from_row)
        .collect()
}

pub async fn get_webhook(
    client: &impl GenericClient,
    id: i64,
) -> Result<Option<WebhookInfo>, StoreError> {
    client
        .query_opt(
            include_str!("sql/manage/webhooks_list.sql"),
            &[&None::<i64>, &Some(id)],
        )
        .await?
        .as_ref()
        .map(WebhookInfo::from_row)
        .transpose()
}

/// Creates a webhook with `secret` (and `settings.signing_key`, if any);
/// returns its id.
pub async fn insert_webhook(
    client: &impl GenericClient,
    site_id: i64,
    settings: &Settings,
    secret: &str,
) -> Result<i64, StoreError> {
    let s = settings;
    let row = client
        .query_one(
            include_str!("sql/manage/webhook_insert.sql"),
            &[
                &site_id,
                &s.url,
                &secret,
                &s.description,
                &s.event_types,
                &s.spike_threshold,
                &s.spike_window_minutes,
                &s.drop_threshold,
                &s.cooldown_minutes,
                &s.goal_ids,
                &s.goal_interval_seconds,
                &s.format,
                &s.signatures,
                &s.signing_key,
                &serde_json::Value::Object(s.headers.set.clone()),
                &s.max_per_minute,
            ],
        )
        .await?;
    Ok(row.try_get(0)?)
}

/// Writes `settings` if the row is still at `read_at`; false if it changed
/// meanwhile (or is gone).
pub async fn update_webhook(
    client: &impl GenericClient,
    id: i64,
    settings: &Settings,
    read_at: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let s = settings;
    let row = client
        .query_opt(
            include_str!("sql/manage/webhook_update.sql"),
            &[
                &id,
                &s.url,
                &s.description,
                &s.event_types,
                &s.spike_threshold,
                &s.spike_window_minutes,
                &s.drop_threshold,
                &s.cooldown_minutes,
                &s.goal_ids,
                &s.goal_interval_seconds,
                &read_at,
                &s.format,
                &s.signatures,
                &s.signing_key,
                &s.headers.clear,
                &serde_json::Value::Object(s.headers.set.clone()),
                &s.max_per_minute,
            ],
        )
        .await?;
    Ok(row.is_some())
}

/// Enables or disables a webhook; false if there is none.
pub async fn set_enabled(
    client: &impl GenericClient,
    id: i64,
    enabled: bool,
) -> Result<bool, StoreError> {
    let sql = if enabled {
        include_str!("sql/manage/webhook_enable.sql")
    } else {
        include_str!("sql/manage/webhook_disable.sql")
    };
    Ok(client.query_opt(sql, &[&id]).await?.is_some())
}

/// Deletes a webhook; false if there is none.
pub async fn delete_webhook(client: &impl GenericClient, id: i64) -> Result<bool, StoreError> {
    Ok(client
        .query_opt(include_str!("sql/manage/webhook_delete.sql"), &[&id])
        .await?
        .is_some())
}

/// Puts `secret` in place; the old one keeps signing for `keep_previous_secs`
/// (0: not at all). `None` if there is no such webhook, else until when the
/// old one signs.
pub async fn rotate_secret(
    client: &impl GenericClient,
    id: i64,
    secret: &str,
    keep_previous_secs: f64,
) -> Result<Option<Option<DateTime<Utc>>>, StoreError> {
    let row = client
        .query_opt(
            include_str!("sql/manage/webhook_rotate_secret.sql"),
            &[&id, &secret, &keep_previous_secs],
        )
        .await?;
    row.map(|r| Ok(r.try_get(1)?)).transpose()
}

/// Puts the signing key `key` in place; the old one keeps signing for
/// `keep_previous_secs` (0: not at all). `None` if there is no such
/// webhook, else until when the old one signs (never, if there was none).
pub async fn rotate_signing_key(
    client: &impl GenericClient,
    id: i64,
    key: &str,
    keep_previous_secs: f64,
) -> Result<Option<Option<DateTime<Utc>>>, StoreError> {
    let row = client
        .query_opt(
            include_str!("sql/manage/webhook_rotate_signing_key.sql"),
            &[&id, &key, &keep_previous_secs],
        )
        .await?;
    row.map(|r| Ok(r.try_get(1)?)).transpose()
}

/// The body of a `webhook.test` delivery of webhook `webhook_id` of site
/// `site_id`, sent at `now`.
pub fn test_payload(site_id: i64, webhook_id: i64, now: DateTime<Utc>) -> String {
    serde_json::json!({
        "type": "webhook.test",
        "timestamp": now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "data": { "site_id": site_id, "webhook_id": webhook_id },
    })
    .to_string()
}

/// Enqueues a `webhook.test` delivery with `payload`; returns its id.
pub async fn insert_test_delivery(
    client: &impl GenericClient,
    webhook_id: i64,
    payload: &str,
) -> Result<String, StoreError> {
    let row = client
        .query_one(
            include_str!("sql/manage/delivery_insert_test.sql"),
            &[&webhook_id, &payload],
        )
        .await?;
    Ok(row.try_get(0)?)
}

/// A webhook's deliveries, newest first.
pub async fn list_deliveries(
    client: &impl GenericClient,
    webhook_id: i64,
    status: Option<Status>,
    limit: i64,
) -> Result<Vec<DeliveryInfo>, StoreError> {
    let status = status.map(Status::as_str);
    client
        .query(
            include_str!("sql/manage/deliveries_list.sql"),
            &[&webhook_id, &status, &limit],
        )
        .await?
        .iter()
        .map(|r| DeliveryInfo::from_row(r, false))
        .collect()
}

/// One delivery with its payload.
pub async fn get_delivery(
    client: &impl GenericClient,
    id: &str,
) -> Result<Option<DeliveryInfo>, StoreError> {
    client
        .query_opt(include_str!("sql/manage/delivery_get.sql"), &[&id])
        .await?
        .as_ref()
        .map(|r| DeliveryInfo::from_row(r, true))
        .transpose()
}

pub async fn attempts_of(
    client: &impl GenericClient,
    delivery_id: &str,
) -> Result<Vec<AttemptInfo>, StoreError> {
    client
        .query(include_str!("sql/manage/attempts_of.sql"), &[&delivery_id])
        .await?
        .iter()
        .map(AttemptInfo::from_row)
        .collect()
}

/// Replays one failed delivery; false if it is not failed (or not there).
pub async fn replay_delivery(client: &impl GenericClient, id: &str) -> Result<bool, StoreError> {
    Ok(client
        .query_opt(include_str!("sql/manage/replay_one.sql"), &[&id])
        .await?
        .is_some())
}

/// Replays a webhook's failed deliveries inserted since `since`; returns
/// their ids.
pub async fn replay_since(
    client: &impl GenericClient,
    webhook_id: i64,
    since: DateTime<Utc>,
) -> Result<Vec<String>, StoreError> {
    client
        .query(
            include_str!("sql/manage/replay_since.sql"),
            &[&webhook_id, &since],
        )
        .await?
        .iter()
        .map(|r| Ok(r.try_get(0)?))
        .collect()
}

/// The server's version and whether the session is encrypted (`doctor`).
pub async fn connection_info(client: &impl GenericClient) -> Result<(String, bool), StoreError> {
    let row = client
        .query_one(include_str!("sql/doctor_connection.sql"), &[])
        .await?;
    Ok((row.try_get(0)?, row.try_get(1)?))
}

/// The outbox at a glance (`doctor`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct OutboxSummary {
    pub pending: i64,
    pub due: i64,
    /// How long the oldest due delivery has waited, in seconds.
    pub overdue_secs: f64,
    pub failed_today: i64,
}

pub async fn outbox_summary(client: &impl GenericClient) -> Result<OutboxSummary, StoreError> {
    let row = client
        .query_one(include_str!("sql/doctor_outbox.sql"), &[])
        .await?;
    Ok(OutboxSummary {
        pending: row.try_get(0)?,
        due: row.try_get(1)?,
        overdue_secs: row.try_get(2)?,
        failed_today: row.try_get(3)?,
    })
}

/// The trigger engine's cursor: the newest insert it has counted.
pub async fn trigger_cursor(
    client: &impl GenericClient,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    let row = client
        .query_opt(include_str!("sql/trigger_cursor_load.sql"), &[&"triggers"])
        .await?;
    Ok(row.and_then(|r| r.try_get(0).ok()))
}
