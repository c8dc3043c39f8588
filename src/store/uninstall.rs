//! Removing everything the daemon's migrations created in Postgres
//! (`uninstall`): read off the migration files themselves, so the list
//! cannot fall behind them. Triggers on Plausible's tables go first, then
//! the daemon's tables (with their own triggers and indexes), functions,
//! domains, and last the history table. Plausible's rows are never touched.

use tokio_postgres::Client;

use super::StoreError;

/// An object a migration creates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Object {
    /// A trigger on one of Plausible's tables.
    Trigger {
        name: String,
        table: String,
    },
    Table(String),
    Function(String),
    Domain(String),
}

/// Plausible's tables: triggers on them are dropped one by one; the
/// tables themselves never.
const PLAUSIBLE_TABLES: [&str; 2] = ["sites", "goals"];

/// Every object of `sql`, in the order found.
fn objects_in(sql: &str) -> Vec<Object> {
    let code: String = sql
        .lines()
        .map(|l| l.split("--").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let words: Vec<String> = code
        .split(|c: char| c.is_whitespace() || c == '(' || c == ';')
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect();
    let mut objects = Vec::new();
    for (i, w) in words.iter().enumerate() {
        if !w.eq_ignore_ascii_case("CREATE") {
            continue;
        }
        let mut j = i + 1;
        if words.get(j).is_some_and(|w| w.eq_ignore_ascii_case("OR"))
            && words
                .get(j + 1)
                .is_some_and(|w| w.eq_ignore_ascii_case("REPLACE"))
        {
            j += 2;
        }
        let mut at = j + 1;
        if words.get(at).is_some_and(|w| w.eq_ignore_ascii_case("IF")) {
            at += 3;
        }
        let (Some(kind), Some(name)) = (words.get(j), words.get(at)) else {
            continue;
        };
        let name = name.clone();
        match kind.to_ascii_uppercase().as_str() {
            "TABLE" => objects.push(Object::Table(name)),
            "FUNCTION" => objects.push(Object::Function(name)),
            "DOMAIN" => objects.push(Object::Domain(name)),
            "TRIGGER" => {
                let on = words[at + 1..]
                    .iter()
                    .position(|w| w.eq_ignore_ascii_case("ON"))
                    .and_then(|k| words.get(at + 1 + k + 1));
                if let Some(table) = on.filter(|t| PLAUSIBLE_TABLES.contains(&t.as_str())) {
                    objects.push(Object::Trigger {
                        name,
                        table: table.clone(),
                    });
                }
            }
            _ => {}
        }
    }
    objects
}

/// Every object of this build's migrations, in the order they are dropped.
pub fn objects() -> Vec<Object> {
    let mut all: Vec<Object> = super::migrations::sources()
        .iter()
        .flat_map(|sql| objects_in(sql))
        .collect();
    let rank = |o: &Object| match o {
        Object::Trigger { .. } => 0,
        Object::Table(_) => 1,
        Object::Function(_) => 2,
        Object::Domain(_) => 3,
    };
    all.sort_by_key(rank);
    all.dedup();
    all
}

impl Object {
    fn statement(&self) -> String {
        match self {
            Object::Trigger { name, table } => include_str!("sql/uninstall/trigger.sql")
                .replace("{name}", name)
                .replace("{table}", table),
            Object::Table(name) => include_str!("sql/uninstall/table.sql").replace("{name}", name),
            Object::Function(name) => {
                include_str!("sql/uninstall/function.sql").replace("{name}", name)
            }
            Object::Domain(name) => {
                include_str!("sql/uninstall/domain.sql").replace("{name}", name)
            }
        }
    }
}

/// Drops every object and the history table in one transaction; returns
/// the statements run. Objects already gone are passed over (`IF EXISTS`),
/// so a second run changes nothing.
pub async fn uninstall(client: &mut Client) -> Result<Vec<String>, StoreError> {
    let mut statements: Vec<String> = objects().iter().map(Object::statement).collect();
    statements.push(
        include_str!("sql/uninstall/table.sql").replace("{name}", super::migrations::HISTORY_TABLE),
    );
    let tx = client.transaction().await?;
    for statement in &statements {
        tx.batch_execute(statement.trim()).await?;
    }
    tx.commit().await?;
    Ok(statements)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_are_read_off_the_migrations() {
        let objects = objects();
        assert!(objects.contains(&Object::Table("webhooks".into())));
        assert!(objects.contains(&Object::Table("webhook_deliveries".into())));
        assert!(objects.contains(&Object::Function("plausible_webhooks_notify_change".into())));
        assert!(objects.contains(&Object::Domain("plausible_webhooks_delivery_id".into())));
        assert_eq!(
            objects[0],
            Object::Trigger {
                name: "plausible_webhooks_goals_notify_change".into(),
                table: "goals".into()
            }
        );
        // Triggers on the daemon's own tables go with their tables.
        assert!(
            !objects
                .iter()
                .any(|o| matches!(o, Object::Trigger { table, .. } if table == "webhooks"))
        );
    }
}
