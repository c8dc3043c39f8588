//! The outbox as the delivery scheduler uses it: leasing due deliveries and
//! recording what happened, in batches.
//!
//! Every value of a row is read with `try_get`: the web app and operators
//! write these rows, and a value the daemon cannot read (an infinite time,
//! say) skips or fails that one delivery, never the task that read it.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use tokio_postgres::Row;

use super::StoreError;

/// A delivery's status, as `webhook_deliveries.status` holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Waiting for an attempt (a retry, after a failed one).
    Pending,
    Succeeded,
    /// Given up.
    Failed,
}

impl Status {
    pub const ALL: [Status; 3] = [Status::Pending, Status::Succeeded, Status::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
        }
    }

    /// The status a `webhook_deliveries.status` value names.
    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

impl serde::Serialize for Status {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Why an attempt failed, as `webhook_delivery_attempts.error_kind` holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The receiver answered 410 Gone.
    Gone,
    /// A chat service said its hook was revoked or deleted (Slack's
    /// `no_service`, Discord's Unknown Webhook, ...).
    Revoked,
    /// A 3xx (redirects are not followed).
    Redirect,
    /// A 429.
    RateLimited,
    /// Any other status that is not 2xx.
    Status,
    /// The egress policy refused every address.
    Blocked,
    /// The name did not resolve.
    Dns,
    /// No connection.
    Connect,
    /// No complete response in time.
    Timeout,
    /// The connection broke or the response was not valid HTTP.
    Protocol,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Gone => "gone",
            ErrorKind::Revoked => "revoked",
            ErrorKind::Redirect => "redirect",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::Status => "status",
            ErrorKind::Blocked => "blocked",
            ErrorKind::Dns => "dns",
            ErrorKind::Connect => "connect",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Protocol => "protocol",
        }
    }
}

/// A leased delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    pub id: String,
    pub webhook_id: i64,
    /// The lease's token, which its outcome carries.
    pub lease_token: String,
    pub payload: String,
    /// Attempts made before this one.
    pub attempts: i32,
    /// When it fell due.
    pub next_attempt_at: DateTime<Utc>,
    pub inserted_at: DateTime<Utc>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    /// When its event was triggered (`triggered_at`), if known.
    pub triggered_at: Option<DateTime<Utc>>,
}

/// A leased delivery with a value that cannot be read: it is failed with
/// `problem` as its `last_error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    pub id: String,
    pub webhook_id: i64,
    pub lease_token: String,
    pub problem: String,
}

/// Reads one column, or says which one could not be read.
fn column<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a Row,
    name: &str,
) -> Result<T, String> {
    row.try_get(name).map_err(|e| {
        tracing::debug!(column = name, error = %e, "unreadable delivery column");
        format!(
            "the delivery's {name} cannot be read (an infinite or out-of-range value?); correct it and replay the delivery"
        )
    })
}

impl Claimed {
    /// A leased row: `Ok` if every value reads, `Err` (to fail it) if only
    /// its id, webhook and token do, `None` (logged) if not even those.
    fn from_row(row: &Row) -> Option<Result<Claimed, Unreadable>> {
        let (id, webhook_id, lease_token) = match (
            column::<String>(row, "id"),
            column::<i64>(row, "webhook_id"),
            column::<String>(row, "lease_token"),
        ) {
            (Ok(id), Ok(w), Ok(t)) => (id, w, t),
            (id, _, _) => {
                tracing::warn!(delivery_id = ?id.ok(), "a leased delivery cannot be read; its lease runs out unused");
                return None;
            }
        };
        let rest = (|| {
            Ok::<_, String>((
                column::<String>(row, "payload")?,
                column::<i32>(row, "attempts")?,
                column::<DateTime<Utc>>(row, "next_attempt_at")?,
                column::<DateTime<Utc>>(row, "inserted_at")?,
                column::<Option<DateTime<Utc>>>(row, "last_attempt_at")?,
            ))
        })();
        Some(match rest {
            Ok((payload, attempts, next_attempt_at, inserted_at, last_attempt_at)) => Ok(Claimed {
                id,
                webhook_id,
                lease_token,
                payload,
                attempts,
                next_attempt_at,
                inserted_at,
                last_attempt_at,
                // Only the latency metric reads it: unreadable is unknown.
                triggered_at: column::<Option<DateTime<Utc>>>(row, "triggered_at")
                    .ok()
                    .flatten(),
            }),
            Err(problem) => Err(Unreadable {
                id,
                webhook_id,
                lease_token,
                problem,
            }),
        })
    }
}

/// Leases those of `ids` that are still due for `lease_secs`, and returns
/// them. An id not returned is not pending, not yet due, or leased by a live
/// worker.
pub async fn lease(
    pool: &Pool,
    ids: &[&str],
    lease_secs: f64,
) -> Result<Vec<Result<Claimed, Unreadable>>, StoreError> {
    let client = pool.get().await?;
    // The scheduler's hot statements are prepared once per connection.
    let statement = client
        .prepare_cached(include_str!("sql/deliveries_lease.sql"))
        .await?;
    let rows = client.query(&statement, &[&ids, &lease_secs]).await?;
    Ok(rows.iter().filter_map(Claimed::from_row).collect())
}

/// When a pending delivery can next be leased.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Due {
    /// Milliseconds since the Unix epoch, at least 0 (`-infinity` reads as
    /// 0: due, and failed when leased since it cannot be read).
    At(i64),
    /// `infinity`: never.
    Never,
}

/// A pending delivery, and when it can next be leased.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    pub id: String,
    pub webhook_id: i64,
    pub due: Due,
}

impl Pending {
    /// `None` (logged with its id) for a row that cannot be read.
    fn from_row(row: &Row) -> Option<Pending> {
        let id = column::<String>(row, "id");
        let read = (|| {
            let ms = column::<f64>(row, "due_ms")?;
            let due = if ms.is_nan() {
                return Err("its due time is not a number".to_string());
            } else if ms == f64::INFINITY {
                Due::Never
            } else {
                // -infinity (or any time before 1970) is due at the epoch.
                Due::At(ms.max(0.0) as i64)
            };
            Ok((column::<i64>(row, "webhook_id")?, due))
        })();
        match (id, read) {
            (Ok(id), Ok((webhook_id, due))) => Some(Pending {
                id,
                webhook_id,
                due,
            }),
            (id, read) => {
                tracing::warn!(delivery_id = ?id.ok(), problem = ?read.err(), "skipping a pending delivery that cannot be read");
                None
            }
        }
    }
}

/// Those of `ids` that are still pending.
pub async fn pending_among(pool: &Pool, ids: &[&str]) -> Result<Vec<Pending>, StoreError> {
    let client = pool.get().await?;
    let rows = client
        .query(include_str!("sql/deliveries_pending_due.sql"), &[&ids])
        .await?;
    Ok(rows.iter().filter_map(Pending::from_row).collect())
}

/// Up to `limit` pending deliveries, soonest first, handed to `each` as
/// they stream in. A row that cannot be read is skipped (and logged).
pub async fn pending(
    pool: &Pool,
    limit: i64,
    mut each: impl FnMut(Pending),
) -> Result<(), StoreError> {
    use futures_util::TryStreamExt;
    let client = pool.get().await?;
    let rows = client
        .query_raw(
            include_str!("sql/deliveries_pending.sql"),
            std::iter::once(limit),
        )
        .await?;
    futures_util::pin_mut!(rows);
    while let Some(row) = rows.try_next().await? {
        if let Some(p) = Pending::from_row(&row) {
            each(p);
        }
    }
    Ok(())
}

/// Postgres's clock, read with `clock_timestamp()`.
pub async fn postgres_now(pool: &Pool) -> Result<DateTime<Utc>, StoreError> {
    let client = pool.get().await?;
    let statement = client
        .prepare_cached(include_str!("sql/postgres_now.sql"))
        .await?;
    Ok(client.query_one(&statement, &[]).await?.try_get(0)?)
}

/// One delivery's new state after an attempt (or after being given up).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub id: String,
    pub webhook_id: i64,
    /// The token of the lease the attempt was made on.
    pub lease_token: String,
    /// `Pending` to retry.
    pub status: Status,
    /// A request was made: the delivery's attempt count goes up by one.
    pub requested: bool,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub attempted_at: DateTime<Utc>,
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub delivered_at: Option<DateTime<Utc>>,
    /// The attempt to log, if a request was made (numbered when stored).
    pub attempt: Option<Attempt>,
    /// Disable the webhook with this reason (a 410 Gone).
    pub disable: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub started_at: DateTime<Utc>,
    pub duration_ms: i32,
    pub status_code: Option<i32>,
    pub error_kind: Option<ErrorKind>,
    pub error: Option<String>,
    pub snippet: Option<String>,
}

/// When an endpoint counts as dead: all its attempts failing for
/// `after_secs`; it is then disabled with `reason`.
#[derive(Debug, Clone)]
pub struct DeadEndpoints {
    pub after_secs: f64,
    pub reason: String,
}

/// What a batch of outcomes did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recorded {
    /// The webhooks it disabled.
    pub disabled: Vec<i64>,
    /// The outcomes fenced off: their delivery was no longer pending under
    /// their lease (taken over, replayed, settled or deleted), so only
    /// their attempt was logged.
    pub fenced: Vec<String>,
}

/// Writes a batch of outcomes in one transaction: the deliveries still
/// leased by the attempts, every attempt (late ones too), endpoint health,
/// and the webhooks to disable (a 410, or a dead endpoint).
pub async fn record(
    pool: &Pool,
    outcomes: &[Outcome],
    dead: &DeadEndpoints,
) -> Result<Recorded, StoreError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    // The attempt number of each delivery recorded or counted.
    let mut numbers = update_deliveries(&tx, outcomes).await?;
    let fenced: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| !numbers.contains_key(&o.id))
        .collect();
    count_late_requests(&tx, &fenced, &mut numbers).await?;
    let logged: Vec<(&Outcome, &Attempt, i32)> = outcomes
        .iter()
        .filter_map(|o| Some((o, o.attempt.as_ref()?, *numbers.get(&o.id)?)))
        .collect();
    if !logged.is_empty() {
        insert_attempts(&tx, &logged).await?;
        update_endpoint_health(&tx, &logged).await?;
    }
    let disabled = disable_webhooks(&tx, outcomes, &logged, dead).await?;
    tx.commit().await?;
    Ok(Recorded {
        disabled,
        fenced: fenced.into_iter().map(|o| o.id.clone()).collect(),
    })
}

/// The fenced update of the deliveries; the ids it changed, with their new
/// attempt count.
async fn update_deliveries(
    tx: &deadpool_postgres::Transaction<'_>,
    outcomes: &[Outcome],
) -> Result<HashMap<String, i32>, StoreError> {
    let ids: Vec<&str> = outcomes.iter().map(|o| o.id.as_str()).collect();
    let tokens: Vec<&str> = outcomes.iter().map(|o| o.lease_token.as_str()).collect();
    let statuses: Vec<&str> = outcomes.iter().map(|o| o.status.as_str()).collect();
    let requested: Vec<bool> = outcomes.iter().map(|o| o.requested).collect();
    let next: Vec<Option<DateTime<Utc>>> = outcomes.iter().map(|o| o.next_attempt_at).collect();
    let at: Vec<DateTime<Utc>> = outcomes.iter().map(|o| o.attempted_at).collect();
    let codes: Vec<Option<i32>> = outcomes.iter().map(|o| o.status_code).collect();
    let errors: Vec<Option<&str>> = outcomes.iter().map(|o| o.error.as_deref()).collect();
    let delivered: Vec<Option<DateTime<Utc>>> = outcomes.iter().map(|o| o.delivered_at).collect();
    let rows = tx
        .query(
            &tx.prepare_cached(include_str!("sql/deliveries_record.sql"))
                .await?,
            &[
                &ids, &tokens, &statuses, &requested, &next, &at, &codes, &errors, &delivered,
            ],
        )
        .await?;
    numbered(&rows)
}

/// Counts the logged requests of fenced outcomes in their deliveries'
/// attempts, so that their attempts keep numbers of their own.
async fn count_late_requests(
    tx: &deadpool_postgres::Transaction<'_>,
    fenced: &[&Outcome],
    numbers: &mut HashMap<String, i32>,
) -> Result<(), StoreError> {
    let late: Vec<(&str, DateTime<Utc>)> = fenced
        .iter()
        .filter_map(|o| Some((o.id.as_str(), o.attempt.as_ref()?.started_at)))
        .collect();
    if late.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = late.iter().map(|(id, _)| *id).collect();
    let started: Vec<DateTime<Utc>> = late.iter().map(|(_, at)| *at).collect();
    let rows = tx
        .query(
            include_str!("sql/deliveries_count_late.sql"),
            &[&ids, &started],
        )
        .await?;
    numbers.extend(numbered(&rows)?);
    Ok(())
}

fn numbered(rows: &[Row]) -> Result<HashMap<String, i32>, StoreError> {
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}

async fn insert_attempts(
    tx: &deadpool_postgres::Transaction<'_>,
    logged: &[(&Outcome, &Attempt, i32)],
) -> Result<(), StoreError> {
    let ids: Vec<&str> = logged.iter().map(|(o, _, _)| o.id.as_str()).collect();
    let numbers: Vec<i32> = logged.iter().map(|(_, _, n)| *n).collect();
    let started: Vec<DateTime<Utc>> = logged.iter().map(|(_, a, _)| a.started_at).collect();
    let durations: Vec<i32> = logged.iter().map(|(_, a, _)| a.duration_ms).collect();
    let codes: Vec<Option<i32>> = logged.iter().map(|(_, a, _)| a.status_code).collect();
    let kinds: Vec<Option<&str>> = logged
        .iter()
        .map(|(_, a, _)| a.error_kind.map(ErrorKind::as_str))
        .collect();
    let errors: Vec<Option<&str>> = logged.iter().map(|(_, a, _)| a.error.as_deref()).collect();
    let snippets: Vec<Option<&str>> = logged
        .iter()
        .map(|(_, a, _)| a.snippet.as_deref())
        .collect();
    tx.execute(
        &tx.prepare_cached(include_str!("sql/attempts_insert.sql"))
            .await?,
        &[
            &ids, &numbers, &started, &durations, &codes, &kinds, &errors, &snippets,
        ],
    )
    .await?;
    Ok(())
}

/// Every logged attempt, late ones too, was a real request to its
/// endpoint, and counts in its health.
async fn update_endpoint_health(
    tx: &deadpool_postgres::Transaction<'_>,
    logged: &[(&Outcome, &Attempt, i32)],
) -> Result<(), StoreError> {
    let webhooks: Vec<i64> = logged.iter().map(|(o, _, _)| o.webhook_id).collect();
    let ok: Vec<bool> = logged
        .iter()
        .map(|(o, _, _)| o.status == Status::Succeeded)
        .collect();
    let at: Vec<DateTime<Utc>> = logged.iter().map(|(_, a, _)| a.started_at).collect();
    tx.execute(
        &tx.prepare_cached(include_str!("sql/endpoint_health_update.sql"))
            .await?,
        &[&webhooks, &ok, &at],
    )
    .await?;
    Ok(())
}

/// Disables the webhooks that answered 410 and those whose endpoint has
/// been failing for `dead.after_secs`; returns their ids.
async fn disable_webhooks(
    tx: &deadpool_postgres::Transaction<'_>,
    outcomes: &[Outcome],
    logged: &[(&Outcome, &Attempt, i32)],
    dead: &DeadEndpoints,
) -> Result<Vec<i64>, StoreError> {
    let mut disabled = Vec::new();
    for o in outcomes {
        let Some(reason) = &o.disable else { continue };
        let changed = tx
            .execute(
                include_str!("sql/webhooks_disable.sql"),
                &[&o.webhook_id, reason],
            )
            .await?;
        if changed > 0 {
            disabled.push(o.webhook_id);
        }
    }
    let failing: Vec<i64> = logged
        .iter()
        .filter(|(o, _, _)| o.status != Status::Succeeded)
        .map(|(o, _, _)| o.webhook_id)
        .collect();
    if !failing.is_empty() {
        for row in tx
            .query(
                &tx.prepare_cached(include_str!("sql/webhooks_disable_dead.sql"))
                    .await?,
                &[&failing, &dead.after_secs, &dead.reason],
            )
            .await?
        {
            disabled.push(row.try_get(0)?);
        }
    }
    Ok(disabled)
}
