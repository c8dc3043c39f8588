//! ClickHouse: the client and the migrations the daemon owns there.
//!
//! All SQL runs on ClickHouse 18.16 and on current releases; the client
//! therefore talks plain `RowBinary` with schema validation off.

pub mod install;
mod lossy;
mod migrations;
pub mod retention;
pub mod trigger_reads;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::config::ClickhouseConfig;
use crate::tls::{self, Verify};

pub use migrations::{Migration, apply_migrations, embedded_migrations};

#[derive(Debug, thiserror::Error)]
pub enum AnalyticsError {
    #[error("ClickHouse query failed: {}", crate::telemetry::error_chain(.0))]
    Query(#[from] clickhouse::error::Error),
    #[error("ClickHouse did not answer within {0:?}")]
    Timeout(Duration),
    #[error("ClickHouse migration V{version} ({name}) was changed after it was applied")]
    Divergent { version: u32, name: String },
    #[error("ClickHouse migration V{version} ({name}) failed: {source}")]
    Migration {
        version: u32,
        name: String,
        #[source]
        source: clickhouse::error::Error,
    },
}

/// The `max_query_size` batched queries ask for: they carry their
/// parameters in the query text.
const BATCH_QUERY_SIZE: &str = "16777216";

/// A ClickHouse connection with the daemon's settings.
#[derive(Clone)]
pub struct Analytics {
    /// Sends no settings: what a `readonly = 1` user may use.
    plain: clickhouse::Client,
    /// Asks for a larger `max_query_size`; used unless [`Analytics::probe`]
    /// found that the user may not change settings.
    batched: clickhouse::Client,
    settings_allowed: Arc<AtomicBool>,
    database: String,
    events_table: String,
    timeout: Duration,
}

impl Analytics {
    /// A client for `config`; an https:// URL is verified against Mozilla's
    /// roots, the system's (`use_system_roots`) and `ca_files` (checked when
    /// the config is loaded).
    pub fn new(config: &ClickhouseConfig) -> Self {
        let client = match https_connector(config) {
            // Idle connections close before ClickHouse's own 3 s keep-alive.
            Ok(https) => clickhouse::Client::with_http_client(
                HyperClient::builder(TokioExecutor::new())
                    .pool_idle_timeout(Duration::from_secs(2))
                    .build(https),
            ),
            // The CA files were read when the config was loaded; one that
            // went away since leaves plain HTTP, and https:// URLs fail.
            Err(e) => {
                tracing::error!(error = %e, "cannot set up TLS to clickhouse");
                clickhouse::Client::default()
            }
        };
        let plain = client
            .with_url(&config.url)
            .with_user(&config.user)
            .with_password(config.password.expose())
            .with_database(&config.database)
            .with_validation(false);
        let batched = plain
            .clone()
            .with_setting("max_query_size", BATCH_QUERY_SIZE);
        Analytics {
            plain,
            batched,
            settings_allowed: Arc::new(AtomicBool::new(true)),
            database: config.database.clone(),
            events_table: config.events_table.clone(),
            timeout: Duration::from_secs(config.request_timeout_secs),
        }
    }

    /// The same server as the user `migrate` connects as
    /// (`clickhouse.migrate_user`, when set).
    pub fn for_migrations(config: &ClickhouseConfig) -> Self {
        let mut config = config.clone();
        if !config.migrate_user.is_empty() {
            config.user = config.migrate_user.clone();
            config.password = config.migrate_password.clone();
        }
        Analytics::new(&config)
    }

    /// Asks whether this user may change settings (`readonly` is not 1);
    /// if not, no setting is sent from then on. The daemon asks before it
    /// starts its tasks.
    pub async fn probe(&self) -> Result<bool, AnalyticsError> {
        let readonly: u8 = self
            .bounded(
                self.plain
                    .query(include_str!("sql/readonly.sql"))
                    .fetch_one::<u8>(),
            )
            .await?;
        let allowed = readonly != 1;
        self.settings_allowed.store(allowed, Ordering::Release);
        Ok(allowed)
    }

    pub fn database(&self) -> &str {
        &self.database
    }

    pub fn events_table(&self) -> &str {
        &self.events_table
    }

    /// Replaces `{database}` and `{events_table}` in a SQL template. Both
    /// names are validated as plain identifiers when the config is loaded.
    pub fn render(&self, sql: &str) -> String {
        sql.replace("{database}", &self.database)
            .replace("{events_table}", &self.events_table)
    }

    /// Runs one statement that returns no rows.
    pub async fn execute(&self, sql: &str) -> Result<(), AnalyticsError> {
        self.bounded(self.client().query(sql).execute()).await
    }

    /// The server's version string; also a liveness check.
    pub async fn version(&self) -> Result<String, AnalyticsError> {
        self.bounded(
            self.plain
                .query(include_str!("sql/version.sql"))
                .fetch_one::<String>(),
        )
        .await
    }

    async fn bounded<T>(
        &self,
        query: impl Future<Output = Result<T, clickhouse::error::Error>>,
    ) -> Result<T, AnalyticsError> {
        match tokio::time::timeout(self.timeout, query).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(AnalyticsError::Timeout(self.timeout)),
        }
    }

    /// True once [`Analytics::probe`] found a `readonly = 1` user: it may
    /// read, but neither change settings nor alter tables.
    pub fn read_only(&self) -> bool {
        !self.settings_allowed.load(Ordering::Acquire)
    }

    pub(crate) fn client(&self) -> &clickhouse::Client {
        if self.settings_allowed.load(Ordering::Acquire) {
            &self.batched
        } else {
            &self.plain
        }
    }
}

/// HTTPS to ClickHouse over rustls, verified against Mozilla's roots, the
/// system's (`use_system_roots`) and `ca_files`; plain HTTP too.
fn https_connector(
    config: &ClickhouseConfig,
) -> Result<hyper_rustls::HttpsConnector<HttpConnector>, tls::TlsError> {
    let roots = tls::roots(true, config.use_system_roots, &config.ca_files)?;
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_keepalive(Some(Duration::from_secs(60)));
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls::client_config(roots, Verify::Full)?)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http))
}
