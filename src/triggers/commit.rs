//! The last stage of a tick: what the stages decided, written in one
//! Postgres transaction fenced by the trigger lease, and then (only then)
//! applied to the engine's memory, here and nowhere else.

use super::goals::Throttles;
use super::leadership::LEASE;
use super::plan::Scan;
use super::{TickReport, TriggerEngine, TriggerError, time};
use crate::registry::EventType;
use crate::store::trigger_state::{self as state_store, NewDelivery, TickWrite};

/// What a tick decided, before it is committed.
pub(super) struct Decided {
    now: u32,
    new_cursor: u32,
    drop_checked: bool,
    /// New totals per (goal, minute).
    pub counted: Vec<((i64, u32), u64)>,
    /// Every throttle the tick touched, as it leaves it.
    pub throttles: Throttles,
    /// Entries of `State::waiting` the tick looked at.
    pub popped: Vec<(u32, i64, i64)>,
    /// Throttles still waiting after the tick, with when they may send.
    pub still_waiting: Vec<(u32, i64, i64)>,
    /// Spikes and drops fired, per (webhook, type), at `now`.
    pub alerts: Vec<((i64, EventType), u32)>,
    pub deliveries: Vec<NewDelivery>,
    pub goal_deliveries: usize,
    pub spikes: usize,
    pub drops: usize,
    /// Per site, the newest insert among this tick's changed buckets.
    newest_insert: rustc_hash::FxHashMap<i64, u32>,
}

impl Decided {
    pub(super) fn new(scan: &Scan) -> Decided {
        let mut newest_insert = rustc_hash::FxHashMap::default();
        for bucket in &scan.changed {
            let newest = newest_insert.entry(bucket.site_id as i64).or_insert(0);
            *newest = bucket.last_inserted_at.max(*newest);
        }
        Decided {
            newest_insert,
            now: scan.now,
            new_cursor: scan.new_cursor,
            drop_checked: scan.drop_due,
            counted: Vec::new(),
            throttles: Throttles::default(),
            popped: Vec::new(),
            still_waiting: Vec::new(),
            alerts: Vec::new(),
            deliveries: Vec::new(),
            goal_deliveries: 0,
            spikes: 0,
            drops: 0,
        }
    }

    /// When the event of a delivery for `site_id` was triggered: the newest
    /// insert of the site this tick read, or (a drop, which no insert
    /// makes, or a throttled goal sent without new data) this tick's time.
    pub(super) fn triggered_at(&self, site_id: i64) -> Option<i64> {
        let at = self
            .newest_insert
            .get(&site_id)
            .copied()
            .unwrap_or(self.now);
        Some(i64::from(at.min(self.now)))
    }

    pub(super) fn report(&self, scan: &Scan) -> TickReport {
        TickReport {
            changed_buckets: scan.changed.len(),
            spikes: self.spikes,
            drops: self.drops,
            goal_deliveries: self.goal_deliveries,
            enqueued: 0,
            caught_up: scan.caught_up,
            lag_secs: scan.now.saturating_sub(scan.new_cursor),
            clickhouse_time: Default::default(),
        }
    }
}

impl TriggerEngine {
    /// Writes the tick; returns the deliveries enqueued. A commit that may
    /// or may not have landed leaves the state to be read again; a fenced
    /// one wrote nothing and gives the lease up.
    pub(super) async fn commit(
        &mut self,
        token: &str,
        decided: &Decided,
    ) -> Result<u64, TriggerError> {
        let write = self.write(decided);
        if write.is_empty() {
            return Ok(0);
        }
        match state_store::commit_tick(
            &self.pool,
            LEASE,
            token,
            self.lease.commit_idle_limit(),
            &write,
        )
        .await
        {
            Ok(Some(enqueued)) => Ok(enqueued),
            Ok(None) => {
                self.stale = true;
                self.lease.forget();
                Err(TriggerError::Fenced)
            }
            Err(e) => {
                self.stale = true;
                Err(e.into())
            }
        }
    }

    fn write(&self, decided: &Decided) -> TickWrite {
        TickWrite {
            cursor: (Some(decided.new_cursor) != self.state.cursor)
                .then(|| time(decided.new_cursor)),
            goal_counts: decided
                .counted
                .iter()
                .map(|((goal, minute), n)| (*goal, time(*minute), *n as i64))
                .collect(),
            throttles: decided
                .throttles
                .iter()
                .filter(|(key, t)| self.state.throttles.get(key) != Some(t))
                .map(|(key, t)| {
                    (
                        *key,
                        state_store::Throttle {
                            last_sent_at: t.last_sent_at.map(time),
                            pending: t.pending as i64,
                            pending_from: t.pending_from.map(time),
                        },
                    )
                })
                .collect(),
            alerts: decided
                .alerts
                .iter()
                .map(|((webhook, kind), at)| ((*webhook, kind.as_str()), time(*at)))
                .collect(),
            deliveries: decided.deliveries.clone(),
        }
    }

    /// Committed: remember.
    pub(super) fn apply(&mut self, decided: Decided) {
        let state = &mut self.state;
        state.cursor = Some(decided.new_cursor);
        state.counted.extend(decided.counted);
        state.throttles.extend(decided.throttles);
        for entry in &decided.popped {
            state.waiting.remove(entry);
        }
        state.waiting.extend(decided.still_waiting);
        state.alerts.extend(decided.alerts);
        if decided.drop_checked {
            state.last_drop_check = Some(decided.now);
        }
        for d in &decided.deliveries {
            metrics::counter!("plausible_webhooks_trigger_events_total", "type" => d.event_type)
                .increment(1);
        }
    }
}
