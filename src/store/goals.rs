//! Reading Plausible's `goals` (never written by the daemon).

use futures_util::{Stream, StreamExt};
use tokio_postgres::{GenericClient, Row};

use super::StoreError;

/// A `goals` row as Plausible stores it.
#[derive(Debug, Clone, PartialEq)]
pub struct GoalRow {
    pub id: i64,
    pub site_id: i64,
    pub event_name: Option<String>,
    pub page_path: Option<String>,
    pub display_name: String,
    pub scroll_threshold: i16,
    pub custom_props: serde_json::Value,
    /// A revenue goal's currency (ISO 4217 code), NULL for others.
    pub currency: Option<String>,
}

impl GoalRow {
    fn from_row(row: &Row) -> Result<GoalRow, String> {
        let decode = || -> Result<GoalRow, tokio_postgres::Error> {
            Ok(GoalRow {
                id: row.try_get("id")?,
                site_id: row.try_get("site_id")?,
                event_name: row.try_get("event_name")?,
                page_path: row.try_get("page_path")?,
                display_name: row.try_get("display_name")?,
                scroll_threshold: row.try_get("scroll_threshold")?,
                custom_props: row.try_get("custom_props")?,
                currency: row.try_get("currency")?,
            })
        };
        decode().map_err(|e| {
            let id: i64 = row.try_get("id").unwrap_or_default();
            format!("goal {id} could not be read: {e}")
        })
    }
}

/// The goals of every site with an enabled webhook, ordered by site,
/// streamed. Unreadable rows come back as errors, one per row.
pub async fn stream_all(
    client: &impl GenericClient,
) -> Result<impl Stream<Item = Result<Result<GoalRow, String>, StoreError>>, StoreError> {
    let rows = client
        .query_raw(
            include_str!("sql/goals_load_all.sql"),
            std::iter::empty::<i32>(),
        )
        .await?;
    Ok(rows.map(|row| Ok(GoalRow::from_row(&row?))))
}

/// The goals of `sites` and of the sites `ids` belong to.
pub async fn load_sites(
    client: &impl GenericClient,
    sites: &[i64],
    ids: &[i64],
) -> Result<Vec<Result<GoalRow, String>>, StoreError> {
    let rows = client
        .query(include_str!("sql/goals_load_sites.sql"), &[&sites, &ids])
        .await?;
    Ok(rows.iter().map(GoalRow::from_row).collect())
}
