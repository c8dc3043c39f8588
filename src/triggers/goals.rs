//! The goal stage of a tick: recount the changed buckets, take the
//! difference from what was counted before, feed it through the throttles,
//! and build a `goal.completed` delivery for each throttle now due.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rustc_hash::FxHashMap;

use super::commit::Decided;
use super::goal_rules::{self, Throttle};
use super::payload::{self, Envelope, GoalRef, Interval, Revenue, SiteRef};
use super::plan::{Plan, Scan};
use super::{TriggerEngine, TriggerError, time, timed};
use crate::analytics::trigger_reads as queries;
use crate::registry::{EventType, Goal, GoalKind, Webhook};
use crate::store::trigger_state::NewDelivery;

/// The most buckets one read of event-key counts covers: the rows of a
/// read are held in memory until they are summed per goal and minute.
const BUCKETS_PER_READ: usize = 2_000;

const DAY_SECS: u32 = 86_400;

/// Counts per counting key (goal, minute): the goal's site, the count, and
/// the earliest changed minute it came from.
type Totals = BTreeMap<(i64, u32), (i64, u64, u32)>;

/// The counting key of a scroll goal's UTC day: the day's last minute, so
/// that the count is kept (and pruned) with the newest minute that can
/// still change it: while any minute of the day may be recounted, what was
/// counted for the day is remembered.
pub(super) fn scroll_day_key(minute: u32) -> u32 {
    // Saturating: a row's timestamp may be any DateTime, up to 2106.
    (minute - minute % DAY_SECS).saturating_add(DAY_SECS - 60)
}

struct DueGoal {
    webhook: Arc<Webhook>,
    site: SiteRef,
    goal: Arc<Goal>,
    completions: u64,
    from: u32,
}

impl TriggerEngine {
    pub(super) async fn goals(
        &self,
        scan: &Scan,
        plan: &Plan,
        decided: &mut Decided,
        clickhouse_time: &mut Duration,
    ) -> Result<(), TriggerError> {
        let totals = self.recount(plan, clickhouse_time).await?;
        self.count_new(plan, totals, decided);
        self.pop_waiting(scan, decided);
        let due = self.take_due(scan, decided);
        self.goal_deliveries(scan, &due, decided, clickhouse_time)
            .await
    }

    /// Completions per counting key in the changed buckets, with the
    /// goal's site and the earliest changed minute, read a bounded number
    /// of buckets at a time. Page and event goals count events per (goal,
    /// minute); scroll goals count visitors per (goal, UTC day), keyed by
    /// the day's last minute (see [`scroll_day_key`]).
    async fn recount(
        &self,
        plan: &Plan,
        clickhouse_time: &mut Duration,
    ) -> Result<Totals, TriggerError> {
        let mut buckets = plan.goal_buckets.clone();
        buckets.sort_unstable_by_key(|(site, minute)| (*minute, *site));
        let mut totals = Totals::new();
        let mut scroll_days: BTreeMap<(i64, u32), (i64, u32, Arc<Goal>)> = BTreeMap::new();
        for chunk in buckets.chunks(BUCKETS_PER_READ) {
            let key_counts = timed(
                clickhouse_time,
                queries::goal_key_counts(&self.analytics, chunk),
            )
            .await?;
            for key in &key_counts {
                let Some(site) = plan.sites.get(&(key.site_id as i64)) else {
                    continue;
                };
                for goal in site.goals.iter().filter(|g| goal_rules::matches(g, key)) {
                    if matches!(goal.kind, GoalKind::Scroll { .. }) {
                        let day = scroll_days
                            .entry((goal.id, scroll_day_key(key.minute)))
                            .or_insert((site.id, key.minute, goal.clone()));
                        day.1 = day.1.min(key.minute);
                    } else {
                        let total = totals
                            .entry((goal.id, key.minute))
                            .or_insert((site.id, 0, key.minute));
                        total.1 += key.completions;
                    }
                }
            }
        }
        self.recount_scroll_days(scroll_days, &mut totals, clickhouse_time)
            .await?;
        Ok(totals)
    }

    /// A scroll goal's count for a UTC day is the distinct visitors who
    /// reached its threshold on a matching page that day, read whole for
    /// every day a changed bucket touched. The count only grows as rows
    /// arrive (late ones included) and merges leave it as it is, so the
    /// difference from what was counted is the visitors new that day.
    async fn recount_scroll_days(
        &self,
        days: BTreeMap<(i64, u32), (i64, u32, Arc<Goal>)>,
        totals: &mut Totals,
        clickhouse_time: &mut Duration,
    ) -> Result<(), TriggerError> {
        if days.is_empty() {
            return Ok(());
        }
        let requests: Vec<queries::VisitorRequest> = days
            .iter()
            .map(
                |((_, last_minute), (site_id, _, goal))| queries::VisitorRequest {
                    site_id: *site_id as u64,
                    from_minute: last_minute.saturating_sub(DAY_SECS - 60),
                    to_minute: *last_minute,
                    goal: goal_rules::filter(goal),
                },
            )
            .collect();
        let visitors = timed(
            clickhouse_time,
            queries::goal_visitors_batch(&self.analytics, &requests),
        )
        .await?;
        for ((key, (site_id, earliest, _)), visitors) in days.into_iter().zip(visitors) {
            totals.insert(key, (site_id, visitors, earliest));
        }
        Ok(())
    }

    /// The differences from what was counted, into the throttles.
    fn count_new(&self, plan: &Plan, totals: Totals, decided: &mut Decided) {
        for ((goal_id, key_minute), (site_id, total, minute)) in totals {
            let before = self
                .state
                .counted
                .get(&(goal_id, key_minute))
                .copied()
                .unwrap_or(0);
            if total <= before {
                continue;
            }
            decided.counted.push(((goal_id, key_minute), total));
            let Some(site) = plan.sites.get(&site_id) else {
                continue;
            };
            for webhook in site.webhooks.iter().filter(|w| wants_goal(w, goal_id)) {
                let key = (webhook.id, goal_id);
                let throttle = decided
                    .throttles
                    .entry(key)
                    .or_insert_with(|| self.state.throttles.get(&key).copied().unwrap_or_default());
                throttle.add(total - before, minute);
            }
        }
    }

    /// The waiting throttles whose time has come may now be due.
    fn pop_waiting(&self, scan: &Scan, decided: &mut Decided) {
        decided.popped = self
            .state
            .waiting
            .range(..(scan.now.saturating_add(1), i64::MIN, i64::MIN))
            .copied()
            .collect();
        for (_, webhook, goal) in &decided.popped {
            let key = (*webhook, *goal);
            if let Some(throttle) = self.state.throttles.get(&key) {
                decided.throttles.entry(key).or_insert(*throttle);
            }
        }
    }

    /// Takes what is due out of the touched throttles; forgets throttles
    /// whose webhook, goal or subscription is gone.
    fn take_due(&self, scan: &Scan, decided: &mut Decided) -> Vec<DueGoal> {
        let now = scan.now;
        let mut due = Vec::new();
        let registry = self.registry.read();
        let still_waiting = &mut decided.still_waiting;
        decided
            .throttles
            .retain(|(webhook_id, goal_id), throttle: &mut Throttle| {
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
        due
    }

    async fn goal_deliveries(
        &self,
        scan: &Scan,
        due: &[DueGoal],
        decided: &mut Decided,
        clickhouse_time: &mut Duration,
    ) -> Result<(), TriggerError> {
        let now = scan.now;
        let requests: Vec<queries::VisitorRequest> = due
            .iter()
            .map(|d| queries::VisitorRequest {
                site_id: d.site.id as u64,
                from_minute: d.from,
                // Visitors of the minutes the completions came from: while
                // catching up, not the minutes later steps will count.
                to_minute: scan.data_minute.max(d.from),
                goal: goal_rules::filter(&d.goal),
            })
            .collect();
        let visitors = timed(
            clickhouse_time,
            queries::goal_visitors_batch(&self.analytics, &requests),
        )
        .await?;
        let revenues = self.revenues(due, &requests, clickhouse_time).await?;
        for ((d, visitors), revenue) in due.iter().zip(visitors).zip(revenues) {
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
                    // the completions this delivery carries. A scroll
                    // goal's completions are visitors already.
                    visitors: match d.goal.kind {
                        GoalKind::Scroll { .. } => d.completions,
                        _ => visitors.min(d.completions),
                    },
                    revenue,
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
            let triggered_at = decided.triggered_at(d.site.id);
            decided.deliveries.push(NewDelivery {
                triggered_at,
                webhook_id: d.webhook.id,
                event_type: EventType::GoalCompleted.as_str(),
                payload: body.to_json(),
                dedupe_key: format!("goal.completed:{}:{}:{}", d.goal.id, d.from, now),
            });
        }
        decided.goal_deliveries = due.len();
        Ok(())
    }
}

impl TriggerEngine {
    /// The revenue of each due revenue goal over the same minutes as its
    /// visitors (`None` for goals without a currency), in `due`'s order.
    async fn revenues(
        &self,
        due: &[DueGoal],
        requests: &[queries::VisitorRequest],
        clickhouse_time: &mut Duration,
    ) -> Result<Vec<Option<Revenue>>, TriggerError> {
        let asked: Vec<queries::RevenueRequest> = due
            .iter()
            .zip(requests)
            .filter_map(|(d, r)| {
                d.goal
                    .currency
                    .as_ref()
                    .map(|currency| queries::RevenueRequest {
                        site_id: r.site_id,
                        from_minute: r.from_minute,
                        to_minute: r.to_minute,
                        goal: r.goal.clone(),
                        currency: currency.clone(),
                    })
            })
            .collect();
        let mut amounts = timed(
            clickhouse_time,
            queries::goal_revenue(&self.analytics, &asked),
        )
        .await?
        .into_iter();
        Ok(due
            .iter()
            .map(|d| {
                let currency = d.goal.currency.clone()?;
                let amount = amounts.next()?;
                Some(Revenue { amount, currency })
            })
            .collect())
    }
}

fn wants_goal(webhook: &Webhook, goal_id: i64) -> bool {
    webhook.goals.as_ref().is_some_and(|rule| {
        rule.goal_ids
            .as_ref()
            .is_none_or(|ids| ids.contains(&goal_id))
    })
}

/// Touched throttles, per (webhook, goal).
pub(super) type Throttles = FxHashMap<(i64, i64), Throttle>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scroll_day_is_keyed_by_its_last_minute() {
        // 2026-03-02 00:00:00 UTC.
        let day = 1_772_409_600;
        assert_eq!(scroll_day_key(day), day + 86_340);
        assert_eq!(scroll_day_key(day + 86_340), day + 86_340);
        assert_eq!(scroll_day_key(day + 86_400), day + 2 * 86_400 - 60);
        assert_eq!(scroll_day_key(day - 60), day - 60);
        // The last day a DateTime holds does not overflow.
        assert_eq!(scroll_day_key(u32::MAX), u32::MAX);
    }
}
