//! The first stage of a tick: which buckets changed since the cursor, and
//! what of the registry the tick looks at.
//!
//! When the cursor is more than `triggers.catchup_step_secs` behind
//! ClickHouse's clock (after an outage of ClickHouse or Postgres), a tick
//! reads only the inserts of the next step and moves the cursor to the
//! step's end; the next tick follows at once. So the work of a tick, and
//! the memory it needs, is bounded by a step's inserts however long the
//! outage was, and each step commits before the next starts.

use std::collections::BTreeMap;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::{TriggerEngine, TriggerError, timed};
use crate::analytics::trigger_reads::{self as queries, ChangedBucket};
use crate::registry::{EventType, RegistryHandle, Site};

/// Every this many ticks, the scan for changed buckets looks back the whole
/// `triggers.rescan_margin_secs` instead of one second.
const WIDE_SCAN_EVERY: u64 = 5;

/// Where a tick reads from and to, on ClickHouse's clock.
pub(super) struct Scan {
    pub now: u32,
    pub now_minute: u32,
    /// The newest minute this tick's data can hold: the current minute,
    /// or while catching up the minute of the step's end.
    pub data_minute: u32,
    /// Where the cursor will stand once the tick commits.
    pub new_cursor: u32,
    /// False when only a step of the inserts since the cursor was read.
    pub caught_up: bool,
    pub changed: Vec<ChangedBucket>,
    /// Goal counts older than this are no longer kept.
    pub retention_start: u32,
    pub drop_due: bool,
}

impl TriggerEngine {
    pub(super) async fn scan(
        &mut self,
        clickhouse_time: &mut std::time::Duration,
    ) -> Result<Scan, TriggerError> {
        let now = timed(clickhouse_time, queries::server_now(&self.analytics)).await?;
        let now_minute = now - now % 60;
        let cursor = self.state.cursor.unwrap_or(now);
        // Most ticks look back one second past the newest insert seen (the
        // second may still be filling); every WIDE_SCAN_EVERY-th looks back
        // the whole margin, for inserts that became visible late.
        self.state.ticks = self.state.ticks.wrapping_add(1);
        let look_back = if self.state.ticks % WIDE_SCAN_EVERY == 1 {
            self.config.rescan_margin_secs
        } else {
            1
        };
        let since = cursor.saturating_sub(look_back);
        let step_end = cursor.saturating_add(self.config.catchup_step_secs);
        let caught_up = step_end >= now;
        let until = if caught_up { u32::MAX } else { step_end };
        let changed = timed(
            clickhouse_time,
            queries::changed_buckets(&self.analytics, since, until),
        )
        .await?;
        let new_cursor = if caught_up {
            let newest = changed.iter().map(|b| b.last_inserted_at).max();
            newest.map_or(cursor, |n| n.max(cursor))
        } else {
            step_end
        };
        metrics::gauge!("plausible_webhooks_trigger_cursor_lag_seconds")
            .set(f64::from(now.saturating_sub(new_cursor)));
        let retention_start =
            now_minute.saturating_sub(self.config.goal_count_retention_hours.saturating_mul(3600));
        let drop_due = self.state.last_drop_check.is_none_or(|last| {
            u64::from(now.saturating_sub(last)) >= self.config.drop_check_interval_secs
        });
        let data_minute = if caught_up {
            now_minute
        } else {
            new_cursor - new_cursor % 60
        };
        Ok(Scan {
            now,
            now_minute,
            data_minute,
            new_cursor,
            caught_up,
            changed,
            retention_start,
            drop_due,
        })
    }
}

/// What one tick looks at, copied out of the registry so that no lock is
/// held across a query.
pub(super) struct Plan {
    pub sites: FxHashMap<i64, Arc<Site>>,
    /// Changed buckets of sites with goal webhooks, within retention.
    pub goal_buckets: Vec<(u64, u32)>,
    /// Sites with new data and spike webhooks, by window length.
    pub spike_windows: BTreeMap<u32, Vec<u64>>,
    /// Sites with drop webhooks (when a drop check is due).
    pub drop_sites: Vec<u64>,
}

impl Plan {
    pub(super) fn new(registry: &RegistryHandle, scan: &Scan) -> Plan {
        let registry = registry.read();
        let mut plan = Plan {
            sites: FxHashMap::default(),
            goal_buckets: Vec::new(),
            spike_windows: BTreeMap::new(),
            drop_sites: Vec::new(),
        };
        for bucket in &scan.changed {
            let Some(site) = registry.site_shared(bucket.site_id as i64) else {
                continue;
            };
            if bucket.minute >= scan.retention_start
                && !site.goals.is_empty()
                && site
                    .webhooks
                    .iter()
                    .any(|w| w.subscribes_to(EventType::GoalCompleted))
            {
                plan.goal_buckets.push((bucket.site_id, bucket.minute));
            }
            // A site's spike windows are listed once, at its first bucket.
            if !plan.sites.contains_key(&site.id) {
                let mut windows: Vec<u32> = site
                    .webhooks
                    .iter()
                    .filter_map(|w| w.spike.map(|s| s.window_minutes))
                    .collect();
                windows.sort_unstable();
                windows.dedup();
                for window in windows {
                    plan.spike_windows
                        .entry(window)
                        .or_default()
                        .push(bucket.site_id);
                }
            }
            plan.sites.entry(site.id).or_insert(site);
        }
        if scan.drop_due {
            let drop_sites: Vec<i64> = registry
                .sites()
                .filter(|s| {
                    s.webhooks
                        .iter()
                        .any(|w| w.subscribes_to(EventType::TrafficDrop))
                })
                .map(|s| s.id)
                .collect();
            for id in drop_sites {
                if let Some(site) = registry.site_shared(id) {
                    plan.drop_sites.push(id as u64);
                    plan.sites.entry(id).or_insert(site);
                }
            }
        }
        plan
    }
}

/// The first minute of a trailing window of `minutes` minute buckets that
/// ends with the current one.
pub(super) fn window_start(now_minute: u32, minutes: u32) -> u32 {
    now_minute.saturating_sub(minutes.saturating_sub(1) * 60)
}
