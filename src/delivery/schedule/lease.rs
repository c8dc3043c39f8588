//! The loop's leasing stages: lease a batch of due deliveries, start an
//! attempt for each one leased (on a task of its own, which waits for its
//! places, sends, and hands the outcome to the writer), and give back those
//! refused.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, mpsc, watch};

use super::inner::{self, Inner, Stop};
use super::lanes::Places;
use super::{
    Batch, LEASE_MARGIN, LEASE_QUERY_LIMIT, Limits, Next, RECHECK_MS, Scheduler, Shared, attempt,
    resync,
};
use crate::store::deliveries::{self, Claimed, Outcome, Unreadable};

/// What the loop's stages share.
pub(super) struct Context<'a> {
    pub(super) this: &'a Arc<Scheduler>,
    pub(super) shared: &'a Arc<Shared>,
    pub(super) limits: Limits,
    pub(super) outcomes: &'a mpsc::Sender<Outcome>,
    pub(super) requests: Arc<Semaphore>,
    pub(super) halt: &'a watch::Receiver<bool>,
    /// Leasing is failing (logged once until it works again).
    pub(super) failing: bool,
}

impl Context<'_> {
    /// Leases a batch, starts an attempt for each delivery leased, and
    /// gives back the rest.
    pub(super) async fn lease_and_dispatch(
        &mut self,
        batch: Batch,
        shutdown: &mut watch::Receiver<bool>,
        inner: &mut Inner,
    ) -> Result<(), Stop> {
        let ids: Vec<&str> = batch.iter().map(|(id, _, _)| &**id).collect();
        // The leases run from a moment after this.
        let leased_at = Instant::now();
        let lease = tokio::time::timeout(
            LEASE_QUERY_LIMIT,
            deliveries::lease(&self.this.pool, &ids, self.limits.lease.as_secs_f64()),
        );
        let leased = tokio::select! {
            r = lease => r,
            stop = inner::stopped(shutdown, inner) => {
                self.lease_failed(batch);
                return Err(stop);
            }
        };
        let claimed = match leased {
            Ok(Ok(claimed)) => claimed,
            Ok(Err(e)) => {
                self.report_lease_failure(&e);
                self.lease_failed(batch);
                return self.pause(shutdown, inner).await;
            }
            Err(_) => {
                self.report_lease_failure(&"the lease query took too long");
                self.lease_failed(batch);
                return self.pause(shutdown, inner).await;
            }
        };
        if self.failing {
            tracing::info!("delivery scheduler reaches postgres again");
            self.failing = false;
        }
        let mut taken: HashMap<Arc<str>, (i64, Places)> = batch
            .into_iter()
            .map(|(id, webhook_id, places)| (id, (webhook_id, places)))
            .collect();
        for delivery in claimed {
            let id = match &delivery {
                Ok(d) => d.id.as_str(),
                Err(u) => u.id.as_str(),
            };
            if let Some((_, places)) = taken.remove(id) {
                self.dispatch(delivery, places, leased_at);
            }
        }
        if !taken.is_empty() {
            self.give_back(taken).await;
        }
        Ok(())
    }

    fn report_lease_failure(&mut self, e: &dyn std::fmt::Display) {
        if !self.failing {
            tracing::warn!(error = %e, "cannot lease deliveries; retrying");
            self.failing = true;
        }
    }

    /// Leasing failed: the batch is due again in a moment.
    fn lease_failed(&self, batch: Batch) {
        let retry_at = self.shared.clock.now_ms() + RECHECK_MS;
        self.shared.settle(
            batch
                .iter()
                .map(|(id, w, _)| (&**id, *w, Next::At(retry_at))),
        );
        // The places go back only now, so the batch cannot be taken again
        // before it is back in the schedule.
        for (_, webhook_id, places) in batch {
            drop(places);
            self.shared.release(webhook_id);
        }
    }

    /// A second's pause after a failed lease.
    async fn pause(
        &self,
        shutdown: &mut watch::Receiver<bool>,
        inner: &mut Inner,
    ) -> Result<(), Stop> {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => Ok(()),
            stop = inner::stopped(shutdown, inner) => Err(stop),
        }
    }

    /// Starts the attempt of one leased delivery on a task of its own.
    fn dispatch(&self, delivery: Result<Claimed, Unreadable>, places: Places, leased_at: Instant) {
        let task = AttemptTask {
            this: self.this.clone(),
            shared: self.shared.clone(),
            requests: self.requests.clone(),
            outcomes: self.outcomes.clone(),
            halt: self.halt.clone(),
            limits: self.limits,
            leased_at,
        };
        tokio::spawn(task.run(delivery, places));
    }

    /// Refused leases: the places go back, and those still pending return
    /// to the schedule.
    async fn give_back(&self, taken: HashMap<Arc<str>, (i64, Places)>) {
        let missed: Vec<(Arc<str>, i64)> = taken
            .into_iter()
            .map(|(id, (webhook_id, places))| {
                drop(places);
                self.shared.release(webhook_id);
                (id, webhook_id)
            })
            .collect();
        resync::recheck(&self.this.pool, self.shared, &missed).await;
    }
}

/// One leased delivery's attempt, on a task of its own.
struct AttemptTask {
    this: Arc<Scheduler>,
    shared: Arc<Shared>,
    requests: Arc<Semaphore>,
    outcomes: mpsc::Sender<Outcome>,
    halt: watch::Receiver<bool>,
    limits: Limits,
    leased_at: Instant,
}

impl AttemptTask {
    async fn run(mut self, delivery: Result<Claimed, Unreadable>, places: Places) {
        let webhook_id = places_webhook(&delivery);
        let outcome = match delivery {
            Err(unreadable) => Some(attempt::unreadable(unreadable, self.shared.clock.now())),
            Ok(delivery) => self.attempt(delivery, &places).await,
        };
        if let Some(outcome) = outcome
            && let Err(e) = self.outcomes.send(outcome).await
        {
            tracing::warn!(delivery_id = %e.0.id, "stopping before this outcome is written; left to lease expiry");
        }
        drop(places);
        self.shared.release(webhook_id);
    }

    /// Waits for a place to send, then sends; `None` if the delivery is
    /// not sent on this lease (given back to the schedule).
    async fn attempt(&mut self, delivery: Claimed, places: &Places) -> Option<Outcome> {
        let wait = async {
            let in_flight = places.endpoint.in_flight.clone().acquire_owned().await;
            let request = self.requests.clone().acquire_owned().await;
            (in_flight, request)
        };
        let permits = tokio::select! {
            p = wait => Some(p),
            // Stopping: what has not started is left to its lease.
            _ = self.halt.wait_for(|stop| *stop) => None,
        };
        // Waiting for a place took too much of the lease (a slow receiver):
        // leave it to run out, and take the delivery again then.
        let left = self.limits.lease.saturating_sub(self.leased_at.elapsed());
        if permits.is_none() || left < self.limits.request_timeout + LEASE_MARGIN {
            tracing::debug!(delivery_id = %delivery.id, "not sent on this lease; taken again when it runs out");
            let due = self.shared.clock.now_ms() + (left + LEASE_MARGIN).as_millis() as i64;
            self.shared
                .settle([(delivery.id.as_str(), delivery.webhook_id, Next::At(due))]);
            return None;
        }
        let outcome = self.this.attempt(&self.shared.clock, delivery).await;
        drop(permits);
        Some(outcome)
    }
}

fn places_webhook(delivery: &Result<Claimed, Unreadable>) -> i64 {
    match delivery {
        Ok(d) => d.webhook_id,
        Err(u) => u.webhook_id,
    }
}
