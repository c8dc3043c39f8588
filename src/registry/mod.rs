//! The in-memory registry: site → active webhooks and site → goals.
//!
//! One writer (the change stream in `changes`) applies whole sites at a
//! time: every change to a webhook or goal re-reads all rows of the sites it
//! touches, so deletes, moves between sites and the 10-per-site cap need no
//! special cases. Readers (triggers, delivery) take short read locks.

#[cfg(test)]
pub(crate) mod generate;
pub mod headers;
pub mod keys;
pub mod model;
mod validate;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use rustc_hash::FxHashMap;
use tokio::sync::watch;

use crate::store::goals::GoalRow;
use crate::store::webhooks::{UnreadableRow, Verdict, WebhookRow};
pub use model::{EventType, Goal, GoalKind, PathPattern, Site, Webhook};
pub use validate::UrlRules;

/// The most webhooks a site may have active.
pub const MAX_WEBHOOKS_PER_SITE: usize = 10;

/// The registry's contents.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Registry {
    /// Sites with at least one active webhook (shared, so that a reader
    /// can keep one without copying it).
    sites: FxHashMap<i64, Arc<Site>>,
    /// Active webhooks by id.
    webhooks: FxHashMap<i64, Arc<Webhook>>,
    /// The site of every enabled row last read, valid or not, so that a
    /// change notification (which carries only the id) finds its site.
    webhook_site: FxHashMap<i64, i64>,
    /// The same rows by site.
    site_rows: FxHashMap<i64, Vec<i64>>,
    /// The site of every goal held.
    goal_site: FxHashMap<i64, i64>,
}

/// Counts for metrics and logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub sites: usize,
    pub webhooks: usize,
    pub goals: usize,
}

/// What applying rows changed, for the caller to act on.
#[derive(Debug, Default)]
pub struct Applied {
    /// Verdicts to write back (`last_error`) where they differ from the row.
    pub verdicts: Vec<Verdict>,
    /// Sites that became active and need their goals read.
    pub new_sites: Vec<i64>,
}

impl Registry {
    pub fn stats(&self) -> Stats {
        Stats {
            sites: self.sites.len(),
            webhooks: self.webhooks.len(),
            goals: self.goal_site.len(),
        }
    }

    pub fn site(&self, id: i64) -> Option<&Site> {
        self.sites.get(&id).map(|s| &**s)
    }

    /// The site, shared.
    pub fn site_shared(&self, id: i64) -> Option<Arc<Site>> {
        self.sites.get(&id).cloned()
    }

    pub fn sites(&self) -> impl Iterator<Item = &Site> {
        self.sites.values().map(|s| &**s)
    }

    pub fn webhook(&self, id: i64) -> Option<&Arc<Webhook>> {
        self.webhooks.get(&id)
    }

    /// The site an enabled row (valid or not) was last seen in.
    pub fn site_of_webhook(&self, id: i64) -> Option<i64> {
        self.webhook_site.get(&id).copied()
    }

    pub fn site_of_goal(&self, id: i64) -> Option<i64> {
        self.goal_site.get(&id).copied()
    }

    /// Every site the registry knows rows of (active or not).
    pub fn site_ids(&self) -> Vec<i64> {
        let ids: BTreeSet<i64> = self
            .sites
            .keys()
            .chain(self.site_rows.keys())
            .copied()
            .collect();
        ids.into_iter().collect()
    }

    /// Replaces what the registry holds for one site with `rows`, which
    /// must be all enabled rows of that site. Pushes the verdicts that
    /// differ from the rows' `last_error`; returns true if the site became
    /// active (and so needs its goals read).
    pub fn replace_site(
        &mut self,
        site_id: i64,
        rows: Vec<Result<WebhookRow, UnreadableRow>>,
        rules: &UrlRules,
        verdicts: &mut Vec<Verdict>,
    ) -> bool {
        let was_active = self.sites.contains_key(&site_id);
        self.remove_site_webhooks(site_id);
        self.add_site(site_id, rows, rules, verdicts);
        !was_active && self.sites.contains_key(&site_id)
    }

    /// Replaces everything the registry holds for `sites` and for the sites
    /// of `rows` with `rows`, which must be all enabled rows of those sites.
    pub fn replace_sites(
        &mut self,
        sites: &[i64],
        rows: Vec<Result<WebhookRow, UnreadableRow>>,
        rules: &UrlRules,
    ) -> Applied {
        let mut by_site: HashMap<i64, Vec<Result<WebhookRow, UnreadableRow>>> =
            sites.iter().map(|s| (*s, Vec::new())).collect();
        for row in rows {
            by_site.entry(row_site(&row)).or_default().push(row);
        }
        // Every site's old webhooks go before any site's new ones come: a
        // webhook that moved between two of them must not be removed
        // again with its old site after its new site added it.
        let was_active: Vec<i64> = by_site
            .keys()
            .filter(|s| self.sites.contains_key(s))
            .copied()
            .collect();
        for site_id in by_site.keys() {
            self.remove_site_webhooks(*site_id);
        }
        let mut applied = Applied::default();
        for (site_id, rows) in by_site {
            self.add_site(site_id, rows, rules, &mut applied.verdicts);
            if !was_active.contains(&site_id) && self.sites.contains_key(&site_id) {
                applied.new_sites.push(site_id);
            }
        }
        applied
    }

    fn remove_site_webhooks(&mut self, site_id: i64) {
        for id in self.site_rows.remove(&site_id).unwrap_or_default() {
            self.webhook_site.remove(&id);
        }
        if let Some(site) = self.sites.get(&site_id) {
            for w in &site.webhooks {
                self.webhooks.remove(&w.id);
            }
        }
    }

    /// Validates a site's rows, applies the cap, and keeps the site (with
    /// its goals) only if it has an active webhook.
    fn add_site(
        &mut self,
        site_id: i64,
        mut rows: Vec<Result<WebhookRow, UnreadableRow>>,
        rules: &UrlRules,
        verdicts: &mut Vec<Verdict>,
    ) {
        rows.sort_by_key(|r| match r {
            Ok(r) => (Some(r.inserted_at), r.id),
            Err(u) => (None, u.id),
        });
        let mut active: Vec<Arc<Webhook>> = Vec::new();
        let mut site_info = None;
        let row_ids: Vec<i64> = rows.iter().map(row_id).collect();
        if !row_ids.is_empty() {
            self.site_rows.insert(site_id, row_ids);
        }
        for row in rows {
            match row {
                Err(unreadable) => {
                    self.webhook_site.insert(unreadable.id, site_id);
                    tracing::warn!(webhook_id = unreadable.id, error = %unreadable.error, "webhook row is invalid");
                    if let Some(judged_at) = unreadable.updated_at {
                        verdicts.push(Verdict {
                            id: unreadable.id,
                            error: Some(unreadable.error),
                            judged_at,
                        });
                    }
                }
                Ok(row) => {
                    self.webhook_site.insert(row.id, site_id);
                    let verdict = match validate::webhook(&row, rules) {
                        Ok(_) if active.len() >= MAX_WEBHOOKS_PER_SITE => Err(format!(
                            "site {site_id} already has {MAX_WEBHOOKS_PER_SITE} active webhooks; this one is not active"
                        )),
                        Ok(webhook) => {
                            active.push(Arc::new(webhook));
                            Ok(())
                        }
                        Err(reason) => Err(reason),
                    };
                    let error = verdict.err();
                    if let Some(reason) = &error
                        && row.last_error.as_ref() != Some(reason)
                    {
                        tracing::warn!(webhook_id = row.id, site_id, error = %reason, "webhook row is invalid");
                    }
                    if row.last_error != error {
                        verdicts.push(Verdict {
                            id: row.id,
                            error,
                            judged_at: row.updated_at,
                        });
                    }
                    site_info.get_or_insert((row.site_domain, row.site_timezone));
                }
            }
        }
        match (active.is_empty(), site_info) {
            (false, Some((domain, timezone))) => {
                for w in &active {
                    self.webhooks.insert(w.id, w.clone());
                }
                let goals = self
                    .sites
                    .remove(&site_id)
                    .map(|s| s.goals.clone())
                    .unwrap_or_default();
                self.sites.insert(
                    site_id,
                    Arc::new(Site {
                        id: site_id,
                        domain,
                        timezone,
                        webhooks: active,
                        goals,
                    }),
                );
            }
            _ => {
                if let Some(site) = self.sites.remove(&site_id) {
                    for g in &site.goals {
                        self.goal_site.remove(&g.id);
                    }
                }
            }
        }
    }

    /// Replaces the goals of one site with `rows` (all its goals). Goals
    /// of a site without an active webhook are not kept.
    pub fn set_goals(&mut self, site_id: i64, rows: Vec<GoalRow>) {
        let Some(site) = self.sites.get_mut(&site_id).map(Arc::make_mut) else {
            return;
        };
        for g in &site.goals {
            self.goal_site.remove(&g.id);
        }
        let mut goals: Vec<Arc<Goal>> = Vec::with_capacity(rows.len());
        for row in rows {
            match validate::goal(&row) {
                Ok(goal) if goal.site_id == site_id => goals.push(Arc::new(goal)),
                Ok(goal) => tracing::warn!(
                    goal_id = goal.id,
                    site_id,
                    "goal of another site is skipped"
                ),
                Err(reason) => tracing::warn!(
                    goal_id = row.id,
                    site_id,
                    error = %reason,
                    "goal is refused and not counted"
                ),
            }
        }
        goals.sort_by_key(|g| g.id);
        for g in &goals {
            self.goal_site.insert(g.id, site_id);
        }
        site.goals = goals;
    }

    /// Replaces the goals of `sites` and of the sites of `rows` with `rows`
    /// (all goals of those sites).
    pub fn replace_goals(&mut self, sites: &[i64], rows: Vec<Result<GoalRow, String>>) {
        let mut by_site: HashMap<i64, Vec<GoalRow>> =
            sites.iter().map(|s| (*s, Vec::new())).collect();
        for row in rows {
            match row {
                Ok(r) => by_site.entry(r.site_id).or_default().push(r),
                Err(reason) => tracing::warn!(error = %reason, "goal is skipped"),
            }
        }
        for (site_id, rows) in by_site {
            self.set_goals(site_id, rows);
        }
    }
}

fn row_id(row: &Result<WebhookRow, UnreadableRow>) -> i64 {
    match row {
        Ok(r) => r.id,
        Err(u) => u.id,
    }
}

/// The site a webhook row belongs to.
pub fn row_site(row: &Result<WebhookRow, UnreadableRow>) -> i64 {
    match row {
        Ok(r) => r.site_id,
        Err(u) => u.site_id,
    }
}

/// The ids of webhooks that differ between two versions of a site.
pub fn changed_webhooks(old: Option<&Site>, new: Option<&Site>) -> Vec<i64> {
    changed(
        old.map(|s| s.webhooks.as_slice()).unwrap_or_default(),
        new.map(|s| s.webhooks.as_slice()).unwrap_or_default(),
        |w| w.id,
    )
}

/// The ids of goals that differ between two versions of a site.
pub fn changed_goals(old: Option<&Site>, new: Option<&Site>) -> Vec<i64> {
    changed(
        old.map(|s| s.goals.as_slice()).unwrap_or_default(),
        new.map(|s| s.goals.as_slice()).unwrap_or_default(),
        |g| g.id,
    )
}

fn changed<T: PartialEq>(old: &[Arc<T>], new: &[Arc<T>], id: impl Fn(&T) -> i64) -> Vec<i64> {
    let old: HashMap<i64, &Arc<T>> = old.iter().map(|x| (id(x), x)).collect();
    let new: HashMap<i64, &Arc<T>> = new.iter().map(|x| (id(x), x)).collect();
    let ids: BTreeSet<i64> = old.keys().chain(new.keys()).copied().collect();
    ids.into_iter()
        .filter(|i| old.get(i) != new.get(i))
        .collect()
}

/// A shared handle to the registry: cheap to clone, read by many, written
/// by the change stream.
#[derive(Clone)]
pub struct RegistryHandle {
    inner: Arc<RwLock<Registry>>,
    version: Arc<watch::Sender<u64>>,
}

impl Default for RegistryHandle {
    fn default() -> Self {
        RegistryHandle {
            inner: Arc::default(),
            version: Arc::new(watch::channel(0).0),
        }
    }
}

impl RegistryHandle {
    /// A read lock; hold it briefly.
    pub fn read(&self) -> RwLockReadGuard<'_, Registry> {
        // A writer that panicked cannot leave a half-applied site behind
        // (sites are replaced whole), so a poisoned lock is still usable.
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, Registry> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks a change as applied: wakes subscribers and updates metrics.
    pub(crate) fn publish(&self) {
        let stats = self.read().stats();
        metrics::gauge!("plausible_webhooks_registry_sites").set(stats.sites as f64);
        metrics::gauge!("plausible_webhooks_registry_webhooks").set(stats.webhooks as f64);
        metrics::gauge!("plausible_webhooks_registry_goals").set(stats.goals as f64);
        self.version.send_modify(|v| *v += 1);
    }

    /// A receiver that changes whenever the registry does.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    pub fn webhook(&self, id: i64) -> Option<Arc<Webhook>> {
        self.read().webhook(id).cloned()
    }

    pub fn site(&self, id: i64) -> Option<Site> {
        self.read().site(id).cloned()
    }

    pub fn stats(&self) -> Stats {
        self.read().stats()
    }
}
