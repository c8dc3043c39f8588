//! The ClickHouse reads of the trigger engine, over the tables that the
//! migrations' materialized views fill (`webhooks_site_minutes`,
//! `webhooks_goal_minutes`, `webhooks_inserts`) and, for spike details, the
//! events table itself. Times are server times in whole seconds (UTC).

use std::collections::HashSet;

use serde::Deserialize;

use super::lossy;

use super::{Analytics, AnalyticsError};

/// The server's clock, in seconds since the epoch.
pub async fn server_now(analytics: &Analytics) -> Result<u32, AnalyticsError> {
    analytics
        .run(|c| {
            c.query(include_str!("sql/server_now.sql"))
                .fetch_one::<u32>()
        })
        .await
}

/// A (site, minute) bucket that an insert touched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clickhouse::Row)]
pub struct ChangedBucket {
    pub site_id: u64,
    pub minute: u32,
    pub last_inserted_at: u32,
}

/// Buckets touched by inserts from `since` to `until` (server times,
/// inclusive).
pub async fn changed_buckets(
    analytics: &Analytics,
    since: u32,
    until: u32,
) -> Result<Vec<ChangedBucket>, AnalyticsError> {
    let sql = analytics.render(include_str!("sql/changed_buckets.sql"));
    analytics
        .run(|c| c.query(&sql).bind(since).bind(until).fetch_all())
        .await
}

/// Completions of one event key in one bucket.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, clickhouse::Row)]
pub struct KeyCount {
    pub site_id: u64,
    pub minute: u32,
    // Visitors' text may be any bytes: read lossily, never failing the read.
    #[serde(deserialize_with = "lossy::string")]
    pub name: String,
    #[serde(deserialize_with = "lossy::string")]
    pub pathname: String,
    pub scroll_depth: u8,
    #[serde(deserialize_with = "lossy::strings")]
    pub prop_keys: Vec<String>,
    #[serde(deserialize_with = "lossy::strings")]
    pub prop_values: Vec<String>,
    pub completions: u64,
}

/// A page or source with its visitors.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, clickhouse::Row)]
struct Ranked {
    #[serde(deserialize_with = "lossy::string")]
    value: String,
    visitors: u64,
}

/// Completions per event key in the given buckets.
pub async fn goal_key_counts(
    analytics: &Analytics,
    buckets: &[(u64, u32)],
) -> Result<Vec<KeyCount>, AnalyticsError> {
    if buckets.is_empty() {
        return Ok(Vec::new());
    }
    let wanted: HashSet<(u64, u32)> = buckets.iter().copied().collect();
    let mut sites: Vec<u64> = buckets.iter().map(|b| b.0).collect();
    let mut minutes: Vec<u32> = buckets.iter().map(|b| b.1).collect();
    sites.sort_unstable();
    sites.dedup();
    minutes.sort_unstable();
    minutes.dedup();
    let sql = analytics.render(include_str!("sql/goal_key_counts.sql"));
    let mut rows: Vec<KeyCount> = analytics
        .run(|c| c.query(&sql).bind(&sites).bind(&minutes).fetch_all())
        .await?;
    rows.retain(|r| wanted.contains(&(r.site_id, r.minute)));
    Ok(rows)
}

/// A goal as plain values for the visitors queries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoalFilter {
    pub name: String,
    pub path: PathFilter,
    /// An RE2 pattern equivalent to `path`; empty for any path.
    pub path_regex: String,
    pub min_scroll_depth: u8,
    pub max_scroll_depth: u8,
    /// Every `(key, value)` filter of the goal; a value `""` is met by an
    /// event without the key.
    pub props: Vec<(String, String)>,
}

impl GoalFilter {
    /// The property filters as the queries take them: `key\0value` for
    /// each filter with a value, and the keys whose value must read `""`.
    /// (Keys and values come from Postgres text, which never holds `\0`.)
    fn prop_arrays(&self) -> (Vec<String>, Vec<String>) {
        let mut pairs = Vec::new();
        let mut unset = Vec::new();
        for (k, v) in &self.props {
            if v.is_empty() {
                unset.push(k.clone());
            } else {
                pairs.push(format!("{k}\0{v}"));
            }
        }
        (pairs, unset)
    }
}

/// How a goal matches paths, in a form the batch query can take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathFilter {
    Any,
    Exact(String),
    /// `prefix*middle*...*suffix`.
    Glob {
        prefix: String,
        middles: Vec<String>,
        suffix: String,
    },
    /// Only `path_regex` expresses it (a pattern with alternatives).
    RegexOnly,
}

/// One question for [`goal_visitors_batch`]: the distinct visitors who
/// completed a goal on a site in minutes `from_minute..=to_minute`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VisitorRequest {
    pub site_id: u64,
    pub from_minute: u32,
    pub to_minute: u32,
    pub goal: GoalFilter,
}

/// The most glob middle parts the batch query handles; goals with more
/// are asked one by one with a regex.
const BATCH_MIDDLES: usize = 2;

/// Whether the batch query can express the goal's path.
fn batchable(path: &PathFilter) -> bool {
    match path {
        PathFilter::Any | PathFilter::Exact(_) => true,
        PathFilter::Glob { middles, .. } => middles.len() <= BATCH_MIDDLES,
        PathFilter::RegexOnly => false,
    }
}

/// Answers many visitor questions in one query (and the rare goal the
/// batch cannot express, one query each). Answers come in request order.
pub async fn goal_visitors_batch(
    analytics: &Analytics,
    requests: &[VisitorRequest],
) -> Result<Vec<u64>, AnalyticsError> {
    let mut answers = vec![0u64; requests.len()];
    let (batch, single): (Vec<usize>, Vec<usize>) =
        (0..requests.len()).partition(|i| batchable(&requests[*i].goal.path));
    for i in single {
        let r = &requests[i];
        answers[i] =
            goal_visitors(analytics, r.site_id, r.from_minute, r.to_minute, &r.goal).await?;
    }
    for chunk in batch.chunks(BATCH_SIZE) {
        for (idx, visitors) in visitors_chunk(analytics, requests, chunk).await? {
            if let Some(answer) = answers.get_mut(idx as usize) {
                *answer = visitors;
            }
        }
    }
    Ok(answers)
}

/// Requests per batch query, which keeps the query text well under the
/// server's `max_query_size` (raised to 16 MiB by the client too).
const BATCH_SIZE: usize = 1000;

async fn visitors_chunk(
    analytics: &Analytics,
    requests: &[VisitorRequest],
    chunk: &[usize],
) -> Result<Vec<(u32, u64)>, AnalyticsError> {
    let mut cols = BatchColumns::default();
    for i in chunk {
        cols.push(*i as u32, &requests[*i]);
    }
    let mut sites = cols.site.clone();
    sites.sort_unstable();
    sites.dedup();
    let earliest = cols.from.iter().copied().min().unwrap_or(0);
    let sql = analytics.render(include_str!("sql/goal_visitors_batch.sql"));
    analytics
        .run(|c| {
            c.query(&sql)
                .bind(&sites)
                .bind(earliest)
                .bind(&cols.idx)
                .bind(&cols.site)
                .bind(&cols.from)
                .bind(&cols.to)
                .bind(&cols.name)
                .bind(&cols.any)
                .bind(&cols.exact)
                .bind(&cols.path)
                .bind(&cols.prefix)
                .bind(&cols.m1)
                .bind(&cols.m2)
                .bind(&cols.suffix)
                .bind(&cols.min)
                .bind(&cols.max)
                .bind(&cols.pairs.values)
                .bind(&cols.pairs.at)
                .bind(&cols.pairs.len)
                .bind(&cols.unset.values)
                .bind(&cols.unset.at)
                .bind(&cols.unset.len)
                .fetch_all()
        })
        .await
}

/// The batch query's parallel arrays.
#[derive(Default)]
struct BatchColumns {
    idx: Vec<u32>,
    site: Vec<u64>,
    from: Vec<u32>,
    to: Vec<u32>,
    name: Vec<String>,
    any: Vec<u8>,
    exact: Vec<u8>,
    path: Vec<String>,
    prefix: Vec<String>,
    m1: Vec<String>,
    m2: Vec<String>,
    suffix: Vec<String>,
    min: Vec<u8>,
    max: Vec<u8>,
    pairs: Flat,
    unset: Flat,
}

/// A list per request as one flat array, with each request's 1-based
/// offset and length (for `arraySlice`).
#[derive(Default)]
struct Flat {
    values: Vec<String>,
    at: Vec<u32>,
    len: Vec<u32>,
}

impl Flat {
    fn push(&mut self, list: Vec<String>) {
        self.at.push(if list.is_empty() {
            1
        } else {
            self.values.len() as u32 + 1
        });
        self.len.push(list.len() as u32);
        self.values.extend(list);
    }
}

impl BatchColumns {
    fn push(&mut self, idx: u32, r: &VisitorRequest) {
        let g = &r.goal;
        self.idx.push(idx);
        self.site.push(r.site_id);
        self.from.push(r.from_minute);
        self.to.push(r.to_minute);
        self.name.push(g.name.clone());
        let (any, exact, path, prefix, m1, m2, suffix) = match &g.path {
            PathFilter::Any => (1, 0, "", "", "", "", ""),
            PathFilter::Exact(p) => (0, 1, p.as_str(), "", "", "", ""),
            PathFilter::Glob {
                prefix,
                middles,
                suffix,
            } => (
                0,
                0,
                "",
                prefix.as_str(),
                middles.first().map_or("", String::as_str),
                middles.get(1).map_or("", String::as_str),
                suffix.as_str(),
            ),
            // Never batched; matches nothing if it were.
            PathFilter::RegexOnly => (0, 1, "", "", "", "", ""),
        };
        self.any.push(any);
        self.exact.push(exact);
        self.path.push(path.to_string());
        self.prefix.push(prefix.to_string());
        self.m1.push(m1.to_string());
        self.m2.push(m2.to_string());
        self.suffix.push(suffix.to_string());
        self.min.push(g.min_scroll_depth);
        self.max.push(g.max_scroll_depth);
        let (pairs, unset) = g.prop_arrays();
        self.pairs.push(pairs);
        self.unset.push(unset);
    }
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
    let (pairs, unset) = goal.prop_arrays();
    analytics
        .run(|c| {
            c.query(&sql)
                .bind(site_id)
                .bind(from_minute)
                .bind(to_minute)
                .bind(goal.name.as_str())
                .bind(goal.path_regex.as_str())
                .bind(goal.min_scroll_depth)
                .bind(goal.max_scroll_depth)
                .bind(&pairs)
                .bind(&unset)
                .fetch_one::<u64>()
        })
        .await
}

/// One question for [`goal_revenue`]: the revenue of an event goal's
/// completions on a site in minutes `from_minute..=to_minute`, in the
/// goal's currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevenueRequest {
    pub site_id: u64,
    pub from_minute: u32,
    pub to_minute: u32,
    pub goal: GoalFilter,
    pub currency: String,
}

/// The summed `revenue_reporting_amount` (a decimal with three places, as
/// text) of each request, read from the events table, in request order.
pub async fn goal_revenue(
    analytics: &Analytics,
    requests: &[RevenueRequest],
) -> Result<Vec<String>, AnalyticsError> {
    let sql = analytics.render(include_str!("sql/goal_revenue.sql"));
    let mut answers = Vec::with_capacity(requests.len());
    for r in requests {
        let (pairs, unset) = r.goal.prop_arrays();
        let thousandths: i64 = analytics
            .run(|c| {
                c.query(&sql)
                    .bind(r.site_id)
                    .bind(r.from_minute)
                    .bind(r.to_minute)
                    .bind(r.goal.name.as_str())
                    .bind(r.currency.as_str())
                    .bind(&pairs)
                    .bind(&unset)
                    .fetch_one::<i64>()
            })
            .await?;
        answers.push(three_places(thousandths));
    }
    Ok(answers)
}

/// An amount in thousandths as a decimal with exactly three places.
fn three_places(thousandths: i64) -> String {
    let sign = if thousandths < 0 { "-" } else { "" };
    let abs = thousandths.unsigned_abs();
    format!("{sign}{}.{:03}", abs / 1000, abs % 1000)
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
        .run(|c| c.query(&sql).bind(sites).bind(since_minute).fetch_all())
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
        .run(|c| c.query(&sql).bind(sites).fetch_all())
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
    let ranked: Vec<Ranked> = analytics
        .run(|c| c.query(&sql).bind(site_id).bind(since).fetch_all())
        .await?;
    Ok(ranked.into_iter().map(|r| (r.value, r.visitors)).collect())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Top {
    Pages,
    Sources,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revenue_has_exactly_three_places() {
        assert_eq!(three_places(12_500), "12.500");
        assert_eq!(three_places(0), "0.000");
        assert_eq!(three_places(-3_000), "-3.000");
        assert_eq!(three_places(-1), "-0.001");
        assert_eq!(three_places(1), "0.001");
        assert_eq!(three_places(i64::MIN), "-9223372036854775.808");
    }
}
