//! The spike stage of a tick: for the sites with new data, distinct
//! visitors over each spike webhook's window; at or above its threshold,
//! and cooled down, a `traffic.spike` with the top pages and sources.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::commit::Decided;
use super::payload::{self, Envelope, PageCount, SiteRef, SourceCount};
use super::plan::{Plan, Scan, window_start};
use super::{TriggerEngine, TriggerError, time, timed};
use crate::analytics::trigger_reads::{self as queries, Top};
use crate::registry::{EventType, Site, Webhook};
use crate::store::trigger_state::NewDelivery;

/// The top pages or sources of a site, with visitors.
type TopList = [(String, u64)];

impl TriggerEngine {
    pub(super) async fn spikes(
        &self,
        scan: &Scan,
        plan: &Plan,
        decided: &mut Decided,
        clickhouse_time: &mut Duration,
    ) -> Result<(), TriggerError> {
        let now = scan.now;
        for (window, sites) in &plan.spike_windows {
            let since = window_start(scan.now_minute, *window);
            let counts: HashMap<u64, u64> = timed(
                clickhouse_time,
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
                    clickhouse_time,
                    queries::top(&self.analytics, Top::Pages, *site_id, since),
                )
                .await?;
                let top_sources = timed(
                    clickhouse_time,
                    queries::top(&self.analytics, Top::Sources, *site_id, since),
                )
                .await?;
                for webhook in firing {
                    self.fire_spike(
                        site,
                        webhook,
                        visitors,
                        (&top_pages, &top_sources),
                        now,
                        decided,
                    );
                }
            }
        }
        Ok(())
    }

    fn fire_spike(
        &self,
        site: &Site,
        webhook: &Webhook,
        visitors: u64,
        (top_pages, top_sources): (&TopList, &TopList),
        now: u32,
        decided: &mut Decided,
    ) {
        let Some(rule) = webhook.spike else { return };
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
                        page: payload::visitor_text(page),
                        visitors: *visitors,
                    })
                    .collect(),
                top_sources: top_sources
                    .iter()
                    .map(|(source, visitors)| SourceCount {
                        source: payload::visitor_text(source),
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
        let triggered_at = decided.triggered_at(site.id);
        decided.deliveries.push(NewDelivery {
            triggered_at,
            webhook_id: webhook.id,
            event_type: EventType::TrafficSpike.as_str(),
            payload: body.to_json(),
            dedupe_key: self.alert_key(webhook, EventType::TrafficSpike),
        });
        decided
            .alerts
            .push(((webhook.id, EventType::TrafficSpike), now));
        decided.spikes += 1;
    }
}
