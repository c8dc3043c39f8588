//! The admin HTTP server: health checks, Prometheus metrics, the status
//! page and the admin API.
//!
//! - `GET /health/live`: 200 while the process runs.
//! - `GET /health/ready`: 200 when Postgres and ClickHouse both answer, the
//!   registry has loaded and every task is alive and making progress, else
//!   503; the JSON body names what is wrong, each task's state, and whether
//!   this replica leads the trigger engine or stands by.
//! - `GET /metrics`: every metric in Prometheus text format.
//! - `GET /`, `/webhooks/{id}`, `/deliveries/{id}`: the status page
//!   (`pages`), behind `auth`; `GET/POST /login`, `POST /logout`.
//! - `/api/v1/...`: the admin API (`api`, docs/admin-api.md), behind the
//!   bearer token always.
//!
//! `/health/*` and `/metrics` are open to anyone who can connect.

mod api;
mod auth;
mod pages;
mod views;

use std::net::SocketAddr;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use deadpool_postgres::Pool;
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;

use crate::analytics::{Analytics, install};
use crate::config::HttpConfig;
use crate::telemetry::health::Health;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot listen on {addr} (http.listen): {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("refusing to start: {0}")]
    Refused(String),
    #[error("admin http server failed: {0}")]
    Serve(#[source] std::io::Error),
}

#[derive(Clone)]
struct AppState {
    pool: Pool,
    analytics: Analytics,
    health: Health,
    metrics: Option<PrometheusHandle>,
    auth: auth::Auth,
}

/// A bound, not yet serving, admin server.
pub struct AdminServer {
    listener: tokio::net::TcpListener,
    router: Router,
}

impl AdminServer {
    pub async fn bind(
        http: &HttpConfig,
        pool: Pool,
        analytics: Analytics,
        health: Health,
        metrics: Option<PrometheusHandle>,
    ) -> Result<AdminServer, HttpError> {
        let addr = http.listen;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| HttpError::Bind { addr, source })?;
        let loopback = listener
            .local_addr()
            .map(|a| a.ip().is_loopback())
            .unwrap_or(false);
        let auth = auth::Auth::new(http.admin_token.expose(), loopback);
        let router = Router::new()
            .route("/health/live", get(live))
            .route("/health/ready", get(ready))
            .route("/metrics", get(render_metrics))
            .route("/", get(pages::overview))
            .route("/webhooks/{id}", get(pages::webhook))
            .route("/deliveries/{id}", get(pages::delivery))
            .route("/login", get(pages::login_form).post(pages::login))
            .route("/logout", post(pages::logout))
            .route("/api/v1/overview", get(api::overview))
            .route("/api/v1/webhooks", get(api::webhooks))
            .route("/api/v1/webhooks/{id}", get(api::webhook))
            .route("/api/v1/webhooks/{id}/deliveries", get(api::deliveries))
            .route("/api/v1/webhooks/{id}/replay", post(api::replay_webhook))
            .route("/api/v1/webhooks/{id}/test", post(api::test_delivery))
            .route("/api/v1/deliveries/{id}", get(api::delivery))
            .route("/api/v1/deliveries/{id}/attempts", get(api::attempts))
            .route("/api/v1/deliveries/{id}/replay", post(api::replay_delivery))
            .with_state(AppState {
                pool,
                analytics,
                health,
                metrics,
                auth,
            });
        Ok(AdminServer { listener, router })
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves until `shutdown` completes.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), HttpError> {
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(HttpError::Serve)
    }
}

async fn live() -> &'static str {
    "ok\n"
}

async fn ready(State(state): State<AppState>) -> (StatusCode, Json<serde_json::Value>) {
    let limit = Duration::from_secs(2);
    let postgres = match tokio::time::timeout(limit, crate::store::ping(&state.pool)).await {
        Ok(Ok(())) => "ok".to_string(),
        Ok(Err(e)) => e.to_string(),
        Err(_) => "timed out".to_string(),
    };
    let clickhouse = match tokio::time::timeout(limit, state.analytics.version()).await {
        Ok(Ok(_)) => "ok".to_string(),
        Ok(Err(e)) => e.to_string(),
        Err(_) => "timed out".to_string(),
    };
    let report = state.health.report();
    let mut problems = Vec::new();
    if postgres != "ok" {
        problems.push(format!("postgres: {postgres}"));
    }
    if clickhouse != "ok" {
        problems.push(format!("clickhouse: {clickhouse}"));
    } else {
        problems.extend(install_problems(&state.analytics, limit).await);
    }
    problems.extend(report.problems());
    let status = if problems.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({
            "status": if problems.is_empty() { "ready" } else { "not ready" },
            "problems": problems,
            "postgres": postgres,
            "clickhouse": clickhouse,
            "registry_loaded": report.registry_loaded,
            "role": report.role(),
            "tasks": report.tasks,
        })),
    )
}

/// What is wrong with Plausible's events table or the daemon's views and
/// tables in ClickHouse (a view whose table was dropped fails Plausible's
/// own inserts).
async fn install_problems(analytics: &Analytics, limit: Duration) -> Vec<String> {
    let check = async {
        let mut problems = install::check_objects(analytics).await?;
        problems.extend(install::check_events_table(analytics).await?);
        Ok::<_, crate::analytics::AnalyticsError>(problems)
    };
    match tokio::time::timeout(limit, check).await {
        Ok(Ok(problems)) => problems,
        Ok(Err(e)) => vec![format!("clickhouse: {e}")],
        Err(_) => vec!["clickhouse: the check of the daemon's views timed out".to_string()],
    }
}

async fn render_metrics(State(state): State<AppState>) -> (StatusCode, String) {
    match &state.metrics {
        Some(handle) => (StatusCode::OK, handle.render()),
        None => (StatusCode::NOT_FOUND, "metrics are not enabled\n".into()),
    }
}
