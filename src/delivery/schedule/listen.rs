//! The delivery listener: LISTENs on `webhook_deliveries_changed` and puts
//! each notified delivery in the timeline, reconnecting as needed. A
//! (re)connection, an overflow or a payload it cannot read asks for a full
//! read, since notifications may have been missed.
//!
//! In logical replication mode `follow` takes its place: the same entries,
//! from the change source's feed.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use tokio::sync::{broadcast, watch};

use super::Shared;
use crate::delivery::feed::Item;
use crate::store::PgTarget;
use crate::store::listener::Listener;

/// The NOTIFY channel of new and replayed deliveries.
const CHANNEL: &str = "webhook_deliveries_changed";

/// A notification on `webhook_deliveries_changed`.
#[derive(Deserialize)]
struct Changed {
    id: String,
    webhook_id: i64,
    next_attempt_at: DateTime<Utc>,
}

/// Runs until `halt`.
pub(super) async fn listen(pg: PgTarget, shared: Arc<Shared>, mut halt: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            () = session(&pg, &shared) => {}
            _ = halt.wait_for(|stop| *stop) => return,
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = halt.wait_for(|stop| *stop) => return,
        }
    }
}

/// One connection's life.
async fn session(pg: &PgTarget, shared: &Shared) {
    let mut listener = match Listener::connect(pg, &[CHANNEL]).await {
        Ok(listener) => listener,
        Err(e) => {
            tracing::warn!(error = %e, "delivery wake-up connection failed");
            return;
        }
    };
    shared.resync.notify_one();
    while let Some(n) = listener.notifications.recv().await {
        match serde_json::from_str::<Changed>(&n.payload) {
            Ok(c) => {
                shared
                    .timeline()
                    .insert(&c.id, c.webhook_id, c.next_attempt_at.timestamp_millis())
            }
            Err(e) => {
                tracing::warn!(error = %e, payload = %n.payload, "unreadable delivery notification; reading the outbox in full");
                shared.resync.notify_one();
            }
        }
        if listener.take_overflow() {
            shared.resync.notify_one();
        }
        shared.wake.notify_one();
    }
    tracing::warn!("delivery wake-up connection closed; reconnecting");
}

/// At most this many hints go into the timeline under one lock.
const FOLLOW_BATCH: usize = 4096;

/// Puts each hint of the change source's feed in the timeline; reads the
/// outbox in full when asked to, or when it fell behind. Runs until `halt`
/// (or until the feed closes, which ends the scheduler).
pub(super) async fn follow(
    mut feed: broadcast::Receiver<Item>,
    shared: Arc<Shared>,
    mut halt: watch::Receiver<bool>,
) {
    loop {
        let first = tokio::select! {
            r = feed.recv() => r,
            _ = halt.wait_for(|stop| *stop) => return,
        };
        let mut next = Some(first);
        let mut taken = 0;
        let mut timeline = shared.timeline();
        while let Some(received) = next.take() {
            match received {
                Ok(Item::Hint(h)) => timeline.insert(&h.id, h.webhook_id, h.due_ms),
                Ok(Item::Resync) => shared.resync.notify_one(),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(
                        missed,
                        "the delivery feed fell behind; reading the outbox in full"
                    );
                    shared.resync.notify_one();
                }
                Err(broadcast::error::RecvError::Closed) => {
                    drop(timeline);
                    tracing::warn!("the delivery feed closed");
                    return;
                }
            }
            taken += 1;
            if taken < FOLLOW_BATCH {
                next = match feed.try_recv() {
                    Ok(item) => Some(Ok(item)),
                    Err(broadcast::error::TryRecvError::Lagged(n)) => {
                        Some(Err(broadcast::error::RecvError::Lagged(n)))
                    }
                    Err(_) => None,
                };
            }
        }
        drop(timeline);
        shared.wake.notify_one();
    }
}
