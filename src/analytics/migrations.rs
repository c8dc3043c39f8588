//! ClickHouse migrations: SQL files under `migrations/clickhouse/`, named
//! `V<version>__<name>.sql`, applied in order and recorded in
//! `{database}.plausible_webhooks_migrations`.
//!
//! ClickHouse has no transactional DDL, so every statement must be
//! idempotent (`IF NOT EXISTS`): a crash between a statement and its record
//! only means it runs again. The `migrate` command serialises runs with a
//! Postgres advisory lock. A file may hold several statements, each ending
//! with `;` at the end of a line; `{database}` and `{events_table}` are
//! replaced with the configured names. With `clickhouse.cluster` set, each
//! statement runs in its `ON CLUSTER` form (`super::cluster`), the record
//! table included: one replicated history that every replica reads.

use sha2::{Digest, Sha256};

use super::{Analytics, AnalyticsError};

/// One migration file.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub sql: &'static str,
}

impl Migration {
    pub(super) fn checksum(&self) -> String {
        Sha256::digest(self.sql.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The statements of the file, split at `;` line ends, comments dropped.
    pub(super) fn statements(&self) -> Vec<String> {
        let mut statements = Vec::new();
        let mut current = String::new();
        for line in self.sql.lines() {
            let trimmed = line.trim();
            if trimmed.starts_with("--") {
                continue;
            }
            current.push_str(line);
            current.push('\n');
            if trimmed.ends_with(';') {
                statements.push(current.trim().trim_end_matches(';').trim().to_string());
                current.clear();
            }
        }
        if !current.trim().is_empty() {
            statements.push(current.trim().to_string());
        }
        statements
    }
}

/// The migrations compiled into this build, in version order. A unit test
/// checks that this list and `migrations/clickhouse/` agree.
pub fn embedded_migrations() -> &'static [Migration] {
    &[
        Migration {
            version: 1,
            name: "site_minutes",
            sql: include_str!("../../migrations/clickhouse/V1__site_minutes.sql"),
        },
        Migration {
            version: 2,
            name: "goal_minutes",
            sql: include_str!("../../migrations/clickhouse/V2__goal_minutes.sql"),
        },
        Migration {
            version: 3,
            name: "inserts",
            sql: include_str!("../../migrations/clickhouse/V3__inserts.sql"),
        },
    ]
}

/// The recorded migrations: version and checksum.
pub(super) async fn applied(analytics: &Analytics) -> Result<Vec<(u32, String)>, AnalyticsError> {
    analytics
        .run(|c| {
            c.query(&analytics.render(include_str!("sql/applied_migrations.sql")))
                .fetch_all::<(u32, String)>()
        })
        .await
}

/// Applies the migrations not yet recorded, and again those recorded whose
/// objects have gone (a view's target table dropped by hand: every
/// statement is idempotent); returns the versions applied.
pub async fn apply_migrations(
    analytics: &Analytics,
    migrations: &[Migration],
) -> Result<Vec<u32>, AnalyticsError> {
    analytics
        .execute(&analytics.render_ddl(include_str!("sql/create_migrations_table.sql"))?)
        .await?;
    let applied = applied(analytics).await?;
    let tables: std::collections::BTreeMap<String, String> = super::install::tables(analytics)
        .await?
        .into_iter()
        .collect();

    let mut done = Vec::new();
    for migration in migrations {
        if let Some((_, checksum)) = applied.iter().find(|(v, _)| *v == migration.version) {
            if *checksum != migration.checksum() {
                return Err(AnalyticsError::Divergent {
                    version: migration.version,
                    name: migration.name.to_string(),
                });
            }
            if !super::install::complete(migration, &tables) {
                run_statements(analytics, migration).await?;
                tracing::warn!(
                    version = migration.version,
                    name = migration.name,
                    "restored the missing objects of a clickhouse migration"
                );
            }
            continue;
        }
        run_statements(analytics, migration).await?;
        analytics
            .run(|c| {
                c.query(&analytics.render(include_str!("sql/record_migration.sql")))
                    .bind(migration.version)
                    .bind(migration.name)
                    .bind(migration.checksum())
                    .execute()
            })
            .await?;
        tracing::info!(
            version = migration.version,
            name = migration.name,
            "applied clickhouse migration"
        );
        done.push(migration.version);
    }
    Ok(done)
}

/// Runs a migration's statements, naming it in an error.
async fn run_statements(
    analytics: &Analytics,
    migration: &Migration,
) -> Result<(), AnalyticsError> {
    for statement in migration.statements() {
        analytics
            .execute(&analytics.render_ddl(&statement)?)
            .await
            .map_err(|e| match e {
                AnalyticsError::Query(source) => AnalyticsError::Migration {
                    version: migration.version,
                    name: migration.name.to_string(),
                    source,
                },
                other => other,
            })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_statements_and_drops_comments() {
        let m = Migration {
            version: 1,
            name: "t",
            sql: "-- a comment\nCREATE TABLE a (x UInt8)\nENGINE = Memory;\n\nCREATE TABLE b (y UInt8) ENGINE = Memory;\n",
        };
        assert_eq!(
            m.statements(),
            vec![
                "CREATE TABLE a (x UInt8)\nENGINE = Memory".to_string(),
                "CREATE TABLE b (y UInt8) ENGINE = Memory".to_string()
            ]
        );
    }

    #[test]
    fn embedded_list_matches_the_directory() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/clickhouse");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.ends_with(".sql"))
                    .collect()
            })
            .unwrap_or_default();
        files.sort_by_key(|f| {
            f.trim_start_matches('V')
                .split("__")
                .next()
                .and_then(|v| v.parse::<u32>().ok())
        });
        let listed: Vec<String> = embedded_migrations()
            .iter()
            .map(|m| format!("V{}__{}.sql", m.version, m.name))
            .collect();
        assert_eq!(files, listed);
        for (i, m) in embedded_migrations().iter().enumerate() {
            assert_eq!(m.version as usize, i + 1, "versions run 1, 2, 3, ...");
        }
    }
}
