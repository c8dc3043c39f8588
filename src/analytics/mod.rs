//! ClickHouse: the client and the migrations the daemon owns there.
//!
//! All SQL runs on ClickHouse 18.16 and on current releases; the client
//! therefore talks plain `RowBinary` with schema validation off.

mod cluster;
mod failover;
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

pub use cluster::ClusterError;
pub use migrations::{Migration, apply_migrations, embedded_migrations};

#[derive(Debug, thiserror::Error)]
pub enum AnalyticsError {
    #[error("ClickHouse query failed: {}", crate::telemetry::error_chain(.0))]
    Query(#[from] clickhouse::error::Error),
    #[error("ClickHouse did not answer within {0:?}")]
    Timeout(Duration),
    #[error("ClickHouse migration V{version} ({name}) was changed after it was applied")]
    Divergent { version: u32, name: String },
    #[error(transparent)]
    Cluster(#[from] cluster::ClusterError),
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

/// How long the daemon stays on a failover URL before it tries
/// `clickhouse.url` again.
const BACK_TO_PRIMARY: Duration = Duration::from_secs(300);

/// One configured URL's clients.
struct Endpoint {
    /// The URL as logged: credentials and query removed.
    shown: String,
    /// Sends no settings: what a `readonly = 1` user may use.
    plain: clickhouse::Client,
    /// Asks for a larger `max_query_size`; used unless [`Analytics::probe`]
    /// found that the user may not change settings.
    batched: clickhouse::Client,
}

/// A ClickHouse connection with the daemon's settings: `clickhouse.url`,
/// then `clickhouse.failover_urls` in order when the one in use cannot be
/// reached.
#[derive(Clone)]
pub struct Analytics {
    endpoints: Arc<[Endpoint]>,
    failover: Arc<failover::Failover>,
    settings_allowed: Arc<AtomicBool>,
    database: String,
    events_table: String,
    cluster: Option<String>,
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
        let endpoints: Vec<Endpoint> = std::iter::once(&config.url)
            .chain(&config.failover_urls)
            .map(|url| {
                let plain = client
                    .clone()
                    .with_url(url)
                    .with_user(&config.user)
                    .with_password(config.password.expose())
                    .with_database(&config.database)
                    .with_validation(false);
                let batched = plain
                    .clone()
                    .with_setting("max_query_size", BATCH_QUERY_SIZE);
                Endpoint {
                    shown: crate::redact::url(url, false),
                    plain,
                    batched,
                }
            })
            .collect();
        Analytics {
            endpoints: endpoints.into(),
            failover: Arc::new(failover::Failover::new(
                BACK_TO_PRIMARY,
                std::time::Instant::now(),
            )),
            settings_allowed: Arc::new(AtomicBool::new(true)),
            database: config.database.clone(),
            events_table: config.events_table.clone(),
            cluster: Some(config.cluster.clone()).filter(|c| !c.is_empty()),
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

    /// One client per configured URL, with no failover, each with the URL
    /// as shown: for checks that must see every replica (`doctor`).
    pub fn each_url(config: &ClickhouseConfig) -> Vec<(String, Analytics)> {
        std::iter::once(&config.url)
            .chain(&config.failover_urls)
            .map(|url| {
                let mut one = config.clone();
                one.url = url.clone();
                one.failover_urls.clear();
                (crate::redact::url(url, false), Analytics::new(&one))
            })
            .collect()
    }

    /// Asks whether this user may change settings (`readonly` is not 1);
    /// if not, no setting is sent from then on. The daemon asks before it
    /// starts its tasks.
    pub async fn probe(&self) -> Result<bool, AnalyticsError> {
        let readonly: u8 = self
            .run_plain(|c| c.query(include_str!("sql/readonly.sql")).fetch_one::<u8>())
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

    /// `clickhouse.cluster`, when set.
    pub fn cluster(&self) -> Option<&str> {
        self.cluster.as_deref()
    }

    /// Replaces `{database}` and `{events_table}` in a SQL template. Both
    /// names are validated as plain identifiers when the config is loaded.
    pub fn render(&self, sql: &str) -> String {
        sql.replace("{database}", &self.database)
            .replace("{events_table}", &self.events_table)
    }

    /// Renders a statement that creates or drops one of the daemon's
    /// objects: with a cluster configured, first in its `ON CLUSTER`,
    /// replicated form ([`cluster::on_cluster`]).
    pub(crate) fn render_ddl(&self, sql: &str) -> Result<String, AnalyticsError> {
        match &self.cluster {
            None => Ok(self.render(sql)),
            Some(name) => Ok(self.render(&cluster::on_cluster(sql, name)?)),
        }
    }

    /// Runs one statement that returns no rows.
    pub async fn execute(&self, sql: &str) -> Result<(), AnalyticsError> {
        self.run(|c| c.query(sql).execute()).await
    }

    /// The server's version string; also a liveness check.
    pub async fn version(&self) -> Result<String, AnalyticsError> {
        self.run_plain(|c| {
            c.query(include_str!("sql/version.sql"))
                .fetch_one::<String>()
        })
        .await
    }

    /// Runs the query `make` builds on the daemon's client (with settings
    /// unless the user may not change them), bounded by the request
    /// timeout, failing over to the next URL when one cannot be reached.
    pub(crate) async fn run<T, F, Fut>(&self, make: F) -> Result<T, AnalyticsError>
    where
        F: Fn(&clickhouse::Client) -> Fut,
        Fut: Future<Output = Result<T, clickhouse::error::Error>>,
    {
        let batched = self.settings_allowed.load(Ordering::Acquire);
        self.with_failover(batched, make).await
    }

    /// Like [`Analytics::run`], never sending a setting.
    async fn run_plain<T, F, Fut>(&self, make: F) -> Result<T, AnalyticsError>
    where
        F: Fn(&clickhouse::Client) -> Fut,
        Fut: Future<Output = Result<T, clickhouse::error::Error>>,
    {
        self.with_failover(false, make).await
    }

    /// Tries the endpoint in use, then each other in order, moving on only
    /// when one cannot be reached (a network error or no answer in time;
    /// an SQL error is the answer). Stays on the first that answers.
    async fn with_failover<T, F, Fut>(&self, batched: bool, make: F) -> Result<T, AnalyticsError>
    where
        F: Fn(&clickhouse::Client) -> Fut,
        Fut: Future<Output = Result<T, clickhouse::error::Error>>,
    {
        let start = self.failover.start(std::time::Instant::now());
        let first = start.first;
        let count = self.endpoints.len();
        let mut last_error = None;
        for k in 0..count {
            let index = (first + k) % count;
            let endpoint = &self.endpoints[index];
            let client = if batched {
                &endpoint.batched
            } else {
                &endpoint.plain
            };
            let error = match tokio::time::timeout(self.timeout, make(client)).await {
                Ok(Ok(value)) => {
                    self.settle_on(start, index);
                    return Ok(value);
                }
                Ok(Err(clickhouse::error::Error::Network(e))) => {
                    AnalyticsError::Query(clickhouse::error::Error::Network(e))
                }
                Ok(Err(e)) => return Err(AnalyticsError::Query(e)),
                Err(_) => AnalyticsError::Timeout(self.timeout),
            };
            if count > 1 {
                tracing::warn!(
                    url = %endpoint.shown,
                    error = %error,
                    "clickhouse unreachable, trying the next url"
                );
            }
            last_error = Some(error);
        }
        Err(last_error.unwrap_or(AnalyticsError::Timeout(self.timeout)))
    }

    /// Records that `index` answered a query that began at `start`; a
    /// change is a failover, logged and counted.
    fn settle_on(&self, start: failover::Start, index: usize) {
        let Some(from) = self
            .failover
            .settle(start, index, std::time::Instant::now())
        else {
            return;
        };
        let from = &self.endpoints[from].shown;
        let to = &self.endpoints[index].shown;
        tracing::warn!(from = %from, to = %to, "clickhouse failover");
        metrics::counter!("plausible_webhooks_clickhouse_failovers_total", "url" => to.clone())
            .increment(1);
    }

    /// The URL queries go to now, as shown.
    pub fn current_url(&self) -> String {
        self.endpoints[self.failover.index()].shown.clone()
    }

    /// True once [`Analytics::probe`] found a `readonly = 1` user: it may
    /// read, but neither change settings nor alter tables.
    pub fn read_only(&self) -> bool {
        !self.settings_allowed.load(Ordering::Acquire)
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
