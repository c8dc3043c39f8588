//! Logs (tracing) and metrics (the `metrics` facade, exposed in Prometheus
//! format by the `http` module). docs/metrics.md lists every metric.

pub mod health;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("invalid log.level: {0}")]
    Filter(#[from] tracing_subscriber::filter::ParseError),
    #[error("cannot install the metrics recorder: {0}")]
    Metrics(#[from] metrics_exporter_prometheus::BuildError),
}

/// An error and its sources, joined with ": ", for messages that must say
/// why (a TLS failure's reason hides two sources deep).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let next = cause.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = cause.source();
    }
    text
}

/// Installs the global log subscriber, writing to stderr. `RUST_LOG`, when
/// set, overrides `log.level` for debugging.
pub fn init_logs(config: &LogConfig) -> Result<(), TelemetryError> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.is_empty() => EnvFilter::builder().parse(directives)?,
        _ => EnvFilter::builder().parse(&config.level)?,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second init (only possible in tests) keeps the first subscriber.
    let _ = match config.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
    Ok(())
}

/// Installs the global metrics recorder and describes every metric.
pub fn init_metrics() -> Result<PrometheusHandle, TelemetryError> {
    let handle = PrometheusBuilder::new().install_recorder()?;
    describe_metrics();
    Ok(handle)
}

/// Records `plausible_webhooks_event_to_delivery_seconds` for a delivery a
/// receiver accepted at `delivered_at`, when its triggering time is known.
pub fn event_delivered(
    triggered_at: Option<chrono::DateTime<chrono::Utc>>,
    delivered_at: chrono::DateTime<chrono::Utc>,
) {
    if let Some(triggered_at) = triggered_at {
        let secs = (delivered_at - triggered_at).num_milliseconds().max(0) as f64 / 1000.0;
        metrics::histogram!("plausible_webhooks_event_to_delivery_seconds").record(secs);
    }
}

fn describe_metrics() {
    metrics::describe_gauge!(
        "plausible_webhooks_build_info",
        "Always 1; the `version` label carries the daemon's version."
    );
    metrics::describe_gauge!(
        "plausible_webhooks_up",
        "1 while the daemon is connected to both databases and running, else 0."
    );
    metrics::describe_counter!(
        "plausible_webhooks_task_restarts_total",
        "Times a long-lived task ended or panicked and was started again, by task."
    );
    metrics::describe_counter!(
        "plausible_webhooks_clickhouse_failovers_total",
        "Times a ClickHouse query moved to another of the configured URLs, by the URL moved to."
    );
    metrics::describe_gauge!(
        "plausible_webhooks_change_stream_connected",
        "1 while the change source is connected (the LISTEN connection, or in replication mode the replication stream) and the registry loaded, else 0."
    );
    metrics::describe_counter!(
        "plausible_webhooks_change_stream_reconnects_total",
        "Times the change stream lost its connection and started over."
    );
    metrics::describe_gauge!(
        "plausible_webhooks_registry_sites",
        "Sites with at least one active webhook."
    );
    metrics::describe_gauge!(
        "plausible_webhooks_registry_webhooks",
        "Active webhooks: enabled, valid, and within their site's cap."
    );
    metrics::describe_gauge!(
        "plausible_webhooks_registry_goals",
        "Goals held for sites with active webhooks."
    );
    metrics::describe_counter!(
        "plausible_webhooks_registry_changes_applied_total",
        "Changes (notifications or streamed rows) applied to the registry."
    );
    metrics::describe_histogram!(
        "plausible_webhooks_registry_apply_duration_seconds",
        metrics::Unit::Seconds,
        "Time to apply one batch of change notifications."
    );
    metrics::describe_counter!(
        "plausible_webhooks_registry_resyncs_total",
        "Full reads of the webhooks and goals tables, by reason (start, reconnect, lost_notifications, slot_created, slot_lost, truncate)."
    );
    metrics::describe_gauge!(
        "plausible_webhooks_replication_slot_lag_bytes",
        metrics::Unit::Bytes,
        "How far this replica's replication slot's confirmed position is behind the server's WAL."
    );
    metrics::describe_gauge!(
        "plausible_webhooks_replication_applied_lsn",
        "The WAL position (as a number) up to which streamed changes were applied and acknowledged."
    );
    metrics::describe_counter!(
        "plausible_webhooks_replication_slot_recreated_total",
        "Times the replication slot was made again (missing or invalidated), each with a full read."
    );
    metrics::describe_counter!(
        "plausible_webhooks_registry_reconciliations_total",
        "Periodic reconciliation passes."
    );
    metrics::describe_counter!(
        "plausible_webhooks_registry_drift_fixed_total",
        "Differences a reconciliation found that no notification explained."
    );
    metrics::describe_counter!(
        "plausible_webhooks_trigger_ticks_total",
        "Trigger engine passes, by result (ok, error or fenced)."
    );
    metrics::describe_histogram!(
        "plausible_webhooks_trigger_tick_duration_seconds",
        metrics::Unit::Seconds,
        "Wall time of one trigger pass."
    );
    metrics::describe_gauge!(
        "plausible_webhooks_trigger_cursor_lag_seconds",
        metrics::Unit::Seconds,
        "ClickHouse's clock minus the newest insert the trigger engine has seen."
    );
    metrics::describe_counter!(
        "plausible_webhooks_trigger_events_total",
        "Events the triggers put in the outbox, by type."
    );
    metrics::describe_gauge!(
        "plausible_webhooks_trigger_leader",
        "1 while this daemon holds the trigger lease and ticks, 0 while it stands by."
    );
    metrics::describe_counter!(
        "plausible_webhooks_trigger_leader_takeovers_total",
        "Times this daemon took the trigger lease."
    );
    metrics::describe_counter!(
        "plausible_webhooks_deliveries_total",
        "Delivery attempts by result (succeeded, retry, failed, gone)."
    );
    metrics::describe_gauge!(
        "plausible_webhooks_delivery_scheduled",
        "Pending deliveries in the scheduler's in-memory schedule."
    );
    metrics::describe_gauge!(
        "plausible_webhooks_delivery_in_flight",
        "Deliveries leased and not yet recorded."
    );
    metrics::describe_histogram!(
        "plausible_webhooks_delivery_lag_seconds",
        metrics::Unit::Seconds,
        "From a delivery falling due to its attempt starting."
    );
    metrics::describe_histogram!(
        "plausible_webhooks_event_to_delivery_seconds",
        metrics::Unit::Seconds,
        "From the insert that triggered an event to a 2xx from the receiver."
    );
    metrics::describe_histogram!(
        "plausible_webhooks_delivery_attempt_duration_seconds",
        metrics::Unit::Seconds,
        "One HTTP attempt, from connecting to the end of the response."
    );
    metrics::describe_counter!(
        "plausible_webhooks_retention_passes_total",
        "Retention passes, by result (ok, skipped while another replica ran one, error)."
    );
    metrics::describe_counter!(
        "plausible_webhooks_retention_rows_deleted_total",
        "Rows the retention pass deleted, by table."
    );
    metrics::describe_counter!(
        "plausible_webhooks_retention_partitions_dropped_total",
        "ClickHouse partitions the retention pass dropped, by table."
    );
    metrics::describe_gauge!(
        "plausible_webhooks_retention_last_pass_duration_seconds",
        metrics::Unit::Seconds,
        "Wall time of the last retention pass that ran."
    );
    metrics::describe_counter!(
        "plausible_webhooks_delivery_outcomes_fenced_total",
        "Delivery outcomes that arrived after their lease was taken over or the delivery was replayed or settled: only their attempt was logged."
    );
    metrics::describe_gauge!(
        "plausible_webhooks_postgres_clock_offset_seconds",
        metrics::Unit::Seconds,
        "Postgres's clock minus this host's, as the delivery scheduler last measured it."
    );
    metrics::gauge!("plausible_webhooks_build_info", "version" => env!("CARGO_PKG_VERSION"))
        .set(1.0);
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, Utc};

    #[test]
    fn event_to_delivery_is_recorded_when_the_trigger_time_is_known() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            let now = Utc::now();
            super::event_delivered(Some(now - Duration::milliseconds(2500)), now);
            super::event_delivered(None, now);
        });
        let text = handle.render();
        assert!(
            text.contains("plausible_webhooks_event_to_delivery_seconds_count 1"),
            "{text}"
        );
        assert!(
            text.contains("plausible_webhooks_event_to_delivery_seconds_sum 2.5"),
            "{text}"
        );
    }
}
