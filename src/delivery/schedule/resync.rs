//! Full reads of the outbox into the timeline, and re-checks of refused
//! leases. Each full read first measures Postgres's clock again.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio::sync::watch;

use super::{Next, RECHECK_MS, Shared};
use crate::store::deliveries::{self, Due, Pending};

/// Reads the pending deliveries in full into the schedule: at start, when
/// asked, and every `interval`. Runs until `halt`.
pub(super) async fn resync(
    pool: Pool,
    shared: Arc<Shared>,
    interval: Duration,
    mut halt: watch::Receiver<bool>,
) {
    let mut failing = false;
    loop {
        let read = async {
            shared.clock.measure(&pool).await;
            let capacity = shared.timeline().capacity() as i64;
            deliveries::pending(&pool, capacity, |p| schedule(&shared, &p)).await
        };
        let result = tokio::select! {
            r = read => r,
            _ = halt.wait_for(|stop| *stop) => return,
        };
        shared.wake.notify_one();
        let wait = match result {
            Ok(()) => {
                if failing {
                    tracing::info!("pending deliveries read again");
                    failing = false;
                }
                interval
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "cannot read pending deliveries; retrying");
                    failing = true;
                }
                Duration::from_secs(1)
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shared.resync.notified() => {}
            _ = halt.wait_for(|stop| *stop) => return,
        }
    }
}

/// Puts a pending delivery in the timeline at its due time (one that
/// cannot be read, due `-infinity`, is due now: leased, it is failed).
fn schedule(shared: &Shared, p: &Pending) {
    match p.due {
        Due::At(ms) => shared.timeline().insert(&p.id, p.webhook_id, ms),
        Due::Never => {
            tracing::warn!(delivery_id = %p.id, "a pending delivery is due at infinity: never sent");
        }
    }
}

/// Puts deliveries whose lease was refused back in the schedule if they
/// are still pending, at the time Postgres says they can next be leased.
pub(super) async fn recheck(pool: &Pool, shared: &Shared, missed: &[(std::sync::Arc<str>, i64)]) {
    let ids: Vec<&str> = missed.iter().map(|(id, _)| &**id).collect();
    let soonest = shared.clock.now_ms() + RECHECK_MS;
    let lookup = tokio::time::timeout(
        Duration::from_secs(10),
        deliveries::pending_among(pool, &ids),
    )
    .await;
    match lookup {
        Ok(Ok(pending)) => {
            shared.settle(missed.iter().map(|(id, w)| (&**id, *w, Next::Done)));
            for p in pending {
                if let Due::At(ms) = p.due {
                    shared
                        .timeline()
                        .insert(&p.id, p.webhook_id, ms.max(soonest));
                }
            }
        }
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "cannot check refused leases; trying them again");
            shared.settle(missed.iter().map(|(id, w)| (&**id, *w, Next::At(soonest))));
        }
        Err(_) => {
            tracing::debug!("checking refused leases took too long; trying them again");
            shared.settle(missed.iter().map(|(id, w)| (&**id, *w, Next::At(soonest))));
        }
    }
}
