//! Postgres migrations, embedded from `migrations/postgres/` and applied by
//! refinery under an advisory lock, so that two `migrate` runs at once are
//! safe: the second waits, then finds nothing to do.

use tokio_postgres::Client;

use super::StoreError;

refinery::embed_migrations!("migrations/postgres");

/// refinery's history table; named for the project so that it cannot clash
/// with Plausible's own tables in the same database (`sql/schema_version.sql`
/// names it too).
pub(super) const HISTORY_TABLE: &str = "plausible_webhooks_schema_history";

/// Arbitrary, fixed: the key of the session advisory lock `migrate` holds.
const LOCK_KEY: i64 = 0x706c_7768_6d69_6772; // "plwhmigr"

/// Waits for and takes the migration lock on this session. It is released
/// by [`unlock`] or when the session ends.
pub async fn lock(client: &Client) -> Result<(), StoreError> {
    client
        .execute(include_str!("sql/advisory_lock.sql"), &[&LOCK_KEY])
        .await?;
    Ok(())
}

pub async fn unlock(client: &Client) -> Result<(), StoreError> {
    client
        .execute(include_str!("sql/advisory_unlock.sql"), &[&LOCK_KEY])
        .await?;
    Ok(())
}

/// Applies every pending migration. The caller holds the [`lock`].
/// Returns the names of the migrations applied by this call.
pub async fn migrate(client: &mut Client) -> Result<Vec<String>, StoreError> {
    let row = client
        .query_one(include_str!("sql/sites_table_exists.sql"), &[])
        .await?;
    if !row.get::<_, bool>(0) {
        return Err(StoreError::NoSitesTable);
    }
    let mut runner = migrations::runner();
    runner.set_migration_table_name(HISTORY_TABLE);
    let report = runner
        .set_grouped(true)
        .set_abort_divergent(true)
        .run_async(client)
        .await
        .map_err(StoreError::Migrate)?;
    Ok(report
        .applied_migrations()
        .iter()
        .map(|m| m.to_string())
        .collect())
}

/// The SQL of every migration this build carries, in order.
pub(super) fn sources() -> Vec<String> {
    migrations::runner()
        .get_migrations()
        .iter()
        .filter_map(|m| m.sql().map(str::to_string))
        .collect()
}

/// The newest migration this build carries.
pub fn latest_version() -> i32 {
    migrations::runner()
        .get_migrations()
        .iter()
        .map(|m| m.version())
        .max()
        .unwrap_or(0)
}

/// The version the database is at (0 before the first migration).
pub async fn schema_version(client: &Client) -> Result<i32, StoreError> {
    let exists: bool = client
        .query_one(
            include_str!("sql/history_table_exists.sql"),
            &[&HISTORY_TABLE],
        )
        .await?
        .get(0);
    if !exists {
        return Ok(0);
    }
    let row = client
        .query_one(include_str!("sql/schema_version.sql"), &[])
        .await?;
    Ok(row.get(0))
}

/// Fails unless the database is at exactly the version this build needs.
pub async fn check_schema(client: &Client) -> Result<(), StoreError> {
    let found = schema_version(client).await?;
    let expected = latest_version();
    match found.cmp(&expected) {
        std::cmp::Ordering::Less => Err(StoreError::SchemaBehind { found, expected }),
        std::cmp::Ordering::Greater => Err(StoreError::SchemaAhead { found, expected }),
        std::cmp::Ordering::Equal => Ok(()),
    }
}
