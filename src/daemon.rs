//! The `run` command: wires the subsystems together and runs them until a
//! shutdown signal.

use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::watch;

use crate::analytics::{Analytics, AnalyticsError};
use crate::changes::ChangeStream;
use crate::config::Config;
use crate::delivery::schedule::{DeliveryError, Scheduler};
use crate::http::{AdminServer, HttpError};
use crate::registry::RegistryHandle;
use crate::store::{self, StoreError};
use crate::triggers::TriggerEngine;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Analytics(#[from] AnalyticsError),
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error(transparent)]
    Delivery(#[from] DeliveryError),
}

/// Runs the daemon until `shutdown` resolves.
pub async fn run(
    config: Config,
    metrics: Option<PrometheusHandle>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    let pool = store::pool(&config.postgres)?;
    let analytics = Analytics::new(&config.clickhouse);
    metrics::gauge!("plausible_webhooks_up").set(0.0);

    let (stop_tx, stop_rx) = watch::channel(false);
    let admin =
        AdminServer::bind(config.http.listen, pool.clone(), analytics.clone(), metrics).await?;
    let listen = admin.local_addr().unwrap_or(config.http.listen);
    tracing::info!(listen = %listen, "admin http server listening");
    let mut admin_stop = stop_rx.clone();
    let admin_task = tokio::spawn(admin.serve(async move {
        let _ = admin_stop.wait_for(|stop| *stop).await;
    }));

    tokio::pin!(shutdown);
    let started = tokio::select! {
        result = wait_for_databases(&pool, &analytics) => Some(result),
        () = &mut shutdown => None,
    };
    let mut tasks = Vec::new();
    let result = match started {
        Some(Err(e)) => Err(e),
        Some(Ok(())) => {
            let registry = RegistryHandle::default();
            let changes = ChangeStream::new(&config, pool.clone(), registry.clone())?;
            let mut loaded = registry.subscribe();
            tasks.push(tokio::spawn(changes.run(stop_rx.clone())));
            // The triggers start once the registry holds the webhooks.
            let triggers =
                TriggerEngine::new(&config, pool.clone(), analytics.clone(), registry.clone());
            let scheduler = Scheduler::new(&config, pool.clone(), registry.clone())?;
            let mut stop = stop_rx.clone();
            tasks.push(tokio::spawn(async move {
                let start = tokio::select! {
                    r = loaded.changed() => r.is_ok(),
                    _ = stop.wait_for(|stop| *stop) => false,
                };
                if start {
                    tokio::join!(triggers.run(stop.clone()), scheduler.run(stop));
                }
            }));
            metrics::gauge!("plausible_webhooks_up").set(1.0);
            tracing::info!(version = env!("CARGO_PKG_VERSION"), "ready");
            shutdown.await;
            Ok(())
        }
        None => Ok(()),
    };

    tracing::info!("shutting down");
    metrics::gauge!("plausible_webhooks_up").set(0.0);
    let _ = stop_tx.send(true);
    for task in tasks {
        if let Err(e) = task.await {
            tracing::warn!(error = %e, "task failed while stopping");
        }
    }
    match admin_task.await {
        Ok(Err(e)) => tracing::warn!(error = %e, "admin http server stopped with an error"),
        Err(e) => tracing::warn!(error = %e, "admin http server task failed"),
        Ok(Ok(())) => {}
    }
    pool.close();
    tracing::info!("stopped");
    result
}

/// Waits until Postgres (at the schema this build needs) and ClickHouse
/// both answer, retrying with capped exponential backoff. A schema that
/// does not match is not worth waiting for: it fails at once.
async fn wait_for_databases(
    pool: &deadpool_postgres::Pool,
    analytics: &Analytics,
) -> Result<(), DaemonError> {
    let mut delay = Duration::from_millis(250);
    loop {
        let postgres = async {
            let client = pool.get().await?;
            store::check_schema(&client).await
        }
        .await;
        match postgres {
            Ok(()) => match analytics.version().await {
                Ok(version) => {
                    tracing::info!(clickhouse_version = %version, "connected to postgres and clickhouse");
                    return Ok(());
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?delay, "clickhouse is not reachable")
                }
            },
            Err(e @ (StoreError::SchemaBehind { .. } | StoreError::SchemaAhead { .. })) => {
                return Err(e.into());
            }
            Err(e) => tracing::warn!(error = %e, retry_in = ?delay, "postgres is not reachable"),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}
