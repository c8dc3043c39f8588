//! The ClickHouse reads of the trigger engine, over the tables that the
//! migrations' materialized views fill (`webhooks_site_minutes`,
//! `webhooks_goal_minutes`, `webhooks_inserts`) and, for spike details, the
//! events table itself. Times are server times in whole seconds (UTC).

use serde::Deserialize;

use super::{Analytics, AnalyticsError};

/// The server's clock, in seconds since the epoch.
pub async fn server_now(analytics: &Analytics) -> Result<u32, AnalyticsError> {
    analytics
        .bounded(
            analytics
                .client()
                .query(include_str!("sql/server_now.sql"))
                .fetch_one::<u32>(),
        )
        .await
}

/// A (site, minute) bucket that an insert touched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clickhouse::Row)]
pub struct ChangedBucket {
    pub site_id: u64,
    pub minute: u32,
    pub last_inserted_at: u32,
}

/// Buckets touched by inserts at or after `since` (server time).
pub async fn changed_buckets(
    analytics: &Analytics,
    since: u32,
) -> Result<Vec<ChangedBucket>, AnalyticsError> {
    let sql = analytics.render(include_str!("sql/changed_buckets.sql"));
    analytics
        .bounded(analytics.client().query(&sql).bind(since).fetch_all())
        .await
}

/// Completions of one event key in one bucket.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, clickhouse::Row)]
pub struct KeyCount {
    pub site_id: u64,
    pub minute: u32,
    pub name: String,
    pub pathname: String,
    pub scroll_depth: u8,
    pub prop_keys: Vec<String>,
    pub prop_values: Vec<String>,
    pub completions: u64,
}

/// Completions per event key in the given buckets.
pub async fn goal_key_counts(
    analytics: &Analytics,
    buckets: &[(u64, u32)],
) -> Result<Vec<KeyCount>, AnalyticsError> {
    if buckets.is_empty() {
        return Ok(Vec::new());
    }
    let sql = analytics.render(include_str!("sql/goal_key_counts.sql"));
    analytics
        .bounded(analytics.client().query(&sql).bind(buckets).fetch_all())
        .await
}

/// A goal as constants for [`goal_visitors`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoalFilter {
    pub name: String,
    /// An RE2 pattern for the path; empty for any path.
    pub path_regex: String,
    pub min_scroll_depth: u8,
    pub max_scroll_depth: u8,
    /// At most three `(key, value)` filters.
    pub props: Vec<(String, String)>,
}

/// Distinct visitors who completed a goal in minutes `from..=to`.
pub async fn goal_visitors(
    analytics: &Analytics,
    site_id: u64,
    from_minute: u32,
    to_minute: u32,
    goal: &GoalFilter,
) -> Result<u64, AnalyticsError> {
    let sql = analytics.render(include_str!("sql/goal_visitors.sql"));
    let mut query = analytics
        .client()
        .query(&sql)
        .bind(site_id)
        .bind(from_minute)
        .bind(to_minute)
        .bind(goal.name.as_str())
        .bind(goal.path_regex.as_str())
        .bind(goal.min_scroll_depth)
        .bind(goal.max_scroll_depth);
    for i in 0..3 {
        let (key, value) = goal
            .props
            .get(i)
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .unwrap_or(("", ""));
        query = query.bind(key).bind(key).bind(value);
    }
    analytics.bounded(query.fetch_one::<u64>()).await
}

/// Distinct visitors per site since `since_minute`; absent sites had none.
pub async fn site_visitors(
    analytics: &Analytics,
    sites: &[u64],
    since_minute: u32,
) -> Result<Vec<(u64, u64)>, AnalyticsError> {
    if sites.is_empty() {
        return Ok(Vec::new());
    }
    let sql = analytics.render(include_str!("sql/site_visitors.sql"));
    analytics
        .bounded(
            analytics
                .client()
                .query(&sql)
                .bind(sites)
                .bind(since_minute)
                .fetch_all(),
        )
        .await
}

/// Which of `sites` have had any traffic since the views were created.
pub async fn sites_with_data(
    analytics: &Analytics,
    sites: &[u64],
) -> Result<Vec<u64>, AnalyticsError> {
    if sites.is_empty() {
        return Ok(Vec::new());
    }
    let sql = analytics.render(include_str!("sql/sites_with_data.sql"));
    analytics
        .bounded(analytics.client().query(&sql).bind(sites).fetch_all())
        .await
}

/// The top three pages, or sources, of a site since a time, with visitors.
pub async fn top(
    analytics: &Analytics,
    what: Top,
    site_id: u64,
    since: u32,
) -> Result<Vec<(String, u64)>, AnalyticsError> {
    let template = match what {
        Top::Pages => include_str!("sql/top_pages.sql"),
        Top::Sources => include_str!("sql/top_sources.sql"),
    };
    let sql = analytics.render(template);
    analytics
        .bounded(
            analytics
                .client()
                .query(&sql)
                .bind(site_id)
                .bind(since)
                .fetch_all(),
        )
        .await
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Top {
    Pages,
    Sources,
}
