//! The delivery scheduler: sends what the outbox holds.
//!
//! An in-memory [`Timeline`] says which pending deliveries are due when. It
//! is filled by a full read of the pending rows (at start, whenever the
//! wake-up connection reconnects or overflows, and every
//! `delivery.resync_interval_secs`: `resync`), by notifications on
//! `webhook_deliveries_changed` (new deliveries and replays, with their
//! webhook and due time: `listen`; in logical replication mode the change
//! source's feed instead, `listen::follow`) and by the scheduler's own retries once
//! they are recorded. Due deliveries are taken in turns per webhook, within
//! bounded concurrency (globally and per endpoint), and leased by id in
//! Postgres, whose check decides: a second daemon, or a schedule that is
//! out of date, never takes a delivery in flight. Each lease has a token;
//! each attempt (`attempt`) turns into an outcome carrying it, and one
//! writer task (`writer`) records outcomes in batches: the delivery's new
//! state (only while its lease is still the attempt's: fenced), the
//! attempt, endpoint health, and webhooks to disable. A delivery is
//! recorded only after its attempt, so a crash at any point loses nothing:
//! the lease expires and the delivery is sent again, with the same
//! `webhook-id`. Times are compared on Postgres's clock (`clock`).
//!
//! The loop in [`Scheduler::run`] is a few stages: take what is due
//! (`take_due`), lease it, start an attempt per leased delivery and give
//! back what was refused (`lease::Context::lease_and_dispatch`), or sleep
//! (`idle`); `lanes` holds the bounds on concurrency and `rate` the
//! per-webhook rate limits (`webhooks.max_per_minute`), applied before a
//! delivery is leased, so that one held back is never an attempt. The
//! timeline's state changes when a taken delivery is settled go through
//! [`Shared::settle`]. The inner tasks (writer, resync,
//! listener) are watched: if one ends or panics, `run` logs which and why,
//! stops the others, lets the attempts in flight end within a bound and
//! returns, and the supervisor starts the scheduler afresh.

mod attempt;
mod clock;
mod inner;
mod lanes;
mod lease;
mod listen;
mod rate;
mod resync;
mod timeline;
mod writer;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::TimeDelta;
use deadpool_postgres::Pool;
use tokio::sync::{Notify, mpsc, watch};

use crate::config::{Config, DeliveryConfig};
use crate::delivery::client::DeliveryClient;
use crate::delivery::feed::Feed;
use crate::delivery::retry::RetryPolicy;
use crate::registry::RegistryHandle;
use crate::store::deliveries::{DeadEndpoints, Outcome};
use crate::store::{self, StoreError};
use crate::telemetry::health::{BEAT_EVERY, Heartbeat};
use clock::Clock;
use inner::{Inner, Stop};
use lanes::{Lanes, Places};
use lease::Context;
use rate::{Check, Rates};
use timeline::{Room, Timeline};

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
/// A lease query that takes longer is abandoned (its leases run out).
const LEASE_QUERY_LIMIT: Duration = Duration::from_secs(10);
/// Pending deliveries the in-memory schedule holds at most (about 150 bytes
/// each). Beyond it, the rest wait in Postgres for a later full read.
const MAX_SCHEDULED: usize = 200_000;
/// The longest sleep without looking at the schedule (and beating).
const MAX_IDLE: Duration = BEAT_EVERY;
/// How long the inner tasks may take to end after the flush limit.
const STOP_GRACE: Duration = Duration::from_secs(2);
/// How long a delivery waits when its lease was refused though it is still
/// pending and looked due, or when leasing failed.
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
    pg: store::PgTarget,
    registry: RegistryHandle,
    client: DeliveryClient,
    retry: RetryPolicy,
    config: DeliveryConfig,
    /// Added to the host clock's reading (tests only).
    host_clock_skew: TimeDelta,
    /// An inner task to fail at start (tests only).
    fault: Option<&'static str>,
    /// The change source's feed, which replaces the LISTEN connection in
    /// logical replication mode.
    feed: Option<Feed>,
}

/// What the scheduler's tasks share.
struct Shared {
    timeline: Mutex<Timeline>,
    /// Wakes the scheduler: something may have fallen due or a place freed.
    wake: Notify,
    /// Asks for a full read of the pending deliveries.
    resync: Notify,
    clock: Clock,
}

/// What becomes of a taken delivery once settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// Nothing more to do here (recorded as final, or not pending).
    Done,
    /// Scheduled again at this time (ms since the epoch).
    At(i64),
}

impl Shared {
    fn timeline(&self) -> MutexGuard<'_, Timeline> {
        self.timeline.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Settles taken deliveries: the one place they leave the taken set,
    /// and are scheduled again or not.
    fn settle<'a>(&self, settled: impl IntoIterator<Item = (&'a str, i64, Next)>) {
        let mut timeline = self.timeline();
        for (id, webhook_id, next) in settled {
            timeline.finish(id);
            if let Next::At(due) = next {
                timeline.insert(id, webhook_id, due);
            }
        }
        drop(timeline);
        self.wake.notify_one();
    }

    /// A webhook's place was freed: its turns come back.
    fn release(&self, webhook_id: i64) {
        self.timeline().unblock(webhook_id);
        self.wake.notify_one();
    }
}

/// The lease and request limits, from the config.
#[derive(Debug, Clone, Copy)]
struct Limits {
    /// A lease's length: twice the request timeout plus 5 s, room to wait
    /// for a place, then send.
    lease: Duration,
    request_timeout: Duration,
    /// How long the writer keeps writing once the scheduler stops: the
    /// attempts in flight end within the request timeout.
    flush: Duration,
}

impl Limits {
    fn new(config: &DeliveryConfig) -> Limits {
        let request_timeout = Duration::from_secs(config.request_timeout_secs);
        Limits {
            lease: request_timeout * 2 + Duration::from_secs(5),
            request_timeout,
            flush: request_timeout + Duration::from_secs(5),
        }
    }
}

/// Due deliveries taken from the timeline, with their places.
type Batch = Vec<(Arc<str>, i64, Places)>;

impl Scheduler {
    pub fn new(
        config: &Config,
        pool: Pool,
        registry: RegistryHandle,
    ) -> Result<Scheduler, DeliveryError> {
        let pg = store::PgTarget::listening(&config.postgres, "plausible-webhooks delivery")?;
        Ok(Scheduler {
            pool,
            pg,
            registry,
            client: DeliveryClient::new(&config.delivery)?,
            retry: RetryPolicy::new(&config.delivery.retry_schedule_secs),
            config: config.delivery.clone(),
            host_clock_skew: TimeDelta::zero(),
            fault: None,
            feed: None,
        })
    }

    /// Takes new work from the change source's feed instead of LISTEN.
    pub fn with_feed(mut self, feed: Feed) -> Scheduler {
        self.feed = Some(feed);
        self
    }

    /// Reads the host clock as if it were `skew` off (for tests of the
    /// offset to Postgres's clock).
    #[doc(hidden)]
    pub fn with_host_clock_skew(mut self, skew: Duration, ahead: bool) -> Scheduler {
        let skew = TimeDelta::from_std(skew).unwrap_or_default();
        self.host_clock_skew = if ahead { skew } else { -skew };
        self
    }

    /// Makes the named inner task (`outcome writer`, `delivery resync` or
    /// `delivery listener`) panic as it starts (for tests of the
    /// scheduler's own supervision).
    #[doc(hidden)]
    pub fn with_failing_inner_task(mut self, task: &'static str) -> Scheduler {
        self.fault = Some(task);
        self
    }

    /// Sends deliveries until `shutdown` is true, then lets the attempts in
    /// flight finish and records them (within a bound). Returns early, with
    /// the reason logged, if one of its inner tasks ends.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>, heartbeat: Heartbeat) {
        let this = Arc::new(self);
        let limits = Limits::new(&this.config);
        let shared = Arc::new(Shared {
            timeline: Mutex::new(Timeline::new(MAX_SCHEDULED)),
            wake: Notify::new(),
            resync: Notify::new(),
            clock: Clock::new(this.host_clock_skew),
        });
        shared.clock.measure(&this.pool).await;
        let (halt_tx, halt) = watch::channel(false);
        let (outcomes, outcomes_rx) = mpsc::channel::<Outcome>(this.config.max_in_flight * 2);
        let mut inner = this.start_inner(&shared, &limits, outcomes_rx, &halt);
        let mut lanes = Lanes::new(&this.config);
        let mut rates = Rates::new(this.registry.clone());
        let mut context = Context {
            this: &this,
            shared: &shared,
            limits,
            outcomes: &outcomes,
            requests: lanes.requests.clone(),
            halt: &halt,
            failing: false,
        };
        let stop = loop {
            heartbeat.beat();
            if *shutdown.borrow() {
                break Stop::Shutdown;
            }
            let (batch, next_due) = take_due(&shared, &mut lanes, &mut rates);
            let step = if batch.is_empty() {
                idle(&shared, next_due, &mut rates, &mut shutdown, &mut inner).await
            } else {
                context
                    .lease_and_dispatch(batch, &mut shutdown, &mut inner)
                    .await
            };
            if let Err(stop) = step {
                break stop;
            }
        };
        if let Stop::Failed { task, reason } = &stop {
            tracing::error!(task, reason = %reason, "a delivery scheduler task stopped; restarting the scheduler");
        }
        drain(lanes, outcomes, inner, halt_tx, limits).await;
    }

    /// Starts the writer, the resync and the listener, watched.
    fn start_inner(
        self: &Arc<Self>,
        shared: &Arc<Shared>,
        limits: &Limits,
        outcomes: mpsc::Receiver<Outcome>,
        halt: &watch::Receiver<bool>,
    ) -> Inner {
        let mut inner = Inner::new(self.fault);
        let writer = writer::Writer {
            pool: self.pool.clone(),
            dead: dead_endpoints(self.config.disable_endpoint_after_secs),
            lease: limits.lease,
            flush_limit: limits.flush,
        };
        inner.spawn(
            "outcome writer",
            writer.run(outcomes, shared.clone(), halt.clone()),
        );
        inner.spawn(
            "delivery resync",
            resync::resync(
                self.pool.clone(),
                shared.clone(),
                Duration::from_secs(self.config.resync_interval_secs),
                halt.clone(),
            ),
        );
        match &self.feed {
            Some(feed) => inner.spawn(
                "delivery feed",
                listen::follow(feed.subscribe(), shared.clone(), halt.clone()),
            ),
            None => inner.spawn(
                "delivery listener",
                listen::listen(self.pg.clone(), shared.clone(), halt.clone()),
            ),
        }
        inner
    }
}

/// Takes what is due, as far as there is room: at most `LEASE_AHEAD` times
/// a webhook's limit of requests in flight leased per webhook, and twice
/// the global limit in all; a webhook's next delivery only once its rate
/// limit allows it. Also returns when the next entry falls due (or the next
/// webhook held back may send).
fn take_due(shared: &Shared, lanes: &mut Lanes, rates: &mut Rates) -> (Batch, Option<i64>) {
    let free = lanes.leasable.available_permits().min(LEASE_BATCH);
    let now = shared.clock.now_ms();
    let mut timeline = shared.timeline();
    if rates.take_changed() {
        timeline.unthrottle_all();
    }
    timeline.promote(now);
    let batch = if free > 0 {
        lanes.forget_idle();
        rates.forget_idle(now);
        timeline.take(free, |webhook_id, due| {
            room(lanes, rates, webhook_id, due, now)
        })
    } else {
        Vec::new()
    };
    metrics::gauge!("plausible_webhooks_delivery_scheduled").set(timeline.len() as f64);
    metrics::gauge!("plausible_webhooks_delivery_in_flight").set(timeline.taken() as f64);
    metrics::gauge!("plausible_webhooks_delivery_rate_limited_waiting")
        .set(timeline.throttled() as f64);
    if timeline.take_overflowed() {
        shared.resync.notify_one();
    }
    (batch, timeline.next_due())
}

/// What a webhook's turn finds for its next delivery (due at `due`): held
/// back by its rate limit, no place, or its places (and its rate limit's
/// slot taken). The limit is asked first, so a delivery it holds back
/// takes no place; the slot is taken last, so one without a place spends
/// none.
fn room(lanes: &mut Lanes, rates: &mut Rates, webhook_id: i64, due: i64, now: i64) -> Room<Places> {
    match rates.check(webhook_id, now) {
        Check::Until(at) => Room::Until(at),
        Check::Unlimited => lanes
            .places(webhook_id, true)
            .map_or(Room::Full, Room::Take),
        Check::Go(slot) => match lanes.places(webhook_id, false) {
            Some(places) => {
                rates.take(slot, now, due);
                Room::Take(places)
            }
            None => Room::Full,
        },
    }
}

/// Sleeps until something may be due: a new or replayed delivery, a place
/// freed, a retry recorded, the next scheduled time (or the next time a
/// webhook held back by its rate limit may send), or a change in the
/// registry (a limit may have changed); at most `MAX_IDLE`.
async fn idle(
    shared: &Shared,
    next_due: Option<i64>,
    rates: &mut Rates,
    shutdown: &mut watch::Receiver<bool>,
    inner: &mut Inner,
) -> Result<(), Stop> {
    let idle = next_due
        .map(|at| Duration::from_millis(at.saturating_sub(shared.clock.now_ms()).max(0) as u64))
        .unwrap_or(MAX_IDLE);
    tokio::select! {
        () = shared.wake.notified() => Ok(()),
        () = rates.changed() => Ok(()),
        () = tokio::time::sleep(idle.clamp(Duration::from_millis(1), MAX_IDLE)) => Ok(()),
        stop = inner::stopped(shutdown, inner) => Err(stop),
    }
}

/// Stops: the inner tasks are told to halt; the attempts in flight end
/// (within the request timeout; those waiting for a place give up) and the
/// writer records their outcomes within its flush limit; then the inner
/// tasks are awaited, and aborted if they outstay it. All of it ends within
/// the flush limit and a moment's grace of the halt.
async fn drain(
    lanes: Lanes,
    outcomes: mpsc::Sender<Outcome>,
    inner: Inner,
    halt: watch::Sender<bool>,
    limits: Limits,
) {
    let _ = halt.send(true);
    let deadline = tokio::time::Instant::now() + limits.flush;
    let all = u32::try_from(lanes.leasable_total).unwrap_or(u32::MAX);
    if tokio::time::timeout_at(deadline, lanes.leasable.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!("delivery attempts still in flight at shutdown; their leases will run out");
    }
    drop(outcomes);
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    inner.stop(left + STOP_GRACE).await;
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
