//! The delivery scheduler: sends what the outbox holds.
//!
//! An in-memory [`Timeline`] says which pending deliveries are due when. It
//! is filled by a full read of the pending rows (at start, whenever the
//! wake-up connection reconnects or overflows, and every
//! `delivery.resync_interval_secs`), by notifications on `webhook_deliveries_changed`
//! (new deliveries and replays, with their webhook and due time) and by the
//! scheduler's own retries once they are recorded. Due deliveries are taken
//! in turns per webhook, within bounded concurrency (globally and per
//! endpoint), and leased by id in Postgres, whose check decides: a second
//! daemon, or a schedule that is out of date, never takes a delivery in
//! flight. Each attempt's outcome goes to one writer task that records the
//! outcomes in batches: the delivery's new state, the attempt, endpoint
//! health, and webhooks to disable. A delivery is recorded only after its
//! attempt, so a crash at any point loses nothing: the lease expires and the
//! delivery is sent again, with the same `webhook-id`.

mod timeline;

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use serde::Deserialize;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, watch};

use super::client::{DeliveryClient, ErrorKind};
use super::retry::{Failure, RetryPolicy, parse_retry_after};
use super::signing::sign;
use crate::config::{Config, DeliveryConfig};
use crate::registry::RegistryHandle;
use crate::store::deliveries::{self, Attempt, Claimed, DeadEndpoints, Outcome};
use crate::store::listener::Listener;
use crate::store::{self, StoreError};
use crate::telemetry::health::{BEAT_EVERY, Heartbeat};
use timeline::Timeline;

/// The NOTIFY channel of new and replayed deliveries.
const CHANNEL: &str = "webhook_deliveries_changed";
/// Deliveries leased per query at most.
const LEASE_BATCH: usize = 500;
/// Deliveries leased per webhook at most, as a multiple of its limit of
/// requests in flight: the next ones are ready when a request ends, and one
/// lease query serves several places. A delivery whose lease would run out
/// before its request could end is not sent on it (see `LEASE_MARGIN`).
const LEASE_AHEAD: usize = 4;
/// Time a lease must have left, beyond the request timeout, for an attempt
/// to start on it.
const LEASE_MARGIN: Duration = Duration::from_secs(1);
/// Outcomes written per transaction at most.
const WRITE_BATCH: usize = 1000;
/// Pending deliveries the in-memory schedule holds at most (about 150 bytes
/// each). Beyond it, the rest wait in Postgres for a later full read.
const MAX_SCHEDULED: usize = 200_000;
/// The longest sleep without looking at the schedule (and beating).
const MAX_IDLE: Duration = BEAT_EVERY;
/// How long a delivery waits when its lease was refused though it is still
/// pending and looked due (the daemon's clock ahead of Postgres's).
const RECHECK_MS: i64 = 1000;

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error(transparent)]
    Client(#[from] super::client::ClientError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct Scheduler {
    pool: Pool,
    pg: tokio_postgres::Config,
    registry: RegistryHandle,
    client: DeliveryClient,
    retry: RetryPolicy,
    config: DeliveryConfig,
}

/// What the scheduler's tasks share.
struct Shared {
    timeline: Mutex<Timeline>,
    /// Wakes the scheduler: something may have fallen due or a place freed.
    wake: Notify,
    /// Asks for a full read of the pending deliveries.
    resync: Notify,
}

impl Shared {
    fn timeline(&self) -> MutexGuard<'_, Timeline> {
        self.timeline.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Scheduler {
    pub fn new(
        config: &Config,
        pool: Pool,
        registry: RegistryHandle,
    ) -> Result<Scheduler, DeliveryError> {
        let mut pg = store::pg_config(&config.postgres)?;
        pg.application_name("plausible-webhooks delivery");
        Ok(Scheduler {
            pool,
            pg,
            registry,
            client: DeliveryClient::new(&config.delivery)?,
            retry: RetryPolicy::new(&config.delivery.retry_schedule_secs),
            config: config.delivery.clone(),
        })
    }

    /// Sends deliveries until `shutdown` is true, then lets the attempts in
    /// flight finish and records them.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>, heartbeat: Heartbeat) {
        let this = Arc::new(self);
        let shared = Arc::new(Shared {
            timeline: Mutex::new(Timeline::new(MAX_SCHEDULED)),
            wake: Notify::new(),
            resync: Notify::new(),
        });
        // Twice the total timeout: room to wait for a place, then send.
        let lease_secs = (this.config.request_timeout_secs * 2 + 5) as f64;
        let lease = Duration::from_secs_f64(lease_secs);
        let request_timeout = Duration::from_secs(this.config.request_timeout_secs);
        let (outcomes, outcomes_rx) = mpsc::channel::<Outcome>(this.config.max_in_flight * 2);
        let writer = tokio::spawn(write_outcomes(
            this.pool.clone(),
            outcomes_rx,
            dead_endpoints(this.config.disable_endpoint_after_secs),
            lease_secs,
            shared.clone(),
        ));
        let listener = tokio::spawn(listen(this.pg.clone(), shared.clone(), shutdown.clone()));
        let resync = tokio::spawn(resync(
            this.pool.clone(),
            shared.clone(),
            Duration::from_secs(this.config.resync_interval_secs),
            shutdown.clone(),
        ));
        // Requests in flight, and deliveries leased (twice as many: the
        // rest wait for their webhook's place without taking a request's).
        let max_in_flight = this.config.max_in_flight;
        let per_webhook = this.config.max_in_flight_per_endpoint;
        let global = Arc::new(Semaphore::new(max_in_flight));
        let leasable = Arc::new(Semaphore::new(2 * max_in_flight));
        let mut endpoints: HashMap<i64, Endpoint> = HashMap::new();
        let mut failing = false;

        loop {
            heartbeat.beat();
            if *shutdown.borrow() {
                break;
            }
            // Take what is due, as far as there is room: at most
            // LEASE_AHEAD times a webhook's limit of requests in flight
            // leased per webhook, and twice the global limit in all.
            let free = leasable.available_permits().min(LEASE_BATCH);
            let (batch, next_due) = {
                let mut timeline = shared.timeline();
                timeline.promote(Utc::now().timestamp_millis());
                let batch = if free > 0 {
                    endpoints
                        .retain(|_, e| e.leased.available_permits() < LEASE_AHEAD * per_webhook);
                    timeline.take(free, |webhook_id| {
                        let endpoint = endpoints
                            .entry(webhook_id)
                            .or_insert_with(|| Endpoint::new(per_webhook))
                            .clone();
                        let leased = endpoint.leased.clone().try_acquire_owned().ok()?;
                        let lease = leasable.clone().try_acquire_owned().ok()?;
                        Some(Places {
                            endpoint,
                            _leased: leased,
                            _lease: lease,
                        })
                    })
                } else {
                    Vec::new()
                };
                metrics::gauge!("plausible_webhooks_delivery_scheduled").set(timeline.len() as f64);
                metrics::gauge!("plausible_webhooks_delivery_in_flight")
                    .set(timeline.taken() as f64);
                if timeline.take_overflowed() {
                    shared.resync.notify_one();
                }
                (batch, timeline.next_due())
            };

            if !batch.is_empty() {
                let ids: Vec<&str> = batch.iter().map(|(id, _, _)| &**id).collect();
                // The leases run from a moment after this.
                let leased_at = Instant::now();
                match deliveries::lease(&this.pool, &ids, lease_secs).await {
                    Ok(claimed) => {
                        if failing {
                            tracing::info!("delivery scheduler reaches postgres again");
                            failing = false;
                        }
                        let mut taken: HashMap<Arc<str>, (i64, Places)> = batch
                            .into_iter()
                            .map(|(id, webhook_id, places)| (id, (webhook_id, places)))
                            .collect();
                        for delivery in claimed {
                            let Some((_, places)) = taken.remove(delivery.id.as_str()) else {
                                continue;
                            };
                            let global = global.clone();
                            let this = this.clone();
                            let outcomes = outcomes.clone();
                            let shared = shared.clone();
                            tokio::spawn(async move {
                                let webhook_id = delivery.webhook_id;
                                let in_flight =
                                    places.endpoint.in_flight.clone().acquire_owned().await;
                                let request = global.acquire_owned().await;
                                // Waiting for a place took too much of the
                                // lease (a slow receiver): leave it to run
                                // out, and take the delivery again then.
                                let left = lease.saturating_sub(leased_at.elapsed());
                                if left < request_timeout + LEASE_MARGIN {
                                    drop(request);
                                    drop(in_flight);
                                    tracing::debug!(delivery_id = %delivery.id, "lease too short to send on; taken again when it runs out");
                                    let due = Utc::now().timestamp_millis()
                                        + (left + LEASE_MARGIN).as_millis() as i64;
                                    {
                                        let mut timeline = shared.timeline();
                                        timeline.finish(&delivery.id);
                                        timeline.insert(&delivery.id, webhook_id, due);
                                    }
                                    drop(places);
                                    shared.timeline().unblock(webhook_id);
                                    shared.wake.notify_one();
                                    return;
                                }
                                let outcome = this.attempt(delivery).await;
                                drop(request);
                                drop(in_flight);
                                let _ = outcomes.send(outcome).await;
                                drop(places);
                                shared.timeline().unblock(webhook_id);
                                shared.wake.notify_one();
                            });
                        }
                        // Refused leases: give the places back, and put
                        // those still pending back in the schedule.
                        if !taken.is_empty() {
                            let missed: Vec<(Arc<str>, i64)> = taken
                                .into_iter()
                                .map(|(id, (webhook_id, _places))| (id, webhook_id))
                                .collect();
                            {
                                let mut timeline = shared.timeline();
                                for (_, webhook_id) in &missed {
                                    timeline.unblock(*webhook_id);
                                }
                            }
                            recheck(&this.pool, &shared, &missed).await;
                        }
                    }
                    Err(e) => {
                        if !failing {
                            tracing::warn!(error = %e, "cannot lease deliveries; retrying");
                            failing = true;
                        }
                        let retry_at = Utc::now().timestamp_millis() + RECHECK_MS;
                        {
                            let mut timeline = shared.timeline();
                            for (id, webhook_id, _) in &batch {
                                timeline.finish(id);
                                timeline.insert(id, *webhook_id, retry_at);
                            }
                        }
                        drop(batch);
                        tokio::select! {
                            () = tokio::time::sleep(Duration::from_secs(1)) => {}
                            _ = shutdown.wait_for(|stop| *stop) => break,
                        }
                    }
                }
                continue;
            }

            // Sleep until something may be due: a new or replayed delivery,
            // a place freed, a retry recorded, or the next scheduled time.
            let idle = next_due
                .map(|at| Duration::from_millis((at - Utc::now().timestamp_millis()).max(0) as u64))
                .unwrap_or(MAX_IDLE);
            tokio::select! {
                () = shared.wake.notified() => {}
                () = tokio::time::sleep(idle.clamp(Duration::from_millis(1), MAX_IDLE)) => {}
                _ = shutdown.wait_for(|stop| *stop) => break,
            }
        }

        // Let the attempts in flight finish (each is bounded by the total
        // timeout), then let the writer record them.
        let _ = leasable.acquire_many(2 * max_in_flight as u32).await;
        drop(outcomes);
        let _ = writer.await;
        listener.abort();
        resync.abort();
    }

    /// One attempt of one delivery, as an outcome to record.
    async fn attempt(&self, delivery: Claimed) -> Outcome {
        let now = Utc::now();
        metrics::histogram!("plausible_webhooks_delivery_lag_seconds").record(
            (now - delivery.next_attempt_at)
                .to_std()
                .unwrap_or_default()
                .as_secs_f64(),
        );
        let number = delivery.attempts + 1;
        let mut outcome = Outcome {
            id: delivery.id.clone(),
            webhook_id: delivery.webhook_id,
            status: "failed",
            attempts: delivery.attempts,
            next_attempt_at: None,
            attempted_at: now,
            status_code: None,
            error: None,
            delivered_at: None,
            attempt: None,
            disable: None,
        };
        let Some(webhook) = self.registry.webhook(delivery.webhook_id) else {
            // A webhook created a moment ago may not have reached the
            // registry yet: a young delivery never tried waits a little.
            if delivery.attempts == 0 && now - delivery.inserted_at < chrono::Duration::seconds(60)
            {
                outcome.status = "pending";
                outcome.next_attempt_at = Some(now + chrono::Duration::seconds(2));
                outcome.attempted_at = delivery.last_attempt_at.unwrap_or(now);
                return outcome;
            }
            outcome.error = Some(
                "the webhook is disabled, deleted, invalid or over its site's limit; replay the delivery once it is active"
                    .into(),
            );
            return outcome;
        };
        let Some(headers) = sign(
            &delivery.id,
            now,
            delivery.payload.as_bytes(),
            &webhook.secrets,
        ) else {
            outcome.error = Some("the webhook has no active signing secret".into());
            return outcome;
        };
        let result = self
            .client
            .post(&webhook.url, &headers, Bytes::from(delivery.payload))
            .await;
        metrics::histogram!("plausible_webhooks_delivery_attempt_duration_seconds").record(
            match &result {
                Ok(response) => response.duration,
                Err(e) => e.duration,
            }
            .as_secs_f64(),
        );
        outcome.attempts = number;
        let result = result.and_then(|response| {
            if (100..=599).contains(&response.status) {
                Ok(response)
            } else {
                Err(super::client::AttemptError {
                    kind: ErrorKind::Protocol,
                    message: format!("invalid HTTP status {}", response.status),
                    duration: response.duration,
                })
            }
        });
        let (failure, retry_after, attempt) = match result {
            Ok(response) => {
                let code = i32::from(response.status);
                outcome.status_code = Some(code);
                let attempt = Attempt {
                    number,
                    started_at: now,
                    duration_ms: millis(response.duration),
                    status_code: Some(code),
                    error_kind: None,
                    error: None,
                    snippet: Some(response.snippet.clone()),
                };
                match response.status {
                    200..=299 => {
                        outcome.status = "succeeded";
                        outcome.delivered_at = Some(Utc::now());
                        outcome.attempt = Some(attempt);
                        metrics::counter!("plausible_webhooks_deliveries_total", "result" => "succeeded").increment(1);
                        return outcome;
                    }
                    410 => {
                        outcome.error = Some("the endpoint answered 410 Gone".into());
                        outcome.disable = Some(
                            "the endpoint answered 410 Gone, asking not to be called again".into(),
                        );
                        outcome.attempt = Some(Attempt {
                            error_kind: Some("gone"),
                            error: outcome.error.clone(),
                            ..attempt
                        });
                        metrics::counter!("plausible_webhooks_deliveries_total", "result" => "gone").increment(1);
                        return outcome;
                    }
                    status => {
                        let (kind, message) = match status {
                            300..=399 => (
                                "redirect",
                                format!("HTTP {status}: redirects are not followed"),
                            ),
                            429 => ("rate_limited", format!("HTTP {status}")),
                            _ => ("status", format!("HTTP {status}")),
                        };
                        outcome.error = Some(message.clone());
                        let failure = if status == 429 {
                            Failure::TooManyRequests
                        } else {
                            Failure::Other
                        };
                        let retry_after = response
                            .retry_after
                            .as_deref()
                            .and_then(|v| parse_retry_after(v, Utc::now()));
                        (
                            failure,
                            retry_after,
                            Attempt {
                                error_kind: Some(kind),
                                error: Some(message),
                                ..attempt
                            },
                        )
                    }
                }
            }
            Err(e) => {
                outcome.error = Some(e.message.clone());
                let failure = if e.kind == ErrorKind::Timeout {
                    Failure::Timeout
                } else {
                    Failure::Other
                };
                (
                    failure,
                    None,
                    Attempt {
                        number,
                        started_at: now,
                        duration_ms: millis(e.duration),
                        status_code: None,
                        error_kind: Some(e.kind.as_str()),
                        error: Some(e.message),
                        snippet: None,
                    },
                )
            }
        };
        outcome.attempt = Some(attempt);
        let jitter = jitter(&delivery.id, number);
        match self
            .retry
            .next_wait(number as u32, failure, retry_after, jitter)
        {
            Some(wait) => {
                outcome.status = "pending";
                outcome.next_attempt_at =
                    Some(Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default());
                metrics::counter!("plausible_webhooks_deliveries_total", "result" => "retry")
                    .increment(1);
            }
            None => {
                metrics::counter!("plausible_webhooks_deliveries_total", "result" => "failed")
                    .increment(1);
            }
        }
        outcome
    }
}

/// One webhook's places: deliveries leased (`LEASE_AHEAD` times its limit
/// of requests in flight), and requests in flight
/// (`delivery.max_in_flight_per_endpoint`).
#[derive(Clone)]
struct Endpoint {
    leased: Arc<Semaphore>,
    in_flight: Arc<Semaphore>,
}

impl Endpoint {
    fn new(limit: usize) -> Endpoint {
        Endpoint {
            leased: Arc::new(Semaphore::new(LEASE_AHEAD * limit)),
            in_flight: Arc::new(Semaphore::new(limit)),
        }
    }
}

/// The places a taken delivery holds until its outcome is handed over.
struct Places {
    endpoint: Endpoint,
    _leased: OwnedSemaphorePermit,
    _lease: OwnedSemaphorePermit,
}

/// Puts deliveries whose lease was refused back in the schedule if they
/// are still pending, at the time Postgres says they can next be leased.
async fn recheck(pool: &Pool, shared: &Shared, missed: &[(Arc<str>, i64)]) {
    let ids: Vec<&str> = missed.iter().map(|(id, _)| &**id).collect();
    let soonest = Utc::now().timestamp_millis() + RECHECK_MS;
    match deliveries::pending_among(pool, &ids).await {
        Ok(pending) => {
            let mut timeline = shared.timeline();
            for (id, _) in missed {
                timeline.finish(id);
            }
            for p in pending {
                timeline.insert(&p.id, p.webhook_id, p.due.timestamp_millis().max(soonest));
            }
        }
        Err(e) => {
            tracing::debug!(error = %e, "cannot check refused leases; trying them again");
            let mut timeline = shared.timeline();
            for (id, webhook_id) in missed {
                timeline.finish(id);
                timeline.insert(id, *webhook_id, soonest);
            }
        }
    }
}

/// Records outcomes in batches until every sender is gone. Once a batch is
/// stored, its deliveries leave the taken set, and the retries among them
/// join the schedule.
async fn write_outcomes(
    pool: Pool,
    mut outcomes: mpsc::Receiver<Outcome>,
    dead: DeadEndpoints,
    lease_secs: f64,
    shared: Arc<Shared>,
) {
    while let Some(first) = outcomes.recv().await {
        let mut batch = vec![first];
        while batch.len() < WRITE_BATCH {
            match outcomes.try_recv() {
                Ok(o) => batch.push(o),
                Err(_) => break,
            }
        }
        let mut delay = Duration::from_millis(100);
        let stored = loop {
            match deliveries::record(&pool, &batch, &dead).await {
                Ok(disabled) => {
                    for webhook_id in disabled {
                        tracing::warn!(webhook_id, "webhook disabled");
                    }
                    break vec![true; batch.len()];
                }
                // A row the database refuses would block every other
                // outcome: record them one by one, and a refused one without
                // its attempt detail, or not at all (its lease then runs
                // out and the delivery is tried again).
                Err(e) if e.is_refused_data() => {
                    tracing::error!(error = %e, count = batch.len(), "delivery outcomes refused; recording them one by one");
                    let mut stored = Vec::with_capacity(batch.len());
                    for outcome in &batch {
                        stored.push(record_alone(&pool, outcome, &dead).await);
                    }
                    break stored;
                }
                // Nothing is lost while Postgres is away: the outcomes wait
                // here (and if the process dies, the leases expire and the
                // deliveries are sent again).
                Err(e) => {
                    tracing::warn!(error = %e, count = batch.len(), retry_in = ?delay, "cannot record delivery outcomes");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(10));
                }
            }
        };
        let mut timeline = shared.timeline();
        for (outcome, stored) in batch.iter().zip(stored) {
            timeline.finish(&outcome.id);
            let due = if !stored {
                // Still leased: due when the lease runs out at the latest.
                Some(Utc::now() + chrono::Duration::milliseconds((lease_secs * 1000.0) as i64))
            } else if outcome.status == "pending" {
                Some(outcome.next_attempt_at.unwrap_or(outcome.attempted_at))
            } else {
                None
            };
            if let Some(due) = due {
                timeline.insert(&outcome.id, outcome.webhook_id, due.timestamp_millis());
            }
        }
        drop(timeline);
        shared.wake.notify_one();
    }
}

/// Records one outcome, or failing that the bare outcome without its
/// attempt. False if neither could be stored.
async fn record_alone(pool: &Pool, outcome: &Outcome, dead: &DeadEndpoints) -> bool {
    let one = std::slice::from_ref(outcome);
    if deliveries::record(pool, one, dead).await.is_ok() {
        return true;
    }
    let mut bare = outcome.clone();
    bare.attempt = None;
    bare.error = Some("the attempt's result could not be stored".into());
    match deliveries::record(pool, std::slice::from_ref(&bare), dead).await {
        Ok(_) => true,
        Err(e) => {
            tracing::error!(error = %e, delivery_id = %outcome.id, "cannot record a delivery outcome");
            false
        }
    }
}

/// A notification on `webhook_deliveries_changed`.
#[derive(Deserialize)]
struct Changed {
    id: String,
    webhook_id: i64,
    next_attempt_at: DateTime<Utc>,
}

/// Puts notified deliveries in the schedule, reconnecting as needed. A
/// (re)connection, an overflow or a payload it cannot read asks for a full
/// read, since notifications may have been missed.
async fn listen(
    pg: tokio_postgres::Config,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        match Listener::connect(&pg, &[CHANNEL]).await {
            Ok(mut listener) => {
                shared.resync.notify_one();
                loop {
                    tokio::select! {
                        n = listener.notifications.recv() => match n {
                            Some(n) => {
                                match serde_json::from_str::<Changed>(&n.payload) {
                                    Ok(c) => shared.timeline().insert(
                                        &c.id,
                                        c.webhook_id,
                                        c.next_attempt_at.timestamp_millis(),
                                    ),
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
                            None => break,
                        },
                        _ = shutdown.wait_for(|stop| *stop) => return,
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "delivery wake-up connection failed"),
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}

/// Reads the pending deliveries in full into the schedule: when asked, and
/// every `delivery.resync_interval_secs`.
async fn resync(
    pool: Pool,
    shared: Arc<Shared>,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut failing = false;
    loop {
        let capacity = shared.timeline().capacity() as i64;
        let result = deliveries::pending(&pool, capacity, |p| {
            shared
                .timeline()
                .insert(&p.id, p.webhook_id, p.due.timestamp_millis());
        })
        .await;
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
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}

/// `delivery.disable_endpoint_after_secs`, and the reason the web app shows.
fn dead_endpoints(after_secs: u64) -> DeadEndpoints {
    DeadEndpoints {
        after_secs: after_secs as f64,
        reason: format!(
            "every delivery has failed for {}; re-enable the webhook once the endpoint works again",
            humanize(after_secs)
        ),
    }
}

fn humanize(secs: u64) -> String {
    let (n, unit) = match secs {
        s if s > 0 && s % 86_400 == 0 => (s / 86_400, "day"),
        s if s > 0 && s % 3600 == 0 => (s / 3600, "hour"),
        s if s > 0 && s % 60 == 0 => (s / 60, "minute"),
        s => (s, "second"),
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

fn millis(d: Duration) -> i32 {
    d.as_millis().min(i32::MAX as u128) as i32
}

/// A number in [0, 1), different for each attempt of each delivery.
fn jitter(id: &str, attempt: i32) -> f64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    id.hash(&mut hasher);
    attempt.hash(&mut hasher);
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}
