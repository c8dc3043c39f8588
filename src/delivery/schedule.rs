//! The delivery scheduler: sends what the outbox holds.
//!
//! It leases due deliveries from Postgres (`FOR UPDATE SKIP LOCKED`, so a
//! second daemon or a restarted one never takes a delivery in flight), sends
//! each with bounded concurrency (globally and per endpoint), and hands the
//! outcomes to one writer task that records them in batches: the delivery's
//! new state, the attempt, endpoint health, and webhooks to disable. A
//! delivery is recorded only after its attempt, so a crash at any point
//! loses nothing: the lease expires and the delivery is sent again, with the
//! same `webhook-id`. New and replayed deliveries wake it through NOTIFY on
//! `webhook_deliveries_changed`; otherwise it sleeps until the next one is
//! due.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use deadpool_postgres::Pool;
use tokio::sync::{Notify, Semaphore, mpsc, watch};

use super::client::{DeliveryClient, ErrorKind};
use super::retry::{Failure, RetryPolicy, parse_retry_after};
use super::signing::sign;
use crate::changes::listener::Listener;
use crate::config::{Config, DeliveryConfig};
use crate::registry::RegistryHandle;
use crate::store::deliveries::{self, Attempt, Claimed, Outcome};
use crate::store::{self, StoreError};

/// The NOTIFY channel of new and replayed deliveries.
const CHANNEL: &str = "webhook_deliveries_changed";
/// Deliveries leased per query at most.
const CLAIM_BATCH: usize = 500;
/// Outcomes written per transaction at most.
const WRITE_BATCH: usize = 1000;
/// The longest sleep without looking at the outbox.
const MAX_IDLE: Duration = Duration::from_secs(5);

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
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let this = Arc::new(self);
        let (outcomes, outcomes_rx) = mpsc::channel::<Outcome>(this.config.max_in_flight * 2);
        let writer = tokio::spawn(write_outcomes(
            this.pool.clone(),
            outcomes_rx,
            this.config.disable_endpoint_after_secs as f64,
        ));
        let wake = Arc::new(Notify::new());
        let listener = tokio::spawn(listen(this.pg.clone(), wake.clone(), shutdown.clone()));
        // Requests in flight, and deliveries leased (twice as many: the
        // rest wait for their webhook's place without taking a request's).
        let global = Arc::new(Semaphore::new(this.config.max_in_flight));
        let leasable = Arc::new(Semaphore::new(2 * this.config.max_in_flight));
        // Signalled whenever an attempt ends, freeing a place.
        let freed = Arc::new(Notify::new());
        let endpoints: Arc<Mutex<HashMap<i64, Endpoint>>> = Arc::default();
        // Twice the total timeout: a live worker always finishes first.
        let lease_secs = (this.config.request_timeout_secs * 2 + 5) as f64;
        let mut failing = false;

        loop {
            if *shutdown.borrow() {
                break;
            }
            let per_webhook = this.config.max_in_flight_per_endpoint;
            let max_in_flight = this.config.max_in_flight;
            // Two passes. The fair one leases at most twice a webhook's
            // limit of requests in flight per webhook. If a webhook is then
            // at that mark and at least half of all leases are still free,
            // a greedy pass leases more for such webhooks (up to
            // max_in_flight each, from the free half only), so that a
            // single webhook's backlog drains fast while the other half
            // stays for everyone else.
            let mut claimed_any = false;
            let mut full_batch = false;
            let mut over = Vec::new();
            for greedy in [false, true] {
                let free = if greedy {
                    leasable.available_permits().saturating_sub(max_in_flight)
                } else {
                    leasable.available_permits()
                }
                .min(CLAIM_BATCH);
                // Webhooks with deliveries leased, and their free places.
                let places: Vec<(i64, i64)> = {
                    let mut map = endpoints.lock().unwrap_or_else(|e| e.into_inner());
                    map.retain(|_, e| e.leased.available_permits() < max_in_flight);
                    map.iter()
                        .map(|(id, e)| (*id, max_in_flight - e.leased.available_permits()))
                        // The greedy pass is only for webhooks at their mark.
                        .filter(|(_, leased)| !greedy || *leased >= 2 * per_webhook)
                        .map(|(id, leased)| {
                            let cap = if greedy {
                                max_in_flight
                            } else {
                                2 * per_webhook
                            };
                            (id, cap.saturating_sub(leased) as i64)
                        })
                        .collect()
                };
                if greedy && !places.iter().any(|(_, free)| *free > 0) {
                    break;
                }
                if free == 0 {
                    break;
                }
                let others = if greedy { 0 } else { 2 * per_webhook as i64 };
                let claimed =
                    match deliveries::claim(&this.pool, free as i64, lease_secs, &places, others)
                        .await
                    {
                        Ok(claimed) => {
                            if failing {
                                tracing::info!("delivery scheduler reaches postgres again");
                                failing = false;
                            }
                            claimed
                        }
                        Err(e) => {
                            if !failing {
                                tracing::warn!(error = %e, "cannot lease deliveries; retrying");
                                failing = true;
                            }
                            break;
                        }
                    };
                claimed_any |= !claimed.is_empty();
                full_batch = !greedy && claimed.len() == free;
                for delivery in claimed {
                    let endpoint = endpoints
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .entry(delivery.webhook_id)
                        .or_insert_with(|| Endpoint::new(per_webhook, max_in_flight))
                        .clone();
                    let Ok(leased) = endpoint.leased.try_acquire_owned() else {
                        over.push(delivery.id);
                        continue;
                    };
                    let Ok(lease) = leasable.clone().acquire_owned().await else {
                        break;
                    };
                    let global = global.clone();
                    let this = this.clone();
                    let outcomes = outcomes.clone();
                    let freed = freed.clone();
                    tokio::spawn(async move {
                        let in_flight = endpoint.in_flight.acquire_owned().await;
                        let request = global.acquire_owned().await;
                        let outcome = this.attempt(delivery).await;
                        drop(request);
                        drop(in_flight);
                        let _ = outcomes.send(outcome).await;
                        drop(leased);
                        drop(lease);
                        freed.notify_one();
                    });
                }
                if full_batch {
                    break;
                }
            }
            if failing && !claimed_any {
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = shutdown.wait_for(|stop| *stop) => break,
                }
                continue;
            }
            if let Err(e) = deliveries::release(&this.pool, &over).await {
                // Their leases simply run out.
                tracing::debug!(error = %e, "cannot give leases back");
            }
            if full_batch {
                continue;
            }
            // Sleep until something may be due: a new or replayed delivery
            // (NOTIFY), a place freed (an attempt ended), or the next
            // scheduled attempt (looked up only when nothing is in flight).
            let in_flight = leasable.available_permits() < 2 * this.config.max_in_flight;
            let idle = if in_flight {
                MAX_IDLE
            } else {
                match deliveries::next_due(&this.pool).await {
                    Ok(Some(at)) => (at - Utc::now()).to_std().unwrap_or(Duration::ZERO),
                    Ok(None) | Err(_) => MAX_IDLE,
                }
            };
            let place_freed = tokio::select! {
                () = wake.notified() => false,
                () = freed.notified() => true,
                () = tokio::time::sleep(idle.clamp(Duration::from_millis(10), MAX_IDLE)) => false,
                _ = shutdown.wait_for(|stop| *stop) => break,
            };
            if place_freed {
                // Let a few more attempts end, so that one lease query
                // serves several places.
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }

        // Let the attempts in flight finish (each is bounded by the total
        // timeout), then let the writer record them.
        let _ = leasable
            .acquire_many(2 * this.config.max_in_flight as u32)
            .await;
        drop(outcomes);
        let _ = writer.await;
        listener.abort();
    }

    /// One attempt of one delivery, as an outcome to record.
    async fn attempt(&self, delivery: Claimed) -> Outcome {
        let now = Utc::now();
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

/// One webhook's places: deliveries leased (twice its limit in the fair
/// pass, up to `max_in_flight` in the greedy one), and requests in flight
/// (`delivery.max_in_flight_per_endpoint`).
#[derive(Clone)]
struct Endpoint {
    leased: Arc<Semaphore>,
    in_flight: Arc<Semaphore>,
}

impl Endpoint {
    fn new(limit: usize, max_leased: usize) -> Endpoint {
        Endpoint {
            leased: Arc::new(Semaphore::new(max_leased)),
            in_flight: Arc::new(Semaphore::new(limit)),
        }
    }
}

/// Records outcomes in batches until every sender is gone.
async fn write_outcomes(pool: Pool, mut outcomes: mpsc::Receiver<Outcome>, dead_after_secs: f64) {
    while let Some(first) = outcomes.recv().await {
        let mut batch = vec![first];
        while batch.len() < WRITE_BATCH {
            match outcomes.try_recv() {
                Ok(o) => batch.push(o),
                Err(_) => break,
            }
        }
        let mut delay = Duration::from_millis(100);
        loop {
            match deliveries::record(&pool, &batch, dead_after_secs).await {
                Ok(disabled) => {
                    for webhook_id in disabled {
                        tracing::warn!(webhook_id, "webhook disabled");
                    }
                    break;
                }
                // A row the database refuses would block every other
                // outcome: record them one by one, and a refused one without
                // its attempt detail, or not at all (its lease then runs
                // out and the delivery is tried again).
                Err(e) if e.is_refused_data() => {
                    tracing::error!(error = %e, count = batch.len(), "delivery outcomes refused; recording them one by one");
                    for outcome in &batch {
                        record_alone(&pool, outcome, dead_after_secs).await;
                    }
                    break;
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
        }
    }
}

async fn record_alone(pool: &Pool, outcome: &Outcome, dead_after_secs: f64) {
    let one = std::slice::from_ref(outcome);
    if deliveries::record(pool, one, dead_after_secs).await.is_ok() {
        return;
    }
    let mut bare = outcome.clone();
    bare.attempt = None;
    bare.error = Some("the attempt's result could not be stored".into());
    if let Err(e) = deliveries::record(pool, std::slice::from_ref(&bare), dead_after_secs).await {
        tracing::error!(error = %e, delivery_id = %outcome.id, "cannot record a delivery outcome");
    }
}

/// Wakes the scheduler on every notification, reconnecting as needed.
async fn listen(
    pg: tokio_postgres::Config,
    wake: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        match Listener::connect(&pg, &[CHANNEL]).await {
            Ok(mut listener) => {
                wake.notify_one();
                loop {
                    tokio::select! {
                        n = listener.notifications.recv() => match n {
                            Some(_) => wake.notify_one(),
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
