//! Postgres: the connection pool and the schema the daemon owns.
//!
//! The daemon shares Plausible's Postgres database. It owns the tables its
//! migrations create (`webhooks`, `webhook_deliveries`,
//! `webhook_delivery_attempts`, `webhook_cursors`) and only reads
//! Plausible's `sites` and `goals`.

pub mod deliveries;
pub mod goals;
pub mod leases;
pub(crate) mod listener;
pub mod manage;
mod migrations;
pub mod pgoutput;
pub mod plausible;
pub mod replication;
pub mod retention;
pub mod status;
pub mod tls;
pub mod trigger_state;
pub mod uninstall;
pub mod webhooks;

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres_rustls::MakeRustlsConnect;

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
    #[error("cannot get a Postgres connection: {}", chain(.0))]
    Checkout(#[from] deadpool_postgres::PoolError),
    #[error("cannot connect to Postgres: {}", detail(.0))]
    Connect(#[source] tokio_postgres::Error),
    #[error("cannot connect to Postgres at {target}: {}", detail(.source))]
    ConnectTo {
        target: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("invalid Postgres TLS settings: {0}")]
    TlsSettings(String),
    #[error("Postgres TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
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

impl StoreError {
    /// The constraint a refused write broke, if Postgres named one.
    pub fn constraint(&self) -> Option<&str> {
        match self {
            StoreError::Query(e) => e.as_db_error().and_then(|db| db.constraint()),
            _ => None,
        }
    }

    /// Postgres's own message for a database error, else the error.
    pub fn message(&self) -> String {
        match self {
            StoreError::Query(e) | StoreError::Connect(e) => match e.as_db_error() {
                Some(db) => db.message().to_string(),
                None => e.to_string(),
            },
            other => other.to_string(),
        }
    }
}

/// The server's message for a database error (tokio-postgres shows only
/// "db error"), else the error with its causes (a TLS failure's reason).
fn detail(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => chain(e),
    }
}

use crate::telemetry::error_chain as chain;

/// Builds the connection pool. Connections are opened lazily; call
/// [`ping`] to check that the database answers.
pub fn pool(config: &PostgresConfig) -> Result<Pool, StoreError> {
    let pg = pg_config(config)?;
    let manager = Manager::from_config(
        pg,
        connector(config)?,
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

/// The TLS connector for `postgres.url`'s settings (see `tls`).
pub fn connector(config: &PostgresConfig) -> Result<MakeRustlsConnect, StoreError> {
    let tls = tls::PgTls::from_config(config).map_err(StoreError::TlsSettings)?;
    Ok(tls.connector()?)
}

/// The connection settings, with the configured connect timeout, the TLS
/// mode, and an application name that shows in `pg_stat_activity`.
pub fn pg_config(config: &PostgresConfig) -> Result<tokio_postgres::Config, StoreError> {
    let mut pg = config.url.parse().map_err(StoreError::Url)?;
    tls::PgTls::from_config(config)
        .map_err(StoreError::TlsSettings)?
        .apply(&mut pg);
    pg.connect_timeout(Duration::from_secs(config.connect_timeout_secs));
    if pg.get_application_name().is_none() {
        pg.application_name("plausible-webhooks");
    }
    Ok(pg)
}

/// A Postgres server to open dedicated connections to (LISTEN, `migrate`,
/// the operator's commands): its settings, which a caller may adjust
/// (keepalives, application name), and its TLS connector.
#[derive(Clone)]
pub struct PgTarget {
    pub config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
}

/// A dedicated connection's driver, to be polled or spawned.
pub type PgConnection = tokio_postgres::Connection<
    tokio_postgres::Socket,
    <MakeRustlsConnect as tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket>>::Stream,
>;

impl PgTarget {
    pub fn new(config: &PostgresConfig) -> Result<PgTarget, StoreError> {
        Ok(PgTarget {
            config: pg_config(config)?,
            tls: connector(config)?,
        })
    }

    /// A target for a long-lived LISTEN connection named `application_name`
    /// in `pg_stat_activity`: TCP keepalives on, so that a dead peer is
    /// noticed within about a minute even when no notification is due.
    pub fn listening(
        config: &PostgresConfig,
        application_name: &str,
    ) -> Result<PgTarget, StoreError> {
        let mut target = PgTarget::new(config)?;
        target
            .config
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(30))
            .keepalives_interval(Duration::from_secs(10))
            .keepalives_retries(3)
            .application_name(application_name);
        Ok(target)
    }

    /// Connects; an error names the host.
    pub async fn connect(&self) -> Result<(tokio_postgres::Client, PgConnection), StoreError> {
        self.config
            .connect(self.tls.clone())
            .await
            .map_err(|source| StoreError::ConnectTo {
                target: target(&self.config),
                source,
            })
    }
}

/// Opens one dedicated connection (outside the pool) and drives it on a
/// task of its own.
pub async fn connect(config: &PostgresConfig) -> Result<tokio_postgres::Client, StoreError> {
    let (client, connection) = PgTarget::new(config)?.connect().await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "postgres connection closed");
        }
    });
    Ok(client)
}

/// `host:port` of the first host, for errors.
pub fn target(pg: &tokio_postgres::Config) -> String {
    let host = match pg.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = pg.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}")
}

/// Checks that the database answers a query.
pub async fn ping(pool: &Pool) -> Result<(), StoreError> {
    let client = pool.get().await?;
    client.simple_query("SELECT 1").await?;
    Ok(())
}
