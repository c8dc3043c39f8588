//! The logical replication session (`changes.source = "replication"`).
//!
//! A session is: make sure this replica's slot can be read (create it if
//! it is missing, or again if it was invalidated; either way then read
//! everything once, since the slot's history is gone), read everything if
//! the registry has never loaded in this process, then stream from the
//! slot's confirmed position. Each streamed transaction's ids are collected
//! from Begin to Commit and applied by id, like notifications; commits
//! that arrived together are applied as one batch. Only once a batch is
//! applied is its commit's end LSN acknowledged, so a crash or a cut
//! connection resumes at the first change not yet applied, and a reconnect
//! needs no full read. The outbox's changes become hints for the delivery
//! schedule's feed, handed over with their batch once it is visible (a
//! lease taken earlier would be refused); a batch holds at most 10,000, and
//! a larger one (a transaction of 100,000 deliveries) has the schedule read
//! the outbox instead.

use std::convert::Infallible;
use std::time::Duration;

use futures_util::FutureExt;
use pgwire_replication::{Lsn, ReplicationClient, ReplicationEvent};

use super::{ChangeStream, ChangesError, Ids, MAX_BATCH, Resync};
use crate::delivery::feed::{Hint, Item};
use crate::store::StoreError;
use crate::store::pgoutput::{Change, ChangeKind, Relations};
use crate::store::replication::{self as slots, ReplicationError};
use crate::telemetry::health::{BEAT_EVERY, Heartbeat};

/// How often the slot's lag is read.
const LAG_EVERY: Duration = Duration::from_secs(5);
/// How long a streamed commit may take to become visible before its rows
/// are read anyway.
const VISIBLE_WITHIN: Duration = Duration::from_secs(5);
/// The slot read as not held this many times in a row (every `LAG_EVERY`)
/// means this stream's connection is dead though it gave no error (a
/// silent partition, after which the server ended the walsender at
/// `wal_sender_timeout`): the session starts over, from the slot, with no
/// full read.
const UNHELD_LIMIT: u32 = 2;
/// A stream that ran this long before its error starts the reconnect
/// backoff over.
const HEALTHY_AFTER: Duration = Duration::from_secs(30);
/// At most this many deliveries are held for the schedule per batch; a
/// larger one has the schedule read the outbox instead.
const MAX_HINTS: usize = 10_000;
/// At most this many commits are applied as one batch.
const MAX_COMMITS: usize = 1000;

/// What a replication session carries over to the next.
#[derive(Debug, Default)]
pub(super) struct StreamState {
    /// The server said the slot can no longer be read: make it again.
    invalidated: Option<String>,
}

/// Changes collected and not applied yet: those of the open transaction,
/// or those of commits waiting to be applied together.
#[derive(Default)]
struct Pending {
    ids: Ids,
    /// Changes counted (for the applied-changes metric).
    changes: usize,
    /// Too many ids to hold, a truncation, or a change that could not be
    /// read: read everything instead.
    full_read: Option<Resync>,
    /// The end of the last commit collected.
    end_lsn: Option<Lsn>,
    commits: usize,
    /// The transactions collected, to wait until they are visible.
    xids: Vec<u32>,
    /// Deliveries for the schedule, handed over once their commits are
    /// visible (a lease taken before would be refused); at most
    /// `MAX_HINTS`, beyond which the schedule reads the outbox instead.
    hints: Vec<Hint>,
    /// The schedule must read the outbox in full.
    outbox_resync: bool,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.changes == 0
            && self.full_read.is_none()
            && self.end_lsn.is_none()
            && self.hints.is_empty()
            && !self.outbox_resync
    }

    /// Notes a delivery for the schedule, within the bound.
    fn hint(&mut self, hint: Hint) {
        if self.outbox_resync {
            return;
        }
        if self.hints.len() >= MAX_HINTS {
            self.hints = Vec::new();
            self.outbox_resync = true;
        } else {
            self.hints.push(hint);
        }
    }

    fn held(&self) -> usize {
        self.ids.webhooks.len() + self.ids.goals.len() + self.ids.sites.len()
    }

    /// A full read instead: the ids are dropped, memory stays bounded.
    fn read_everything(&mut self, reason: Resync) {
        self.ids = Ids::default();
        if self.full_read.is_none() || reason == Resync::Truncate {
            self.full_read = Some(reason);
        }
    }

    /// Takes in a committed transaction's changes.
    fn merge(&mut self, txn: Pending, end_lsn: Lsn) {
        self.changes += txn.changes;
        match txn.full_read {
            Some(reason) => self.read_everything(reason),
            None if self.full_read.is_none() => {
                self.ids.webhooks.extend(txn.ids.webhooks);
                self.ids.goals.extend(txn.ids.goals);
                self.ids.sites.extend(txn.ids.sites);
                if self.held() > MAX_BATCH {
                    self.read_everything(Resync::Lost);
                }
            }
            None => {}
        }
        self.end_lsn = Some(end_lsn);
        self.commits += 1;
        self.xids.extend(txn.xids);
        if txn.outbox_resync {
            self.hints = Vec::new();
            self.outbox_resync = true;
        }
        for hint in txn.hints {
            self.hint(hint);
        }
    }

    fn is_full(&self) -> bool {
        self.commits >= MAX_COMMITS || self.held() >= MAX_BATCH
    }
}

impl ChangeStream {
    /// One replication connection's life. Returns only with an error, and
    /// whether the stream got as far as starting (so the backoff can start
    /// over).
    pub(super) async fn replication_session(
        &self,
        heartbeat: &Heartbeat,
        state: &mut StreamState,
    ) -> Result<Infallible, (ChangesError, bool)> {
        let read = self.prepare_slot(state).await.map_err(|e| (e, false))?;
        if let Some(reason) = read {
            self.resync(reason).await.map_err(|e| (e, false))?;
            if let Some(feed) = &self.feed {
                feed.send(Item::Resync);
            }
        }
        let mut client = match self.replication.start().await {
            Ok(client) => client,
            Err(e) => {
                if let ReplicationError::SlotInvalidated { reason, .. } = &e {
                    state.invalidated = Some(reason.clone());
                }
                return Err((e.into(), false));
            }
        };
        heartbeat.set_connected(true);
        metrics::gauge!("plausible_webhooks_change_stream_connected").set(1.0);
        tracing::info!(slot = %self.slot, "replication stream started");
        let streamed = std::time::Instant::now();
        let result = self.stream(&mut client, heartbeat).await;
        client.abort();
        if let Err(ChangesError::Replication(ReplicationError::SlotInvalidated {
            reason, ..
        })) = &result
        {
            state.invalidated = Some(reason.clone());
        }
        // A reconnect reads nothing in full, so an error that recurs at
        // once (a publication dropped, a change that always fails to
        // apply) would otherwise reconnect every 100 ms: only a stream that
        // ran a while starts the backoff over.
        result.map_err(|e| (e, streamed.elapsed() >= HEALTHY_AFTER))
    }

    /// Makes sure the slot can be read; says why everything must be read
    /// first, if it must.
    async fn prepare_slot(&self, state: &mut StreamState) -> Result<Option<Resync>, ChangesError> {
        let client = self.pool.get().await.map_err(StoreError::from)?;
        let loaded = *self.registry.subscribe().borrow() > 0;
        let found = slots::slot(&**client, &self.slot).await?;
        let invalidated = match (&found, state.invalidated.take()) {
            (_, Some(reason)) => Some(reason),
            (Some(slot), None) if slot.is_lost() => {
                Some("its WAL was removed (max_slot_wal_keep_size)".to_string())
            }
            _ => None,
        };
        if let Some(reason) = invalidated {
            tracing::warn!(slot = %self.slot, reason = %reason, "replication slot was invalidated; making it again and reading everything");
            metrics::counter!("plausible_webhooks_replication_slot_recreated_total", "reason" => "invalidated").increment(1);
            if found.is_some() {
                slots::drop_slot(&**client, &self.slot).await?;
            }
            slots::create_slot(&**client, &self.slot).await?;
            return Ok(Some(Resync::SlotLost));
        }
        match found {
            Some(_) if loaded => Ok(None),
            Some(_) => Ok(Some(Resync::Start)),
            None if loaded => {
                tracing::warn!(slot = %self.slot, "replication slot is gone (dropped by hand?); making it again and reading everything");
                metrics::counter!("plausible_webhooks_replication_slot_recreated_total", "reason" => "missing").increment(1);
                slots::create_slot(&**client, &self.slot).await?;
                Ok(Some(Resync::SlotLost))
            }
            None => {
                tracing::info!(slot = %self.slot, "creating the replication slot");
                slots::create_slot(&**client, &self.slot).await?;
                Ok(Some(Resync::SlotCreated))
            }
        }
    }

    /// Reads the stream: collects each transaction's changes, applies them
    /// at commit (commits that arrived together as one batch) and only then
    /// acknowledges them.
    async fn stream(
        &self,
        client: &mut ReplicationClient,
        heartbeat: &Heartbeat,
    ) -> Result<Infallible, ChangesError> {
        let mut relations = Relations::new();
        let mut txn = Pending::default();
        let mut batch = Pending::default();
        let mut in_txn = false;
        let mut peeked = None;
        let mut unheld = 0;
        let mut lag = tokio::time::interval(LAG_EVERY);
        let mut reconcile = tokio::time::interval_at(
            tokio::time::Instant::now() + self.reconcile_every,
            self.reconcile_every,
        );
        reconcile.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            heartbeat.beat();
            let event = match peeked.take() {
                Some(event) => event,
                None => tokio::select! {
                    event = client.recv() => event,
                    _ = lag.tick() => {
                        unheld = if self.record_lag().await { 0 } else { unheld + 1 };
                        if unheld >= UNHELD_LIMIT {
                            tracing::warn!(slot = %self.slot, "the replication slot is not held by this stream any more; reconnecting");
                            return Err(ChangesError::Disconnected);
                        }
                        continue;
                    }
                    _ = reconcile.tick() => {
                        self.reconcile_streamed().await?;
                        continue;
                    }
                    () = tokio::time::sleep(BEAT_EVERY) => continue,
                },
            };
            let event = event
                .map_err(|e| self.replication.classify(e))?
                .ok_or(ChangesError::Disconnected)?;
            match event {
                ReplicationEvent::Begin { xid, .. } => {
                    in_txn = true;
                    txn.xids.push(xid);
                }
                ReplicationEvent::XLogData { data, .. } => {
                    self.collect(relations.apply(&data), &mut txn);
                }
                ReplicationEvent::Commit { end_lsn, .. } => {
                    in_txn = false;
                    batch.merge(std::mem::take(&mut txn), end_lsn);
                }
                // Everything sent before it has been applied: the slot may
                // move on past changes to tables not published.
                ReplicationEvent::KeepAlive { wal_end, .. } if !in_txn && batch.is_empty() => {
                    client.update_applied_lsn(wal_end);
                }
                _ => {}
            }
            // Commits that arrived together are applied together: the
            // batch waits while the next event is already here.
            if !in_txn && !batch.is_empty() {
                if peeked.is_none() {
                    peeked = client.recv().now_or_never();
                }
                if peeked.is_none() || batch.is_full() {
                    self.apply_batch(std::mem::take(&mut batch), client).await?;
                }
            }
        }
    }

    /// Notes one decoded message's change in the open transaction.
    fn collect(
        &self,
        decoded: Result<Option<Change>, crate::store::pgoutput::DecodeError>,
        txn: &mut Pending,
    ) {
        let change = match decoded {
            Ok(Some(change)) => change,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "unreadable replicated change; reading everything again");
                txn.read_everything(Resync::Lost);
                txn.outbox_resync = true;
                return;
            }
        };
        if change.kind == ChangeKind::Truncate {
            txn.changes += 1;
            let tables: Vec<String> = change.truncated().iter().map(|t| t.to_string()).collect();
            tracing::warn!(tables = ?tables, "a replicated table was truncated; reading everything again");
            txn.read_everything(Resync::Truncate);
            return;
        }
        let target = match change.table.name.as_str() {
            "webhook_deliveries" => {
                self.hint(&change, txn);
                return;
            }
            "webhooks" => &mut txn.ids.webhooks,
            "goals" => &mut txn.ids.goals,
            "sites" if change.kind == ChangeKind::Insert => return,
            "sites" => &mut txn.ids.sites,
            _ => return,
        };
        txn.changes += 1;
        match change.i64("id") {
            Ok(Some(id)) => {
                if txn.full_read.is_none() {
                    target.insert(id);
                    if txn.held() > MAX_BATCH {
                        txn.read_everything(Resync::Lost);
                    }
                }
            }
            Ok(None) | Err(_) => {
                tracing::warn!(table = %change.table, "a replicated change has no readable id; reading everything again");
                txn.read_everything(Resync::Lost);
            }
        }
    }

    /// Notes for the schedule a delivery that may have become due: every
    /// pending row not under a lease (new deliveries, replays, retries and
    /// released leases). Without the old row this passes more than the
    /// NOTIFY trigger did (a retry the scheduler itself placed, too); a
    /// second insert of a known delivery changes nothing. It is handed
    /// over at its commit, once visible (`apply_batch`).
    fn hint(&self, change: &Change, txn: &mut Pending) {
        if self.feed.is_none() {
            return;
        }
        let pending = matches!(change.text("status"), Ok(Some("pending")));
        let unleased = matches!(
            change.column("lease_token"),
            Some(crate::store::pgoutput::Datum::Null)
        );
        if !pending || !unleased {
            return;
        }
        let read = (
            change.text("id"),
            change.i64("webhook_id"),
            change.timestamp("next_attempt_at"),
        );
        match read {
            (Ok(Some(id)), Ok(Some(webhook_id)), Ok(Some(due))) => txn.hint(Hint {
                id: id.to_string(),
                webhook_id,
                due_ms: due.timestamp_millis(),
            }),
            _ => {
                tracing::warn!(
                    "a replicated delivery could not be read; reading the outbox in full"
                );
                txn.outbox_resync = true;
            }
        }
    }

    /// Applies a batch, then acknowledges its last commit.
    async fn apply_batch(
        &self,
        batch: Pending,
        client: &ReplicationClient,
    ) -> Result<(), ChangesError> {
        let hands_over = !batch.hints.is_empty() || batch.outbox_resync;
        if batch.full_read.is_some() || batch.held() > 0 || hands_over {
            let pooled = self.pool.get().await.map_err(StoreError::from)?;
            if !slots::until_visible(&**pooled, &batch.xids, VISIBLE_WITHIN).await? {
                // Not acknowledged: the next session streams it again.
                return Err(ChangesError::NotVisible(VISIBLE_WITHIN));
            }
        }
        match batch.full_read {
            Some(reason) => self.resync(reason).await?,
            None if batch.held() > 0 => self.apply_ids(&batch.ids, batch.changes).await?,
            None => {}
        }
        if let Some(feed) = &self.feed {
            if batch.outbox_resync {
                feed.send(Item::Resync);
            }
            for hint in batch.hints {
                feed.send(Item::Hint(hint));
            }
        }
        if let Some(lsn) = batch.end_lsn {
            client.update_applied_lsn(lsn);
            metrics::gauge!("plausible_webhooks_replication_applied_lsn").set(lsn.as_u64() as f64);
        }
        Ok(())
    }

    /// A full read as a safety net, as in notify mode. Changes streamed but
    /// not applied yet may show as drift.
    async fn reconcile_streamed(&self) -> Result<(), ChangesError> {
        let changed = self.sync_all().await?;
        self.count_drift(&changed, &Ids::default());
        self.registry.publish();
        Ok(())
    }

    /// Reads how far the slot's confirmed position is behind the WAL.
    /// Returns false when the slot is not held by any session (or gone);
    /// true when it is, or when it cannot be read.
    async fn record_lag(&self) -> bool {
        let read = async {
            let client = self.pool.get().await.map_err(StoreError::from)?;
            slots::slot(&**client, &self.slot).await
        };
        match read.await {
            Ok(Some(slot)) => {
                if let Some(lag) = slot.lag_bytes {
                    metrics::gauge!("plausible_webhooks_replication_slot_lag_bytes")
                        .set(lag as f64);
                }
                slot.active
            }
            Ok(None) => false,
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the replication slot's lag");
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn txn(webhooks: impl IntoIterator<Item = i64>) -> Pending {
        let mut t = Pending::default();
        t.ids.webhooks.extend(webhooks);
        t.changes = t.ids.webhooks.len();
        t
    }

    #[test]
    fn a_batch_keeps_ids_up_to_its_bound_then_reads_everything() {
        let mut batch = Pending::default();
        assert!(batch.is_empty());
        batch.merge(txn([1, 2]), Lsn(10));
        assert_eq!(batch.held(), 2);
        assert_eq!(batch.end_lsn, Some(Lsn(10)));
        batch.merge(txn(3..=(MAX_BATCH as i64 + 5)), Lsn(20));
        assert_eq!(batch.full_read, Some(Resync::Lost));
        assert_eq!(batch.held(), 0, "the ids are dropped: memory stays bounded");
        assert_eq!(batch.end_lsn, Some(Lsn(20)));
        // Later ids are not kept either; the full read covers them.
        batch.merge(txn([7]), Lsn(30));
        assert_eq!(batch.held(), 0);
        assert_eq!(batch.commits, 3);
    }

    #[test]
    fn hints_past_their_bound_become_one_read_of_the_outbox() {
        let hint = |i: usize| Hint {
            id: format!("msg_{i:08}"),
            webhook_id: 1,
            due_ms: 0,
        };
        let mut t = txn([]);
        for i in 0..MAX_HINTS {
            t.hint(hint(i));
        }
        assert!(!t.outbox_resync);
        let mut batch = Pending::default();
        batch.merge(t, Lsn(1));
        assert_eq!(batch.hints.len(), MAX_HINTS);
        let mut t = txn([]);
        t.hint(hint(MAX_HINTS));
        batch.merge(t, Lsn(2));
        assert!(batch.outbox_resync);
        assert!(batch.hints.is_empty(), "memory stays bounded");
        assert!(!batch.is_empty());
    }

    #[test]
    fn a_truncation_is_the_reason_given() {
        let mut batch = Pending::default();
        let mut t = txn([1]);
        t.read_everything(Resync::Lost);
        batch.merge(t, Lsn(1));
        let mut t = txn([]);
        t.read_everything(Resync::Truncate);
        batch.merge(t, Lsn(2));
        assert_eq!(batch.full_read, Some(Resync::Truncate));
        assert!(!batch.is_empty());
    }
}
