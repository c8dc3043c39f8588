//! The per-webhook rate limit (`webhooks.max_per_minute`), enforced where
//! the scheduler takes a webhook's next due delivery, before it is leased.
//!
//! A limit of `n` a minute is one request every `60/n` s (rounded up to the
//! millisecond), with a burst of one: a GCRA, or a token bucket holding one
//! token that refills every `60/n` s. Each webhook has the slot (time) of
//! its last request taken; the next may be taken at that slot plus the
//! interval, and takes the later of that and now as its own slot, so time a
//! webhook spent idle or the scheduler spent late earns no credit. Evenly
//! spaced requests satisfy a receiver however it counts (per second, per
//! fixed or sliding minute), which is what Slack's guidance of about one
//! message a second asks; a burst of `n` at the start of a minute would
//! not.
//!
//! The interval is read from the registry at each turn, so a changed
//! `max_per_minute` counts from the webhook's next delivery, and a webhook
//! whose limit is removed (or that leaves the registry) is unlimited at
//! once. A delivery held back stays in the timeline: it is not leased, not
//! an attempt, and its row is left as it is.

use std::collections::HashMap;

use tokio::sync::watch;

use crate::registry::RegistryHandle;

/// The longest interval a limit gives (one a minute), in ms.
const LONGEST_MS: i64 = 60_000;

/// What a webhook's limit says about its next delivery now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Check {
    /// No limit.
    Unlimited,
    /// It may go now, and takes this webhook's slot if it does.
    Go(Slot),
    /// Not before this time (ms since the epoch).
    Until(i64),
}

/// A limited webhook's next slot, to take with [`Rates::take`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Slot {
    webhook_id: i64,
    /// The earliest time the limit allows it (ms); at most now.
    earliest: i64,
}

/// The rate limits' state: owned by the scheduler's loop.
pub(super) struct Rates {
    registry: RegistryHandle,
    /// Changes whenever the registry does (limits may have changed).
    changes: watch::Receiver<u64>,
    /// A change seen while idle, not yet acted on.
    changed: bool,
    /// Per limited webhook, the slot of the last delivery taken (ms).
    last: HashMap<i64, i64>,
}

impl Rates {
    pub(super) fn new(registry: RegistryHandle) -> Rates {
        let mut changes = registry.subscribe();
        changes.borrow_and_update();
        Rates {
            registry,
            changes,
            changed: false,
            last: HashMap::new(),
        }
    }

    /// Whether the webhook's next delivery may go at `now`.
    pub(super) fn check(&mut self, webhook_id: i64, now: i64) -> Check {
        let interval = self.interval_ms(webhook_id);
        self.check_with(webhook_id, interval, now)
    }

    /// [`Rates::check`] with the webhook's interval given.
    fn check_with(&mut self, webhook_id: i64, interval: Option<i64>, now: i64) -> Check {
        let Some(interval) = interval else {
            self.last.remove(&webhook_id);
            return Check::Unlimited;
        };
        let earliest = self
            .last
            .get(&webhook_id)
            .map_or(i64::MIN, |last| last + interval);
        if earliest > now {
            Check::Until(earliest)
        } else {
            Check::Go(Slot {
                webhook_id,
                earliest,
            })
        }
    }

    /// Takes the slot for a delivery due at `due`. It was held back (and
    /// is counted) if it fell due before its webhook's limit allowed it.
    pub(super) fn take(&mut self, slot: Slot, now: i64, due: i64) -> bool {
        self.last.insert(slot.webhook_id, slot.earliest.max(now));
        let held = slot.earliest > due;
        if held {
            metrics::counter!("plausible_webhooks_delivery_rate_limited_total").increment(1);
        }
        held
    }

    /// Forgets the webhooks whose last slot is long past (they would go at
    /// once anyway).
    pub(super) fn forget_idle(&mut self, now: i64) {
        self.last.retain(|_, last| *last > now - 2 * LONGEST_MS);
    }

    /// True (once) if the registry changed since last asked.
    pub(super) fn take_changed(&mut self) -> bool {
        let changed =
            std::mem::take(&mut self.changed) || self.changes.has_changed().unwrap_or(false);
        self.changes.borrow_and_update();
        changed
    }

    /// Waits for the registry to change.
    pub(super) async fn changed(&mut self) {
        if self.changes.changed().await.is_ok() {
            self.changed = true;
        } else {
            std::future::pending::<()>().await;
        }
    }

    /// The webhook's interval between requests, if it is limited: 60/n s,
    /// rounded up to the millisecond so that it never allows more than n.
    fn interval_ms(&self, webhook_id: i64) -> Option<i64> {
        let per_minute = self.registry.read().webhook(webhook_id)?.max_per_minute?;
        Some(interval_ms(per_minute))
    }
}

fn interval_ms(per_minute: u32) -> i64 {
    let n = u64::from(per_minute.max(1));
    (LONGEST_MS as u64).div_ceil(n) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_never_allow_more_than_the_limit() {
        assert_eq!(interval_ms(1), 60_000);
        assert_eq!(interval_ms(60), 1000);
        assert_eq!(interval_ms(7), 8572);
        assert_eq!(interval_ms(6000), 10);
        for n in 1..=6000 {
            assert!(LONGEST_MS / interval_ms(n) <= i64::from(n), "{n}");
        }
    }

    fn go(rates: &mut Rates, interval: Option<i64>, now: i64, due: i64) -> Check {
        let check = rates.check_with(1, interval, now);
        if let Check::Go(slot) = check {
            rates.take(slot, now, due);
        }
        check
    }

    #[test]
    fn requests_are_spaced_by_the_interval_without_credit_for_idle_time() {
        let mut rates = Rates::new(RegistryHandle::default());
        let every = Some(1000);
        assert!(matches!(go(&mut rates, every, 0, 0), Check::Go(_)));
        assert_eq!(go(&mut rates, every, 10, 0), Check::Until(1000));
        assert_eq!(go(&mut rates, every, 999, 0), Check::Until(1000));
        assert!(matches!(go(&mut rates, every, 1000, 0), Check::Go(_)));
        assert_eq!(go(&mut rates, every, 1000, 0), Check::Until(2000));
        // Late by 500 ms: the next slot counts from the late one.
        assert!(matches!(go(&mut rates, every, 2500, 0), Check::Go(_)));
        assert_eq!(go(&mut rates, every, 2600, 0), Check::Until(3500));
        // Idle for long: one at once, then spaced again.
        assert!(matches!(go(&mut rates, every, 100_000, 0), Check::Go(_)));
        assert_eq!(go(&mut rates, every, 100_000, 0), Check::Until(101_000));
    }

    #[test]
    fn a_changed_limit_counts_from_the_next_delivery() {
        let mut rates = Rates::new(RegistryHandle::default());
        assert!(matches!(go(&mut rates, Some(60_000), 0, 0), Check::Go(_)));
        assert_eq!(go(&mut rates, Some(60_000), 1, 0), Check::Until(60_000));
        // Raised to 6000 a minute: the next may go 10 ms after the last.
        assert!(matches!(go(&mut rates, Some(10), 10, 0), Check::Go(_)));
        assert_eq!(go(&mut rates, Some(10), 11, 0), Check::Until(20));
        // Removed: unlimited, and forgotten.
        assert_eq!(go(&mut rates, None, 11, 0), Check::Unlimited);
        assert!(rates.last.is_empty());
    }

    #[test]
    fn only_deliveries_that_fell_due_before_their_slot_count_as_held_back() {
        let mut rates = Rates::new(RegistryHandle::default());
        let mut take = |now: i64, due: i64| {
            let Check::Go(slot) = rates.check_with(1, Some(1000), now) else {
                panic!("not allowed at {now}");
            };
            rates.take(slot, now, due)
        };
        assert!(!take(0, 0), "the first goes at once");
        assert!(take(1000, 400), "due at 400, allowed from 1000");
        assert!(!take(2500, 2000), "due when allowed, sent late");
        assert!(take(3500, 3499));
    }

    #[test]
    fn idle_webhooks_are_forgotten() {
        let mut rates = Rates::new(RegistryHandle::default());
        go(&mut rates, Some(60_000), 0, 0);
        rates.forget_idle(119_999);
        assert_eq!(rates.last.len(), 1);
        rates.forget_idle(120_000);
        assert!(rates.last.is_empty());
    }
}
