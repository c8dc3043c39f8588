//! What the daemon needs of Plausible's own Postgres tables: checked by
//! `migrate` before it changes anything, and by `doctor`.

use std::collections::BTreeMap;

use tokio_postgres::GenericClient;

use super::StoreError;

/// The columns the daemon reads, with the types Plausible's Ecto migrations
/// give them (`information_schema` names).
pub const COLUMNS: &[(&str, &str, &[&str])] = &[
    ("sites", "id", &["bigint"]),
    ("sites", "domain", &["character varying", "text"]),
    ("sites", "timezone", &["character varying", "text"]),
    ("goals", "id", &["bigint"]),
    ("goals", "site_id", &["bigint"]),
    ("goals", "event_name", &["text", "character varying"]),
    ("goals", "page_path", &["text", "character varying"]),
    ("goals", "display_name", &["text", "character varying"]),
    ("goals", "scroll_threshold", &["smallint"]),
    ("goals", "custom_props", &["jsonb"]),
    ("goals", "currency", &["character varying", "text"]),
];

/// What is missing or different, in words an operator can act on.
pub async fn check(client: &impl GenericClient) -> Result<Vec<String>, StoreError> {
    let rows = client
        .query(include_str!("sql/plausible_columns.sql"), &[])
        .await?;
    let mut found: BTreeMap<(String, String), String> = BTreeMap::new();
    for row in &rows {
        found.insert((row.try_get(0)?, row.try_get(1)?), row.try_get(2)?);
    }
    Ok(problems(&found))
}

fn problems(found: &BTreeMap<(String, String), String>) -> Vec<String> {
    let mut problems = Vec::new();
    for table in ["sites", "goals"] {
        if !found.keys().any(|(t, _)| t == table) {
            problems.push(format!(
                "Plausible's `{table}` table is not in this database: point postgres.url at Plausible's database (Plausible CE v3 or later)"
            ));
        }
    }
    for (table, column, types) in COLUMNS {
        if !problems.is_empty() {
            break;
        }
        match found.get(&(table.to_string(), column.to_string())) {
            None => problems.push(format!(
                "Plausible's `{table}` has no column `{column}` ({}): Plausible CE v3 or later is needed",
                types[0]
            )),
            Some(t) if !types.contains(&t.as_str()) => problems.push(format!(
                "Plausible's `{table}.{column}` is {t}, not {}: Plausible CE v3 or later is needed",
                types[0]
            )),
            Some(_) => {}
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_what_is_missing() {
        let mut found: BTreeMap<(String, String), String> = COLUMNS
            .iter()
            .map(|(t, c, types)| ((t.to_string(), c.to_string()), types[0].to_string()))
            .collect();
        assert!(problems(&found).is_empty());
        found.remove(&("goals".into(), "scroll_threshold".into()));
        assert_eq!(
            problems(&found),
            vec![
                "Plausible's `goals` has no column `scroll_threshold` (smallint): Plausible CE v3 or later is needed"
            ]
        );
        found.retain(|(t, _), _| t != "sites");
        assert!(problems(&found)[0].contains("`sites` table is not in this database"));
    }
}
