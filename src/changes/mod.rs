//! The change stream: keeps the registry equal to the `webhooks` and
//! `goals` tables.
//!
//! A session is: connect a dedicated connection, LISTEN on
//! `webhooks_changed` and `goals_changed`, then read everything (so that no
//! change can fall between the read and the first notification), then apply
//! notifications in batches as they arrive. Any error ends the session; the
//! next one starts after a capped exponential backoff and reads everything
//! again, so changes made while disconnected are never missed. A periodic
//! reconciliation re-reads everything as a safety net and counts the drift
//! it had to fix.
//!
//! With `changes.source = "replication"`, `replication` is the session
//! instead: the committed changes themselves, streamed from a slot of this
//! replica's own, which resumes where it stopped (no full read after a
//! reconnect) and also feeds the delivery schedule. Both sources apply
//! what they learn the same way: by ids, re-reading the sites they touch
//! (`apply_ids`), and fall back on the same full read (`sync_all`).

mod replication;

use std::collections::{BTreeSet, HashSet};
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};

use crate::config::{ChangeSource, Config};
use crate::delivery::feed::Feed;
use crate::egress::Policy;
use crate::registry::{RegistryHandle, UrlRules, changed_goals, changed_webhooks, row_site};
use crate::store::listener::{Listener, Notification};
use crate::store::{self, StoreError, goals, webhooks};
use crate::telemetry::health::{BEAT_EVERY, Heartbeat};

/// The channels the migrations' triggers notify.
const WEBHOOKS_CHANNEL: &str = "webhooks_changed";
const GOALS_CHANNEL: &str = "goals_changed";

/// At most this many notifications are applied as one batch.
const MAX_BATCH: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum ChangesError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Replication(#[from] store::replication::ReplicationError),
    #[error("the change stream connection closed")]
    Disconnected,
    #[error("a streamed commit was still not visible after {0:?}; streaming it again")]
    NotVisible(std::time::Duration),
}

/// Why the registry was read in full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resync {
    /// The process started: the registry is in memory only.
    Start,
    /// A LISTEN session started again (notify mode).
    Reconnect,
    /// Notifications were lost (the queue overflowed) or unreadable, or a
    /// streamed change could not be decoded.
    Lost,
    /// The replication slot was made on this process's first run.
    SlotCreated,
    /// The replication slot was gone or invalidated, and made again.
    SlotLost,
    /// `webhooks`, `goals` or `sites` was truncated.
    Truncate,
}

impl Resync {
    fn label(self) -> &'static str {
        match self {
            Resync::Start => "start",
            Resync::Reconnect => "reconnect",
            Resync::Lost => "lost_notifications",
            Resync::SlotCreated => "slot_created",
            Resync::SlotLost => "slot_lost",
            Resync::Truncate => "truncate",
        }
    }
}

/// Runs the change stream until `shutdown` turns true.
pub struct ChangeStream {
    pool: Pool,
    pg: store::PgTarget,
    registry: RegistryHandle,
    rules: UrlRules,
    reconcile_every: Duration,
    source: ChangeSource,
    /// The replication slot (used in replication mode; in notify mode, an
    /// inactive one is dropped).
    slot: String,
    replication: store::replication::Target,
    /// Where deliveries that became pending go (replication mode).
    feed: Option<Feed>,
}

impl ChangeStream {
    pub fn new(
        config: &Config,
        pool: Pool,
        registry: RegistryHandle,
    ) -> Result<ChangeStream, ChangesError> {
        let pg = store::PgTarget::listening(&config.postgres, "plausible-webhooks changes")?;
        let slot = config.changes.slot();
        let replication = store::replication::Target::new(
            &config.postgres,
            &slot,
            "plausible-webhooks replication",
        )?;
        Ok(ChangeStream {
            pool,
            pg,
            registry,
            rules: UrlRules {
                allow_http: config.delivery.allow_http,
                policy: Policy::from_config(&config.delivery),
            },
            reconcile_every: Duration::from_secs(config.registry.reconcile_interval_secs),
            source: config.changes.source,
            slot,
            replication,
            feed: None,
        })
    }

    /// Hands deliveries that became pending to the delivery schedule (in
    /// replication mode).
    pub fn with_feed(mut self, feed: Feed) -> ChangeStream {
        self.feed = Some(feed);
        self
    }

    pub fn registry(&self) -> &RegistryHandle {
        &self.registry
    }

    /// Keeps the registry current until `shutdown` is true.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>, heartbeat: Heartbeat) {
        if self.source == ChangeSource::Notify {
            self.check_notify_mode().await;
        }
        let mut delay = Duration::from_millis(100);
        let mut stream = replication::StreamState::default();
        let mut first = true;
        loop {
            heartbeat.beat();
            let session = async {
                match self.source {
                    ChangeSource::Notify => self.session(&heartbeat, first).await,
                    ChangeSource::Replication => {
                        self.replication_session(&heartbeat, &mut stream).await
                    }
                }
            };
            let result = tokio::select! {
                r = session => r,
                _ = shutdown.wait_for(|stop| *stop) => return,
            };
            first = false;
            heartbeat.set_connected(false);
            metrics::gauge!("plausible_webhooks_change_stream_connected").set(0.0);
            let (error, healthy) = match result {
                Ok(never) => match never {},
                Err((e, healthy)) => (e, healthy),
            };
            if healthy {
                delay = Duration::from_millis(100);
            }
            metrics::counter!("plausible_webhooks_change_stream_reconnects_total").increment(1);
            tracing::warn!(error = %error, retry_in = ?delay, "change stream interrupted");
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
            delay = (delay * 2).min(Duration::from_secs(30));
        }
    }

    /// Notify mode at start: the triggers it needs are on, and no slot of
    /// this replica's is left to fill the disk (a switch back from
    /// replication mode).
    async fn check_notify_mode(&self) {
        let checked = async {
            let client = self.pool.get().await.map_err(StoreError::from)?;
            let disabled = store::replication::disabled_notify_triggers(&**client).await?;
            if !disabled.is_empty() {
                tracing::error!(
                    triggers = ?disabled,
                    "changes.source is notify but its NOTIFY triggers are disabled: run `plausible-webhooks migrate` with changes.source = \"notify\""
                );
            }
            if let Some(slot) = store::replication::slot(&**client, &self.slot).await?
                && !slot.active
            {
                store::replication::drop_slot(&**client, &slot.name).await?;
                tracing::warn!(
                    slot = %slot.name,
                    "dropped this replica's replication slot: changes.source is notify, and an unread slot keeps WAL forever"
                );
            }
            Ok::<_, StoreError>(())
        };
        if let Err(e) = checked.await {
            tracing::warn!(error = %e, "cannot check the notify triggers and replication slot");
        }
    }

    /// One connection's life. Returns only with an error, and whether the
    /// session got as far as a full read (so the backoff can start over).
    async fn session(
        &self,
        heartbeat: &Heartbeat,
        first: bool,
    ) -> Result<std::convert::Infallible, (ChangesError, bool)> {
        let mut listener = Listener::connect(&self.pg, &[WEBHOOKS_CHANNEL, GOALS_CHANNEL])
            .await
            .map_err(|e| (e.into(), false))?;
        let reason = if first {
            Resync::Start
        } else {
            Resync::Reconnect
        };
        self.resync_notified(reason, &mut listener.notifications)
            .await
            .map_err(|e| (e, false))?;
        heartbeat.set_connected(true);
        metrics::gauge!("plausible_webhooks_change_stream_connected").set(1.0);
        tracing::info!("change stream connected");

        let mut reconcile = tokio::time::interval_at(
            tokio::time::Instant::now() + self.reconcile_every,
            self.reconcile_every,
        );
        reconcile.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut beat = tokio::time::interval(BEAT_EVERY);
        loop {
            heartbeat.beat();
            tokio::select! {
                _ = beat.tick() => {}
                first = listener.notifications.recv() => {
                    let Some(first) = first else {
                        return Err((ChangesError::Disconnected, true));
                    };
                    let mut batch = vec![first];
                    while batch.len() < MAX_BATCH {
                        match listener.notifications.try_recv() {
                            Ok(n) => batch.push(n),
                            Err(_) => break,
                        }
                    }
                    let lost = self.apply(&batch).await.map_err(|e| (e, true))?;
                    if lost {
                        self.resync_notified(Resync::Lost, &mut listener.notifications)
                            .await
                            .map_err(|e| (e, true))?;
                    }
                }
                _ = reconcile.tick() => {
                    self.reconcile(&mut listener.notifications).await.map_err(|e| (e, true))?;
                }
            }
            if listener.take_overflow() {
                tracing::warn!("change notifications overflowed; reading everything again");
                self.resync_notified(Resync::Lost, &mut listener.notifications)
                    .await
                    .map_err(|e| (e, true))?;
            }
        }
    }

    /// Reads both tables whole, in one snapshot, streamed site by site,
    /// and brings the registry in line with them in place. Memory stays at
    /// one registry plus one site's rows, however large the tables.
    /// Returns what it changed.
    async fn sync_all(&self) -> Result<Changed, ChangesError> {
        let mut client = self.pool.get().await.map_err(StoreError::from)?;
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(StoreError::from)?;
        let mut changed = Changed::default();
        let mut verdicts = Vec::new();

        let mut seen = HashSet::new();
        for_each_site(webhooks::stream_all(&*tx).await?, row_site, |site, rows| {
            seen.insert(site);
            self.sync_site(site, rows, &mut verdicts, &mut changed);
        })
        .await?;
        let gone: Vec<i64> = self
            .registry
            .read()
            .site_ids()
            .into_iter()
            .filter(|s| !seen.contains(s))
            .collect();
        for site in gone {
            self.sync_site(site, Vec::new(), &mut verdicts, &mut changed);
        }

        let mut seen = HashSet::new();
        let goal_rows = goals::stream_all(&*tx).await?.filter_map(|row| async {
            match row {
                Ok(Err(reason)) => {
                    tracing::warn!(error = %reason, "goal is skipped");
                    None
                }
                Ok(Ok(row)) => Some(Ok(row)),
                Err(e) => Some(Err(e)),
            }
        });
        for_each_site(
            goal_rows,
            |g| g.site_id,
            |site, rows| {
                seen.insert(site);
                self.sync_goals(site, rows, &mut changed);
            },
        )
        .await?;
        let gone: Vec<i64> = self
            .registry
            .read()
            .sites()
            .filter(|s| !s.goals.is_empty() && !seen.contains(&s.id))
            .map(|s| s.id)
            .collect();
        for site in gone {
            self.sync_goals(site, Vec::new(), &mut changed);
        }

        tx.commit().await.map_err(StoreError::from)?;
        // On the connection already held: a second checkout could wait
        // forever on a pool of one.
        webhooks::write_verdicts(&**client, &verdicts).await?;
        Ok(changed)
    }

    fn sync_site(
        &self,
        site: i64,
        rows: Vec<Result<webhooks::WebhookRow, webhooks::UnreadableRow>>,
        verdicts: &mut Vec<webhooks::Verdict>,
        changed: &mut Changed,
    ) {
        let mut registry = self.registry.write();
        let old = registry.site_shared(site);
        registry.replace_site(site, rows, &self.rules, verdicts);
        let new = registry.site(site);
        changed
            .webhooks
            .extend(changed_webhooks(old.as_deref(), new));
        if let (Some(old), Some(new)) = (&old, new)
            && (old.domain != new.domain || old.timezone != new.timezone)
        {
            changed.sites.insert(site);
        }
    }

    fn sync_goals(&self, site: i64, rows: Vec<goals::GoalRow>, changed: &mut Changed) {
        let mut registry = self.registry.write();
        let old = registry.site(site).cloned();
        registry.set_goals(site, rows);
        changed
            .goals
            .extend(changed_goals(old.as_ref(), registry.site(site)));
    }

    /// Brings the registry in line with a full read, then applies whatever
    /// was notified meanwhile.
    async fn resync_notified(
        &self,
        reason: Resync,
        notifications: &mut mpsc::Receiver<Notification>,
    ) -> Result<(), ChangesError> {
        self.resync(reason).await?;
        // Anything unreadable among these is covered by the next
        // reconciliation.
        let pending = drain(notifications);
        self.apply(&pending).await?;
        self.registry.publish();
        Ok(())
    }

    /// Brings the registry in line with a full read, counted and logged
    /// with its reason, and publishes it.
    async fn resync(&self, reason: Resync) -> Result<(), ChangesError> {
        let started = Instant::now();
        self.sync_all().await?;
        let stats = self.registry.stats();
        metrics::counter!("plausible_webhooks_registry_resyncs_total", "reason" => reason.label())
            .increment(1);
        tracing::info!(
            reason = reason.label(),
            sites = stats.sites,
            webhooks = stats.webhooks,
            goals = stats.goals,
            elapsed = ?started.elapsed(),
            "registry loaded"
        );
        self.registry.publish();
        Ok(())
    }

    /// A full read as a safety net: counts the differences that no pending
    /// notification explains as drift.
    async fn reconcile(
        &self,
        notifications: &mut mpsc::Receiver<Notification>,
    ) -> Result<(), ChangesError> {
        let changed = self.sync_all().await?;
        let pending = drain(notifications);
        let explained = Ids::of(&pending);
        self.count_drift(&changed, &explained);
        self.apply(&pending).await?;
        self.registry.publish();
        Ok(())
    }

    /// Counts (and logs) what a reconciliation changed that `explained`
    /// (changes known but not applied yet) does not account for.
    fn count_drift(&self, changed: &Changed, explained: &Ids) {
        let webhooks: Vec<i64> = changed
            .webhooks
            .difference(&explained.webhooks)
            .copied()
            .collect();
        let goals: Vec<i64> = changed
            .goals
            .difference(&explained.goals)
            .copied()
            .collect();
        let drift = webhooks.len() + goals.len() + changed.sites.len();
        metrics::counter!("plausible_webhooks_registry_reconciliations_total").increment(1);
        if drift > 0 {
            metrics::counter!("plausible_webhooks_registry_drift_fixed_total")
                .increment(drift as u64);
            tracing::warn!(
                drift,
                webhooks = ?webhooks,
                goals = ?goals,
                sites = ?changed.sites,
                "reconciliation fixed registry drift"
            );
        }
    }

    /// Applies a batch of notifications: re-reads every site they touch.
    /// Returns true if some notification could not be read (the caller then
    /// reads everything again).
    async fn apply(&self, batch: &[Notification]) -> Result<bool, ChangesError> {
        if batch.is_empty() {
            return Ok(false);
        }
        let ids = Ids::of(batch);
        if ids.unreadable > 0 {
            tracing::warn!(count = ids.unreadable, "unreadable change notifications");
        }
        self.apply_ids(&ids, batch.len()).await?;
        Ok(ids.unreadable > 0)
    }

    /// Applies changes known by id (`count` of them): re-reads every site
    /// the changed webhooks and goals belong to (before and after), and the
    /// changed sites the registry holds, then publishes the registry.
    async fn apply_ids(&self, ids: &Ids, count: usize) -> Result<(), ChangesError> {
        let started = Instant::now();
        let client = self.pool.get().await.map_err(StoreError::from)?;

        if !ids.webhooks.is_empty() || !ids.sites.is_empty() {
            let changed: Vec<i64> = ids.webhooks.iter().copied().collect();
            let known: Vec<i64> = {
                let registry = self.registry.read();
                let sites: BTreeSet<i64> = changed
                    .iter()
                    .filter_map(|id| registry.site_of_webhook(*id))
                    .chain(
                        ids.sites
                            .iter()
                            .copied()
                            .filter(|s| registry.site(*s).is_some()),
                    )
                    .collect();
                sites.into_iter().collect()
            };
            let rows = webhooks::load_sites(&**client, &known, &changed).await?;
            let applied = self
                .registry
                .write()
                .replace_sites(&known, rows, &self.rules);
            if !applied.new_sites.is_empty() {
                let rows = goals::load_sites(&**client, &applied.new_sites, &[]).await?;
                self.registry
                    .write()
                    .replace_goals(&applied.new_sites, rows);
            }
            webhooks::write_verdicts(&**client, &applied.verdicts).await?;
        }

        if !ids.goals.is_empty() {
            let changed: Vec<i64> = ids.goals.iter().copied().collect();
            let known: Vec<i64> = {
                let registry = self.registry.read();
                let sites: BTreeSet<i64> = changed
                    .iter()
                    .filter_map(|id| registry.site_of_goal(*id))
                    .collect();
                sites.into_iter().collect()
            };
            let rows = goals::load_sites(&**client, &known, &changed).await?;
            self.registry.write().replace_goals(&known, rows);
        }

        self.registry.publish();
        metrics::counter!("plausible_webhooks_registry_changes_applied_total")
            .increment(count as u64);
        metrics::histogram!("plausible_webhooks_registry_apply_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        Ok(())
    }
}

/// Calls `each` with the rows of one site at a time, from a stream ordered
/// by site.
async fn for_each_site<R>(
    rows: impl futures_util::Stream<Item = Result<R, StoreError>>,
    site_of: impl Fn(&R) -> i64,
    mut each: impl FnMut(i64, Vec<R>),
) -> Result<(), ChangesError> {
    let mut rows = std::pin::pin!(rows);
    let mut group: Vec<R> = Vec::new();
    while let Some(row) = rows.next().await {
        let row = row?;
        if let Some(first) = group.first()
            && site_of(first) != site_of(&row)
        {
            each(site_of(first), std::mem::take(&mut group));
        }
        group.push(row);
    }
    if let Some(first) = group.first() {
        each(site_of(first), group);
    }
    Ok(())
}

fn drain(notifications: &mut mpsc::Receiver<Notification>) -> Vec<Notification> {
    let mut pending = Vec::new();
    while let Ok(n) = notifications.try_recv() {
        pending.push(n);
    }
    pending
}

/// What a full read changed in the registry.
#[derive(Default)]
struct Changed {
    webhooks: BTreeSet<i64>,
    goals: BTreeSet<i64>,
    /// Sites whose domain or timezone changed.
    sites: BTreeSet<i64>,
}

/// The ids a batch of changes names, by table.
#[derive(Default)]
struct Ids {
    webhooks: BTreeSet<i64>,
    goals: BTreeSet<i64>,
    /// Sites whose row changed or went (replication mode).
    sites: BTreeSet<i64>,
    unreadable: usize,
}

impl Ids {
    fn of(batch: &[Notification]) -> Ids {
        #[derive(serde::Deserialize)]
        struct Payload {
            id: i64,
        }
        let mut ids = Ids::default();
        for n in batch {
            let target = match n.channel.as_str() {
                WEBHOOKS_CHANNEL => &mut ids.webhooks,
                GOALS_CHANNEL => &mut ids.goals,
                _ => {
                    ids.unreadable += 1;
                    continue;
                }
            };
            match serde_json::from_str::<Payload>(&n.payload) {
                Ok(p) => {
                    target.insert(p.id);
                }
                Err(_) => ids.unreadable += 1,
            }
        }
        ids
    }
}
