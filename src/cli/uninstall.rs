//! `plausible-webhooks uninstall [--yes]`: removes every object the daemon
//! created, in ClickHouse first (so that Plausible's inserts stop passing
//! through its views), then in Postgres. It can run again: what is already
//! gone is passed over. Stop every daemon first.

use std::io::BufRead;

use crate::analytics::{Analytics, install};
use crate::config::{Config, SLOT_PREFIX};
use crate::store::{self, replication, uninstall};

use super::CliError;

/// Asks on the terminal unless `yes`; then removes everything.
pub async fn run(config: &Config, yes: bool) -> Result<(), CliError> {
    print_plan(config);
    if !yes && !confirmed() {
        return Err(CliError::Failed(
            "nothing was removed (answer yes, or pass --yes)".into(),
        ));
    }
    let analytics = Analytics::for_migrations(&config.clickhouse);
    let dropped = install::uninstall(&analytics)
        .await
        .map_err(|e| CliError::Failed(format!("ClickHouse: {e}")))?;
    println!(
        "removed from ClickHouse: {}",
        if dropped.is_empty() {
            "nothing (already gone)".to_string()
        } else {
            dropped.join(", ")
        }
    );
    let mut client = store::connect(&config.postgres).await?;
    replication::drop_publications(&client).await?;
    let statements = uninstall::uninstall(&mut client).await?;
    println!(
        "removed from Postgres: {} objects, the publications and the history table (whatever was still there)",
        statements.len() - 1
    );
    let (dropped, held) =
        replication::drop_slots(&client, SLOT_PREFIX, &config.changes.slot()).await?;
    if !dropped.is_empty() {
        println!("removed replication slots: {}", dropped.join(", "));
    }
    if held.is_empty() {
        return Ok(());
    }
    let held: Vec<String> = held
        .iter()
        .map(|s| match s.active_pid {
            Some(pid) => format!("{} (held by PID {pid})", s.name),
            None => s.name.clone(),
        })
        .collect();
    Err(CliError::Failed(format!(
        "replication slots still in use, not removed: {}; stop those daemons and run uninstall again",
        held.join(", ")
    )))
}

fn print_plan(config: &Config) {
    let views: Vec<String> = install::all_objects().into_iter().map(|o| o.name).collect();
    let place = if config.clickhouse.cluster.is_empty() {
        config.clickhouse.database.clone()
    } else {
        format!(
            "{}, on every replica of cluster {}",
            config.clickhouse.database, config.clickhouse.cluster
        )
    };
    println!(
        "This removes from ClickHouse ({place}): {}, {}",
        views.join(", "),
        install::MIGRATIONS_TABLE
    );
    let objects: Vec<String> = uninstall::objects()
        .iter()
        .map(|o| match o {
            uninstall::Object::Trigger { name, table } => format!("trigger {name} on {table}"),
            uninstall::Object::Table(name) => format!("table {name}"),
            uninstall::Object::Function(name) => format!("function {name}"),
            uninstall::Object::Domain(name) => format!("domain {name}"),
        })
        .collect();
    println!(
        "and from Postgres: {}, and the history table; every webhook, delivery and attempt with them; the publications {} and the replication slots {}*.",
        objects.join(", "),
        replication::PUBLICATIONS.join(", "),
        SLOT_PREFIX
    );
    println!("Plausible's own tables and rows stay. Stop every daemon first.");
}

fn confirmed() -> bool {
    print!("Type yes to remove them: ");
    let _ = std::io::Write::flush(&mut std::io::stdout());
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer).is_ok() && answer.trim() == "yes"
}
