//! Pruning the tables the daemon's materialized views fill: whole
//! partitions are listed from `system.parts` and dropped, which works the
//! same on ClickHouse 18.16 (no TTL) and on current releases.

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use serde::Deserialize;

use super::{Analytics, AnalyticsError};

/// A table the views fill, and how it is partitioned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViewTable {
    /// `webhooks_site_minutes`, by month of the minute.
    SiteMinutes,
    /// `webhooks_goal_minutes`, by month of the minute.
    GoalMinutes,
    /// `webhooks_inserts`, by day of the insert.
    Inserts,
}

impl ViewTable {
    pub const ALL: [ViewTable; 3] = [
        ViewTable::SiteMinutes,
        ViewTable::GoalMinutes,
        ViewTable::Inserts,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ViewTable::SiteMinutes => "webhooks_site_minutes",
            ViewTable::GoalMinutes => "webhooks_goal_minutes",
            ViewTable::Inserts => "webhooks_inserts",
        }
    }

    fn parse(name: &str) -> Option<ViewTable> {
        ViewTable::ALL.into_iter().find(|t| t.name() == name)
    }
}

/// One partition of a view table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    pub table: ViewTable,
    /// The partition's value: `YYYYMM` or `YYYYMMDD`.
    pub value: u32,
    /// When the span the partition covers ends (in UTC; the server may
    /// partition by its own time zone, which callers allow a day for).
    pub ends_at: DateTime<Utc>,
    pub rows: u64,
    pub bytes: u64,
}

#[derive(Debug, Deserialize, clickhouse::Row)]
struct PartRow {
    table: String,
    partition_id: String,
    rows: u64,
    bytes: u64,
}

/// The active partitions of the view tables. A partition whose id is not a
/// month or day of the expected form is left out (never dropped).
pub async fn partitions(analytics: &Analytics) -> Result<Vec<Partition>, AnalyticsError> {
    let rows: Vec<PartRow> = analytics
        .run(|c| {
            c.query(include_str!("sql/retention_partitions.sql"))
                .bind(analytics.database())
                .fetch_all()
        })
        .await?;
    Ok(rows.into_iter().filter_map(partition).collect())
}

fn partition(row: PartRow) -> Option<Partition> {
    let table = ViewTable::parse(&row.table)?;
    let ends_at = span_end(table, &row.partition_id)?;
    Some(Partition {
        table,
        value: row.partition_id.parse().ok()?,
        ends_at,
        rows: row.rows,
        bytes: row.bytes,
    })
}

/// The end of the month (`YYYYMM`) or day (`YYYYMMDD`) a partition id
/// names, by the table's partitioning.
fn span_end(table: ViewTable, id: &str) -> Option<DateTime<Utc>> {
    if !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let number = |range: std::ops::Range<usize>| id.get(range)?.parse::<u32>().ok();
    let next = match (table, id.len()) {
        (ViewTable::SiteMinutes | ViewTable::GoalMinutes, 6) => {
            let (year, month) = (number(0..4)? as i32, number(4..6)?);
            let first = NaiveDate::from_ymd_opt(year, month, 1)?;
            if month == 12 {
                NaiveDate::from_ymd_opt(first.year() + 1, 1, 1)?
            } else {
                NaiveDate::from_ymd_opt(year, month + 1, 1)?
            }
        }
        (ViewTable::Inserts, 8) => {
            NaiveDate::from_ymd_opt(number(0..4)? as i32, number(4..6)?, number(6..8)?)?
                .succ_opt()?
        }
        _ => return None,
    };
    Some(Utc.from_utc_datetime(&next.and_hms_opt(0, 0, 0)?))
}

/// Drops one partition (a no-op if it is already gone).
pub async fn drop_partition(
    analytics: &Analytics,
    partition: &Partition,
) -> Result<(), AnalyticsError> {
    let sql = analytics.render(include_str!("sql/retention_drop_partition.sql"));
    analytics
        .run(|c| {
            c.query(&sql)
                .bind(clickhouse::sql::Identifier(partition.table.name()))
                .bind(partition.value)
                .execute()
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(y: i32, m: u32, d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).unwrap()
    }

    #[test]
    fn partition_ids_name_the_end_of_their_span() {
        assert_eq!(
            span_end(ViewTable::SiteMinutes, "202612"),
            Some(at(2027, 1, 1))
        );
        assert_eq!(
            span_end(ViewTable::GoalMinutes, "202602"),
            Some(at(2026, 3, 1))
        );
        assert_eq!(
            span_end(ViewTable::Inserts, "20261231"),
            Some(at(2027, 1, 1))
        );
        assert_eq!(span_end(ViewTable::Inserts, "202612"), None);
        assert_eq!(span_end(ViewTable::SiteMinutes, "20261201"), None);
        assert_eq!(span_end(ViewTable::SiteMinutes, "202613"), None);
        assert_eq!(span_end(ViewTable::SiteMinutes, "all"), None);
        assert_eq!(span_end(ViewTable::SiteMinutes, "-20212"), None);
    }
}
