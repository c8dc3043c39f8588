//! The shared test harness: real servers (see `servers`), a fresh database
//! per test, Plausible's fixture schema, and a config that points at them.

#![allow(dead_code)]

pub mod chat;
pub mod proxy;
pub mod receiver;
pub mod servers;
pub mod webdriver;

use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};

use plausible_webhooks::analytics::Analytics;
use plausible_webhooks::config::{ClickhouseConfig, Config, PostgresUrl, Secret};

pub use servers::{certs, servers};

/// Plausible's Postgres tables the daemon reads (`sites`, `goals`).
pub const POSTGRES_FIXTURE: &str = include_str!("../../fixtures/postgres/plausible.sql");
/// Plausible's `events_v2` in the closest form ClickHouse 18.16 (the test
/// server) accepts, with `{database}` and `{events_table}`.
pub const CLICKHOUSE_FIXTURE: &str = include_str!("../../fixtures/clickhouse/events_v2.18_16.sql");

/// Polls `check` every 50 ms until it holds; panics naming `what` once
/// `limit` has passed.
pub async fn wait_for(
    what: &str,
    limit: std::time::Duration,
    mut check: impl AsyncFnMut() -> bool,
) {
    let deadline = std::time::Instant::now() + limit;
    while !check().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting until {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}_{}_{n}_{nanos:x}", std::process::id())
}

/// A fresh Postgres database for one test.
pub struct TestPostgres {
    pub name: String,
    pub url: String,
}

impl TestPostgres {
    /// An empty database.
    pub async fn empty() -> TestPostgres {
        let servers = servers();
        let admin = connect(&servers.postgres_admin_url).await;
        let name = unique_name("pwt");
        admin
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .unwrap_or_else(|e| panic!("cannot create database {name}: {e}"));
        let mut config = tokio_postgres::Config::from_str(&servers.postgres_admin_url)
            .expect("DATABASE_URL parses");
        config.dbname(&name);
        let url = to_url(&config);
        TestPostgres { name, url }
    }

    /// A database with Plausible's `sites` and `goals`.
    pub async fn with_plausible() -> TestPostgres {
        let db = TestPostgres::empty().await;
        db.client()
            .await
            .batch_execute(POSTGRES_FIXTURE)
            .await
            .expect("fixture applies");
        db
    }

    /// A database with Plausible's tables and the daemon's migrations.
    pub async fn migrated() -> TestPostgres {
        let db = TestPostgres::with_plausible().await;
        let mut client = db.client().await;
        plausible_webhooks::store::migrate(&mut client)
            .await
            .expect("migrations apply");
        db
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        connect(&self.url).await
    }
}

/// A URL for a parsed config (tokio-postgres has no formatter).
fn to_url(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        Some(tokio_postgres::config::Host::Unix(p)) => {
            format!("{}", p.display()).replace('/', "%2F")
        }
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap_or("postgres");
    let password = config
        .get_password()
        .map(|p| format!(":{}", String::from_utf8_lossy(p)))
        .unwrap_or_default();
    let db = config.get_dbname().unwrap_or("postgres");
    format!("postgres://{user}{password}@{host}:{port}/{db}")
}

pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test Postgres: {e}"));
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// A fresh ClickHouse database for one test, with Plausible's `events_v2`.
pub struct TestClickhouse {
    pub database: String,
    /// How the daemon reaches it (`support::config` copies it).
    pub config: ClickhouseConfig,
}

impl TestClickhouse {
    pub async fn new() -> TestClickhouse {
        let servers = servers();
        let mut config = Config::defaults().clickhouse;
        config.url = servers.clickhouse_url.clone();
        config.user = servers.clickhouse_user.clone();
        config.password = Secret::new(servers.clickhouse_password.clone());
        TestClickhouse::create(config, "", "ENGINE = MergeTree").await
    }

    /// A database on the test cluster's replicas (created on both), with
    /// Plausible's `events_v2` as a `ReplicatedMergeTree`, as Plausible's
    /// migrations make it on a cluster. The config names the first replica
    /// and fails over to the second; `clickhouse.cluster` is left unset.
    pub async fn on_cluster(cluster: &servers::cluster::Cluster) -> TestClickhouse {
        let mut config = Config::defaults().clickhouse;
        config.url = cluster.replicas[0].url.clone();
        config.failover_urls = cluster.replicas[1..]
            .iter()
            .map(|r| r.url.clone())
            .collect();
        let on = format!(" ON CLUSTER {}", servers::cluster::CLUSTER);
        let engine = "ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/{events_table}', '{replica}')";
        TestClickhouse::create(config, &on, engine).await
    }

    async fn create(
        mut config: ClickhouseConfig,
        on_cluster: &str,
        engine: &str,
    ) -> TestClickhouse {
        let database = unique_name("pwt");
        config.database = "default".into();
        let admin = Analytics::new(&config);
        admin
            .execute(&format!("CREATE DATABASE {database}{on_cluster}"))
            .await
            .expect("create clickhouse database");
        config.database = database.clone();
        let ch = TestClickhouse { database, config };
        let analytics = ch.analytics();
        for statement in CLICKHOUSE_FIXTURE
            .split(";\n")
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            // The fixture binds nothing: a `?` (in a regex) is literal,
            // which the client's query builder spells `??`.
            let statement = statement
                .trim_end_matches(';')
                .replace('?', "??")
                .replace(
                    "{database}.{events_table}\n",
                    &format!("{{database}}.{{events_table}}{on_cluster}\n"),
                )
                .replace("ENGINE = MergeTree", engine);
            analytics
                .execute(&analytics.render(&statement))
                .await
                .expect("clickhouse fixture applies");
        }
        ch
    }

    pub fn analytics(&self) -> Analytics {
        Analytics::new(&self.config)
    }

    /// This database at one URL only, with no failover (a replica).
    pub fn analytics_at(&self, url: &str) -> Analytics {
        let mut config = self.config.clone();
        config.url = url.to_string();
        config.failover_urls.clear();
        Analytics::new(&config)
    }
}

/// The built-in defaults pointed at this Postgres database, with the admin
/// server on an ephemeral port.
pub fn config_pg(pg: &TestPostgres) -> Config {
    let mut config = Config::defaults();
    config.postgres.url = PostgresUrl::new(pg.url.clone());
    config.http.listen = "127.0.0.1:0".parse().expect("address parses");
    config
}

/// The built-in defaults, pointed at these databases, with the admin
/// server on an ephemeral port.
pub fn config(pg: &TestPostgres, ch: &TestClickhouse) -> Config {
    let mut config = config_pg(pg);
    config.clickhouse = ch.config.clone();
    config
}

/// The same config as environment variables, for running the binary.
pub fn config_env(config: &Config) -> Vec<(String, String)> {
    vec![
        (
            "PLAUSIBLE_WEBHOOKS_POSTGRES__URL".into(),
            config.postgres.url.expose().to_string(),
        ),
        (
            "PLAUSIBLE_WEBHOOKS_CLICKHOUSE__URL".into(),
            config.clickhouse.url.clone(),
        ),
        (
            "PLAUSIBLE_WEBHOOKS_CLICKHOUSE__USER".into(),
            config.clickhouse.user.clone(),
        ),
        (
            "PLAUSIBLE_WEBHOOKS_CLICKHOUSE__PASSWORD".into(),
            config.clickhouse.password.expose().to_string(),
        ),
        (
            "PLAUSIBLE_WEBHOOKS_CLICKHOUSE__DATABASE".into(),
            config.clickhouse.database.clone(),
        ),
        (
            "PLAUSIBLE_WEBHOOKS_CLICKHOUSE__EVENTS_TABLE".into(),
            config.clickhouse.events_table.clone(),
        ),
        (
            "PLAUSIBLE_WEBHOOKS_CLICKHOUSE__CLUSTER".into(),
            config.clickhouse.cluster.clone(),
        ),
        (
            "PLAUSIBLE_WEBHOOKS_CLICKHOUSE__FAILOVER_URLS".into(),
            format!(
                "[{}]",
                config
                    .clickhouse
                    .failover_urls
                    .iter()
                    .map(|u| format!("{u:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
        (
            "PLAUSIBLE_WEBHOOKS_HTTP__LISTEN".into(),
            config.http.listen.to_string(),
        ),
    ]
}

/// The daemon's binary, built by cargo for the integration tests.
pub fn binary() -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_plausible-webhooks"));
    // The tests' own environment must not leak into the daemon's config
    // (Plausible's variables are fallbacks it reads too).
    for (key, _) in std::env::vars_os() {
        let key_text = key.to_string_lossy();
        if key_text.starts_with("PLAUSIBLE_WEBHOOKS_")
            || ["DATABASE_URL", "CLICKHOUSE_DATABASE_URL", "BASE_URL"].contains(&&*key_text)
        {
            cmd.env_remove(key);
        }
    }
    cmd
}
