//! Reading webhook rows (as the web app wrote them) and writing back the
//! daemon's verdict on each.

use chrono::{DateTime, Utc};
use futures_util::{Stream, StreamExt};
use tokio_postgres::GenericClient;
use tokio_postgres::Row;
use tokio_postgres::types::Timestamp;

use super::StoreError;

/// A `webhooks` row as stored; the registry validates it. Fields the web
/// app could leave malformed are read leniently (arrays may hold NULLs).
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookRow {
    pub id: i64,
    pub site_id: i64,
    pub site_domain: String,
    pub site_timezone: String,
    pub url: String,
    pub secret: String,
    pub previous_secret: Option<String>,
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    pub event_types: Vec<Option<String>>,
    pub spike_threshold: Option<i32>,
    pub spike_window_minutes: i32,
    pub drop_threshold: Option<i32>,
    pub cooldown_minutes: i32,
    pub goal_ids: Option<Vec<Option<i64>>>,
    pub goal_interval_seconds: i32,
    pub format: String,
    pub signatures: Vec<Option<String>>,
    pub signing_key: Option<String>,
    pub previous_signing_key: Option<String>,
    pub previous_signing_key_expires_at: Option<DateTime<Utc>>,
    /// The `headers` object as stored (validated by the registry).
    pub headers: serde_json::Value,
    pub max_per_minute: Option<i32>,
    pub last_error: Option<String>,
    pub inserted_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A row that could not be decoded at all.
#[derive(Debug, Clone, PartialEq)]
pub struct UnreadableRow {
    pub id: i64,
    pub site_id: i64,
    pub updated_at: Option<DateTime<Utc>>,
    pub error: String,
}

impl WebhookRow {
    fn from_row(row: &Row) -> Result<WebhookRow, UnreadableRow> {
        let decode = || -> Result<WebhookRow, String> {
            let read = |e: tokio_postgres::Error| format!("the row could not be read: {e}");
            Ok(WebhookRow {
                id: row.try_get("id").map_err(read)?,
                site_id: row.try_get("site_id").map_err(read)?,
                site_domain: row.try_get("domain").map_err(read)?,
                site_timezone: row.try_get("timezone").map_err(read)?,
                url: row.try_get("url").map_err(read)?,
                secret: row.try_get("secret").map_err(read)?,
                previous_secret: row.try_get("previous_secret").map_err(read)?,
                previous_secret_expires_at: time(row, "previous_secret_expires_at")?,
                event_types: row.try_get("event_types").map_err(read)?,
                spike_threshold: row.try_get("spike_threshold").map_err(read)?,
                spike_window_minutes: row.try_get("spike_window_minutes").map_err(read)?,
                drop_threshold: row.try_get("drop_threshold").map_err(read)?,
                cooldown_minutes: row.try_get("cooldown_minutes").map_err(read)?,
                goal_ids: row.try_get("goal_ids").map_err(read)?,
                goal_interval_seconds: row.try_get("goal_interval_seconds").map_err(read)?,
                format: row.try_get("format").map_err(read)?,
                signatures: row.try_get("signatures").map_err(read)?,
                signing_key: row.try_get("signing_key").map_err(read)?,
                previous_signing_key: row.try_get("previous_signing_key").map_err(read)?,
                previous_signing_key_expires_at: time(row, "previous_signing_key_expires_at")?,
                headers: row.try_get("headers").map_err(read)?,
                max_per_minute: row.try_get("max_per_minute").map_err(read)?,
                last_error: row.try_get("last_error").map_err(read)?,
                inserted_at: required_time(row, "inserted_at")?,
                updated_at: required_time(row, "updated_at")?,
            })
        };
        decode().map_err(|error| UnreadableRow {
            id: row.try_get("id").unwrap_or_default(),
            site_id: row.try_get("site_id").unwrap_or_default(),
            updated_at: row.try_get("updated_at").ok(),
            error,
        })
    }
}

/// A timestamp column, with a sentence for `last_error` when it holds
/// `infinity`, `-infinity` or a time beyond what the daemon can represent
/// (V9's constraints refuse them; this covers a database without them).
fn time(row: &Row, column: &str) -> Result<Option<DateTime<Utc>>, String> {
    match row.try_get::<_, Option<Timestamp<DateTime<Utc>>>>(column) {
        Ok(None) => Ok(None),
        Ok(Some(Timestamp::Value(t))) => Ok(Some(t)),
        Ok(Some(Timestamp::PosInfinity)) => {
            Err(format!("{column} is infinity; it must be a finite time"))
        }
        Ok(Some(Timestamp::NegInfinity)) => {
            Err(format!("{column} is -infinity; it must be a finite time"))
        }
        Err(e) => Err(format!("{column} cannot be read: {e}")),
    }
}

fn required_time(row: &Row, column: &str) -> Result<DateTime<Utc>, String> {
    time(row, column)?.ok_or_else(|| format!("{column} must not be null"))
}

fn decode_all(rows: &[Row]) -> Vec<Result<WebhookRow, UnreadableRow>> {
    rows.iter().map(WebhookRow::from_row).collect()
}

/// Every enabled webhook, ordered by site and oldest first within each,
/// streamed so that a large table is never held in memory at once.
pub async fn stream_all(
    client: &impl GenericClient,
) -> Result<impl Stream<Item = Result<Result<WebhookRow, UnreadableRow>, StoreError>>, StoreError> {
    let rows = client
        .query_raw(
            include_str!("sql/webhooks_load_all.sql"),
            std::iter::empty::<i32>(),
        )
        .await?;
    Ok(rows.map(|row| Ok(WebhookRow::from_row(&row?))))
}

/// Every enabled webhook of `sites` and of the sites `ids` belong to.
pub async fn load_sites(
    client: &impl GenericClient,
    sites: &[i64],
    ids: &[i64],
) -> Result<Vec<Result<WebhookRow, UnreadableRow>>, StoreError> {
    let rows = client
        .query(include_str!("sql/webhooks_load_sites.sql"), &[&sites, &ids])
        .await?;
    Ok(decode_all(&rows))
}

/// The daemon's verdict on one row: `None` when valid.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub id: i64,
    pub error: Option<String>,
    pub judged_at: DateTime<Utc>,
}

/// Writes `last_error` where it changed and the row is still the version
/// judged. Returns how many rows changed.
pub async fn write_verdicts(
    client: &impl GenericClient,
    verdicts: &[Verdict],
) -> Result<u64, StoreError> {
    if verdicts.is_empty() {
        return Ok(0);
    }
    let ids: Vec<i64> = verdicts.iter().map(|v| v.id).collect();
    let errors: Vec<Option<&str>> = verdicts.iter().map(|v| v.error.as_deref()).collect();
    let judged: Vec<DateTime<Utc>> = verdicts.iter().map(|v| v.judged_at).collect();
    Ok(client
        .execute(
            include_str!("sql/webhooks_write_errors.sql"),
            &[&ids, &errors, &judged],
        )
        .await?)
}
