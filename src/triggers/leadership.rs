//! Leadership: the trigger engine ticks in one daemon at a time, the holder
//! of the `triggers` row of `webhook_leases`.
//!
//! The lease lasts [`Lease::term`] (seven tenths of
//! `triggers.failover_secs`) on Postgres's clock and is renewed every third
//! of that. The holder also keeps a local deadline: the instant it *sent*
//! the request that took or renewed the lease, plus the time Postgres said
//! was left, less a margin. Past that deadline it ticks no more, so it has
//! stopped before the lease can run out for anyone else, even when it cannot
//! reach Postgres to learn so. A standby tries to take the lease every fifth
//! of `triggers.failover_secs`, and succeeds once it has run out: at most
//! the term plus one try after the leader's last renewal, within
//! `triggers.failover_secs`. On a clean shutdown the leader gives the lease
//! up and a standby takes it at its next try.
//!
//! Every tick's commit is fenced as well (`store::trigger_state::commit_tick`
//! checks and locks the row in the commit's transaction), so even a leader
//! paused past its deadline cannot write after another has taken over.

use std::hash::{BuildHasher, Hasher};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use deadpool_postgres::Pool;
use tokio::time::Instant;

use crate::store::{StoreError, leases};

/// The lease's row in `webhook_leases`.
pub(super) const LEASE: &str = "triggers";

pub(super) struct Lease {
    pool: Pool,
    holder: String,
    failover: Duration,
    held: Mutex<Held>,
}

#[derive(Debug, Clone, Default)]
struct Held {
    /// The token of the last lease taken, kept after the deadline passes so
    /// that this engine may take its own lease back at once.
    token: Option<String>,
    /// Until when this engine may tick (none: it does not lead).
    deadline: Option<Instant>,
    renew_at: Option<Instant>,
}

/// A renewal in flight.
type Renewal<'a> = std::pin::Pin<Box<dyn Future<Output = Result<bool, StoreError>> + Send + 'a>>;

/// Why [`Lease::hold`] gave up on a future.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lost {
    /// The local deadline passed without a renewal.
    Expired,
    /// Postgres said another daemon holds the lease.
    TakenOver,
}

impl Lease {
    pub(super) fn new(pool: Pool, failover: Duration) -> Lease {
        Lease {
            pool,
            holder: holder(),
            failover,
            held: Mutex::new(Held::default()),
        }
    }

    pub(super) fn holder(&self) -> &str {
        &self.holder
    }

    /// How long a taken or renewed lease lasts on Postgres's clock.
    fn term(&self) -> Duration {
        self.failover.mul_f64(0.6)
    }

    /// How long a tick's commit may leave its transaction idle before
    /// Postgres ends the session: a leader cut off mid-commit frees the
    /// lease row well before its lease runs out.
    pub(super) fn commit_idle_limit(&self) -> Duration {
        self.failover / 5
    }

    fn renew_every(&self) -> Duration {
        self.term() / 3
    }

    /// How far ahead of the lease's end the holder stops.
    fn margin(&self) -> Duration {
        self.term() / 5
    }

    /// How often a standby tries to take the lease.
    pub(super) fn try_every(&self) -> Duration {
        (self.failover / 5).clamp(Duration::from_millis(100), Duration::from_secs(5))
    }

    /// The token to fence a commit with, while the local deadline has not
    /// passed.
    pub(super) fn token(&self) -> Option<String> {
        let held = self.lock();
        held.deadline
            .filter(|d| Instant::now() < *d)
            .and(held.token.clone())
    }

    /// Takes the lease if it is free, has run out, or is still this
    /// engine's own. True when this engine now leads.
    pub(super) async fn acquire(&self) -> Result<bool, StoreError> {
        let token = new_token();
        let previous = self.lock().token.clone().unwrap_or_default();
        let sent = Instant::now();
        let mut client = self.pool.get().await?;
        let left = leases::acquire(
            &mut client,
            LEASE,
            &self.holder,
            &token,
            &previous,
            self.term(),
        )
        .await?;
        match left {
            Some(left) => {
                self.set(token, sent, left);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Forgets the lease locally (a fenced-out commit, a lost lease).
    pub(super) fn forget(&self) {
        let mut held = self.lock();
        held.deadline = None;
        held.renew_at = None;
    }

    /// Gives the lease up, bounded by a second of waiting.
    pub(super) async fn release(&self) {
        let token = self.lock().token.take();
        self.forget();
        let Some(token) = token else { return };
        let release = async {
            let client = self.pool.get().await?;
            leases::release(&**client, LEASE, &token).await
        };
        match tokio::time::timeout(Duration::from_secs(1), release).await {
            Ok(Ok(())) => tracing::info!("trigger leadership released"),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot release the trigger lease; it runs out by itself")
            }
            Err(_) => {
                tracing::warn!("releasing the trigger lease timed out; it runs out by itself")
            }
        }
    }

    /// Runs `work` while keeping the lease renewed. Gives up on it (drops
    /// it) when the lease is lost, or the local deadline passes first. The
    /// renewal runs alongside `work`, which may be a commit that holds the
    /// lease row until it ends.
    pub(super) async fn hold<F: Future>(&self, work: F) -> Result<F::Output, Lost> {
        tokio::pin!(work);
        let mut renewal: Option<Renewal<'_>> = None;
        loop {
            let (token, deadline, renew_at) = {
                let held = self.lock();
                match (&held.token, held.deadline, held.renew_at) {
                    (Some(t), Some(d), Some(r)) => (t.clone(), d, r),
                    _ => return Err(Lost::Expired),
                }
            };
            let renewing = renewal.is_some();
            tokio::select! {
                biased;
                out = &mut work => return Ok(out),
                () = tokio::time::sleep_until(deadline) => {
                    self.forget();
                    return Err(Lost::Expired);
                }
                renewed = async {
                    match renewal.as_mut() {
                        Some(r) => r.await,
                        None => std::future::pending().await,
                    }
                }, if renewing => {
                    renewal = None;
                    match renewed {
                        Ok(true) => {}
                        Ok(false) => {
                            self.forget();
                            return Err(Lost::TakenOver);
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, "cannot renew the trigger lease; retrying");
                            self.lock().renew_at =
                                Some(Instant::now() + Duration::from_millis(200));
                        }
                    }
                }
                () = tokio::time::sleep_until(renew_at), if !renewing => {
                    renewal = Some(Box::pin(self.renew(token)));
                }
            }
        }
    }

    async fn renew(&self, token: String) -> Result<bool, StoreError> {
        let sent = Instant::now();
        let client = self.pool.get().await?;
        match leases::renew(&**client, LEASE, &token, self.term()).await? {
            Some(left) => {
                self.set(token, sent, left);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn set(&self, token: String, sent: Instant, left: Duration) {
        let mut held = self.lock();
        held.token = Some(token);
        held.deadline = Some(sent + left.saturating_sub(self.margin()));
        held.renew_at = Some(sent + self.renew_every());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Who holds the lease, for operators: host name and process id.
fn holder() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into());
    format!("{host}:{}", std::process::id())
        .chars()
        .take(200)
        .collect()
}

/// A fresh random token for one taking of the lease.
fn new_token() -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut parts = [0u64; 2];
    for (i, part) in parts.iter_mut().enumerate() {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(nanos);
        h.write_u32(std::process::id());
        h.write_usize(i);
        *part = h.finish();
    }
    format!("{:016x}{:016x}", parts[0], parts[1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_differ() {
        let a = new_token();
        let b = new_token();
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
    }
}
