//! The outcome writer: records outcomes in batches, then settles them in
//! the timeline.
//!
//! While Postgres is away the outcomes wait here and the write is retried.
//! Once the scheduler stops, the writer keeps at it for at most its flush
//! limit; what is still unwritten then is logged with its ids and left to
//! lease expiry (the deliveries are sent again, with the same `webhook-id`).

use std::time::Duration;

use deadpool_postgres::Pool;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::{Next, Shared};
use crate::store::deliveries::{self, DeadEndpoints, Outcome, Status};

/// Outcomes written per transaction at most.
const WRITE_BATCH: usize = 1000;

pub(super) struct Writer {
    pub(super) pool: Pool,
    pub(super) dead: DeadEndpoints,
    /// How long a lease lasts: an outcome that could not be stored is due
    /// again when its lease has run out.
    pub(super) lease: Duration,
    /// How long it keeps writing once the scheduler stops.
    pub(super) flush_limit: Duration,
}

impl Writer {
    /// Records outcomes until every sender is gone, or until the flush
    /// limit after `halt`.
    pub(super) async fn run(
        self,
        mut outcomes: mpsc::Receiver<Outcome>,
        shared: std::sync::Arc<Shared>,
        mut halt: watch::Receiver<bool>,
    ) {
        let mut deadline: Option<Instant> = None;
        while let Some(first) = outcomes.recv().await {
            let mut batch = vec![first];
            while batch.len() < WRITE_BATCH {
                match outcomes.try_recv() {
                    Ok(o) => batch.push(o),
                    Err(_) => break,
                }
            }
            let Some(stored) = self.store(&batch, &mut halt, &mut deadline).await else {
                outcomes.close();
                while let Ok(o) = outcomes.try_recv() {
                    batch.push(o);
                }
                give_up(&batch);
                return;
            };
            settle(&shared, &batch, &stored, self.lease);
        }
    }

    /// Stores a batch, retrying while Postgres is away: what became of each
    /// outcome. `None` once past the flush limit.
    async fn store(
        &self,
        batch: &[Outcome],
        halt: &mut watch::Receiver<bool>,
        deadline: &mut Option<Instant>,
    ) -> Option<Vec<Fate>> {
        let mut delay = Duration::from_millis(100);
        loop {
            if deadline.is_none() && *halt.borrow() {
                *deadline = Some(Instant::now() + self.flush_limit);
            }
            let attempt = async {
                match deliveries::record(&self.pool, batch, &self.dead).await {
                    Ok(recorded) => Ok(fates(batch, &recorded)),
                    // A row the database refuses would block every other
                    // outcome: record them one by one, and a refused one
                    // without its attempt detail, or not at all (its lease
                    // then runs out and the delivery is tried again).
                    Err(e) if e.is_refused_data() => {
                        tracing::error!(error = %e, count = batch.len(), "delivery outcomes refused; recording them one by one");
                        let mut stored = Vec::with_capacity(batch.len());
                        for outcome in batch {
                            stored.push(self.record_alone(outcome).await);
                        }
                        Ok(stored)
                    }
                    Err(e) => Err(e),
                }
            };
            // A write under way is never cut short to be started again (it
            // may be committing); past the flush limit it is abandoned.
            tokio::pin!(attempt);
            let done = match *deadline {
                None => tokio::select! {
                    r = &mut attempt => Some(r),
                    _ = halt.wait_for(|stop| *stop) => {
                        *deadline = Some(Instant::now() + self.flush_limit);
                        None
                    }
                },
                Some(_) => None,
            };
            let result = match (done, *deadline) {
                (Some(r), _) => r,
                (None, Some(at)) => match tokio::time::timeout_at(at, attempt).await {
                    Ok(r) => r,
                    Err(_) => return None,
                },
                (None, None) => attempt.await,
            };
            match result {
                Ok(stored) => return Some(stored),
                Err(e) => {
                    tracing::warn!(error = %e, count = batch.len(), retry_in = ?delay, "cannot record delivery outcomes");
                }
            }
            let wake = Instant::now() + delay;
            if deadline.is_some_and(|at| at <= wake) {
                return None;
            }
            tokio::select! {
                () = tokio::time::sleep_until(wake) => {}
                _ = halt.wait_for(|stop| *stop), if deadline.is_none() => {}
            }
            delay = (delay * 2).min(Duration::from_secs(10));
        }
    }

    /// Records one outcome, or failing that the bare outcome without its
    /// attempt.
    async fn record_alone(&self, outcome: &Outcome) -> Fate {
        let one = std::slice::from_ref(outcome);
        if let Ok(recorded) = deliveries::record(&self.pool, one, &self.dead).await {
            return fates(one, &recorded)[0];
        }
        let mut bare = outcome.clone();
        bare.attempt = None;
        bare.error = Some("the attempt's result could not be stored".into());
        match deliveries::record(&self.pool, std::slice::from_ref(&bare), &self.dead).await {
            Ok(recorded) => fates(std::slice::from_ref(&bare), &recorded)[0],
            Err(e) => {
                tracing::error!(error = %e, delivery_id = %outcome.id, "cannot record a delivery outcome");
                Fate::Unstored
            }
        }
    }
}

/// What became of an outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// The delivery's new state is stored.
    Recorded,
    /// Only its attempt is stored: the delivery had been taken over,
    /// replayed or settled meanwhile.
    Fenced,
    /// Nothing is stored; its lease will run out.
    Unstored,
}

/// Each outcome's fate in a stored batch, with what else it did logged.
fn fates(batch: &[Outcome], recorded: &deliveries::Recorded) -> Vec<Fate> {
    report(recorded);
    batch
        .iter()
        .map(|o| {
            if recorded.fenced.contains(&o.id) {
                Fate::Fenced
            } else {
                Fate::Recorded
            }
        })
        .collect()
}

/// Logs what a stored batch did besides recording.
fn report(recorded: &deliveries::Recorded) {
    for webhook_id in &recorded.disabled {
        tracing::warn!(webhook_id, "webhook disabled");
    }
    for id in &recorded.fenced {
        tracing::info!(delivery_id = %id, "late outcome: the delivery was taken over, replayed or settled meanwhile; its attempt is logged, the delivery left as it is");
    }
    if !recorded.fenced.is_empty() {
        metrics::counter!("plausible_webhooks_delivery_outcomes_fenced_total")
            .increment(recorded.fenced.len() as u64);
    }
}

/// Settles a batch in the timeline: the retries among what was stored are
/// due at their next attempt; what could not be stored is due once its
/// lease has run out; a fenced one is looked at again at once (Postgres
/// says whether it is pending, and when).
fn settle(shared: &Shared, batch: &[Outcome], fates: &[Fate], lease: Duration) {
    let now = shared.clock.now();
    let lease_end = now + chrono::TimeDelta::from_std(lease).unwrap_or_default();
    shared.settle(batch.iter().zip(fates).map(|(outcome, fate)| {
        let next = match fate {
            Fate::Unstored => Next::At(lease_end.timestamp_millis()),
            Fate::Fenced => Next::At(now.timestamp_millis()),
            Fate::Recorded if outcome.status == Status::Pending => Next::At(
                outcome
                    .next_attempt_at
                    .unwrap_or(outcome.attempted_at)
                    .timestamp_millis(),
            ),
            Fate::Recorded => Next::Done,
        };
        (outcome.id.as_str(), outcome.webhook_id, next)
    }));
}

/// Logs the outcomes left unwritten when the flush limit ran out.
fn give_up(batch: &[Outcome]) {
    let ids: Vec<&str> = batch.iter().map(|o| o.id.as_str()).collect();
    tracing::error!(count = ids.len(), delivery_ids = ?ids, "stopping with delivery outcomes unwritten; their leases will run out and the deliveries be sent again");
}
