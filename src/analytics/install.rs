//! What the daemon needs of Plausible's events table, and what it created
//! in ClickHouse. `migrate` checks the first before it changes anything;
//! `run` (readiness) and `doctor` check both; `uninstall` removes the
//! second. The daemon's objects are read off its migration files, so the
//! list cannot drift from what `migrate` creates.

use std::collections::BTreeMap;

use super::migrations::Migration;
use super::{Analytics, AnalyticsError, embedded_migrations};

/// The columns of Plausible's events table that the views and queries
/// read, with the types they must have (`LowCardinality` and a `DateTime`
/// time zone aside). `scroll_depth` came with Plausible's ClickHouse
/// migration 20241028142653 (Community Edition v3).
pub const EVENT_COLUMNS: &[(&str, &str)] = &[
    ("timestamp", "DateTime"),
    ("name", "String"),
    ("site_id", "UInt64"),
    ("user_id", "UInt64"),
    ("pathname", "String"),
    ("referrer_source", "String"),
    ("scroll_depth", "UInt8"),
    ("meta.key", "Array(String)"),
    ("meta.value", "Array(String)"),
    // Revenue goals (goal_revenue.sql); in Plausible since 2023.
    ("revenue_reporting_amount", "Nullable(Decimal(18,3))"),
    ("revenue_reporting_currency", "FixedString(3)"),
];

/// The minimum Plausible release whose schema has every column above.
pub const MINIMUM_PLAUSIBLE: &str = "Plausible CE v3";

/// A type as compared: without `LowCardinality(…)` and a `DateTime`'s
/// time zone.
fn normalize(t: &str) -> String {
    let mut s = t.replace(' ', "");
    while let Some(start) = s.find("LowCardinality(") {
        let inner_start = start + "LowCardinality(".len();
        let Some(len) = closing(&s[inner_start..]) else {
            break;
        };
        let inner = s[inner_start..inner_start + len].to_string();
        s.replace_range(start..inner_start + len + 1, &inner);
    }
    if s.starts_with("DateTime(") {
        s = "DateTime".to_string();
    }
    s
}

/// The length up to the parenthesis that closes an opened one (also the
/// cluster form's engine arguments).
pub(super) fn closing(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' if depth == 0 => return Some(i),
            ')' => depth -= 1,
            _ => {}
        }
    }
    None
}

/// What is wrong with the events table, in words an operator can act on;
/// empty when every column is there with its type.
pub async fn check_events_table(analytics: &Analytics) -> Result<Vec<String>, AnalyticsError> {
    let columns: Vec<(String, String)> = analytics
        .run(|c| {
            c.query(include_str!("sql/events_columns.sql"))
                .bind(analytics.database())
                .bind(analytics.events_table())
                .fetch_all::<(String, String)>()
        })
        .await?;
    Ok(events_table_problems(
        &format!("{}.{}", analytics.database(), analytics.events_table()),
        &columns,
    ))
}

fn events_table_problems(table: &str, columns: &[(String, String)]) -> Vec<String> {
    if columns.is_empty() {
        return vec![format!(
            "Plausible's events table {table} does not exist: point clickhouse.url, clickhouse.database and clickhouse.events_table at Plausible's ClickHouse ({MINIMUM_PLAUSIBLE} or later)"
        )];
    }
    let found: BTreeMap<&str, String> = columns
        .iter()
        .map(|(name, t)| (name.as_str(), normalize(t)))
        .collect();
    EVENT_COLUMNS
        .iter()
        .filter_map(|(name, expected)| match found.get(name) {
            None => Some(format!(
                "Plausible's {table} has no column `{name}` ({expected}): {MINIMUM_PLAUSIBLE} or later is needed"
            )),
            Some(t) if t != expected => Some(format!(
                "Plausible's {table}.{name} is {t}, not {expected}: {MINIMUM_PLAUSIBLE} or later is needed"
            )),
            Some(_) => None,
        })
        .collect()
}

/// An object a migration creates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    pub name: String,
    pub view: bool,
}

/// The tables and materialized views `migration` creates, in its order.
pub fn objects_of(migration: &Migration) -> Vec<Object> {
    let mut objects = Vec::new();
    for statement in migration.statements() {
        let flat = statement.split_whitespace().collect::<Vec<_>>().join(" ");
        for (prefix, view) in [
            ("CREATE TABLE IF NOT EXISTS {database}.", false),
            ("CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.", true),
        ] {
            if let Some(rest) = flat.strip_prefix(prefix) {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                objects.push(Object { name, view });
            }
        }
    }
    objects
}

/// Every object of this build's migrations.
pub fn all_objects() -> Vec<Object> {
    embedded_migrations().iter().flat_map(objects_of).collect()
}

/// The daemon's own record of migrations.
pub const MIGRATIONS_TABLE: &str = "plausible_webhooks_migrations";

/// What is wrong with the daemon's ClickHouse objects: migrations not
/// applied, changed or unknown to this build, and objects of applied
/// migrations that are missing or of the wrong kind (a view's target
/// table dropped: Plausible's own inserts then fail).
pub async fn check_objects(analytics: &Analytics) -> Result<Vec<String>, AnalyticsError> {
    if let Some(problem) = super::cluster::check(analytics).await? {
        return Ok(vec![problem.to_string()]);
    }
    let tables: BTreeMap<String, String> = tables(analytics).await?.into_iter().collect();
    if !tables.contains_key(MIGRATIONS_TABLE) {
        return Ok(vec![
            "the daemon's ClickHouse views are not installed: run `plausible-webhooks migrate`"
                .into(),
        ]);
    }
    let applied = super::migrations::applied(analytics).await?;
    let mut problems = object_problems(embedded_migrations(), &applied, &tables);
    if analytics.cluster().is_some() {
        problems.extend(unreplicated(&tables));
    }
    Ok(problems)
}

/// With a cluster configured: the daemon's tables that are not replicated
/// (created by a `migrate` run without `clickhouse.cluster`), whose rows
/// would stay on this replica.
fn unreplicated(tables: &BTreeMap<String, String>) -> Vec<String> {
    unreplicated_tables(tables)
        .into_iter()
        .map(|(name, engine)| {
            format!(
                "{name} is a {engine}, not replicated, though clickhouse.cluster is set: it was created without the cluster; run `plausible-webhooks uninstall` and `migrate` again"
            )
        })
        .collect()
}

/// The daemon's tables present that are not `Replicated…`, with their
/// engines.
fn unreplicated_tables(tables: &BTreeMap<String, String>) -> Vec<(String, String)> {
    all_objects()
        .into_iter()
        .filter(|o| !o.view)
        .map(|o| o.name)
        .chain(std::iter::once(MIGRATIONS_TABLE.to_string()))
        .filter_map(|name| {
            let engine = tables.get(&name)?;
            (!engine.starts_with("Replicated")).then(|| (name, engine.clone()))
        })
        .collect()
}

/// The cluster checks alone, as an error (`migrate` refuses on them): with
/// a cluster configured, also the daemon's tables left unreplicated by an
/// earlier single-server `migrate`.
pub async fn check_cluster(analytics: &Analytics) -> Result<(), AnalyticsError> {
    if let Some(problem) = super::cluster::check(analytics).await? {
        return Err(problem.into());
    }
    if analytics.cluster().is_none() {
        return Ok(());
    }
    let present: BTreeMap<String, String> = tables(analytics).await?.into_iter().collect();
    let left = unreplicated_tables(&present);
    if left.is_empty() {
        Ok(())
    } else {
        Err(super::ClusterError::Unreplicated {
            tables: left
                .into_iter()
                .map(|(name, engine)| format!("{name} ({engine})"))
                .collect(),
        }
        .into())
    }
}

fn object_problems(
    migrations: &[Migration],
    applied: &[(u32, String)],
    tables: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut problems = Vec::new();
    for m in migrations {
        match applied.iter().find(|(v, _)| *v == m.version) {
            None => problems.push(format!(
                "ClickHouse migration V{} ({}) is not applied: run `plausible-webhooks migrate`",
                m.version, m.name
            )),
            Some((_, checksum)) if *checksum != m.checksum() => problems.push(format!(
                "ClickHouse migration V{} ({}) differs from this build's",
                m.version, m.name
            )),
            Some(_) => problems.extend(missing_objects(m, tables)),
        }
    }
    if let Some((newest, _)) = applied
        .iter()
        .filter(|(v, _)| !migrations.iter().any(|m| m.version == *v))
        .max()
    {
        problems.push(format!(
            "ClickHouse migration V{newest} is newer than this build: upgrade the daemon"
        ));
    }
    problems
}

fn missing_objects(m: &Migration, tables: &BTreeMap<String, String>) -> Vec<String> {
    objects_of(m)
        .into_iter()
        .filter_map(|o| match tables.get(&o.name) {
            None if o.view => Some(format!(
                "the view {} is missing: run `plausible-webhooks migrate` to restore it",
                o.name
            )),
            None => Some(format!(
                "the table {} is missing, so the view that fills it fails Plausible's inserts: run `plausible-webhooks migrate` to restore it",
                o.name
            )),
            Some(engine) if o.view != (engine == "MaterializedView") => Some(format!(
                "{} is a {engine}, not what migration V{} created",
                o.name, m.version
            )),
            Some(_) => None,
        })
        .collect()
}

/// True when every object of `m` exists (a migration to apply again if not).
pub(super) fn complete(m: &Migration, tables: &BTreeMap<String, String>) -> bool {
    missing_objects(m, tables).is_empty()
}

/// Drops every object the daemon created in ClickHouse, views before the
/// tables they fill, then its record of migrations; returns what it
/// dropped (as this replica saw it). Objects already gone are passed over,
/// so it can run again. On a cluster every known name is dropped
/// `ON CLUSTER` (`IF EXISTS`), whatever this replica holds, so that a view
/// left on another replica never outlives the table it fills.
pub async fn uninstall(analytics: &Analytics) -> Result<Vec<String>, AnalyticsError> {
    let mut objects = all_objects();
    objects.sort_by_key(|o| !o.view);
    let mut names: Vec<String> = objects.into_iter().map(|o| o.name).collect();
    names.push(MIGRATIONS_TABLE.to_string());
    let present: BTreeMap<String, String> = tables(analytics).await?.into_iter().collect();
    let on_cluster = analytics.cluster().is_some();
    let mut dropped = Vec::new();
    for name in names {
        let here = present.contains_key(&name);
        if !(here || on_cluster) {
            continue;
        }
        let sql = analytics
            .render_ddl(&include_str!("sql/drop_object.sql").replace("{object}", &name))?;
        analytics.execute(&sql).await?;
        if here {
            dropped.push(name);
        }
    }
    Ok(dropped)
}

/// The server time (Unix seconds) of the newest insert the views logged;
/// 0 when none.
pub async fn newest_insert(analytics: &Analytics) -> Result<u32, AnalyticsError> {
    analytics
        .run(|c| {
            c.query(&analytics.render(include_str!("sql/newest_insert.sql")))
                .fetch_one::<u32>()
        })
        .await
}

/// Every table and view of the daemon's database, with its engine.
pub async fn tables(analytics: &Analytics) -> Result<Vec<(String, String)>, AnalyticsError> {
    analytics
        .run(|c| {
            c.query(include_str!("sql/database_tables.sql"))
                .bind(analytics.database())
                .fetch_all::<(String, String)>()
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_compare_without_low_cardinality_and_time_zones() {
        assert_eq!(normalize("LowCardinality(String)"), "String");
        assert_eq!(normalize("Array(LowCardinality(String))"), "Array(String)");
        assert_eq!(normalize("DateTime('UTC')"), "DateTime");
        assert_eq!(normalize("Nullable(String)"), "Nullable(String)");
    }

    #[test]
    fn a_missing_or_mistyped_column_is_named() {
        let columns: Vec<(String, String)> = EVENT_COLUMNS
            .iter()
            .filter(|(n, _)| *n != "scroll_depth")
            .map(|(n, t)| (n.to_string(), t.replace("String", "LowCardinality(String)")))
            .map(|(n, t)| {
                if n == "user_id" {
                    (n, "UInt32".into())
                } else {
                    (n, t)
                }
            })
            .collect();
        let problems = events_table_problems("db.events_v2", &columns);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("`scroll_depth`") || problems[1].contains("`scroll_depth`"));
        assert!(
            problems
                .iter()
                .any(|p| p.contains("user_id is UInt32, not UInt64"))
        );
        assert!(problems.iter().all(|p| p.contains("Plausible CE v3")));
    }

    #[test]
    fn objects_come_from_the_migration_files() {
        let objects = all_objects();
        assert!(objects.contains(&Object {
            name: "webhooks_inserts".into(),
            view: false
        }));
        assert!(objects.contains(&Object {
            name: "webhooks_inserts_mv".into(),
            view: true
        }));
        assert!(objects.iter().all(|o| o.name.starts_with("webhooks_")));
        for m in embedded_migrations() {
            assert!(
                !objects_of(m).is_empty(),
                "V{} creates something",
                m.version
            );
        }
    }
}
