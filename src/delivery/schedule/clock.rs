//! Postgres's clock, as the scheduler keeps it.
//!
//! Due times, leases and `inserted_at` are Postgres's times, so the
//! scheduler compares and computes times on Postgres's clock: the host's
//! clock plus an offset measured with `SELECT clock_timestamp()`, at start
//! and before every full read. Each measurement takes the best of a few
//! samples (the one with the shortest round trip) and assumes Postgres read
//! its clock half-way through it, so the error is at most half that round
//! trip. A daemon whose host clock is off by seconds or minutes still sends
//! on time and writes retry times relative to Postgres's now().

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use deadpool_postgres::Pool;

use crate::store::deliveries;

/// Samples per measurement; the one with the shortest round trip counts.
const SAMPLES: usize = 3;
/// A measurement that takes longer is abandoned (the last offset stays).
const MEASURE_LIMIT: Duration = Duration::from_secs(5);

pub(super) struct Clock {
    /// Postgres's clock minus the host's, in microseconds.
    offset_us: AtomicI64,
    /// Added to the host's clock reading: zero except in tests that fake a
    /// host clock that is off.
    skew: TimeDelta,
}

impl Clock {
    pub(super) fn new(skew: TimeDelta) -> Clock {
        Clock {
            offset_us: AtomicI64::new(0),
            skew,
        }
    }

    /// The host's clock, as this daemon reads it.
    fn host(&self) -> DateTime<Utc> {
        Utc::now() + self.skew
    }

    /// Postgres's now, as far as the last measurement tells.
    pub(super) fn now(&self) -> DateTime<Utc> {
        self.host() + TimeDelta::microseconds(self.offset_us.load(Ordering::Relaxed))
    }

    /// [`Clock::now`] in milliseconds since the epoch, as the timeline
    /// counts.
    pub(super) fn now_ms(&self) -> i64 {
        self.now().timestamp_millis()
    }

    /// Measures the offset again; on failure the last one stays.
    pub(super) async fn measure(&self, pool: &Pool) {
        match tokio::time::timeout(MEASURE_LIMIT, self.sample_best(pool)).await {
            Ok(Ok((offset, round_trip))) => {
                self.offset_us
                    .store(offset.num_microseconds().unwrap_or(0), Ordering::Relaxed);
                metrics::gauge!("plausible_webhooks_postgres_clock_offset_seconds")
                    .set(offset.num_microseconds().unwrap_or(0) as f64 / 1e6);
                tracing::debug!(offset_ms = offset.num_milliseconds(), round_trip = ?round_trip, "postgres clock offset measured");
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "cannot measure postgres's clock; keeping the last offset");
            }
            Err(_) => {
                tracing::debug!(
                    "measuring postgres's clock took too long; keeping the last offset"
                );
            }
        }
    }

    /// The offset of the sample with the shortest round trip.
    async fn sample_best(
        &self,
        pool: &Pool,
    ) -> Result<(TimeDelta, Duration), crate::store::StoreError> {
        let mut best: Option<(TimeDelta, Duration)> = None;
        for _ in 0..SAMPLES {
            let started = Instant::now();
            let before = self.host();
            let postgres = deliveries::postgres_now(pool).await?;
            let round_trip = started.elapsed();
            let midpoint = before + TimeDelta::from_std(round_trip / 2).unwrap_or_default();
            let offset = postgres - midpoint;
            if best.is_none_or(|(_, rt)| round_trip < rt) {
                best = Some((offset, round_trip));
            }
        }
        Ok(best.unwrap_or_default())
    }
}
