//! The `run` command: wires the subsystems together and runs them until a
//! shutdown signal.

use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::analytics::{Analytics, AnalyticsError};
use crate::changes::ChangeStream;
use crate::config::{ChangeSource, Config};
use crate::delivery::feed::Feed;
use crate::delivery::schedule::{DeliveryError, Scheduler};
use crate::http::{AdminServer, HttpError};
use crate::registry::RegistryHandle;
use crate::retention::Retention;
use crate::store::{self, StoreError};
use crate::telemetry::health::{Health, STALLED_AFTER};
use crate::triggers::TriggerEngine;
use supervisor::Supervisor;

pub mod supervisor;

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
    #[error(transparent)]
    Changes(#[from] crate::changes::ChangesError),
    /// The config asks for what this server cannot do (exit code 2).
    #[error("refusing to start: {}", problems.join("; "))]
    Refused { problems: Vec<String> },
    #[error("task {task} cannot be kept running: {reason}")]
    TaskFailed { task: &'static str, reason: String },
}

/// Runs the daemon until `shutdown` resolves, or until a task fails for
/// good (then with an error, so that the process exits non-zero).
pub async fn run(
    config: Config,
    metrics: Option<PrometheusHandle>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    let pool = store::pool(&config.postgres)?;
    let analytics = Analytics::new(&config.clickhouse);
    let health = Health::default();
    metrics::gauge!("plausible_webhooks_up").set(0.0);

    let (stop_tx, stop_rx) = watch::channel(false);
    if let Some(refusal) = config.http.refusal() {
        return Err(HttpError::Refused(refusal).into());
    }
    let admin = AdminServer::bind(
        &config.http,
        pool.clone(),
        analytics.clone(),
        health.clone(),
        metrics,
    )
    .await?;
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
    let started = match started {
        Some(Ok(())) => Some(check_change_source(&config, &pool).await),
        other => other,
    };
    let result = match started {
        Some(Err(e)) => Err(e),
        Some(Ok(())) => {
            let (supervisor, mut fatal) = Supervisor::new(health.clone(), stop_rx.clone());
            tasks = start_tasks(&config, &pool, &analytics, &health, &supervisor, &stop_rx);
            tasks.push(tokio::spawn(watchdog(health.clone(), stop_rx.clone())));
            metrics::gauge!("plausible_webhooks_up").set(1.0);
            tracing::info!(version = env!("CARGO_PKG_VERSION"), "ready");
            tokio::select! {
                () = &mut shutdown => Ok(()),
                Some(f) = fatal.recv() => {
                    tracing::error!(task = f.task, reason = %f.reason, "a task cannot be kept running; exiting");
                    Err(DaemonError::TaskFailed { task: f.task, reason: f.reason })
                }
            }
        }
        None => Ok(()),
    };

    tracing::info!("shutting down");
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
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

/// Starts every long-lived task under the supervisor. The trigger engine
/// and the scheduler wait for the registry's first full read; so does
/// readiness (and systemd's READY=1).
fn start_tasks(
    config: &Config,
    pool: &deadpool_postgres::Pool,
    analytics: &Analytics,
    health: &Health,
    supervisor: &Supervisor,
    stop: &watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let registry = RegistryHandle::default();
    // In replication mode the change stream also feeds the scheduler.
    let feed = (config.changes.source == ChangeSource::Replication).then(Feed::default);
    let mut tasks = Vec::new();
    tasks.push(supervisor.spawn("change stream", {
        let (config, pool, registry, feed) =
            (config.clone(), pool.clone(), registry.clone(), feed.clone());
        move |stop, heartbeat| {
            let mut changes = ChangeStream::new(&config, pool.clone(), registry.clone())?;
            if let Some(feed) = &feed {
                changes = changes.with_feed(feed.clone());
            }
            Ok::<_, DaemonError>(changes.run(stop, heartbeat))
        }
    }));
    tasks.push(tokio::spawn(announce_loaded(
        registry.clone(),
        health.clone(),
        stop.clone(),
    )));
    tasks.push(supervisor.spawn("trigger engine", {
        let (config, pool, analytics, registry) = (
            config.clone(),
            pool.clone(),
            analytics.clone(),
            registry.clone(),
        );
        move |stop, heartbeat| {
            let engine =
                TriggerEngine::new(&config, pool.clone(), analytics.clone(), registry.clone());
            Ok::<_, DaemonError>(after_load(registry.clone(), stop.clone(), async move {
                engine.run(stop, heartbeat).await
            }))
        }
    }));
    tasks.push(supervisor.spawn("delivery scheduler", {
        let (config, pool, registry) = (config.clone(), pool.clone(), registry.clone());
        move |stop, heartbeat| {
            let mut scheduler = Scheduler::new(&config, pool.clone(), registry.clone())?;
            if let Some(feed) = &feed {
                scheduler = scheduler.with_feed(feed.clone());
            }
            Ok::<_, DaemonError>(after_load(registry.clone(), stop.clone(), async move {
                scheduler.run(stop, heartbeat).await
            }))
        }
    }));
    tasks.push(supervisor.spawn("retention", {
        let (config, pool, analytics) = (config.clone(), pool.clone(), analytics.clone());
        move |stop, heartbeat| {
            // Dropping partitions alters tables: a read-only `run` user
            // leaves it to `clickhouse.migrate_user`, when one is set.
            let pruning = if config.clickhouse.migrate_user.is_empty() {
                analytics.clone()
            } else {
                Analytics::for_migrations(&config.clickhouse)
            };
            let retention = Retention::new(&config, pool.clone(), pruning);
            Ok::<_, DaemonError>(retention.run(stop, heartbeat))
        }
    }));
    tasks
}

/// Runs `task` once the registry has loaded (unless shutdown comes first).
async fn after_load(
    registry: RegistryHandle,
    mut stop: watch::Receiver<bool>,
    task: impl Future<Output = ()>,
) {
    let mut version = registry.subscribe();
    tokio::select! {
        r = version.wait_for(|v| *v > 0) => if r.is_err() { return },
        _ = stop.wait_for(|stop| *stop) => return,
    }
    task.await
}

/// Marks the registry loaded in the health report, and tells systemd the
/// daemon is ready, after the first full read (unless shutdown comes
/// first: a stop before the registry loaded must not wait for it).
async fn announce_loaded(
    registry: RegistryHandle,
    health: Health,
    mut stop: watch::Receiver<bool>,
) {
    let mut version = registry.subscribe();
    let loaded = tokio::select! {
        r = version.wait_for(|v| *v > 0) => r.is_ok(),
        _ = stop.wait_for(|stop| *stop) => false,
    };
    if loaded {
        health.set_registry_loaded();
        tracing::info!("registry loaded");
        if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
            tracing::warn!(error = %e, "cannot notify systemd");
        }
    }
}

/// Feeds systemd's watchdog (when `WatchdogSec` is set) at half its
/// interval, but only while the registry has loaded and every task is alive
/// and has beaten within `STALLED_AFTER` (or the interval, if longer: a tick
/// may wait a whole ClickHouse timeout): a stuck task lets the watchdog fire
/// and systemd restart the service.
async fn watchdog(health: Health, mut stop: watch::Receiver<bool>) {
    let Some(interval) = sd_notify::watchdog_enabled() else {
        return;
    };
    tracing::info!(interval = ?interval, "systemd watchdog enabled");
    let mut ticks = tokio::time::interval(interval / 2);
    let mut starving = false;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
        if health.all_beating_within(interval.max(STALLED_AFTER)) {
            if starving {
                tracing::info!("every task makes progress again; feeding the watchdog");
                starving = false;
            }
            if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]) {
                tracing::warn!(error = %e, "cannot notify systemd");
            }
        } else if !starving {
            starving = true;
            tracing::error!(problems = ?health.report().problems(), "a task makes no progress; not feeding the watchdog");
        }
    }
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
            Ok(()) => match clickhouse_ready(analytics).await {
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

/// Replication mode's prerequisites (wal_level, the REPLICATION
/// attribute, the server version, the publications), checked before any
/// task starts: a refusal names `changes.source`.
async fn check_change_source(
    config: &Config,
    pool: &deadpool_postgres::Pool,
) -> Result<(), DaemonError> {
    if config.changes.source != ChangeSource::Replication {
        return Ok(());
    }
    let client = pool.get().await.map_err(StoreError::from)?;
    let problems = store::replication::prerequisites(&**client).await?;
    if problems.is_empty() {
        Ok(())
    } else {
        Err(DaemonError::Refused { problems })
    }
}

/// ClickHouse's version, once it answers and the daemon knows whether its
/// user may change settings (a `readonly = 1` user may not).
async fn clickhouse_ready(analytics: &Analytics) -> Result<String, AnalyticsError> {
    let version = analytics.version().await?;
    if !analytics.probe().await? {
        tracing::info!("the clickhouse user is read-only; no settings are sent");
    }
    for problem in crate::analytics::install::check_objects(analytics).await? {
        tracing::error!(problem = %problem, "clickhouse is not as migrate left it; not ready until fixed");
    }
    Ok(version)
}
