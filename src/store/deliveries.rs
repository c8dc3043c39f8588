//! The outbox as the delivery scheduler uses it: leasing due deliveries and
//! recording what happened, in batches.

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;

use super::StoreError;

/// A leased delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    pub id: String,
    pub webhook_id: i64,
    pub event_type: String,
    pub payload: String,
    /// Attempts made before this one.
    pub attempts: i32,
    /// When it fell due.
    pub next_attempt_at: DateTime<Utc>,
    pub inserted_at: DateTime<Utc>,
    pub last_attempt_at: Option<DateTime<Utc>>,
}

/// Leases those of `ids` that are still due for `lease_secs`, and returns
/// them. An id not returned is not pending, not yet due, or leased by a live
/// worker.
pub async fn lease(pool: &Pool, ids: &[&str], lease_secs: f64) -> Result<Vec<Claimed>, StoreError> {
    let client = pool.get().await?;
    // The scheduler's hot statements are prepared once per connection.
    let statement = client
        .prepare_cached(include_str!("sql/deliveries_lease.sql"))
        .await?;
    let rows = client.query(&statement, &[&ids, &lease_secs]).await?;
    Ok(rows
        .iter()
        .map(|r| Claimed {
            id: r.get("id"),
            webhook_id: r.get("webhook_id"),
            event_type: r.get("event_type"),
            payload: r.get("payload"),
            attempts: r.get("attempts"),
            next_attempt_at: r.get("next_attempt_at"),
            inserted_at: r.get("inserted_at"),
            last_attempt_at: r.get("last_attempt_at"),
        })
        .collect())
}

/// A pending delivery, and when it can next be leased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub id: String,
    pub webhook_id: i64,
    pub due: DateTime<Utc>,
}

impl Pending {
    fn from_row(row: &tokio_postgres::Row) -> Pending {
        Pending {
            id: row.get("id"),
            webhook_id: row.get("webhook_id"),
            due: row.get("due"),
        }
    }
}

/// Those of `ids` that are still pending.
pub async fn pending_among(pool: &Pool, ids: &[&str]) -> Result<Vec<Pending>, StoreError> {
    let client = pool.get().await?;
    let rows = client
        .query(include_str!("sql/deliveries_pending_due.sql"), &[&ids])
        .await?;
    Ok(rows.iter().map(Pending::from_row).collect())
}

/// Up to `limit` pending deliveries, soonest first, handed to `each` as
/// they stream in.
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
        each(Pending::from_row(&row));
    }
    Ok(())
}

/// One delivery's new state after an attempt (or after being given up).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub id: String,
    pub webhook_id: i64,
    /// `pending` (to retry), `succeeded` or `failed`.
    pub status: &'static str,
    pub attempts: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub attempted_at: DateTime<Utc>,
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub delivered_at: Option<DateTime<Utc>>,
    /// The attempt to log, if a request was made.
    pub attempt: Option<Attempt>,
    /// Disable the webhook with this reason (a 410 Gone).
    pub disable: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub number: i32,
    pub started_at: DateTime<Utc>,
    pub duration_ms: i32,
    pub status_code: Option<i32>,
    pub error_kind: Option<&'static str>,
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

/// Writes a batch of outcomes in one transaction: the deliveries, their
/// attempts, endpoint health, and the webhooks to disable (a 410, or a dead
/// endpoint). Returns the ids of the webhooks it disabled.
pub async fn record(
    pool: &Pool,
    outcomes: &[Outcome],
    dead: &DeadEndpoints,
) -> Result<Vec<i64>, StoreError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;

    let ids: Vec<&str> = outcomes.iter().map(|o| o.id.as_str()).collect();
    let statuses: Vec<&str> = outcomes.iter().map(|o| o.status).collect();
    let attempts: Vec<i32> = outcomes.iter().map(|o| o.attempts).collect();
    let next: Vec<Option<DateTime<Utc>>> = outcomes.iter().map(|o| o.next_attempt_at).collect();
    let at: Vec<DateTime<Utc>> = outcomes.iter().map(|o| o.attempted_at).collect();
    let codes: Vec<Option<i32>> = outcomes.iter().map(|o| o.status_code).collect();
    let errors: Vec<Option<&str>> = outcomes.iter().map(|o| o.error.as_deref()).collect();
    let delivered: Vec<Option<DateTime<Utc>>> = outcomes.iter().map(|o| o.delivered_at).collect();
    tx.execute(
        &tx.prepare_cached(include_str!("sql/deliveries_record.sql"))
            .await?,
        &[
            &ids, &statuses, &attempts, &next, &at, &codes, &errors, &delivered,
        ],
    )
    .await?;

    let logged: Vec<(&Outcome, &Attempt)> = outcomes
        .iter()
        .filter_map(|o| o.attempt.as_ref().map(|a| (o, a)))
        .collect();
    if !logged.is_empty() {
        let ids: Vec<&str> = logged.iter().map(|(o, _)| o.id.as_str()).collect();
        let numbers: Vec<i32> = logged.iter().map(|(_, a)| a.number).collect();
        let started: Vec<DateTime<Utc>> = logged.iter().map(|(_, a)| a.started_at).collect();
        let durations: Vec<i32> = logged.iter().map(|(_, a)| a.duration_ms).collect();
        let codes: Vec<Option<i32>> = logged.iter().map(|(_, a)| a.status_code).collect();
        let kinds: Vec<Option<&str>> = logged.iter().map(|(_, a)| a.error_kind).collect();
        let errors: Vec<Option<&str>> = logged.iter().map(|(_, a)| a.error.as_deref()).collect();
        let snippets: Vec<Option<&str>> =
            logged.iter().map(|(_, a)| a.snippet.as_deref()).collect();
        tx.execute(
            &tx.prepare_cached(include_str!("sql/attempts_insert.sql"))
                .await?,
            &[
                &ids, &numbers, &started, &durations, &codes, &kinds, &errors, &snippets,
            ],
        )
        .await?;

        let webhooks: Vec<i64> = logged.iter().map(|(o, _)| o.webhook_id).collect();
        let ok: Vec<bool> = logged
            .iter()
            .map(|(o, _)| o.status == "succeeded")
            .collect();
        let at: Vec<DateTime<Utc>> = logged.iter().map(|(_, a)| a.started_at).collect();
        tx.execute(
            &tx.prepare_cached(include_str!("sql/endpoint_health_update.sql"))
                .await?,
            &[&webhooks, &ok, &at],
        )
        .await?;
    }

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
    let failing: Vec<i64> = outcomes
        .iter()
        .filter(|o| o.attempt.is_some() && o.status != "succeeded")
        .map(|o| o.webhook_id)
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
            disabled.push(row.get(0));
        }
    }
    tx.commit().await?;
    Ok(disabled)
}
