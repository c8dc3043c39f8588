//! What the bench binaries share: the test harness's throwaway servers and
//! a fresh, migrated Postgres database with Plausible's fixture schema.

#[path = "../../tests/it/support/servers.rs"]
#[allow(dead_code)]
pub mod servers;

use plausible_webhooks::config::{Config, PostgresUrl};

const FIXTURE: &str = include_str!("../../tests/fixtures/postgres/plausible.sql");

/// One row of Plausible's `events_v2`, as the benches insert them.
#[allow(dead_code)]
#[derive(serde::Serialize, clickhouse::Row)]
pub struct Event {
    pub timestamp: u32,
    pub name: &'static str,
    pub site_id: u64,
    pub user_id: u64,
    pub session_id: u64,
    pub pathname: String,
    #[serde(rename = "meta.key")]
    pub meta_key: Vec<&'static str>,
    #[serde(rename = "meta.value")]
    pub meta_value: Vec<&'static str>,
    pub scroll_depth: u8,
    pub referrer_source: &'static str,
}

/// A number from the environment (a bench's knob), else `default`.
#[allow(dead_code)]
pub fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const FIXTURE_CH: &str = include_str!("../../tests/fixtures/clickhouse/events_v2.18_16.sql");

/// Points `config` at the harness's ClickHouse and creates database `name`
/// afresh there, with Plausible's `events_v2` and the daemon's views;
/// returns a client for it.
#[allow(dead_code)]
pub async fn clickhouse_database(
    config: &mut plausible_webhooks::config::ClickhouseConfig,
    name: &str,
) -> plausible_webhooks::analytics::Analytics {
    use plausible_webhooks::analytics::{Analytics, apply_migrations, embedded_migrations};
    let servers = servers::servers();
    config.url = servers.clickhouse_url.clone();
    config.user = servers.clickhouse_user.clone();
    config.password = plausible_webhooks::config::Secret::new(servers.clickhouse_password.clone());
    config.database = name.to_string();
    let admin = clickhouse::Client::default()
        .with_url(&config.url)
        .with_user(&config.user)
        .with_password(config.password.expose())
        .with_validation(false);
    for statement in [
        format!("DROP DATABASE IF EXISTS {name}"),
        format!("CREATE DATABASE {name}"),
    ] {
        admin
            .query(&statement)
            .execute()
            .await
            .expect("ch database");
    }
    let analytics = Analytics::new(config);
    analytics
        .execute(&analytics.render(
            // No binds: a `?` (in a regex) is literal, `??` to the client.
            &FIXTURE_CH.trim().trim_end_matches(';').replace('?', "??"),
        ))
        .await
        .expect("events table");
    apply_migrations(&analytics, embedded_migrations())
        .await
        .expect("ch migrations");
    analytics
}

/// A signing secret for the benches' webhooks.
pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// True when run by `cargo bench`; `cargo test --all-targets` runs the
/// bench binaries too, and they should then do nothing.
pub fn benchmarking(name: &str) -> bool {
    let yes = std::env::args().any(|a| a == "--bench");
    if !yes {
        println!("{name} bench: skipped (run with cargo bench --bench {name})");
    }
    yes
}

pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    client
}

/// Creates database `name` afresh (dropping one left by an earlier run on
/// a server named by `DATABASE_URL`) with Plausible's tables and the
/// daemon's migrations; returns the defaults pointed at it, and a client.
pub async fn database(name: &str) -> (Config, tokio_postgres::Client) {
    let servers = servers::servers();
    let admin = connect(&servers.postgres_admin_url).await;
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await
        .expect("drop database");
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create database");
    let url = match servers.postgres_admin_url.rsplit_once('/') {
        Some((server, _)) => format!("{server}/{name}"),
        None => panic!("unexpected URL {}", servers.postgres_admin_url),
    };
    let mut client = connect(&url).await;
    client.batch_execute(FIXTURE).await.expect("fixture");
    plausible_webhooks::store::migrate(&mut client)
        .await
        .expect("migrate");
    let mut config = Config::defaults();
    config.postgres.url = PostgresUrl::new(url);
    (config, client)
}

/// A registry kept current by a change stream (stopped by `stop`), once
/// it has loaded (for the trigger benches).
#[allow(dead_code)]
pub async fn loaded_registry(
    config: &Config,
    pool: &deadpool_postgres::Pool,
    stop: tokio::sync::watch::Receiver<bool>,
) -> plausible_webhooks::registry::RegistryHandle {
    let registry = plausible_webhooks::registry::RegistryHandle::default();
    let mut loaded = registry.subscribe();
    tokio::spawn(
        plausible_webhooks::changes::ChangeStream::new(config, pool.clone(), registry.clone())
            .expect("stream")
            .run(
                stop,
                plausible_webhooks::telemetry::health::Heartbeat::detached(),
            ),
    );
    loaded.changed().await.expect("registry loads");
    registry
}

/// 100,000 webhooks over 20,000 sites, and 40,000 goals: the registry's
/// full load (benches/registry.rs) and the change sources' reconnect
/// (benches/changes.rs).
#[allow(dead_code)]
pub async fn seed_full_load(client: &tokio_postgres::Client) {
    client
        .batch_execute(&format!(
            "INSERT INTO sites (id, domain) SELECT i, 'site' || i || '.example.com' FROM generate_series(1, 20000) i;
             INSERT INTO webhooks (site_id, url, secret, event_types, spike_threshold, drop_threshold)
             SELECT 1 + (i % 20000), 'https://hooks' || (i % 97) || '.example.com/plausible/' || i,
                    '{SECRET}', ARRAY['traffic.spike', 'traffic.drop', 'goal.completed'], 100, 5
             FROM generate_series(1, 100000) i;
             INSERT INTO goals (site_id, event_name, display_name)
             SELECT 1 + (i % 20000), 'Signup' || (i % 7), 'Signup ' || (i % 7) FROM generate_series(1, 20000) i;
             INSERT INTO goals (site_id, page_path, display_name)
             SELECT 1 + (i % 20000), '/blog/' || (i % 13) || '/**', 'Visit /blog' FROM generate_series(1, 20000) i;
             ANALYZE;"
        ))
        .await
        .expect("seed");
}
