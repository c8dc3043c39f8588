//! ClickHouse: the client and the migrations the daemon owns there.
//!
//! All SQL runs on ClickHouse 18.16 and on current releases; the client
//! therefore talks plain `RowBinary` with schema validation off.

mod migrations;
pub mod trigger_reads;

use std::time::Duration;

use crate::config::ClickhouseConfig;

pub use migrations::{Migration, apply_migrations, embedded_migrations};

#[derive(Debug, thiserror::Error)]
pub enum AnalyticsError {
    #[error("ClickHouse query failed: {0}")]
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

/// A ClickHouse connection with the daemon's settings.
#[derive(Clone)]
pub struct Analytics {
    client: clickhouse::Client,
    database: String,
    events_table: String,
    timeout: Duration,
}

impl Analytics {
    pub fn new(config: &ClickhouseConfig) -> Self {
        let client = clickhouse::Client::default()
            .with_url(&config.url)
            .with_user(&config.user)
            .with_password(config.password.expose())
            .with_database(&config.database)
            // Batched queries carry their parameters in the query text.
            .with_setting("max_query_size", "16777216")
            .with_validation(false);
        Analytics {
            client,
            database: config.database.clone(),
            events_table: config.events_table.clone(),
            timeout: Duration::from_secs(config.request_timeout_secs),
        }
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
        self.bounded(self.client.query(sql).execute()).await
    }

    /// The server's version string; also a liveness check.
    pub async fn version(&self) -> Result<String, AnalyticsError> {
        self.bounded(
            self.client
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

    pub(crate) fn client(&self) -> &clickhouse::Client {
        &self.client
    }
}
