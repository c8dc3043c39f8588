//! The drop stage of a tick, every `triggers.drop_check_interval_secs`:
//! for each site with drop webhooks that has ever had traffic, distinct
//! visitors over the last twelve hours; below a webhook's threshold, and
//! cooled down, a `traffic.drop`.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use super::commit::Decided;
use super::payload::{self, Envelope, SiteRef};
use super::plan::{Plan, Scan, window_start};
use super::{DROP_WINDOW_MINUTES, TriggerEngine, TriggerError, time, timed};
use crate::analytics::trigger_reads as queries;
use crate::registry::{EventType, Site, Webhook};
use crate::store::trigger_state::NewDelivery;

impl TriggerEngine {
    pub(super) async fn drops(
        &self,
        scan: &Scan,
        plan: &Plan,
        decided: &mut Decided,
        clickhouse_time: &mut Duration,
    ) -> Result<(), TriggerError> {
        if !scan.drop_due || plan.drop_sites.is_empty() {
            return Ok(());
        }
        let since = window_start(scan.now_minute, DROP_WINDOW_MINUTES);
        let counts: HashMap<u64, u64> = timed(
            clickhouse_time,
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
            clickhouse_time,
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
                    || !self.cooled_down(webhook, EventType::TrafficDrop, scan.now)
                {
                    continue;
                }
                self.fire_drop(site, webhook, visitors, scan.now, decided);
            }
        }
        Ok(())
    }

    fn fire_drop(
        &self,
        site: &Site,
        webhook: &Webhook,
        visitors: u64,
        now: u32,
        decided: &mut Decided,
    ) {
        let Some(rule) = webhook.drop else { return };
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
        decided.deliveries.push(NewDelivery {
            // No insert makes a drop: the check that found it does.
            triggered_at: Some(i64::from(now)),
            webhook_id: webhook.id,
            event_type: EventType::TrafficDrop.as_str(),
            payload: body.to_json(),
            dedupe_key: self.alert_key(webhook, EventType::TrafficDrop),
        });
        decided
            .alerts
            .push(((webhook.id, EventType::TrafficDrop), now));
        decided.drops += 1;
    }
}
