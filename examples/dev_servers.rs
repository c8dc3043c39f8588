//! Starts throwaway PostgreSQL and ClickHouse servers, exactly as the test
//! harness does, with Plausible's schema in `plausible_db` and
//! `plausible_events_db`; prints the daemon's environment variables as
//! `KEY=value` lines, then keeps the servers until its stdin closes.
//! `scripts/demo` uses it.

#[path = "../tests/it/support/servers.rs"]
#[allow(dead_code)]
mod servers;

use std::io::Read;

const POSTGRES_FIXTURE: &str = include_str!("../tests/fixtures/postgres/plausible.sql");
const CLICKHOUSE_FIXTURE: &str = include_str!("../tests/fixtures/clickhouse/events_v2.18_16.sql");

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let servers = servers::servers();

    let (admin, connection) =
        tokio_postgres::connect(&servers.postgres_admin_url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    admin.batch_execute("CREATE DATABASE plausible_db").await?;
    let db_url = match servers.postgres_admin_url.rsplit_once('/') {
        Some((server, _database)) => format!("{server}/plausible_db"),
        None => anyhow::bail!("unexpected server URL {}", servers.postgres_admin_url),
    };
    let (db, connection) = tokio_postgres::connect(&db_url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    db.batch_execute(POSTGRES_FIXTURE).await?;

    let clickhouse = clickhouse::Client::default()
        .with_url(&servers.clickhouse_url)
        .with_user(&servers.clickhouse_user)
        .with_password(&servers.clickhouse_password)
        .with_validation(false);
    clickhouse
        .query("CREATE DATABASE IF NOT EXISTS plausible_events_db")
        .execute()
        .await?;
    let create_events = CLICKHOUSE_FIXTURE
        .replace("{database}", "plausible_events_db")
        .replace("{events_table}", "events_v2")
        // No binds: a `?` (in a regex) is literal, `??` to the client.
        .replace('?', "??");
    clickhouse
        .query(create_events.trim().trim_end_matches(';'))
        .execute()
        .await?;

    println!("PLAUSIBLE_WEBHOOKS_POSTGRES__URL={db_url}");
    println!(
        "PLAUSIBLE_WEBHOOKS_CLICKHOUSE__URL={}",
        servers.clickhouse_url
    );
    println!("PLAUSIBLE_WEBHOOKS_CLICKHOUSE__DATABASE=plausible_events_db");
    println!("DEV_SERVERS_READY=1");

    // Hold the servers until whoever started us closes our stdin (or dies).
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    Ok(())
}
