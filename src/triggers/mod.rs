//! The trigger engine: turns the analytics stream into outbox rows.
//!
//! Every `triggers.poll_interval_ms` a *tick*:
//!
//! 1. asks ClickHouse which (site, minute) buckets inserts touched since a
//!    little before the last insert it saw (`webhooks_inserts`);
//! 2. recounts goal completions in those buckets (whole buckets, so merges
//!    and late rows change nothing) and takes the difference from what was
//!    already counted (`webhook_goal_counts`): each completion is counted
//!    exactly once;
//! 3. feeds new completions through each webhook's throttle (the first
//!    after a quiet interval goes out at once, later ones wait for the
//!    interval);
//! 4. checks spikes for the sites with new data, and drops every
//!    `triggers.drop_check_interval_secs`, each with its cooldown;
//! 5. writes the outbox rows, the counts, throttles, alert times and the
//!    cursor in one Postgres transaction.
//!
//! Until that transaction commits nothing is remembered, so a failed tick
//! (ClickHouse or Postgres down) is simply done again later.

pub mod goals;
pub mod payload;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use rustc_hash::FxHashMap;
use tokio::sync::watch;

use crate::analytics::triggers::{self as queries, Top};
use crate::analytics::{Analytics, AnalyticsError};
use crate::config::{Config, TriggersConfig};
use crate::registry::{EventType, Goal, RegistryHandle, Site, Webhook};
use crate::store::StoreError;
use crate::store::triggers::{self as state_store, NewDelivery, TickWrite};
use crate::telemetry::health::Heartbeat;
use payload::{Envelope, GoalRef, Interval, PageCount, SiteRef, SourceCount};

/// Distinct visitors over this many minutes below the threshold: a drop.
const DROP_WINDOW_MINUTES: u32 = 12 * 60;
/// Every this many ticks, the scan for changed buckets looks back the whole
/// `triggers.rescan_margin_secs` instead of one second.
const WIDE_SCAN_EVERY: u64 = 5;
/// How often old goal counts are forgotten.
const PRUNE_EVERY_SECS: u32 = 600;

#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    #[error(transparent)]
    Analytics(#[from] AnalyticsError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What the engine remembers between ticks (a copy of what Postgres holds).
#[derive(Debug, Default)]
struct State {
    /// The newest insert time seen (server seconds).
    cursor: Option<u32>,
    /// Completions already counted, per (goal, minute).
    counted: FxHashMap<(i64, u32), u64>,
    /// Per (webhook, goal).
    throttles: FxHashMap<(i64, i64), goals::Throttle>,
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
    /// Time spent waiting for ClickHouse.
    pub clickhouse_time: Duration,
}

pub struct TriggerEngine {
    analytics: Analytics,
    pool: Pool,
    registry: RegistryHandle,
    config: TriggersConfig,
    state: State,
    /// A commit failed, perhaps after it had landed (its acknowledgement
    /// lost): `state` may be behind Postgres and is read again first.
    stale: bool,
}

impl TriggerEngine {
    pub fn new(
        config: &Config,
        pool: Pool,
        analytics: Analytics,
        registry: RegistryHandle,
    ) -> TriggerEngine {
        TriggerEngine {
            analytics,
            pool,
            registry,
            config: config.triggers.clone(),
            state: State::default(),
            stale: false,
        }
    }

    /// Loads the durable state, then ticks until `shutdown` is true.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>, heartbeat: Heartbeat) {
        let mut delay = Duration::from_millis(250);
        loop {
            heartbeat.beat();
            let loaded = tokio::select! {
                r = self.load() => r,
                _ = shutdown.wait_for(|stop| *stop) => return,
            };
            match loaded {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?delay, "cannot load the trigger state");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        _ = shutdown.wait_for(|stop| *stop) => return,
                    }
                    delay = (delay * 2).min(Duration::from_secs(30));
                }
            }
        }
        let mut ticks = tokio::time::interval(Duration::from_millis(self.config.poll_interval_ms));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            heartbeat.beat();
            tokio::select! {
                _ = ticks.tick() => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
            let started = Instant::now();
            let result = tokio::select! {
                r = self.tick() => r,
                _ = shutdown.wait_for(|stop| *stop) => return,
            };
            metrics::histogram!("plausible_webhooks_trigger_tick_duration_seconds")
                .record(started.elapsed().as_secs_f64());
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

    /// Reads the durable state into memory (`run` does this first).
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
                        goals::Throttle {
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

    /// One pass; see the module documentation.
    pub async fn tick(&mut self) -> Result<TickReport, TriggerError> {
        if self.stale {
            self.load().await?;
            self.stale = false;
        }
        let mut clickhouse_time = Duration::ZERO;
        let now = timed(&mut clickhouse_time, queries::server_now(&self.analytics)).await?;
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
        let changed = timed(
            &mut clickhouse_time,
            queries::changed_buckets(&self.analytics, since),
        )
        .await?;
        let newest = changed.iter().map(|b| b.last_inserted_at).max();
        let new_cursor = newest.map_or(cursor, |n| n.max(cursor));
        metrics::gauge!("plausible_webhooks_trigger_cursor_lag_seconds")
            .set(f64::from(now.saturating_sub(new_cursor)));

        let retention_start =
            now_minute.saturating_sub(self.config.goal_count_retention_hours.saturating_mul(3600));
        let drop_due = self.state.last_drop_check.is_none_or(|last| {
            u64::from(now.saturating_sub(last)) >= self.config.drop_check_interval_secs
        });
        let plan = Plan::new(&self.registry, &changed, retention_start, drop_due);

        let mut write = TickWrite::default();
        let mut report = TickReport {
            changed_buckets: changed.len(),
            ..TickReport::default()
        };
        let mut counted = Vec::new();
        let mut throttles: FxHashMap<(i64, i64), goals::Throttle> = FxHashMap::default();
        let mut alerts: Vec<((i64, EventType), u32)> = Vec::new();

        // Goals: recount the changed buckets, feed the differences through
        // the throttles.
        let key_counts = timed(
            &mut clickhouse_time,
            queries::goal_key_counts(&self.analytics, &plan.goal_buckets),
        )
        .await?;
        let mut totals: BTreeMap<(i64, u32), (i64, u64)> = BTreeMap::new();
        for key in &key_counts {
            let Some(site) = plan.sites.get(&(key.site_id as i64)) else {
                continue;
            };
            for goal in &site.goals {
                if goals::matches(goal, key) {
                    totals
                        .entry((goal.id, key.minute))
                        .or_insert((site.id, 0))
                        .1 += key.completions;
                }
            }
        }
        for ((goal_id, minute), (site_id, total)) in totals {
            let before = self
                .state
                .counted
                .get(&(goal_id, minute))
                .copied()
                .unwrap_or(0);
            if total <= before {
                continue;
            }
            counted.push(((goal_id, minute), total));
            let Some(site) = plan.sites.get(&site_id) else {
                continue;
            };
            for webhook in site.webhooks.iter().filter(|w| wants_goal(w, goal_id)) {
                let key = (webhook.id, goal_id);
                let throttle = throttles
                    .entry(key)
                    .or_insert_with(|| self.state.throttles.get(&key).copied().unwrap_or_default());
                throttle.add(total - before, minute);
            }
        }
        // The waiting throttles whose time has come may now be due.
        let popped: Vec<(u32, i64, i64)> = self
            .state
            .waiting
            .range(..(now.saturating_add(1), i64::MIN, i64::MIN))
            .copied()
            .collect();
        for (_, webhook, goal) in &popped {
            let key = (*webhook, *goal);
            if let Some(throttle) = self.state.throttles.get(&key) {
                throttles.entry(key).or_insert(*throttle);
            }
        }
        let mut due = Vec::new();
        let mut still_waiting = Vec::new();
        {
            let registry = self.registry.read();
            throttles.retain(|(webhook_id, goal_id), throttle| {
                let Some(webhook) = registry.webhook(*webhook_id) else {
                    return false;
                };
                let Some(rule) = webhook
                    .goals
                    .as_ref()
                    .filter(|_| wants_goal(webhook, *goal_id))
                else {
                    return false;
                };
                let Some(site) = registry.site(webhook.site_id) else {
                    return false;
                };
                let Some(goal) = site.goals.iter().find(|g| g.id == *goal_id) else {
                    return false;
                };
                let interval = rule.interval.as_secs().min(u64::from(u32::MAX)) as u32;
                let taken = throttle.take_due(now, interval);
                if throttle.pending > 0 {
                    let at = throttle
                        .last_sent_at
                        .map_or(now, |l| l.saturating_add(interval));
                    still_waiting.push((at, *webhook_id, *goal_id));
                }
                if let Some((completions, from)) = taken {
                    due.push(DueGoal {
                        webhook: webhook.clone(),
                        site: SiteRef {
                            id: site.id,
                            domain: site.domain.clone(),
                        },
                        goal: goal.clone(),
                        completions,
                        from,
                    });
                }
                true
            });
        }
        let requests: Vec<queries::VisitorRequest> = due
            .iter()
            .map(|d| queries::VisitorRequest {
                site_id: d.site.id as u64,
                from_minute: d.from,
                to_minute: now_minute,
                goal: goals::filter(&d.goal),
            })
            .collect();
        let visitors = timed(
            &mut clickhouse_time,
            queries::goal_visitors_batch(&self.analytics, &requests),
        )
        .await?;
        for (d, visitors) in due.iter().zip(visitors) {
            let from = time(d.from);
            let body = Envelope::new(
                EventType::GoalCompleted.as_str(),
                time(now),
                payload::GoalCompleted {
                    site: d.site.clone(),
                    goal: GoalRef {
                        id: d.goal.id,
                        name: d.goal.display_name.clone(),
                        kind: d.goal.kind.as_str(),
                    },
                    completions: d.completions,
                    // Counted over the interval's whole minutes, which may
                    // hold completions already reported; never more than
                    // the completions this delivery carries.
                    visitors: visitors.min(d.completions),
                    interval: Interval {
                        from: payload::rfc3339(from),
                        to: payload::rfc3339(time(now)),
                    },
                    dashboard_url: payload::dashboard_url(
                        &self.config.dashboard_base_url,
                        &d.site.domain,
                        "period=day",
                    ),
                },
            );
            write.deliveries.push(NewDelivery {
                webhook_id: d.webhook.id,
                event_type: EventType::GoalCompleted.as_str(),
                payload: body.to_json(),
                dedupe_key: format!("goal.completed:{}:{}:{}", d.goal.id, d.from, now),
            });
        }
        report.goal_deliveries = due.len();

        // Spikes, for the sites with new data.
        for (window, sites) in &plan.spike_windows {
            let since = window_start(now_minute, *window);
            let counts: HashMap<u64, u64> = timed(
                &mut clickhouse_time,
                queries::site_visitors(&self.analytics, sites, since),
            )
            .await?
            .into_iter()
            .collect();
            for site_id in sites {
                let visitors = counts.get(site_id).copied().unwrap_or(0);
                let Some(site) = plan.sites.get(&(*site_id as i64)) else {
                    continue;
                };
                let firing: Vec<&Arc<Webhook>> = site
                    .webhooks
                    .iter()
                    .filter(|w| {
                        w.spike.is_some_and(|s| {
                            s.window_minutes == *window && visitors >= u64::from(s.threshold)
                        }) && self.cooled_down(w, EventType::TrafficSpike, now)
                    })
                    .collect();
                if firing.is_empty() {
                    continue;
                }
                let top_pages = timed(
                    &mut clickhouse_time,
                    queries::top(&self.analytics, Top::Pages, *site_id, since),
                )
                .await?;
                let top_sources = timed(
                    &mut clickhouse_time,
                    queries::top(&self.analytics, Top::Sources, *site_id, since),
                )
                .await?;
                for webhook in firing {
                    let Some(rule) = webhook.spike else { continue };
                    let body = Envelope::new(
                        EventType::TrafficSpike.as_str(),
                        time(now),
                        payload::Spike {
                            site: SiteRef {
                                id: site.id,
                                domain: site.domain.clone(),
                            },
                            visitors,
                            threshold: rule.threshold,
                            window_minutes: rule.window_minutes,
                            top_pages: top_pages
                                .iter()
                                .map(|(page, visitors)| PageCount {
                                    page: page.clone(),
                                    visitors: *visitors,
                                })
                                .collect(),
                            top_sources: top_sources
                                .iter()
                                .map(|(source, visitors)| SourceCount {
                                    source: source.clone(),
                                    visitors: *visitors,
                                })
                                .collect(),
                            dashboard_url: payload::dashboard_url(
                                &self.config.dashboard_base_url,
                                &site.domain,
                                "period=realtime",
                            ),
                        },
                    );
                    write.deliveries.push(NewDelivery {
                        webhook_id: webhook.id,
                        event_type: EventType::TrafficSpike.as_str(),
                        payload: body.to_json(),
                        dedupe_key: self.alert_key(webhook, EventType::TrafficSpike),
                    });
                    alerts.push(((webhook.id, EventType::TrafficSpike), now));
                    report.spikes += 1;
                }
            }
        }

        // Drops, every drop_check_interval_secs.
        if drop_due && !plan.drop_sites.is_empty() {
            let since = window_start(now_minute, DROP_WINDOW_MINUTES);
            let counts: HashMap<u64, u64> = timed(
                &mut clickhouse_time,
                queries::site_visitors(&self.analytics, &plan.drop_sites, since),
            )
            .await?
            .into_iter()
            .collect();
            let quiet: Vec<u64> = plan
                .drop_sites
                .iter()
                .copied()
                .filter(|s| !counts.contains_key(s))
                .collect();
            let had_data: HashSet<u64> = timed(
                &mut clickhouse_time,
                queries::sites_with_data(&self.analytics, &quiet),
            )
            .await?
            .into_iter()
            .chain(counts.keys().copied())
            .collect();
            for site_id in &plan.drop_sites {
                if !had_data.contains(site_id) {
                    continue;
                }
                let visitors = counts.get(site_id).copied().unwrap_or(0);
                let Some(site) = plan.sites.get(&(*site_id as i64)) else {
                    continue;
                };
                for webhook in &site.webhooks {
                    let Some(rule) = webhook.drop else { continue };
                    if visitors >= u64::from(rule.threshold)
                        || !self.cooled_down(webhook, EventType::TrafficDrop, now)
                    {
                        continue;
                    }
                    let body = Envelope::new(
                        EventType::TrafficDrop.as_str(),
                        time(now),
                        payload::Drop {
                            site: SiteRef {
                                id: site.id,
                                domain: site.domain.clone(),
                            },
                            visitors,
                            threshold: rule.threshold,
                            window_hours: DROP_WINDOW_MINUTES / 60,
                            dashboard_url: payload::dashboard_url(
                                &self.config.dashboard_base_url,
                                &site.domain,
                                "period=day",
                            ),
                        },
                    );
                    write.deliveries.push(NewDelivery {
                        webhook_id: webhook.id,
                        event_type: EventType::TrafficDrop.as_str(),
                        payload: body.to_json(),
                        dedupe_key: self.alert_key(webhook, EventType::TrafficDrop),
                    });
                    alerts.push(((webhook.id, EventType::TrafficDrop), now));
                    report.drops += 1;
                }
            }
        }

        // One transaction for everything, or nothing is remembered.
        if Some(new_cursor) != self.state.cursor {
            write.cursor = Some(time(new_cursor));
        }
        write.goal_counts = counted
            .iter()
            .map(|((goal, minute), n)| (*goal, time(*minute), *n as i64))
            .collect();
        let changed_throttles: Vec<((i64, i64), goals::Throttle)> = throttles
            .iter()
            .filter(|(key, t)| self.state.throttles.get(key) != Some(t))
            .map(|(k, t)| (*k, *t))
            .collect();
        write.throttles = changed_throttles
            .iter()
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
            .collect();
        write.alerts = alerts
            .iter()
            .map(|((webhook, kind), at)| ((*webhook, kind.as_str()), time(*at)))
            .collect();
        report.clickhouse_time = clickhouse_time;
        if !write.is_empty() {
            report.enqueued = match state_store::commit_tick(&self.pool, &write).await {
                Ok(enqueued) => enqueued,
                Err(e) => {
                    self.stale = true;
                    return Err(e.into());
                }
            };
        }

        // Committed: remember.
        self.state.cursor = Some(new_cursor);
        self.state.counted.extend(counted);
        self.state.throttles.extend(changed_throttles);
        for entry in &popped {
            self.state.waiting.remove(entry);
        }
        self.state.waiting.extend(still_waiting);
        self.state.alerts.extend(alerts);
        if drop_due {
            self.state.last_drop_check = Some(now);
        }
        for d in &write.deliveries {
            metrics::counter!("plausible_webhooks_trigger_events_total", "type" => d.event_type)
                .increment(1);
        }
        // The tick is committed whatever comes of pruning; a failed prune
        // is tried again next tick.
        if now.saturating_sub(self.state.last_prune) >= PRUNE_EVERY_SECS {
            match self.prune(retention_start).await {
                Ok(()) => self.state.last_prune = now,
                Err(e) => tracing::warn!(error = %e, "cannot prune old goal counts; retrying"),
            }
        }
        Ok(report)
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

/// What one tick looks at, copied out of the registry so that no lock is
/// held across a query.
struct Plan {
    sites: FxHashMap<i64, Arc<Site>>,
    /// Changed buckets of sites with goal webhooks, within retention.
    goal_buckets: Vec<(u64, u32)>,
    /// Sites with new data and spike webhooks, by window length.
    spike_windows: BTreeMap<u32, Vec<u64>>,
    /// Sites with drop webhooks (when a drop check is due).
    drop_sites: Vec<u64>,
}

impl Plan {
    fn new(
        registry: &RegistryHandle,
        changed: &[queries::ChangedBucket],
        retention_start: u32,
        drop_due: bool,
    ) -> Plan {
        let registry = registry.read();
        let mut plan = Plan {
            sites: FxHashMap::default(),
            goal_buckets: Vec::new(),
            spike_windows: BTreeMap::new(),
            drop_sites: Vec::new(),
        };
        for bucket in changed {
            let Some(site) = registry.site_shared(bucket.site_id as i64) else {
                continue;
            };
            if bucket.minute >= retention_start
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
        if drop_due {
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

struct DueGoal {
    webhook: Arc<Webhook>,
    site: SiteRef,
    goal: Arc<Goal>,
    completions: u64,
    from: u32,
}

/// Awaits a ClickHouse query, adding its time to `total`.
async fn timed<T>(total: &mut Duration, query: impl Future<Output = T>) -> T {
    let started = Instant::now();
    let result = query.await;
    *total += started.elapsed();
    result
}

fn wants_goal(webhook: &Webhook, goal_id: i64) -> bool {
    webhook.goals.as_ref().is_some_and(|rule| {
        rule.goal_ids
            .as_ref()
            .is_none_or(|ids| ids.contains(&goal_id))
    })
}

/// The first minute of a trailing window of `minutes` minute buckets that
/// ends with the current one.
fn window_start(now_minute: u32, minutes: u32) -> u32 {
    now_minute.saturating_sub(minutes.saturating_sub(1) * 60)
}

fn time(secs: u32) -> DateTime<Utc> {
    DateTime::from_timestamp(i64::from(secs), 0).unwrap_or_default()
}

fn secs(at: DateTime<Utc>) -> u32 {
    at.timestamp().clamp(0, i64::from(u32::MAX)) as u32
}
