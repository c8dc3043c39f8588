//! The `migrate` command: checks that Plausible's schema has what the
//! daemon reads (changing nothing if not), then applies the Postgres and
//! then the ClickHouse migrations while holding a Postgres advisory lock, so
//! that concurrent runs (two replicas starting at once) are safe and the
//! second is a no-op. On a replicated ClickHouse it refuses, changing
//! nothing, unless `clickhouse.cluster` names the cluster.
//!
//! Last, it fits the change source to `changes.source`: for
//! `replication`, the publications are created (or corrected) and the
//! NOTIFY triggers disabled; for `notify`, the triggers are enabled.

use crate::analytics::{self, Analytics, AnalyticsError};
use crate::config::{ChangeSource, Config};
use crate::store::{self, StoreError, migration_lock, replication};

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Analytics(#[from] AnalyticsError),
    #[error("Plausible's schema lacks what the daemon reads, so nothing was changed:{}", problems.iter().map(|p| format!("\n  - {p}")).collect::<String>())]
    PlausibleSchema { problems: Vec<String> },
}

impl MigrateError {
    /// A refusal the config (or an `uninstall`) can fix (exit code 2): a
    /// replicated events table without `clickhouse.cluster`, a cluster the
    /// server does not know or with more than one shard, a cluster over an
    /// unreplicated events table, or the daemon's tables unreplicated under
    /// a cluster. A statement with no cluster form is a bug, not a refusal.
    pub fn is_config_refusal(&self) -> bool {
        matches!(self, MigrateError::Analytics(AnalyticsError::Cluster(e)) if e.is_refusal())
    }
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
        let analytics = Analytics::for_migrations(&config.clickhouse);
        check_plausible(&client, &analytics).await?;
        analytics::install::check_cluster(&analytics).await?;
        let postgres = store::migrate(&mut client).await?;
        fit_change_source(&client, config.changes.source).await?;
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

/// Publications and NOTIFY triggers as `changes.source` needs them.
async fn fit_change_source(
    client: &tokio_postgres::Client,
    source: ChangeSource,
) -> Result<(), StoreError> {
    match source {
        // Only when needed: ALTER TABLE locks `goals`, Plausible's own.
        ChangeSource::Notify
            if replication::disabled_notify_triggers(client)
                .await?
                .is_empty() =>
        {
            Ok(())
        }
        ChangeSource::Notify => replication::set_notify_triggers(client, true).await,
        ChangeSource::Replication => {
            replication::ensure_publications(client).await?;
            replication::set_notify_triggers(client, false).await
        }
    }
}

/// Checks Plausible's tables in both databases before anything changes.
async fn check_plausible(
    client: &tokio_postgres::Client,
    analytics: &Analytics,
) -> Result<(), MigrateError> {
    let mut problems = store::plausible::check(client).await?;
    problems.extend(analytics::install::check_events_table(analytics).await?);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(MigrateError::PlausibleSchema { problems })
    }
}
