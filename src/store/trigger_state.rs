//! The trigger engine's durable state and its one write per tick: outbox
//! rows, goal counts, throttles, alert times and the cursor, in one
//! transaction.

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use tokio_postgres::GenericClient;

use super::StoreError;

/// The cursor row of the trigger engine in `webhook_cursors`.
const STREAM: &str = "triggers";

/// One outbox row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    pub webhook_id: i64,
    pub event_type: &'static str,
    pub payload: String,
    pub dedupe_key: String,
    /// The insert that made the event (unix seconds): see
    /// `webhook_deliveries.triggered_at` in docs/schema.md.
    pub triggered_at: Option<i64>,
}

/// A goal throttle as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttle {
    pub last_sent_at: Option<DateTime<Utc>>,
    pub pending: i64,
    pub pending_from: Option<DateTime<Utc>>,
}

/// Everything the engine remembers, as loaded at start.
#[derive(Debug, Default)]
pub struct TriggerState {
    pub cursor: Option<DateTime<Utc>>,
    pub goal_counts: Vec<(i64, DateTime<Utc>, i64)>,
    pub throttles: Vec<((i64, i64), Throttle)>,
    pub alerts: Vec<((i64, String), DateTime<Utc>)>,
}

pub async fn load(pool: &Pool, counts_since: DateTime<Utc>) -> Result<TriggerState, StoreError> {
    let client = pool.get().await?;
    let cursor = client
        .query_opt(include_str!("sql/trigger_cursor_load.sql"), &[&STREAM])
        .await?
        .and_then(|r| read(&r, "webhook_cursors", |r| r.try_get(0)));
    let goal_counts = client
        .query(include_str!("sql/goal_counts_load.sql"), &[&counts_since])
        .await?
        .iter()
        .filter_map(|r| {
            read(r, "webhook_goal_counts", |r| {
                Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?))
            })
        })
        .collect();
    let throttles = client
        .query(include_str!("sql/goal_throttle_load.sql"), &[])
        .await?
        .iter()
        .filter_map(|r| {
            read(r, "webhook_goal_throttle", |r| {
                Ok((
                    (r.try_get(0)?, r.try_get(1)?),
                    Throttle {
                        last_sent_at: r.try_get(2)?,
                        pending: r.try_get(3)?,
                        pending_from: r.try_get(4)?,
                    },
                ))
            })
        })
        .collect();
    let alerts = client
        .query(include_str!("sql/alert_state_load.sql"), &[])
        .await?
        .iter()
        .filter_map(|r| {
            read(r, "webhook_alert_state", |r| {
                Ok(((r.try_get(0)?, r.try_get(1)?), r.try_get(2)?))
            })
        })
        .collect();
    Ok(TriggerState {
        cursor,
        goal_counts,
        throttles,
        alerts,
    })
}

/// Reads one row, or skips it with a warning when a value cannot be read
/// (an `infinity` timestamp, an unexpected NULL): one bad row written by
/// hand stops nothing else.
fn read<T>(
    row: &tokio_postgres::Row,
    table: &'static str,
    get: impl FnOnce(&tokio_postgres::Row) -> Result<T, tokio_postgres::Error>,
) -> Option<T> {
    match get(row) {
        Ok(value) => Some(value),
        Err(e) => {
            tracing::warn!(table, error = %e, "skipping a trigger state row that cannot be read");
            None
        }
    }
}

/// What one tick writes.
#[derive(Debug, Default)]
pub struct TickWrite {
    pub cursor: Option<DateTime<Utc>>,
    pub goal_counts: Vec<(i64, DateTime<Utc>, i64)>,
    pub throttles: Vec<((i64, i64), Throttle)>,
    pub alerts: Vec<((i64, &'static str), DateTime<Utc>)>,
    pub deliveries: Vec<NewDelivery>,
}

impl TickWrite {
    pub fn is_empty(&self) -> bool {
        self.cursor.is_none()
            && self.goal_counts.is_empty()
            && self.throttles.is_empty()
            && self.alerts.is_empty()
            && self.deliveries.is_empty()
    }
}

/// Writes a tick in one transaction, fenced by the engine's lease: the
/// transaction first checks and locks that lease `lease` is still held
/// under `token` (see [`super::leases::fence`] for `idle_limit`). Returns the number of deliveries enqueued (dedupe skips
/// excluded), or `None` when the lease is no longer this engine's: then
/// nothing was written.
pub async fn commit_tick(
    pool: &Pool,
    lease: &str,
    token: &str,
    idle_limit: std::time::Duration,
    write: &TickWrite,
) -> Result<Option<u64>, StoreError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    if !super::leases::fence(&*tx, lease, token, idle_limit).await? {
        tx.rollback().await?;
        return Ok(None);
    }
    let position = write.cursor.unwrap_or_else(Utc::now);
    tx.execute(
        include_str!("sql/trigger_cursor_ensure.sql"),
        &[&STREAM, &position],
    )
    .await?;

    if !write.goal_counts.is_empty() {
        let goals: Vec<i64> = write.goal_counts.iter().map(|c| c.0).collect();
        let minutes: Vec<DateTime<Utc>> = write.goal_counts.iter().map(|c| c.1).collect();
        let counts: Vec<i64> = write.goal_counts.iter().map(|c| c.2).collect();
        tx.execute(
            include_str!("sql/goal_counts_upsert.sql"),
            &[&goals, &minutes, &counts],
        )
        .await?;
    }
    if !write.throttles.is_empty() {
        let webhooks: Vec<i64> = write.throttles.iter().map(|t| t.0.0).collect();
        let goals: Vec<i64> = write.throttles.iter().map(|t| t.0.1).collect();
        let sent: Vec<Option<DateTime<Utc>>> =
            write.throttles.iter().map(|t| t.1.last_sent_at).collect();
        let pending: Vec<i64> = write.throttles.iter().map(|t| t.1.pending).collect();
        let from: Vec<Option<DateTime<Utc>>> =
            write.throttles.iter().map(|t| t.1.pending_from).collect();
        tx.execute(
            include_str!("sql/goal_throttle_upsert.sql"),
            &[&webhooks, &goals, &sent, &pending, &from],
        )
        .await?;
    }
    if !write.alerts.is_empty() {
        let webhooks: Vec<i64> = write.alerts.iter().map(|a| a.0.0).collect();
        let kinds: Vec<&str> = write.alerts.iter().map(|a| a.0.1).collect();
        let at: Vec<DateTime<Utc>> = write.alerts.iter().map(|a| a.1).collect();
        tx.execute(
            include_str!("sql/alert_state_upsert.sql"),
            &[&webhooks, &kinds, &at],
        )
        .await?;
    }
    let mut enqueued = 0;
    if !write.deliveries.is_empty() {
        let webhooks: Vec<i64> = write.deliveries.iter().map(|d| d.webhook_id).collect();
        let kinds: Vec<&str> = write.deliveries.iter().map(|d| d.event_type).collect();
        let payloads: Vec<&str> = write
            .deliveries
            .iter()
            .map(|d| d.payload.as_str())
            .collect();
        let keys: Vec<&str> = write
            .deliveries
            .iter()
            .map(|d| d.dedupe_key.as_str())
            .collect();
        let triggered: Vec<Option<i64>> = write.deliveries.iter().map(|d| d.triggered_at).collect();
        enqueued = tx
            .execute(
                include_str!("sql/deliveries_enqueue.sql"),
                &[&webhooks, &kinds, &payloads, &keys, &triggered],
            )
            .await?;
    }
    if let Some(cursor) = write.cursor {
        tx.execute(
            include_str!("sql/trigger_cursor_update.sql"),
            &[&STREAM, &cursor],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(Some(enqueued))
}

/// Forgets goal counts older than `before`.
pub async fn prune_goal_counts(
    client: &impl GenericClient,
    before: DateTime<Utc>,
) -> Result<u64, StoreError> {
    Ok(client
        .execute(include_str!("sql/goal_counts_prune.sql"), &[&before])
        .await?)
}
