//! When to try a failed delivery again.
//!
//! The schedule (`delivery.retry_schedule_secs`, by default Svix's: 5 s,
//! 5 min, 30 min, 2 h, 5 h, 10 h, 10 h) gives the wait after each failed
//! attempt; each wait gets up to 20 % of random jitter so that receivers
//! coming back from an outage are not hit by every retry at once. A wait
//! the receiver asks for (`Retry-After`, or a chat service's own hint)
//! replaces it, within bounds (1 s to 24 h); a timeout, and a 429 that
//! says nothing of when to come back, wait at least a minute. Past the
//! schedule's end the delivery has failed.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// The shortest wait after a timeout, or a 429 without a `Retry-After`.
pub const MIN_WAIT_AFTER_OVERLOAD: Duration = Duration::from_secs(60);
/// The shortest wait a `Retry-After` can ask for.
pub const MIN_RETRY_AFTER: Duration = Duration::from_secs(1);
/// The longest `Retry-After` honoured.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// What happened on an attempt, as far as retrying is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No response in time.
    Timeout,
    /// The receiver answered 429 Too Many Requests.
    TooManyRequests,
    /// Anything else worth retrying (5xx, connection errors, 3xx, ...).
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    schedule: Vec<Duration>,
}

impl RetryPolicy {
    pub fn new(schedule_secs: &[u64]) -> RetryPolicy {
        RetryPolicy {
            schedule: schedule_secs
                .iter()
                .map(|s| Duration::from_secs(*s))
                .collect(),
        }
    }

    /// The wait before the next attempt after `attempts` failed ones, or
    /// `None` when the schedule is spent. `jitter` is a number in [0, 1).
    pub fn next_wait(
        &self,
        attempts: u32,
        failure: Failure,
        retry_after: Option<Duration>,
        jitter: f64,
    ) -> Option<Duration> {
        let base = *self.schedule.get((attempts as usize).checked_sub(1)?)?;
        let jittered = base.mul_f64(1.0 + 0.2 * jitter.clamp(0.0, 1.0));
        Some(match (retry_after, failure) {
            (Some(asked), _) => asked.clamp(MIN_RETRY_AFTER, MAX_RETRY_AFTER),
            (None, Failure::Timeout | Failure::TooManyRequests) => {
                jittered.max(MIN_WAIT_AFTER_OVERLOAD)
            }
            (None, Failure::Other) => jittered,
        })
    }
}

/// Parses a `Retry-After` value: delay-seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = DateTime::parse_from_rfc2822(value)
        .ok()?
        .with_timezone(&Utc);
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy::new(&[5, 300, 1800, 7200, 18000, 36000, 36000])
    }

    #[test]
    fn follows_the_schedule_with_jitter_and_ends() {
        let p = policy();
        assert_eq!(
            p.next_wait(1, Failure::Other, None, 0.0),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            p.next_wait(2, Failure::Other, None, 0.5),
            Some(Duration::from_secs(330))
        );
        assert_eq!(
            p.next_wait(7, Failure::Other, None, 0.0),
            Some(Duration::from_secs(36000))
        );
        assert_eq!(
            p.next_wait(8, Failure::Other, None, 0.0),
            None,
            "schedule spent"
        );
        assert_eq!(p.next_wait(0, Failure::Other, None, 0.0), None);
        let most = p.next_wait(1, Failure::Other, None, 0.999).unwrap();
        assert!(most < Duration::from_secs(6), "{most:?}");
    }

    #[test]
    fn retry_after_within_bounds_and_a_minute_after_overload() {
        let p = policy();
        assert_eq!(
            p.next_wait(1, Failure::Other, Some(Duration::from_secs(120)), 0.0),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            p.next_wait(
                1,
                Failure::Other,
                Some(Duration::from_secs(10 * 86400)),
                0.0
            ),
            Some(MAX_RETRY_AFTER)
        );
        // A 429 that says when to come back is taken at its word...
        assert_eq!(
            p.next_wait(
                1,
                Failure::TooManyRequests,
                Some(Duration::from_secs(3)),
                0.0
            ),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            p.next_wait(
                1,
                Failure::TooManyRequests,
                Some(Duration::from_millis(1500)),
                0.0
            ),
            Some(Duration::from_millis(1500))
        );
        // ...within bounds: never sooner than a second.
        assert_eq!(
            p.next_wait(1, Failure::TooManyRequests, Some(Duration::ZERO), 0.0),
            Some(MIN_RETRY_AFTER)
        );
        assert_eq!(
            p.next_wait(1, Failure::Other, Some(Duration::from_millis(10)), 0.0),
            Some(MIN_RETRY_AFTER)
        );
        // One that says nothing waits at least a minute, as a timeout does.
        assert_eq!(
            p.next_wait(1, Failure::TooManyRequests, None, 0.0),
            Some(MIN_WAIT_AFTER_OVERLOAD)
        );
        assert_eq!(
            p.next_wait(1, Failure::Timeout, None, 0.0),
            Some(MIN_WAIT_AFTER_OVERLOAD)
        );
        // The schedule still ends.
        assert_eq!(
            p.next_wait(
                8,
                Failure::TooManyRequests,
                Some(Duration::from_secs(3)),
                0.0
            ),
            None
        );
    }

    #[test]
    fn parses_both_retry_after_forms() {
        let now = DateTime::parse_from_rfc2822("Sun, 29 Nov 2026 20:00:00 GMT")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Sun, 29 Nov 2026 20:05:00 GMT", now),
            Some(Duration::from_secs(300))
        );
        assert_eq!(
            parse_retry_after("Sun, 29 Nov 2026 19:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
