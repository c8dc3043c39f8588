//! The status page: server-rendered HTML (askama, compile-time templates,
//! no JavaScript), read-only. Every value is escaped by the templates.

use askama::Template;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};

use super::AppState;
use super::auth::{self, Access};
use super::views::{self, AttemptRow, Bar, DeliveryRow, Figures, SiteRows};
use crate::store::StoreError;
use crate::store::manage;
use crate::store::status::{self, Cursor, DeliveryFilter, Overview};

/// Deliveries per page of a webhook's log.
const PAGE: i64 = 50;

#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewPage {
    version: &'static str,
    tasks_alive: usize,
    tasks_total: usize,
    tasks_detail: String,
    role: &'static str,
    overview: Overview,
    figures: Figures,
    sites: Vec<SiteRows>,
    now: String,
}

#[derive(Template)]
#[template(path = "webhook.html")]
struct WebhookPage {
    id: i64,
    health: &'static str,
    settings: Vec<(&'static str, String)>,
    state: Vec<(&'static str, String)>,
    bars: Vec<Bar>,
    chart_max: i64,
    chart_width: i64,
    chart_height: i64,
    deliveries: Vec<DeliveryRow>,
    first_page: bool,
    next_page: Option<String>,
}

#[derive(Template)]
#[template(path = "delivery.html")]
struct DeliveryPage {
    id: String,
    webhook_id: i64,
    webhook_url: String,
    summary: Vec<(&'static str, String)>,
    attempts: Vec<AttemptRow>,
    payload: String,
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    error: Option<&'static str>,
}

#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage<'a> {
    title: &'a str,
    message: &'a str,
}

/// Why a page is not shown.
pub(super) enum PageError {
    Login,
    Forbidden,
    NotFound(&'static str),
    Store(StoreError),
}

impl From<StoreError> for PageError {
    fn from(e: StoreError) -> Self {
        PageError::Store(e)
    }
}

impl From<deadpool_postgres::PoolError> for PageError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        PageError::Store(StoreError::Checkout(e))
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            PageError::Login => Redirect::to("/login").into_response(),
            PageError::Forbidden => message(
                StatusCode::FORBIDDEN,
                "Not available",
                "The status page needs http.admin_token when the admin server listens on a non-loopback address.",
            ),
            PageError::NotFound(what) => message(StatusCode::NOT_FOUND, "Not found", what),
            PageError::Store(e) => {
                tracing::warn!(error = %e, "status page read failed");
                message(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Postgres did not answer",
                    &e.to_string(),
                )
            }
        }
    }
}

fn message(status: StatusCode, title: &str, message: &str) -> Response {
    render(status, &MessagePage { title, message })
}

fn render(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => {
            let mut response = (status, html).into_response();
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            headers.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; frame-ancestors 'none'",
                ),
            );
            headers.insert(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            );
            response
        }
        Err(e) => {
            tracing::error!(error = %e, "status page template failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "template error\n").into_response()
        }
    }
}

fn allowed(state: &AppState, headers: &HeaderMap) -> Result<(), PageError> {
    match state.auth.page(headers) {
        Access::Granted => Ok(()),
        Access::Refused => Err(PageError::Login),
        Access::NoToken => Err(PageError::Forbidden),
    }
}

pub(super) async fn overview(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    allowed(&state, &headers)?;
    let client = state.pool.get().await?;
    let overview = status::overview(&**client).await?;
    let webhooks = status::webhooks(&**client).await?;
    let report = state.health.report();
    let down: Vec<&str> = report
        .tasks
        .iter()
        .filter(|t| !t.alive || t.stalled)
        .map(|t| t.name)
        .collect();
    let page = OverviewPage {
        version: env!("CARGO_PKG_VERSION"),
        tasks_alive: report.tasks.len() - down.len(),
        tasks_total: report.tasks.len(),
        tasks_detail: if down.is_empty() {
            "all beating".to_string()
        } else {
            format!("down: {}", down.join(", "))
        },
        role: report.role().unwrap_or("none"),
        figures: Figures::of(&overview),
        now: views::time(Some(overview.now)),
        overview,
        sites: views::sites(&webhooks),
    };
    Ok(render(StatusCode::OK, &page))
}

#[derive(serde::Deserialize)]
pub(super) struct WebhookQuery {
    after: Option<String>,
}

pub(super) async fn webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Query(query): Query<WebhookQuery>,
) -> Result<Response, PageError> {
    allowed(&state, &headers)?;
    let client = state.pool.get().await?;
    let webhook = status::webhook(&**client, id)
        .await?
        .ok_or(PageError::NotFound("No webhook has this id."))?;
    let stats = status::webhook_stats(&**client, id).await?;
    let filter = DeliveryFilter {
        after: query.after.as_deref().and_then(Cursor::decode),
        ..DeliveryFilter::default()
    };
    let mut deliveries = status::deliveries(&**client, id, &filter, PAGE + 1).await?;
    let next_page = (deliveries.len() as i64 > PAGE).then(|| {
        deliveries.truncate(PAGE as usize);
        deliveries.last().map(|d| status::Cursor::after(d).encode())
    });
    let (bars, chart_max) = views::bars(&stats.hourly);
    let page = WebhookPage {
        id,
        health: webhook.health(),
        settings: views::settings(&webhook),
        state: views::state(&webhook, &stats),
        chart_width: bars.len() as i64 * views::BAR_WIDTH,
        chart_height: views::CHART_HEIGHT,
        bars,
        chart_max,
        deliveries: deliveries.iter().map(DeliveryRow::of).collect(),
        first_page: filter.after.is_none(),
        next_page: next_page.flatten(),
    };
    Ok(render(StatusCode::OK, &page))
}

pub(super) async fn delivery(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    allowed(&state, &headers)?;
    let client = state.pool.get().await?;
    let delivery = manage::get_delivery(&**client, &id)
        .await?
        .ok_or(PageError::NotFound("No delivery has this id."))?;
    let attempts = manage::attempts_of(&**client, &id).await?;
    let webhook_url = status::webhook(&**client, delivery.webhook_id)
        .await?
        .map(|w| views::shown_url(&w))
        .unwrap_or_default();
    let page = DeliveryPage {
        summary: views::delivery_summary(&delivery),
        payload: views::pretty_payload(&delivery),
        attempts: attempts.iter().map(AttemptRow::of).collect(),
        webhook_id: delivery.webhook_id,
        webhook_url,
        id: delivery.id,
    };
    Ok(render(StatusCode::OK, &page))
}

pub(super) async fn login_form(State(state): State<AppState>) -> Response {
    if !state.auth.has_token() {
        return Redirect::to("/").into_response();
    }
    render(StatusCode::OK, &LoginPage { error: None })
}

#[derive(serde::Deserialize)]
pub(super) struct LoginForm {
    token: String,
}

pub(super) async fn login(State(state): State<AppState>, Form(form): Form<LoginForm>) -> Response {
    match state.auth.session_cookie() {
        Some(cookie) if state.auth.login_matches(&form.token) => {
            let mut response = Redirect::to("/").into_response();
            if let Ok(value) = HeaderValue::from_str(&cookie) {
                response.headers_mut().insert(header::SET_COOKIE, value);
            }
            response
        }
        _ => render(
            StatusCode::UNAUTHORIZED,
            &LoginPage {
                error: Some("That is not the admin token."),
            },
        ),
    }
}

pub(super) async fn logout() -> Response {
    let mut response = Redirect::to("/login").into_response();
    if let Ok(value) = HeaderValue::from_str(&auth::clear_cookie()) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}
