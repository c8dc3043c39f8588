//! The bounds on concurrency: requests in flight and deliveries leased,
//! globally and per webhook.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::LEASE_AHEAD;
use crate::config::DeliveryConfig;

/// One webhook's places: deliveries leased (`LEASE_AHEAD` times its limit
/// of requests in flight), and requests in flight
/// (`delivery.max_in_flight_per_endpoint`).
#[derive(Clone)]
pub(super) struct Endpoint {
    leased: Arc<Semaphore>,
    pub(super) in_flight: Arc<Semaphore>,
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
pub(super) struct Places {
    pub(super) endpoint: Endpoint,
    _leased: OwnedSemaphorePermit,
    _lease: OwnedSemaphorePermit,
}

/// The bounds on concurrency: requests in flight, and deliveries leased
/// (twice as many: the rest wait for their webhook's place without taking
/// a request's), globally and per webhook.
pub(super) struct Lanes {
    pub(super) requests: Arc<Semaphore>,
    pub(super) leasable: Arc<Semaphore>,
    pub(super) leasable_total: usize,
    endpoints: HashMap<i64, Endpoint>,
    per_webhook: usize,
}

impl Lanes {
    pub(super) fn new(config: &DeliveryConfig) -> Lanes {
        Lanes {
            requests: Arc::new(Semaphore::new(config.max_in_flight)),
            leasable: Arc::new(Semaphore::new(2 * config.max_in_flight)),
            leasable_total: 2 * config.max_in_flight,
            endpoints: HashMap::new(),
            per_webhook: config.max_in_flight_per_endpoint,
        }
    }

    /// Places for one more delivery of `webhook_id`, if it has room. With
    /// `ahead` false (a rate-limited webhook) it is leased no further ahead
    /// than it has places to send at once, so that each of its requests
    /// goes when its slot is taken rather than bunched up behind a slow
    /// one.
    pub(super) fn places(&mut self, webhook_id: i64, ahead: bool) -> Option<Places> {
        let per_webhook = self.per_webhook;
        let endpoint = self
            .endpoints
            .entry(webhook_id)
            .or_insert_with(|| Endpoint::new(per_webhook))
            .clone();
        if !ahead && endpoint.leased.available_permits() <= (LEASE_AHEAD - 1) * per_webhook {
            return None;
        }
        let leased = endpoint.leased.clone().try_acquire_owned().ok()?;
        let lease = self.leasable.clone().try_acquire_owned().ok()?;
        Some(Places {
            endpoint,
            _leased: leased,
            _lease: lease,
        })
    }

    /// Forgets the webhooks with nothing leased.
    pub(super) fn forget_idle(&mut self) {
        let full = LEASE_AHEAD * self.per_webhook;
        self.endpoints
            .retain(|_, e| e.leased.available_permits() < full);
    }
}
