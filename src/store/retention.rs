//! What the retention pass deletes in Postgres: finished deliveries (with
//! their attempts) past their age, and the trigger state of deleted goals.
//! Every statement is one short transaction of its own, so that a pass never
//! holds a lock the scheduler or the trigger engine waits for.

use chrono::{DateTime, Utc};
use deadpool_postgres::{Object, Pool};

use super::StoreError;

/// Arbitrary, fixed: the key of the session advisory lock a retention pass
/// holds, so that one replica at a time runs it.
const LOCK_KEY: i64 = 0x706c_7768_7265_746e; // "plwhretn"

/// The retention lock, held on one pooled connection for a whole pass.
/// Released by [`PassLock::release`]; dropped without it (a pass that ended
/// early, or was cancelled), the connection is closed rather than returned
/// to the pool, which releases the lock with the session.
pub struct PassLock {
    client: Option<Object>,
}

impl PassLock {
    /// Takes the lock if no other session holds it; `None` when another
    /// replica's pass is running.
    pub async fn try_take(pool: &Pool) -> Result<Option<PassLock>, StoreError> {
        let client = pool.get().await?;
        let row = client
            .query_one(include_str!("sql/retention_lock.sql"), &[&LOCK_KEY])
            .await?;
        let locked: bool = row.try_get(0)?;
        Ok(locked.then_some(PassLock {
            client: Some(client),
        }))
    }

    pub fn client(&self) -> &tokio_postgres::Client {
        // Some until `release` or drop, which both consume the lock.
        self.client
            .as_deref()
            .map(|c| &**c)
            .unwrap_or_else(|| unreachable!("a PassLock holds its connection until it is consumed"))
    }

    /// Releases the lock and returns the connection to the pool.
    pub async fn release(mut self) -> Result<(), StoreError> {
        if let Some(client) = self.client.take() {
            let unlocked = client
                .execute(include_str!("sql/retention_unlock.sql"), &[&LOCK_KEY])
                .await;
            if unlocked.is_err() {
                drop(Object::take(client));
            }
            unlocked?;
        }
        Ok(())
    }
}

impl Drop for PassLock {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            drop(Object::take(client));
        }
    }
}

/// Rows one batch deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Deleted {
    pub deliveries: u64,
    pub attempts: u64,
}

/// Deletes up to `limit` succeeded or failed deliveries created and last
/// changed more than `days` days ago, with their attempts.
pub async fn delete_finished_deliveries(
    client: &tokio_postgres::Client,
    days: u32,
    limit: i64,
) -> Result<Deleted, StoreError> {
    let days = i32::try_from(days).unwrap_or(i32::MAX);
    let row = client
        .query_one(
            include_str!("sql/retention_deliveries_delete.sql"),
            &[&days, &limit],
        )
        .await?;
    let count = |column: &str| -> Result<u64, StoreError> {
        let n: i64 = row.try_get(column)?;
        Ok(u64::try_from(n).unwrap_or_default())
    };
    Ok(Deleted {
        deliveries: count("deliveries")?,
        attempts: count("attempts")?,
    })
}

/// Goal ids that `webhook_goal_counts` or `webhook_goal_throttle` hold but
/// Plausible's `goals` no longer does.
pub async fn orphan_goals(client: &tokio_postgres::Client) -> Result<Vec<i64>, StoreError> {
    let rows = client
        .query(include_str!("sql/retention_orphan_goals.sql"), &[])
        .await?;
    rows.iter()
        .map(|r| r.try_get::<_, i64>(0).map_err(StoreError::from))
        .collect()
}

/// Deletes the throttles of `goals`.
pub async fn delete_goal_throttles(
    client: &tokio_postgres::Client,
    goals: &[i64],
) -> Result<u64, StoreError> {
    Ok(client
        .execute(
            include_str!("sql/retention_goal_throttle_delete.sql"),
            &[&goals],
        )
        .await?)
}

/// Deletes up to `limit` goal counts of `goals`.
pub async fn delete_goal_counts(
    client: &tokio_postgres::Client,
    goals: &[i64],
    limit: i64,
) -> Result<u64, StoreError> {
    Ok(client
        .execute(
            include_str!("sql/retention_goal_counts_delete.sql"),
            &[&goals, &limit],
        )
        .await?)
}

/// The trigger engine's position in ClickHouse's insert log, if it has one
/// that can be read.
pub async fn trigger_position(
    client: &tokio_postgres::Client,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    let row = client
        .query_opt(include_str!("sql/retention_trigger_position.sql"), &[])
        .await?;
    Ok(row.and_then(|r| r.try_get(0).ok()))
}
