//! Postgres: the connection pool and the schema the daemon owns.
//!
//! The daemon shares Plausible's Postgres database. It owns the tables its
//! migrations create (`webhooks`, `webhook_deliveries`,
//! `webhook_delivery_attempts`, `webhook_cursors`) and only reads
//! Plausible's `sites` and `goals`.

pub mod deliveries;
pub mod goals;
pub mod leases;
mod migrations;
pub mod trigger_state;
pub mod webhooks;

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

use crate::config::PostgresConfig;

pub use migrations::{check_schema, latest_version, migrate, schema_version};

/// The lock that serialises `migrate` runs.
pub mod migration_lock {
    pub use super::migrations::{lock, unlock};
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid postgres.url: {0}")]
    Url(#[source] tokio_postgres::Error),
    #[error("cannot build the Postgres pool: {0}")]
    Pool(#[from] deadpool_postgres::BuildError),
    #[error("cannot get a Postgres connection: {0}")]
    Checkout(#[from] deadpool_postgres::PoolError),
    #[error("cannot connect to Postgres: {}", detail(.0))]
    Connect(#[source] tokio_postgres::Error),
    #[error("Postgres query failed: {}", detail(.0))]
    Query(#[from] tokio_postgres::Error),
    #[error("Postgres migration failed: {0}")]
    Migrate(#[source] refinery::Error),
    #[error(
        "Plausible's `sites` table is not in this database; point postgres.url at Plausible's database"
    )]
    NoSitesTable,
    #[error(
        "the Postgres schema is at version {found} but this build needs {expected}: run `plausible-webhooks migrate`"
    )]
    SchemaBehind { found: i32, expected: i32 },
    #[error(
        "the Postgres schema is at version {found}, newer than this build knows ({expected}): upgrade the daemon"
    )]
    SchemaAhead { found: i32, expected: i32 },
}

impl StoreError {
    /// True when Postgres refused the data itself (a constraint or a bad
    /// value), which trying again cannot fix.
    pub fn is_refused_data(&self) -> bool {
        match self {
            StoreError::Query(e) => e
                .code()
                .is_some_and(|c| c.code().starts_with("22") || c.code().starts_with("23")),
            _ => false,
        }
    }
}

/// The server's message for a database error (tokio-postgres shows only
/// "db error"), else the error itself.
fn detail(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => e.to_string(),
    }
}

/// Builds the connection pool. Connections are opened lazily; call
/// [`ping`] to check that the database answers.
pub fn pool(config: &PostgresConfig) -> Result<Pool, StoreError> {
    let pg = pg_config(config)?;
    let manager = Manager::from_config(
        pg,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Ok(Pool::builder(manager)
        .max_size(config.pool_size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(Duration::from_secs(config.connect_timeout_secs * 2)))
        .create_timeout(Some(Duration::from_secs(config.connect_timeout_secs)))
        .recycle_timeout(Some(Duration::from_secs(config.connect_timeout_secs)))
        .build()?)
}

/// The connection settings, with the configured connect timeout and an
/// application name that shows in `pg_stat_activity`.
pub fn pg_config(config: &PostgresConfig) -> Result<tokio_postgres::Config, StoreError> {
    let mut pg = config.url.parse().map_err(StoreError::Url)?;
    pg.connect_timeout(Duration::from_secs(config.connect_timeout_secs));
    if pg.get_application_name().is_none() {
        pg.application_name("plausible-webhooks");
    }
    Ok(pg)
}

/// Opens one dedicated connection (outside the pool) and drives it on a
/// task of its own.
pub async fn connect(config: &PostgresConfig) -> Result<tokio_postgres::Client, StoreError> {
    let pg = pg_config(config)?;
    let (client, connection) = pg.connect(NoTls).await.map_err(StoreError::Connect)?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "postgres connection closed");
        }
    });
    Ok(client)
}

/// Checks that the database answers a query.
pub async fn ping(pool: &Pool) -> Result<(), StoreError> {
    let client = pool.get().await?;
    client.simple_query("SELECT 1").await?;
    Ok(())
}
