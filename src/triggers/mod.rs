//! The trigger engine: turns the analytics stream into outbox rows.
//!
//! It ticks in one daemon at a time, the holder of the trigger lease
//! ([`leadership`]); the others stand by. Every `triggers.poll_interval_ms`
//! the leader's *tick* runs these stages, a file each:
//!
//! 1. [`plan`]: asks ClickHouse which (site, minute) buckets inserts
//!    touched since a little before the last insert it saw
//!    (`webhooks_inserts`), at most `triggers.catchup_step_secs` of insert
//!    time when it is behind, and copies out of the registry what the
//!    tick looks at;
//! 2. [`goals`]: recounts goal completions in those buckets (whole buckets,
//!    so merges and late rows change nothing) and takes the difference from
//!    what was already counted (`webhook_goal_counts`), so each completion is
//!    counted exactly once, and feeds new completions through each webhook's
//!    throttle (the first after a quiet interval goes out at once, later
//!    ones wait for the interval);
//! 3. [`spikes`]: checks spikes for the sites with new data, each with its
//!    cooldown;
//! 4. [`drops`]: checks drops every `triggers.drop_check_interval_secs`;
//! 5. [`commit`]: writes the outbox rows, the counts, throttles, alert
//!    times and the cursor in one Postgres transaction, fenced by the lease,
//!    and only then applies what the tick decided to the engine's memory.
//!
//! Until that transaction commits nothing is remembered, so a failed tick
//! (ClickHouse or Postgres down) is simply done again later. A tick that
//! was behind is followed at once by the next, so that after an outage the
//! engine catches up in bounded steps, each committed.

mod commit;
mod drops;
mod goal_rules;
mod goals;
mod leadership;
pub mod payload;
mod plan;
mod spikes;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use rustc_hash::FxHashMap;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::analytics::{Analytics, AnalyticsError};
use crate::config::{Config, TriggersConfig};
use crate::registry::{EventType, RegistryHandle, Webhook};
use crate::store::StoreError;
use crate::store::trigger_state as state_store;
use crate::telemetry::health::{Heartbeat, Role};
use leadership::Lease;

/// Distinct visitors over this many minutes below the threshold: a drop.
const DROP_WINDOW_MINUTES: u32 = 12 * 60;
/// How often old goal counts are forgotten.
const PRUNE_EVERY_SECS: u32 = 600;

#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    #[error(transparent)]
    Analytics(#[from] AnalyticsError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("another daemon holds the trigger lease")]
    NotLeader,
    #[error("the trigger lease was lost before the tick committed; it wrote nothing")]
    Fenced,
}

/// What the engine remembers between ticks (a copy of what Postgres holds).
#[derive(Debug, Default)]
struct State {
    /// The newest insert time seen (server seconds).
    cursor: Option<u32>,
    /// Completions already counted, per (goal, minute).
    counted: FxHashMap<(i64, u32), u64>,
    /// Per (webhook, goal).
    throttles: FxHashMap<(i64, i64), goal_rules::Throttle>,
    /// (earliest time it may send, webhook, goal) of every throttle with
    /// completions waiting, so that a tick looks only at those that may be
    /// due rather than at all of them.
    waiting: BTreeSet<(u32, i64, i64)>,
    /// When a spike or drop last fired, per (webhook, type).
    alerts: FxHashMap<(i64, EventType), u32>,
    last_drop_check: Option<u32>,
    last_prune: u32,
    ticks: u64,
}

/// What a tick did, for logs, metrics and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TickReport {
    pub changed_buckets: usize,
    pub spikes: usize,
    pub drops: usize,
    pub goal_deliveries: usize,
    pub enqueued: u64,
    /// False when the tick read only part of the inserts since its cursor
    /// (`triggers.catchup_step_secs`): the next tick should follow at once.
    pub caught_up: bool,
    /// Server seconds between the cursor the tick left and ClickHouse's
    /// clock.
    pub lag_secs: u32,
    /// Time spent waiting for ClickHouse.
    pub clickhouse_time: Duration,
}

pub struct TriggerEngine {
    analytics: Analytics,
    pool: Pool,
    registry: RegistryHandle,
    config: TriggersConfig,
    state: State,
    lease: Arc<Lease>,
    /// The state may be behind Postgres (a commit failed, perhaps after it
    /// had landed, or leadership was just taken): it is read again first.
    stale: bool,
}

/// Why a spell of leading ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    Shutdown,
    Lost,
}

impl TriggerEngine {
    pub fn new(
        config: &Config,
        pool: Pool,
        analytics: Analytics,
        registry: RegistryHandle,
    ) -> TriggerEngine {
        let lease = Lease::new(
            pool.clone(),
            Duration::from_secs(config.triggers.failover_secs),
        );
        TriggerEngine {
            analytics,
            pool,
            registry,
            config: config.triggers.clone(),
            state: State::default(),
            lease: Arc::new(lease),
            stale: true,
        }
    }

    /// Stands by until this daemon takes the trigger lease, then ticks
    /// while it holds it; again and again until `shutdown` is true, when it
    /// gives the lease up.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>, heartbeat: Heartbeat) {
        let lease = self.lease.clone();
        metrics::gauge!("plausible_webhooks_trigger_leader").set(0.0);
        loop {
            heartbeat.set_role(Role::Standby);
            if !stand_by(&lease, &mut shutdown, &heartbeat).await {
                return;
            }
            heartbeat.set_role(Role::Leader);
            metrics::gauge!("plausible_webhooks_trigger_leader").set(1.0);
            metrics::counter!("plausible_webhooks_trigger_leader_takeovers_total").increment(1);
            tracing::info!(holder = lease.holder(), "trigger leadership taken");
            self.stale = true;
            let ended = self.lead(&lease, &mut shutdown, &heartbeat).await;
            metrics::gauge!("plausible_webhooks_trigger_leader").set(0.0);
            if ended == Ended::Shutdown {
                lease.release().await;
                return;
            }
            tracing::info!(
                holder = lease.holder(),
                "trigger leadership lost; standing by"
            );
        }
    }

    /// Ticks while the lease holds.
    async fn lead(
        &mut self,
        lease: &Lease,
        shutdown: &mut watch::Receiver<bool>,
        heartbeat: &Heartbeat,
    ) -> Ended {
        let mut ticks = tokio::time::interval(Duration::from_millis(self.config.poll_interval_ms));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            heartbeat.beat();
            tokio::select! {
                waited = lease.hold(ticks.tick()) => if waited.is_err() { return Ended::Lost },
                _ = shutdown.wait_for(|stop| *stop) => return Ended::Shutdown,
            }
            let started = Instant::now();
            let result = tokio::select! {
                r = lease.hold(self.tick()) => r,
                _ = shutdown.wait_for(|stop| *stop) => {
                    self.stale = true;
                    return Ended::Shutdown;
                }
            };
            metrics::histogram!("plausible_webhooks_trigger_tick_duration_seconds")
                .record(started.elapsed().as_secs_f64());
            let result = match result {
                Ok(result) => result,
                Err(lost) => {
                    self.stale = true;
                    tracing::warn!(?lost, "trigger lease not renewed in time; the tick stopped");
                    return Ended::Lost;
                }
            };
            match result {
                Ok(report) => {
                    metrics::counter!("plausible_webhooks_trigger_ticks_total", "result" => "ok")
                        .increment(1);
                    if failing {
                        tracing::info!("trigger engine recovered");
                        failing = false;
                    }
                    if report.enqueued > 0 {
                        tracing::debug!(?report, "tick enqueued deliveries");
                    }
                    if !report.caught_up {
                        ticks.reset_immediately();
                    }
                }
                Err(TriggerError::NotLeader | TriggerError::Fenced) => {
                    metrics::counter!("plausible_webhooks_trigger_ticks_total", "result" => "fenced")
                        .increment(1);
                    tracing::warn!("trigger tick fenced out: another daemon leads");
                    return Ended::Lost;
                }
                Err(e) => {
                    metrics::counter!("plausible_webhooks_trigger_ticks_total", "result" => "error")
                        .increment(1);
                    if !failing {
                        tracing::warn!(error = %e, "trigger tick failed; retrying every tick until it succeeds");
                        failing = true;
                    } else {
                        tracing::debug!(error = %e, "trigger tick failed again");
                    }
                }
            }
        }
    }

    /// Reads the durable state into memory (a tick does this first after
    /// taking the lease or a failed commit).
    pub async fn load(&mut self) -> Result<(), TriggerError> {
        // An hour more than the ticks keep: this is the daemon's clock, the
        // ticks use ClickHouse's, and a count missing here would be counted
        // again. The first tick prunes the surplus.
        let retention_start = Utc::now()
            - chrono::Duration::hours(i64::from(self.config.goal_count_retention_hours) + 1);
        let loaded = state_store::load(&self.pool, retention_start).await?;
        self.state = State {
            cursor: loaded.cursor.map(secs),
            counted: loaded
                .goal_counts
                .into_iter()
                .map(|(goal, minute, n)| ((goal, secs(minute)), n.max(0) as u64))
                .collect(),
            throttles: loaded
                .throttles
                .into_iter()
                .map(|(key, t)| {
                    (
                        key,
                        goal_rules::Throttle {
                            last_sent_at: t.last_sent_at.map(secs),
                            pending: t.pending.max(0) as u64,
                            pending_from: t.pending_from.map(secs),
                        },
                    )
                })
                .collect(),
            alerts: loaded
                .alerts
                .into_iter()
                .filter_map(|((webhook, kind), at)| {
                    EventType::parse(&kind).map(|k| ((webhook, k), secs(at)))
                })
                .collect(),
            waiting: BTreeSet::new(),
            last_drop_check: None,
            last_prune: 0,
            ticks: 0,
        };
        // Intervals are not known before the registry is read: every
        // waiting throttle is looked at on the first tick.
        self.state.waiting = self
            .state
            .throttles
            .iter()
            .filter(|(_, t)| t.pending > 0)
            .map(|((webhook, goal), _)| (0, *webhook, *goal))
            .collect();
        tracing::info!(
            cursor = ?self.state.cursor,
            goal_counts = self.state.counted.len(),
            throttles = self.state.throttles.len(),
            "trigger state loaded"
        );
        Ok(())
    }

    /// One pass; see the module documentation. Takes the lease first when
    /// this engine does not hold it (for tests and benches that tick by
    /// hand); fails with [`TriggerError::NotLeader`] when another holds it.
    pub async fn tick(&mut self) -> Result<TickReport, TriggerError> {
        let token = self.leading().await?;
        let mut clickhouse_time = Duration::ZERO;
        let scan = self.scan(&mut clickhouse_time).await?;
        let plan = plan::Plan::new(&self.registry, &scan);
        let mut decided = commit::Decided::new(&scan);
        self.goals(&scan, &plan, &mut decided, &mut clickhouse_time)
            .await?;
        self.spikes(&scan, &plan, &mut decided, &mut clickhouse_time)
            .await?;
        self.drops(&scan, &plan, &mut decided, &mut clickhouse_time)
            .await?;
        let mut report = decided.report(&scan);
        report.clickhouse_time = clickhouse_time;
        report.enqueued = self.commit(&token, &decided).await?;
        self.apply(decided);
        self.prune_if_due(&scan).await;
        Ok(report)
    }

    /// The lease token to fence this tick's commit with, taking the lease
    /// (and reading the state afresh) when this engine does not hold it.
    async fn leading(&mut self) -> Result<String, TriggerError> {
        let token = match self.lease.token() {
            Some(token) => token,
            None => {
                if !self.lease.acquire().await? {
                    return Err(TriggerError::NotLeader);
                }
                self.stale = true;
                self.lease.token().ok_or(TriggerError::NotLeader)?
            }
        };
        if self.stale {
            self.load().await?;
            self.stale = false;
        }
        Ok(token)
    }

    /// A spike or drop is "the one after the previous firing": two ticks
    /// (or two daemons) computing the same firing share the key.
    fn alert_key(&self, webhook: &Webhook, kind: EventType) -> String {
        let previous = self
            .state
            .alerts
            .get(&(webhook.id, kind))
            .copied()
            .unwrap_or(0);
        format!("{kind}:after:{previous}")
    }

    fn cooled_down(&self, webhook: &Webhook, kind: EventType, now: u32) -> bool {
        self.state
            .alerts
            .get(&(webhook.id, kind))
            .is_none_or(|last| u64::from(now.saturating_sub(*last)) >= webhook.cooldown.as_secs())
    }

    /// The tick is committed whatever comes of pruning; a failed prune is
    /// tried again next tick.
    async fn prune_if_due(&mut self, scan: &plan::Scan) {
        if scan.now.saturating_sub(self.state.last_prune) < PRUNE_EVERY_SECS {
            return;
        }
        match self.prune(scan.retention_start).await {
            Ok(()) => self.state.last_prune = scan.now,
            Err(e) => tracing::warn!(error = %e, "cannot prune old goal counts; retrying"),
        }
    }

    async fn prune(&mut self, retention_start: u32) -> Result<(), TriggerError> {
        let client = self.pool.get().await.map_err(StoreError::from)?;
        state_store::prune_goal_counts(&**client, time(retention_start)).await?;
        self.state
            .counted
            .retain(|(_, minute), _| *minute >= retention_start);
        let registry = self.registry.read();
        self.state
            .throttles
            .retain(|(webhook, _), _| registry.webhook(*webhook).is_some());
        Ok(())
    }
}

/// Tries to take the lease every [`Lease::try_every`], beating meanwhile.
/// False when shutdown came first.
async fn stand_by(
    lease: &Lease,
    shutdown: &mut watch::Receiver<bool>,
    heartbeat: &Heartbeat,
) -> bool {
    let mut failing = false;
    loop {
        heartbeat.beat();
        let attempt = tokio::time::timeout(
            lease.try_every().max(Duration::from_secs(1)),
            lease.acquire(),
        );
        tokio::select! {
            r = attempt => match r {
                Ok(Ok(true)) => return true,
                Ok(Ok(false)) => failing = false,
                Ok(Err(e)) => {
                    if !failing {
                        tracing::warn!(error = %e, "cannot reach Postgres to take the trigger lease; retrying");
                    }
                    failing = true;
                }
                Err(_) => {
                    if !failing {
                        tracing::warn!("taking the trigger lease timed out; retrying");
                    }
                    failing = true;
                }
            },
            _ = shutdown.wait_for(|stop| *stop) => return false,
        }
        tokio::select! {
            () = tokio::time::sleep(lease.try_every()) => {}
            _ = shutdown.wait_for(|stop| *stop) => return false,
        }
    }
}

/// Awaits a ClickHouse query, adding its time to `total`.
async fn timed<T>(total: &mut Duration, query: impl Future<Output = T>) -> T {
    let started = Instant::now();
    let result = query.await;
    *total += started.elapsed();
    result
}

fn time(secs: u32) -> DateTime<Utc> {
    DateTime::from_timestamp(i64::from(secs), 0).unwrap_or_default()
}

fn secs(at: DateTime<Utc>) -> u32 {
    at.timestamp().clamp(0, i64::from(u32::MAX)) as u32
}
