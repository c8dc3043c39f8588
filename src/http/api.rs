//! The admin JSON API, `/api/v1/...`: the status page's data, and replays
//! and test deliveries (`store::manage`'s, as the CLI makes them). Always
//! behind the bearer token, on loopback too. docs/admin-api.md describes it.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde_json::json;

use super::AppState;
use super::auth::Access;
use super::views;
use crate::store::StoreError;
use crate::store::deliveries::Status;
use crate::store::manage;
use crate::store::status::{self, Cursor, DeliveryFilter, WebhookHealth};

const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 500;

pub(super) enum ApiError {
    Unauthorized,
    NoToken,
    NotFound(&'static str),
    BadRequest(String),
    Conflict(&'static str),
    Store(StoreError),
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::Store(e)
    }
}

impl From<deadpool_postgres::PoolError> for ApiError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        ApiError::Store(StoreError::Checkout(e))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            ApiError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "a valid Authorization: Bearer token is required".to_string(),
            ),
            ApiError::NoToken => (
                StatusCode::FORBIDDEN,
                "the admin API is off: set http.admin_token".to_string(),
            ),
            ApiError::NotFound(what) => (StatusCode::NOT_FOUND, what.to_string()),
            ApiError::BadRequest(why) => (StatusCode::BAD_REQUEST, why),
            ApiError::Conflict(why) => (StatusCode::CONFLICT, why.to_string()),
            ApiError::Store(e) => {
                tracing::warn!(error = %e, "admin api read failed");
                (StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            }
        };
        let mut response = (status, Json(json!({ "error": message }))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

fn allowed(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    match state.auth.api(headers) {
        Access::Granted => Ok(()),
        Access::Refused => Err(ApiError::Unauthorized),
        Access::NoToken => Err(ApiError::NoToken),
    }
}

/// A webhook as the API shows it: its URL redacted, its health in a word.
#[derive(serde::Serialize)]
struct WebhookJson<'a> {
    #[serde(flatten)]
    webhook: &'a WebhookHealth,
    url: String,
    health: &'static str,
}

fn webhook_json(w: &WebhookHealth) -> serde_json::Value {
    serde_json::to_value(WebhookJson {
        webhook: w,
        url: views::shown_url(w),
        health: w.health(),
    })
    .unwrap_or_default()
}

pub(super) async fn overview(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    allowed(&state, &headers)?;
    let client = state.pool.get().await?;
    let overview = status::overview(&**client).await?;
    let (hour, day) = overview.goal.shares();
    let report = state.health.report();
    Ok(Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "role": report.role(),
        "tasks": report.tasks,
        "overview": overview,
        "delivered_within_30s": { "hour": hour, "day": day },
    })))
}

pub(super) async fn webhooks(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    allowed(&state, &headers)?;
    let client = state.pool.get().await?;
    let list = status::webhooks(&**client).await?;
    Ok(Json(json!({
        "webhooks": list.iter().map(webhook_json).collect::<Vec<_>>(),
    })))
}

pub(super) async fn webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<Json<serde_json::Value>, ApiError> {
    allowed(&state, &headers)?;
    let client = state.pool.get().await?;
    let webhook = status::webhook(&**client, id)
        .await?
        .ok_or(ApiError::NotFound("no webhook has this id"))?;
    let stats = status::webhook_stats(&**client, id).await?;
    Ok(Json(json!({
        "webhook": webhook_json(&webhook),
        "stats": {
            "attempts": stats.attempts,
            "succeeded_attempts": stats.succeeded_attempts,
            "success_rate": stats.success_rate(),
            "p50_ms": stats.p50_ms,
            "p95_ms": stats.p95_ms,
            "hourly": stats.hourly,
        },
    })))
}

#[derive(serde::Deserialize, Default)]
pub(super) struct ListQuery {
    status: Option<String>,
    event_type: Option<String>,
    since: Option<String>,
    until: Option<String>,
    cursor: Option<String>,
    limit: Option<i64>,
}

fn parse_time(name: &str, value: Option<&str>) -> Result<Option<DateTime<Utc>>, ApiError> {
    value
        .map(|v| {
            DateTime::parse_from_rfc3339(v)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| ApiError::BadRequest(format!("{name} must be an RFC 3339 time")))
        })
        .transpose()
}

impl ListQuery {
    fn filter(&self) -> Result<(DeliveryFilter, i64), ApiError> {
        let status = self
            .status
            .as_deref()
            .map(|s| {
                Status::parse(s).ok_or_else(|| {
                    ApiError::BadRequest("status must be pending, succeeded or failed".into())
                })
            })
            .transpose()?;
        let after = self
            .cursor
            .as_deref()
            .map(|c| Cursor::decode(c).ok_or_else(|| ApiError::BadRequest("invalid cursor".into())))
            .transpose()?;
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ApiError::BadRequest(format!(
                "limit must be between 1 and {MAX_LIMIT}"
            )));
        }
        Ok((
            DeliveryFilter {
                status,
                event_type: self.event_type.clone(),
                since: parse_time("since", self.since.as_deref())?,
                until: parse_time("until", self.until.as_deref())?,
                after,
            },
            limit,
        ))
    }
}

pub(super) async fn deliveries(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Query(query): Query<ListQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    allowed(&state, &headers)?;
    let (filter, limit) = query.filter()?;
    let client = state.pool.get().await?;
    if status::webhook(&**client, id).await?.is_none() {
        return Err(ApiError::NotFound("no webhook has this id"));
    }
    let mut list = status::deliveries(&**client, id, &filter, limit + 1).await?;
    let next = (list.len() as i64 > limit).then(|| {
        list.truncate(limit as usize);
        list.last().map(|d| status::Cursor::after(d).encode())
    });
    Ok(Json(json!({
        "deliveries": list,
        "next_cursor": next.flatten(),
    })))
}

pub(super) async fn delivery(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    allowed(&state, &headers)?;
    let client = state.pool.get().await?;
    let delivery = manage::get_delivery(&**client, &id)
        .await?
        .ok_or(ApiError::NotFound("no delivery has this id"))?;
    let attempts = manage::attempts_of(&**client, &id).await?;
    Ok(Json(json!({ "delivery": delivery, "attempts": attempts })))
}

pub(super) async fn attempts(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    allowed(&state, &headers)?;
    let client = state.pool.get().await?;
    if manage::get_delivery(&**client, &id).await?.is_none() {
        return Err(ApiError::NotFound("no delivery has this id"));
    }
    let attempts = manage::attempts_of(&**client, &id).await?;
    Ok(Json(json!({ "attempts": attempts })))
}

pub(super) async fn replay_delivery(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    allowed(&state, &headers)?;
    let client = state.pool.get().await?;
    if manage::replay_delivery(&**client, &id).await? {
        return Ok((StatusCode::ACCEPTED, Json(json!({ "replayed": [id] }))));
    }
    match manage::get_delivery(&**client, &id).await? {
        None => Err(ApiError::NotFound("no delivery has this id")),
        Some(_) => Err(ApiError::Conflict("only a failed delivery can be replayed")),
    }
}

#[derive(serde::Deserialize)]
pub(super) struct ReplayBody {
    since: String,
}

pub(super) async fn replay_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    body: Result<Json<ReplayBody>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    allowed(&state, &headers)?;
    let Json(body) = body.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let since = parse_time("since", Some(&body.since))?.unwrap_or_default();
    let client = state.pool.get().await?;
    if status::webhook(&**client, id).await?.is_none() {
        return Err(ApiError::NotFound("no webhook has this id"));
    }
    let ids = manage::replay_since(&**client, id, since).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "replayed": ids }))))
}

pub(super) async fn test_delivery(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    allowed(&state, &headers)?;
    let client = state.pool.get().await?;
    let webhook = status::webhook(&**client, id)
        .await?
        .ok_or(ApiError::NotFound("no webhook has this id"))?;
    let payload = manage::test_payload(webhook.site_id, webhook.id, Utc::now());
    let delivery_id = manage::insert_test_delivery(&**client, id, &payload).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "delivery_id": delivery_id })),
    ))
}
