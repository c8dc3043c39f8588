//! Which configured ClickHouse URL queries go to: `clickhouse.url` until
//! it cannot be reached, then the failover URL that answered, and
//! `clickhouse.url` again once a failover URL has been in use for a while.
//!
//! Queries run concurrently, so a query changes the endpoint in use only
//! if it is still the one the query saw when it started (compare and set):
//! a slow query cannot undo a newer failover, nor count one that nothing
//! caused. The clock is passed in, so the state machine is tested without
//! waiting.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Which endpoint queries go to, and since when.
struct Current {
    index: usize,
    since: Instant,
}

/// Where one query starts: the endpoint in use when it started, and the
/// one it tries first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Start {
    seen: usize,
    pub(super) first: usize,
}

pub(super) struct Failover {
    current: Mutex<Current>,
    back_to_primary: Duration,
}

impl Failover {
    /// On `clickhouse.url` (index 0) from `now`; back to it after
    /// `back_to_primary` on a failover URL.
    pub(super) fn new(back_to_primary: Duration, now: Instant) -> Self {
        Failover {
            current: Mutex::new(Current {
                index: 0,
                since: now,
            }),
            back_to_primary,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Current> {
        self.current.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The endpoint in use, as index.
    pub(super) fn index(&self) -> usize {
        self.lock().index
    }

    /// Where a query starting at `now` begins: the endpoint in use, or
    /// `clickhouse.url` once a failover URL has been in use long enough.
    pub(super) fn start(&self, now: Instant) -> Start {
        let current = self.lock();
        let due = current.index != 0
            && now.saturating_duration_since(current.since) >= self.back_to_primary;
        Start {
            seen: current.index,
            first: if due { 0 } else { current.index },
        }
    }

    /// Records that `index` answered the query that began at `start`.
    /// Returns the endpoint moved away from when this was a failover (the
    /// caller logs and counts it); `None` when nothing changed.
    pub(super) fn settle(&self, start: Start, index: usize, now: Instant) -> Option<usize> {
        let mut current = self.lock();
        if current.index != start.seen {
            // Another query moved it meanwhile: its move stands.
            return None;
        }
        if current.index == index {
            if start.first == 0 && index != 0 {
                // clickhouse.url was tried and did not answer: wait again.
                current.since = now;
            }
            return None;
        }
        let from = current.index;
        *current = Current { index, since: now };
        Some(from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BACK: Duration = Duration::from_secs(300);

    #[test]
    fn a_failover_moves_once_and_stays() {
        let t0 = Instant::now();
        let f = Failover::new(BACK, t0);
        let s = f.start(t0);
        assert_eq!(s.first, 0);
        assert_eq!(f.settle(s, 1, t0), Some(0));
        assert_eq!(f.index(), 1);
        let s = f.start(t0 + Duration::from_secs(10));
        assert_eq!(s.first, 1);
        assert_eq!(f.settle(s, 1, t0 + Duration::from_secs(10)), None);
        assert_eq!(f.index(), 1);
    }

    #[test]
    fn concurrent_queries_do_not_flap_or_count_twice() {
        let t0 = Instant::now();
        let f = Failover::new(BACK, t0);
        // Two queries start on clickhouse.url; both find it down.
        let a = f.start(t0);
        let b = f.start(t0);
        assert_eq!(f.settle(a, 1, t0), Some(0));
        // The second answered on failover URL 2: the first's move stands.
        assert_eq!(f.settle(b, 2, t0), None);
        assert_eq!(f.index(), 1);
        // A slow query begun on clickhouse.url before the failover, which
        // it answered in the end, does not move back either.
        let c = Start { seen: 0, first: 0 };
        assert_eq!(f.settle(c, 0, t0), None);
        assert_eq!(f.index(), 1);
    }

    #[test]
    fn the_primary_is_tried_again_after_the_wait() {
        let t0 = Instant::now();
        let f = Failover::new(BACK, t0);
        f.settle(f.start(t0), 1, t0);
        let later = t0 + BACK;
        let s = f.start(later);
        assert_eq!(s.first, 0);
        assert_eq!(f.settle(s, 0, later), Some(1));
        assert_eq!(f.index(), 0);
    }

    #[test]
    fn the_wait_restarts_only_when_the_primary_failed() {
        let t0 = Instant::now();
        let f = Failover::new(BACK, t0);
        f.settle(f.start(t0), 1, t0);
        // A query started on the failover URL just before the wait ended
        // and answered after it: the primary was not tried.
        let early = f.start(t0 + BACK - Duration::from_secs(1));
        assert_eq!(early.first, 1);
        assert_eq!(f.settle(early, 1, t0 + BACK + Duration::from_secs(1)), None);
        // So the next query still goes to the primary first.
        let s = f.start(t0 + BACK + Duration::from_secs(2));
        assert_eq!(s.first, 0);
        // It fails there and answers on the failover URL: wait again.
        let failed_at = t0 + BACK + Duration::from_secs(3);
        assert_eq!(f.settle(s, 1, failed_at), None);
        assert_eq!(f.start(failed_at + BACK - Duration::from_secs(1)).first, 1);
        assert_eq!(f.start(failed_at + BACK).first, 0);
    }
}
