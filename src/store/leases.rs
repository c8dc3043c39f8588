//! Leases in `webhook_leases`: which daemon holds a role (the trigger
//! engine's leadership), timed on Postgres's clock. See
//! `migrations/postgres/V10__trigger_lease.sql`.

use std::time::Duration;

use tokio_postgres::GenericClient;
use tokio_postgres::error::SqlState;

use super::StoreError;

/// Takes lease `name` under `token` for `term` if nobody holds it, the
/// holder's lease ran out, or it is still held under `previous` (the
/// caller's own last token). Returns how long it lasts from when Postgres
/// answered; `None` when another holder has it.
pub async fn acquire(
    client: &mut tokio_postgres::Client,
    name: &str,
    holder: &str,
    token: &str,
    previous: &str,
    term: Duration,
) -> Result<Option<Duration>, StoreError> {
    let tx = client.transaction().await?;
    // A commit holding the row means its holder is alive: do not queue
    // behind it (and perhaps take the lease after the caller gave up).
    tx.execute(include_str!("sql/lease_lock_timeout.sql"), &[])
        .await?;
    let row = match tx
        .query_opt(
            include_str!("sql/lease_acquire.sql"),
            &[&name, &holder, &token, &term.as_secs_f64(), &previous],
        )
        .await
    {
        Ok(row) => row,
        Err(e) if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    tx.commit().await?;
    Ok(row.and_then(|r| left(&r)))
}

/// Extends lease `name` still held under `token` to `term` from now.
/// `None` when it ran out or was taken over.
pub async fn renew(
    client: &impl GenericClient,
    name: &str,
    token: &str,
    term: Duration,
) -> Result<Option<Duration>, StoreError> {
    let row = client
        .query_opt(
            include_str!("sql/lease_renew.sql"),
            &[&name, &token, &term.as_secs_f64()],
        )
        .await?;
    Ok(row.and_then(|r| left(&r)))
}

/// Gives lease `name` up if `token` still holds it.
pub async fn release(
    client: &impl GenericClient,
    name: &str,
    token: &str,
) -> Result<(), StoreError> {
    client
        .execute(include_str!("sql/lease_release.sql"), &[&name, &token])
        .await?;
    Ok(())
}

/// Inside a transaction: true when `token` still holds lease `name`, which
/// then stays held until the transaction ends. Postgres ends the session
/// if the transaction then idles longer than `idle_limit` (its client cut
/// off), so that the row is not held past the lease.
pub async fn fence(
    client: &impl GenericClient,
    name: &str,
    token: &str,
    idle_limit: Duration,
) -> Result<bool, StoreError> {
    let limit = format!("{}ms", idle_limit.as_millis().max(100));
    client
        .execute(include_str!("sql/lease_idle_limit.sql"), &[&limit])
        .await?;
    Ok(client
        .query_opt(include_str!("sql/lease_fence.sql"), &[&name, &token])
        .await?
        .is_some())
}

/// The seconds left on a lease, as a duration (none if not positive or
/// not a number).
fn left(row: &tokio_postgres::Row) -> Option<Duration> {
    let secs: f64 = row.try_get(0).ok()?;
    (secs.is_finite() && secs > 0.0).then(|| Duration::from_secs_f64(secs.min(86_400.0)))
}
