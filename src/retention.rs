//! Bounded storage: one long-lived task that, every
//! `retention.interval_secs`, deletes what the daemon no longer needs.
//!
//! A pass deletes succeeded and failed deliveries (with their attempts)
//! older than `retention.deliveries_days`, in batches of [`BATCH`] rows, one
//! short transaction each with a pause between them, so the scheduler never
//! waits behind it; removes the goal counts and throttles of goals deleted
//! from Plausible's `goals` (throttles and alert state of deleted webhooks
//! go by `ON DELETE CASCADE`); and drops the partitions of the ClickHouse
//! view tables that end before what the triggers read. One replica at a time
//! runs a pass: it holds a Postgres advisory lock, and a replica that cannot
//! take it skips the pass.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use crate::analytics::retention::{self as views, Partition, ViewTable};
use crate::analytics::{Analytics, AnalyticsError};
use crate::config::Config;
use crate::store::StoreError;
use crate::store::retention::{self as outbox, PassLock};
use crate::telemetry::health::{BEAT_EVERY, Heartbeat};

/// Rows deleted per transaction.
const BATCH: i64 = 1_000;
/// The pause between two batches, which leaves Postgres to the scheduler.
const BATCH_PAUSE: Duration = Duration::from_millis(100);
/// Slack for partition bounds: a server may partition by its own time zone,
/// and the hosts' clocks may differ a little.
const PARTITION_SLACK: chrono::Duration = chrono::Duration::days(1);
/// How long `webhooks_inserts` is kept behind now (the trigger engine
/// tails it from its cursor, a few seconds to an hour back).
const INSERTS_KEPT: chrono::Duration = chrono::Duration::days(2);
/// The trailing window of the drop check.
const DROP_WINDOW_HOURS: u32 = 12;

#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Analytics(#[from] AnalyticsError),
}

/// What one pass removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pruned {
    pub deliveries: u64,
    pub attempts: u64,
    pub goal_counts: u64,
    pub goal_throttles: u64,
    /// The partitions dropped, as `table/value`.
    pub partitions: Vec<String>,
}

/// The retention task.
pub struct Retention {
    pool: deadpool_postgres::Pool,
    analytics: Analytics,
    deliveries_days: u32,
    interval: Duration,
    /// How far back the minute tables are kept (before slack).
    minutes_kept: chrono::Duration,
}

impl Retention {
    pub fn new(config: &Config, pool: deadpool_postgres::Pool, analytics: Analytics) -> Retention {
        let hours = config
            .triggers
            .goal_count_retention_hours
            .max(DROP_WINDOW_HOURS);
        Retention {
            pool,
            analytics,
            deliveries_days: config.retention.deliveries_days,
            interval: Duration::from_secs(config.retention.interval_secs),
            minutes_kept: chrono::Duration::hours(i64::from(hours)),
        }
    }

    /// Runs a pass at start and then every interval, until shutdown.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>, heartbeat: Heartbeat) {
        if self.analytics.read_only() {
            tracing::warn!(
                "the clickhouse user is read-only and clickhouse.migrate_user is unset: old partitions of the view tables are not dropped"
            );
        }
        while !*shutdown.borrow() {
            heartbeat.beat();
            let started = Instant::now();
            match self.pass(&shutdown, &heartbeat).await {
                Ok(Some(pruned)) => {
                    let took = started.elapsed();
                    metrics::counter!("plausible_webhooks_retention_passes_total", "result" => "ok")
                        .increment(1);
                    metrics::gauge!("plausible_webhooks_retention_last_pass_duration_seconds")
                        .set(took.as_secs_f64());
                    tracing::info!(
                        deliveries = pruned.deliveries,
                        attempts = pruned.attempts,
                        goal_counts = pruned.goal_counts,
                        goal_throttles = pruned.goal_throttles,
                        partitions = ?pruned.partitions,
                        took = ?took,
                        "retention pass done"
                    );
                }
                Ok(None) => {
                    metrics::counter!("plausible_webhooks_retention_passes_total", "result" => "skipped")
                        .increment(1);
                    tracing::debug!("another replica runs the retention pass; skipped");
                }
                Err(e) => {
                    metrics::counter!("plausible_webhooks_retention_passes_total", "result" => "error")
                        .increment(1);
                    tracing::warn!(error = %e, "retention pass failed; trying again next interval");
                }
            }
            idle(self.interval, &mut shutdown, &heartbeat).await;
        }
    }

    /// One pass; `None` when another replica holds the lock. Stops early
    /// (between batches) on shutdown.
    pub async fn pass(
        &self,
        stop: &watch::Receiver<bool>,
        heartbeat: &Heartbeat,
    ) -> Result<Option<Pruned>, RetentionError> {
        let Some(lock) = PassLock::try_take(&self.pool).await? else {
            return Ok(None);
        };
        // Each step runs even if one before it failed (an install without
        // Plausible's `goals` still prunes ClickHouse); the first error is
        // the pass's.
        let mut pruned = Pruned::default();
        let client = lock.client();
        let deliveries = self.deliveries(client, stop, heartbeat, &mut pruned).await;
        let goals = self.goal_state(client, stop, heartbeat, &mut pruned).await;
        let partitions = match outbox::trigger_position(client).await {
            Ok(position) => self.partitions(position, &mut pruned).await,
            Err(e) => Err(e.into()),
        };
        let released = lock.release().await.map_err(RetentionError::from);
        deliveries.and(goals).and(partitions).and(released)?;
        Ok(Some(pruned))
    }

    /// Old finished deliveries and their attempts, a batch at a time.
    async fn deliveries(
        &self,
        client: &tokio_postgres::Client,
        stop: &watch::Receiver<bool>,
        heartbeat: &Heartbeat,
        pruned: &mut Pruned,
    ) -> Result<(), RetentionError> {
        loop {
            let deleted =
                outbox::delete_finished_deliveries(client, self.deliveries_days, BATCH).await?;
            deleted_rows("webhook_deliveries", deleted.deliveries);
            deleted_rows("webhook_delivery_attempts", deleted.attempts);
            pruned.deliveries += deleted.deliveries;
            pruned.attempts += deleted.attempts;
            heartbeat.beat();
            if deleted.deliveries < BATCH as u64 || *stop.borrow() {
                return Ok(());
            }
            tokio::time::sleep(BATCH_PAUSE).await;
        }
    }

    /// The counts and throttles of goals deleted from Plausible's `goals`.
    async fn goal_state(
        &self,
        client: &tokio_postgres::Client,
        stop: &watch::Receiver<bool>,
        heartbeat: &Heartbeat,
        pruned: &mut Pruned,
    ) -> Result<(), RetentionError> {
        let goals = outbox::orphan_goals(client).await?;
        if goals.is_empty() {
            return Ok(());
        }
        let throttles = outbox::delete_goal_throttles(client, &goals).await?;
        deleted_rows("webhook_goal_throttle", throttles);
        pruned.goal_throttles += throttles;
        loop {
            let counts = outbox::delete_goal_counts(client, &goals, BATCH).await?;
            deleted_rows("webhook_goal_counts", counts);
            pruned.goal_counts += counts;
            heartbeat.beat();
            if counts < BATCH as u64 || *stop.borrow() {
                return Ok(());
            }
            tokio::time::sleep(BATCH_PAUSE).await;
        }
    }

    /// Drops the view tables' partitions that end before what the triggers
    /// read: the minute tables' goal-count retention (at least the drop
    /// check's 12 hours), `webhooks_inserts`' last two days, and never
    /// anything the trigger engine's cursor has not passed yet.
    async fn partitions(
        &self,
        position: Option<DateTime<Utc>>,
        pruned: &mut Pruned,
    ) -> Result<(), RetentionError> {
        if self.analytics.read_only() {
            tracing::debug!(
                "the clickhouse user is read-only; set clickhouse.migrate_user to prune the view tables"
            );
            return Ok(());
        }
        let now = Utc::now();
        for partition in views::partitions(&self.analytics).await? {
            let kept = match partition.table {
                ViewTable::SiteMinutes | ViewTable::GoalMinutes => self.minutes_kept,
                ViewTable::Inserts => INSERTS_KEPT,
            };
            if !expired(&partition, now - kept, position) {
                continue;
            }
            views::drop_partition(&self.analytics, &partition).await?;
            let table = partition.table.name();
            metrics::counter!("plausible_webhooks_retention_partitions_dropped_total", "table" => table)
                .increment(1);
            tracing::info!(
                table,
                partition = partition.value,
                rows = partition.rows,
                bytes = partition.bytes,
                "dropped an old partition"
            );
            pruned
                .partitions
                .push(format!("{table}/{}", partition.value));
        }
        Ok(())
    }
}

/// Whether a partition ends (with slack) before `cut` and before the
/// trigger engine's cursor, so that nothing still to be read is dropped.
fn expired(partition: &Partition, cut: DateTime<Utc>, position: Option<DateTime<Utc>>) -> bool {
    let cut = match position {
        Some(position) => cut.min(position),
        None => cut,
    };
    partition.ends_at + PARTITION_SLACK <= cut
}

fn deleted_rows(table: &'static str, rows: u64) {
    if rows > 0 {
        metrics::counter!("plausible_webhooks_retention_rows_deleted_total", "table" => table)
            .increment(rows);
    }
}

/// Waits `interval` (or until shutdown), beating at least every
/// `BEAT_EVERY`.
async fn idle(interval: Duration, shutdown: &mut watch::Receiver<bool>, heartbeat: &Heartbeat) {
    let deadline = tokio::time::Instant::now() + interval;
    loop {
        heartbeat.beat();
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return;
        }
        tokio::select! {
            () = tokio::time::sleep((deadline - now).min(BEAT_EVERY)) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn partition(ends_at: DateTime<Utc>) -> Partition {
        Partition {
            table: ViewTable::SiteMinutes,
            value: 202601,
            ends_at,
            rows: 1,
            bytes: 1,
        }
    }

    #[test]
    fn a_partition_expires_a_day_after_it_ends_and_never_before_the_cursor() {
        let end = Utc.with_ymd_and_hms(2026, 2, 1, 0, 0, 0).unwrap();
        let p = partition(end);
        assert!(!expired(&p, end, None));
        assert!(!expired(&p, end + chrono::Duration::hours(23), None));
        assert!(expired(&p, end + chrono::Duration::days(1), None));
        let behind = Some(end + chrono::Duration::hours(1));
        assert!(!expired(&p, end + chrono::Duration::days(30), behind));
        let past = Some(end + chrono::Duration::days(2));
        assert!(expired(&p, end + chrono::Duration::days(30), past));
    }
}
