//! A replicated ClickHouse (`clickhouse.cluster`): the `ON CLUSTER`,
//! replicated form of the daemon's DDL, and the checks that the configured
//! cluster matches the server's.
//!
//! The migration files keep their single-server text (their checksums are
//! recorded by installs that run one server); with a cluster configured,
//! each statement is rewritten here, and only here: ` ON CLUSTER <name>`
//! after the object's name, and a `…MergeTree` engine becomes its
//! `Replicated…MergeTree` with the ZooKeeper path
//! `/clickhouse/<cluster>/tables/{shard}/<database>/<table>` and replica
//! `{replica}` (the servers' macros; 18.16 expands no `{database}` or
//! `{table}` macro in a path, so the database name is rendered by the
//! daemon). The cluster's name keeps two clusters that share a ZooKeeper
//! and a database name from sharing tables.

use super::{Analytics, AnalyticsError};

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("a ClickHouse statement of the daemon has no ON CLUSTER form: {0}")]
    NoClusterForm(String),
    #[error(
        "Plausible's {table} is {engine}: a replicated ClickHouse. Set clickhouse.cluster to the cluster its replicas form ({}), so that the daemon's views and tables are created on every replica",
        known_clusters(.clusters)
    )]
    NotConfigured {
        table: String,
        engine: String,
        clusters: Vec<String>,
    },
    #[error(
        "clickhouse.cluster is {name:?}, which this server does not know ({})",
        known_clusters(.clusters)
    )]
    Unknown { name: String, clusters: Vec<String> },
    #[error(
        "clickhouse.cluster is {name:?}, which has {shards} shards: the daemon supports one shard of replicas, not sharding"
    )]
    Sharded { name: String, shards: u64 },
    #[error(
        "clickhouse.cluster is {name:?}, but Plausible's {table} is {engine}, not replicated: unset clickhouse.cluster for a single server"
    )]
    EventsNotReplicated {
        name: String,
        table: String,
        engine: String,
    },
    #[error(
        "clickhouse.cluster is set, but the daemon's tables exist unreplicated (a `migrate` without the cluster created them): {}; run `plausible-webhooks uninstall`, then `migrate` again",
        .tables.join(", ")
    )]
    Unreplicated { tables: Vec<String> },
}

impl ClusterError {
    /// A refusal the config or an operator can fix (not a bug of the
    /// daemon's own statements).
    pub fn is_refusal(&self) -> bool {
        !matches!(self, ClusterError::NoClusterForm(_))
    }
}

fn known_clusters(clusters: &[String]) -> String {
    if clusters.is_empty() {
        "system.clusters lists none".to_string()
    } else {
        format!("system.clusters lists: {}", clusters.join(", "))
    }
}

/// The statement heads that create or drop one of the daemon's objects.
const HEADS: [&str; 3] = [
    "CREATE TABLE IF NOT EXISTS {database}.",
    "CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.",
    "DROP TABLE IF EXISTS {database}.",
];

/// `statement` (a template: `{database}` not yet rendered) in its
/// `ON CLUSTER` form, tables replicated. A statement of another shape is
/// an error, never passed on unchanged.
pub fn on_cluster(statement: &str, cluster: &str) -> Result<String, ClusterError> {
    let no_form = || ClusterError::NoClusterForm(first_line(statement));
    let (head, at) = find_head(statement).ok_or_else(no_form)?;
    let name_start = at + head.len();
    let name_len = statement[name_start..]
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(statement.len() - name_start);
    let table = &statement[name_start..name_start + name_len];
    if table.is_empty() {
        return Err(no_form());
    }
    let mut out = String::with_capacity(statement.len() + 128);
    out.push_str(&statement[at..name_start + name_len]);
    out.push_str(" ON CLUSTER ");
    out.push_str(cluster);
    let rest = &statement[name_start + name_len..];
    if head.starts_with("CREATE TABLE") {
        out.push_str(&replicated_engine(rest, cluster, table).ok_or_else(no_form)?);
    } else {
        out.push_str(rest);
    }
    Ok(out)
}

/// The first head in `statement` outside `--` comment lines, and where it
/// starts; what comes before it (comments) is left out of the cluster form.
fn find_head(statement: &str) -> Option<(&'static str, usize)> {
    let mut offset = 0;
    for line in statement.split_inclusive('\n') {
        if !line.trim_start().starts_with("--") {
            let found = HEADS
                .iter()
                .filter_map(|h| line.find(h).map(|at| (*h, offset + at)))
                .min_by_key(|(_, at)| *at);
            if found.is_some() {
                return found;
            }
        }
        offset += line.len();
    }
    None
}

/// `rest` with its `ENGINE = …MergeTree[(args)]` replicated; `None` when
/// it has no MergeTree engine (nothing else replicates).
fn replicated_engine(rest: &str, cluster: &str, table: &str) -> Option<String> {
    const ENGINE: &str = "ENGINE = ";
    let at = rest.find(ENGINE)? + ENGINE.len();
    let engine_len = rest[at..]
        .find(|c: char| !c.is_ascii_alphanumeric())
        .unwrap_or(rest.len() - at);
    let engine = &rest[at..at + engine_len];
    if !engine.ends_with("MergeTree") || engine.starts_with("Replicated") {
        return None;
    }
    let path =
        format!("'/clickhouse/{cluster}/tables/{{shard}}/{{database}}/{table}', '{{replica}}'");
    let after = &rest[at + engine_len..];
    let (args, tail) = match after.strip_prefix('(') {
        Some(inner) => {
            let close = super::install::closing(inner)?;
            (inner[..close].trim(), &inner[close + 1..])
        }
        None => ("", after),
    };
    let args = if args.is_empty() {
        path
    } else {
        format!("{path}, {args}")
    };
    Some(format!("{}Replicated{engine}({args}){tail}", &rest[..at]))
}

fn first_line(statement: &str) -> String {
    statement
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with("--"))
        .unwrap_or("")
        .chars()
        .take(120)
        .collect()
}

/// Checks the configured cluster against the server: a replicated events
/// table needs `clickhouse.cluster`, and a configured cluster must be one
/// the server knows, of one shard, over a replicated events table.
/// `Ok(None)` when all is well.
pub async fn check(analytics: &Analytics) -> Result<Option<ClusterError>, AnalyticsError> {
    let engine: Option<String> = analytics
        .run(|c| {
            c.query(include_str!("sql/table_engine.sql"))
                .bind(analytics.database())
                .bind(analytics.events_table())
                .fetch_all::<String>()
        })
        .await?
        .into_iter()
        .next();
    let clusters: Vec<(String, u64)> = analytics
        .run(|c| {
            c.query(include_str!("sql/clusters.sql"))
                .fetch_all::<(String, u64)>()
        })
        .await?;
    Ok(problem(analytics, engine, &clusters))
}

/// What [`check`] found wrong, given the events table's engine (`None`
/// when it does not exist) and each cluster with its number of shards.
fn problem(
    analytics: &Analytics,
    engine: Option<String>,
    clusters: &[(String, u64)],
) -> Option<ClusterError> {
    let names = || clusters.iter().map(|(c, _)| c.clone()).collect();
    let table = || format!("{}.{}", analytics.database(), analytics.events_table());
    let replicated = engine.as_ref().is_some_and(|e| e.starts_with("Replicated"));
    let Some(name) = analytics.cluster() else {
        return replicated.then(|| ClusterError::NotConfigured {
            table: table(),
            engine: engine.clone().unwrap_or_default(),
            clusters: names(),
        });
    };
    let name = name.to_string();
    match clusters.iter().find(|(c, _)| *c == name) {
        None => Some(ClusterError::Unknown {
            name,
            clusters: names(),
        }),
        Some((_, shards)) if *shards > 1 => Some(ClusterError::Sharded {
            name,
            shards: *shards,
        }),
        // No events table: check_events_table names that.
        Some(_) => match engine {
            Some(engine) if !replicated => Some(ClusterError::EventsNotReplicated {
                name,
                table: table(),
                engine,
            }),
            _ => None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analytics::embedded_migrations;

    #[test]
    fn engines_become_replicated_with_the_table_path() {
        let out = on_cluster(
            "CREATE TABLE IF NOT EXISTS {database}.t (x UInt8) ENGINE = AggregatingMergeTree\nORDER BY x",
            "web",
        )
        .unwrap();
        assert_eq!(
            out,
            "CREATE TABLE IF NOT EXISTS {database}.t ON CLUSTER web (x UInt8) ENGINE = ReplicatedAggregatingMergeTree('/clickhouse/web/tables/{shard}/{database}/t', '{replica}')\nORDER BY x"
        );
        let out = on_cluster(
            "CREATE TABLE IF NOT EXISTS {database}.t (x UInt8, v UInt8) ENGINE = ReplacingMergeTree(v) ORDER BY x",
            "web",
        )
        .unwrap();
        assert!(
            out.contains("ENGINE = ReplicatedReplacingMergeTree('/clickhouse/web/tables/{shard}/{database}/t', '{replica}', v) ORDER BY x"),
            "{out}"
        );
        let out = on_cluster(
            "-- Not this: CREATE TABLE IF NOT EXISTS {database}.old\nCREATE TABLE IF NOT EXISTS {database}.t (x UInt8, a UInt8, b UInt8) ENGINE = ReplacingMergeTree(greatest(a, b)) ORDER BY x",
            "web",
        )
        .unwrap();
        assert_eq!(
            out,
            "CREATE TABLE IF NOT EXISTS {database}.t ON CLUSTER web (x UInt8, a UInt8, b UInt8) ENGINE = ReplicatedReplacingMergeTree('/clickhouse/web/tables/{shard}/{database}/t', '{replica}', greatest(a, b)) ORDER BY x"
        );
        let out = on_cluster("DROP TABLE IF EXISTS {database}.webhooks_inserts", "web").unwrap();
        assert_eq!(
            out,
            "DROP TABLE IF EXISTS {database}.webhooks_inserts ON CLUSTER web"
        );
    }

    #[test]
    fn a_statement_with_no_cluster_form_is_refused() {
        for sql in [
            "CREATE TABLE IF NOT EXISTS {database}.t (x UInt8) ENGINE = Memory",
            "CREATE TABLE {database}.t (x UInt8) ENGINE = MergeTree ORDER BY x",
            "ALTER TABLE {database}.t DROP PARTITION 1",
        ] {
            assert!(on_cluster(sql, "web").is_err(), "{sql}");
        }
    }

    /// Every statement the daemon runs to create or drop its objects has
    /// its cluster form: no CREATE is left without ON CLUSTER, no table
    /// without a replicated engine.
    #[test]
    fn every_statement_of_every_migration_is_rewritten() {
        let mut statements: Vec<String> = embedded_migrations()
            .iter()
            .flat_map(|m| m.statements())
            .collect();
        statements.push(include_str!("sql/create_migrations_table.sql").to_string());
        statements
            .push(include_str!("sql/drop_object.sql").replace("{object}", "webhooks_inserts_mv"));
        for statement in statements {
            let out = on_cluster(&statement, "web").unwrap_or_else(|e| panic!("{e}"));
            assert!(HEADS.iter().any(|h| out.starts_with(h)), "{out}");
            let flat = out.split_whitespace().collect::<Vec<_>>().join(" ");
            assert!(format!("{flat} ").contains(" ON CLUSTER web "), "{flat}");
            assert_eq!(flat.matches("ON CLUSTER").count(), 1, "{flat}");
            if flat.starts_with("CREATE TABLE") {
                assert!(flat.contains("ENGINE = Replicated"), "{flat}");
                assert!(
                    flat.contains("'/clickhouse/web/tables/{shard}/{database}/webhooks_")
                        || flat.contains("/plausible_webhooks_migrations'"),
                    "{flat}"
                );
            }
        }
    }
}
