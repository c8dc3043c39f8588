//! `plausible-webhooks doctor`: one command that checks an install end to
//! end and prints a verdict per check; exit code 1 if any fails.

use chrono::Utc;

use super::render;
use crate::analytics::{Analytics, install};
use crate::config::{ChangeSource, Config, SLOT_PREFIX};
use crate::store::{self, manage, replication};

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Ok,
    Warn,
    Fail,
}

impl Verdict {
    fn as_str(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Warn => "warn",
            Verdict::Fail => "FAIL",
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Check {
    pub check: &'static str,
    pub verdict: Verdict,
    pub detail: String,
}

fn check(check: &'static str, verdict: Verdict, detail: impl Into<String>) -> Check {
    Check {
        check,
        verdict,
        detail: detail.into(),
    }
}

/// A trigger backlog past this is a warning, past `LAG_FAIL_SECS` a failure.
const LAG_WARN_SECS: u32 = 60;
const LAG_FAIL_SECS: u32 = 600;
/// A due delivery waiting longer than this means no daemon delivers.
const OVERDUE_FAIL_SECS: f64 = 300.0;
/// A replication slot further behind than this fails the check: its WAL
/// is filling Postgres's disk.
const SLOT_LAG_FAIL_BYTES: i64 = 1 << 30;

/// Runs every check; true when none failed.
pub async fn run(config: &Config, json: bool) -> bool {
    let analytics = Analytics::new(&config.clickhouse);
    // One connection serves every Postgres check.
    let (mut checks, client) = match store::connect(&config.postgres).await {
        Ok(client) => {
            let mut checks = postgres_checks(config, &client).await;
            checks.extend(change_source_checks(config, &client).await);
            (checks, Some(client))
        }
        Err(e) => (
            vec![check("postgres connection", Verdict::Fail, e.to_string())],
            None,
        ),
    };
    checks.extend(clickhouse_checks(config, &analytics).await);
    if let Some(client) = &client {
        checks.extend(backlog_checks(client, &analytics).await);
    }
    if json {
        print!("{}", render::json(&checks));
    } else {
        for c in &checks {
            println!("{:<4}  {}: {}", c.verdict.as_str(), c.check, c.detail);
        }
    }
    checks.iter().all(|c| c.verdict != Verdict::Fail)
}

async fn postgres_checks(config: &Config, client: &tokio_postgres::Client) -> Vec<Check> {
    let target = store::pg_config(&config.postgres)
        .map(|pg| store::target(&pg))
        .unwrap_or_default();
    let mut checks = vec![match manage::connection_info(client).await {
        Ok((version, ssl)) => check(
            "postgres connection",
            Verdict::Ok,
            format!(
                "PostgreSQL {version} at {target}, {}",
                if ssl { "TLS" } else { "not encrypted" }
            ),
        ),
        Err(e) => check("postgres connection", Verdict::Fail, e.to_string()),
    }];
    checks.push(match store::plausible::check(client).await {
        Ok(problems) if problems.is_empty() => check(
            "plausible's postgres tables",
            Verdict::Ok,
            "sites and goals have every column the daemon reads",
        ),
        Ok(problems) => check(
            "plausible's postgres tables",
            Verdict::Fail,
            problems.join("; "),
        ),
        Err(e) => check("plausible's postgres tables", Verdict::Fail, e.to_string()),
    });
    checks.push(match store::check_schema(client).await {
        Ok(()) => check(
            "postgres schema",
            Verdict::Ok,
            format!("at version {}", store::latest_version()),
        ),
        Err(e) => check("postgres schema", Verdict::Fail, e.to_string()),
    });
    checks
}

/// The change source: in notify mode its triggers are on; in replication
/// mode the server can stream; and no slot of the daemon's is lost,
/// inactive or lagging (an unread slot keeps WAL forever).
async fn change_source_checks(config: &Config, client: &tokio_postgres::Client) -> Vec<Check> {
    let mut checks = Vec::new();
    match config.changes.source {
        ChangeSource::Notify => checks.push(match replication::disabled_notify_triggers(client).await {
            Ok(disabled) if disabled.is_empty() => {
                check("change source", Verdict::Ok, "notify: its triggers are on")
            }
            Ok(disabled) => check(
                "change source",
                Verdict::Fail,
                format!(
                    "notify, but its triggers {} are disabled (left by replication mode): run `plausible-webhooks migrate` with changes.source = \"notify\"",
                    disabled.join(", ")
                ),
            ),
            Err(e) => check("change source", Verdict::Fail, e.to_string()),
        }),
        ChangeSource::Replication => checks.push(match replication::prerequisites(client).await {
            Ok(problems) if problems.is_empty() => check(
                "change source",
                Verdict::Ok,
                format!("replication from slot {}", config.changes.slot()),
            ),
            Ok(problems) => check("change source", Verdict::Fail, problems.join("; ")),
            Err(e) => check("change source", Verdict::Fail, e.to_string()),
        }),
    }
    let mut slots = match replication::slots(client, SLOT_PREFIX).await {
        Ok(slots) => slots,
        Err(e) => {
            checks.push(check("replication slots", Verdict::Fail, e.to_string()));
            return checks;
        }
    };
    if !slots.iter().any(|s| s.name == config.changes.slot())
        && let Ok(Some(own)) = replication::slot(client, &config.changes.slot()).await
    {
        slots.push(own);
    }
    for slot in slots {
        checks.push(slot_check(&slot));
    }
    checks
}

fn slot_check(slot: &replication::Slot) -> Check {
    let lag = slot.lag_bytes.unwrap_or(0);
    let mib = lag / (1 << 20);
    let (verdict, detail) = if slot.is_lost() {
        (
            Verdict::Fail,
            format!(
                "{} was invalidated (its WAL was removed): a daemon reading it makes it again with a full read; if none does, `uninstall` or pg_drop_replication_slot removes it",
                slot.name
            ),
        )
    } else if lag > SLOT_LAG_FAIL_BYTES {
        (
            Verdict::Fail,
            format!(
                "{} is {mib} MiB behind{}: Postgres keeps that WAL for it; set max_slot_wal_keep_size, and drop the slot if no daemon reads it",
                slot.name,
                if slot.active {
                    ""
                } else {
                    " and no daemon reads it"
                }
            ),
        )
    } else if !slot.active {
        (
            Verdict::Warn,
            format!(
                "{} is not being read ({mib} MiB behind): an unread slot keeps WAL forever; start its daemon, or drop it (`uninstall`, or a daemon in notify mode with this replica name)",
                slot.name
            ),
        )
    } else {
        (
            Verdict::Ok,
            format!(
                "{} is read by PID {} ({mib} MiB behind)",
                slot.name,
                slot.active_pid.unwrap_or(0)
            ),
        )
    };
    check("replication slot", verdict, detail)
}

async fn clickhouse_checks(config: &Config, analytics: &Analytics) -> Vec<Check> {
    let version = match analytics.version().await {
        Ok(v) => v,
        Err(e) => return vec![check("clickhouse connection", Verdict::Fail, e.to_string())],
    };
    // A readonly user may change no setting: find out before asking any.
    let readonly = match analytics.probe().await {
        Ok(allowed) => !allowed,
        Err(e) => return vec![check("clickhouse connection", Verdict::Fail, e.to_string())],
    };
    let tls = if config.clickhouse.url.starts_with("https://") {
        "TLS"
    } else {
        "not encrypted"
    };
    let mut checks = vec![check(
        "clickhouse connection",
        Verdict::Ok,
        format!(
            "ClickHouse {version} at {}, {tls}, as {}{}",
            origin(&analytics.current_url()),
            config.clickhouse.user,
            if readonly { " (read-only)" } else { "" }
        ),
    )];
    checks.push(match install::check_events_table(analytics).await {
        Ok(problems) if problems.is_empty() => check(
            "plausible's events table",
            Verdict::Ok,
            format!(
                "{} has every column the daemon reads",
                config.clickhouse.events_table
            ),
        ),
        Ok(problems) => check(
            "plausible's events table",
            Verdict::Fail,
            problems.join("; "),
        ),
        Err(e) => check("plausible's events table", Verdict::Fail, e.to_string()),
    });
    checks.push(match install::check_objects(analytics).await {
        Ok(problems) if problems.is_empty() => check(
            "clickhouse views",
            Verdict::Ok,
            format!(
                "{} views and tables, as migrate left them",
                install::all_objects().len()
            ),
        ),
        Ok(problems) => check("clickhouse views", Verdict::Fail, problems.join("; ")),
        Err(e) => check("clickhouse views", Verdict::Fail, e.to_string()),
    });
    if config.clickhouse.cluster.is_empty() && config.clickhouse.failover_urls.is_empty() {
        return checks;
    }
    checks.push(replica_check(config, readonly).await);
    checks
}

/// The daemon's views and tables on every configured URL (each replica
/// fires only its own views, so each must have them all), and the cluster.
async fn replica_check(config: &Config, readonly: bool) -> Check {
    let cluster = if config.clickhouse.cluster.is_empty() {
        "no cluster configured".to_string()
    } else {
        format!("cluster {}", config.clickhouse.cluster)
    };
    let mut failed = Vec::new();
    let mut unreachable = Vec::new();
    let urls = Analytics::each_url(&config.clickhouse);
    for (shown, replica) in &urls {
        if readonly {
            let _ = replica.probe().await;
        }
        match install::check_objects(replica).await {
            Ok(problems) if problems.is_empty() => {}
            Ok(problems) => failed.push(format!("{shown}: {}", problems.join("; "))),
            Err(e) => unreachable.push(format!("{shown}: {e}")),
        }
    }
    if !failed.is_empty() {
        return check("clickhouse replicas", Verdict::Fail, failed.join("; "));
    }
    if !unreachable.is_empty() {
        return check(
            "clickhouse replicas",
            Verdict::Warn,
            format!("{cluster}; cannot check {}", unreachable.join("; ")),
        );
    }
    check(
        "clickhouse replicas",
        Verdict::Ok,
        format!(
            "{cluster}; every view and table on each of {} URLs",
            urls.len()
        ),
    )
}

/// The trigger cursor's lag behind the newest insert, and the outbox.
async fn backlog_checks(client: &tokio_postgres::Client, analytics: &Analytics) -> Vec<Check> {
    let mut checks = Vec::new();
    let cursor = manage::trigger_cursor(client).await;
    let newest = install::newest_insert(analytics).await;
    checks.push(match (cursor, newest) {
        (Ok(_), Ok(0)) => check(
            "trigger cursor",
            Verdict::Ok,
            "no events have arrived since the views were installed",
        ),
        (Ok(None), Ok(_)) => check(
            "trigger cursor",
            Verdict::Warn,
            "events have arrived but no trigger engine has run yet: is `plausible-webhooks run` running?",
        ),
        (Ok(Some(cursor)), Ok(newest)) => {
            let lag = newest.saturating_sub(cursor.timestamp().clamp(0, i64::from(u32::MAX)) as u32);
            let verdict = match lag {
                l if l > LAG_FAIL_SECS => Verdict::Fail,
                l if l > LAG_WARN_SECS => Verdict::Warn,
                _ => Verdict::Ok,
            };
            check("trigger cursor", verdict, format!("{lag} s behind the newest insert"))
        }
        (Err(e), _) => check("trigger cursor", Verdict::Fail, e.to_string()),
        (_, Err(e)) => check("trigger cursor", Verdict::Fail, e.to_string()),
    });
    checks.push(match manage::outbox_summary(client).await {
        Ok(o) => {
            let verdict = if o.overdue_secs > OVERDUE_FAIL_SECS {
                Verdict::Fail
            } else {
                Verdict::Ok
            };
            let oldest = if o.due > 0 {
                format!(", the oldest due for {:.0} s", o.overdue_secs)
            } else {
                String::new()
            };
            check(
                "outbox",
                verdict,
                format!(
                    "{} pending, {} due{oldest}; {} failed in the last day (checked at {})",
                    o.pending,
                    o.due,
                    o.failed_today,
                    render::time(Some(Utc::now()))
                ),
            )
        }
        Err(e) => check("outbox", Verdict::Fail, e.to_string()),
    });
    checks
}

/// A URL's scheme, host and port, never its credentials or path.
fn origin(url: &str) -> String {
    url::Url::parse(url)
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_else(|_| "(an unparsable URL)".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(active: bool, wal_status: &str, lag_bytes: i64) -> replication::Slot {
        replication::Slot {
            name: "plausible_webhooks_a".into(),
            active,
            active_pid: active.then_some(42),
            wal_status: Some(wal_status.into()),
            lag_bytes: Some(lag_bytes),
        }
    }

    #[test]
    fn slots_that_keep_wal_are_flagged() {
        assert_eq!(
            slot_check(&slot(true, "reserved", 1 << 20)).verdict,
            Verdict::Ok
        );
        let unread = slot_check(&slot(false, "reserved", 1 << 20));
        assert_eq!(unread.verdict, Verdict::Warn);
        assert!(
            unread.detail.contains("not being read"),
            "{}",
            unread.detail
        );
        let lagging = slot_check(&slot(true, "extended", 2 << 30));
        assert_eq!(lagging.verdict, Verdict::Fail);
        assert!(
            lagging.detail.contains("2048 MiB behind"),
            "{}",
            lagging.detail
        );
        assert!(lagging.detail.contains("max_slot_wal_keep_size"));
        let lost = slot_check(&slot(false, "lost", 0));
        assert_eq!(lost.verdict, Verdict::Fail);
        assert!(lost.detail.contains("invalidated"), "{}", lost.detail);
    }
}
