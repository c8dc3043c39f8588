//! The `migrate` command: applies the Postgres and then the ClickHouse
//! migrations while holding a Postgres advisory lock, so that concurrent
//! runs (two replicas starting at once) are safe and the second is a no-op.

use crate::analytics::{self, Analytics, AnalyticsError};
use crate::config::Config;
use crate::store::{self, StoreError, migration_lock};

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Analytics(#[from] AnalyticsError),
}

/// What one `migrate` run applied.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct MigrateReport {
    pub postgres: Vec<String>,
    pub clickhouse: Vec<u32>,
}

pub async fn migrate(config: &Config) -> Result<MigrateReport, MigrateError> {
    migrate_with(config, analytics::embedded_migrations()).await
}

/// Like [`migrate`], with the ClickHouse migrations given (for tests).
pub async fn migrate_with(
    config: &Config,
    clickhouse_migrations: &[analytics::Migration],
) -> Result<MigrateReport, MigrateError> {
    let mut client = store::connect(&config.postgres).await?;
    migration_lock::lock(&client).await?;
    let result = async {
        let postgres = store::migrate(&mut client).await?;
        let analytics = Analytics::for_migrations(&config.clickhouse);
        let clickhouse = analytics::apply_migrations(&analytics, clickhouse_migrations).await?;
        Ok::<_, MigrateError>(MigrateReport {
            postgres,
            clickhouse,
        })
    }
    .await;
    // The lock also ends with the session; an explicit release is tidier.
    let _ = migration_lock::unlock(&client).await;
    result
}
