//! Supervision of the daemon's long-lived tasks.
//!
//! Each task runs on a tokio task of its own. One that returns before
//! shutdown, or panics, is marked down in [`Health`] (so `/health/ready`
//! answers 503 while it is), logged at error level, counted in
//! `plausible_webhooks_task_restarts_total`, and started again after a
//! capped exponential backoff. A task that cannot be built again, or that
//! fails `MAX_FAILURES` times within `FAILURE_WINDOW`, is fatal: the
//! supervisor reports it on `fatal`, and the daemon exits non-zero so that
//! systemd or the orchestrator restarts the whole process.

use std::future::Future;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use crate::telemetry::health::{Health, Heartbeat};

/// Failures within `FAILURE_WINDOW` after which a task is given up.
const MAX_FAILURES: usize = 5;
const FAILURE_WINDOW: Duration = Duration::from_secs(600);
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// A task that could not be kept running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fatal {
    pub task: &'static str,
    pub reason: String,
}

/// Starts and restarts tasks; a clone per task.
#[derive(Clone)]
pub struct Supervisor {
    health: Health,
    shutdown: watch::Receiver<bool>,
    fatal: mpsc::UnboundedSender<Fatal>,
}

impl Supervisor {
    pub fn new(
        health: Health,
        shutdown: watch::Receiver<bool>,
    ) -> (Supervisor, mpsc::UnboundedReceiver<Fatal>) {
        let (fatal, fatal_rx) = mpsc::unbounded_channel();
        (
            Supervisor {
                health,
                shutdown,
                fatal,
            },
            fatal_rx,
        )
    }

    /// Runs `make`'s task under supervision until shutdown. `make` builds a
    /// fresh task each time (an `Err` is fatal); the task gets the shutdown
    /// signal and its heartbeat.
    pub fn spawn<F, Fut, E>(&self, name: &'static str, make: F) -> tokio::task::JoinHandle<()>
    where
        F: FnMut(watch::Receiver<bool>, Heartbeat) -> Result<Fut, E> + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        let heartbeat = self.health.task(name);
        tokio::spawn(self.clone().supervise(name, heartbeat, make))
    }

    async fn supervise<F, Fut, E>(self, name: &'static str, heartbeat: Heartbeat, mut make: F)
    where
        F: FnMut(watch::Receiver<bool>, Heartbeat) -> Result<Fut, E> + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        let mut shutdown = self.shutdown.clone();
        let mut failures: Vec<Instant> = Vec::new();
        let mut backoff = FIRST_BACKOFF;
        loop {
            let task = match make(self.shutdown.clone(), heartbeat.clone()) {
                Ok(task) => task,
                Err(e) => {
                    let reason = format!("cannot be started again: {e}");
                    heartbeat.ended(reason.clone());
                    tracing::error!(task = name, error = %e, "task cannot be started");
                    let _ = self.fatal.send(Fatal { task: name, reason });
                    return;
                }
            };
            heartbeat.started();
            let started = Instant::now();
            let result = tokio::spawn(task).await;
            if *shutdown.borrow() {
                return;
            }
            let reason = match result {
                Ok(()) => "it ended unexpectedly".to_string(),
                Err(e) if e.is_panic() => format!("it panicked: {}", panic_message(e)),
                Err(e) => format!("it was cancelled: {e}"),
            };
            heartbeat.ended(reason.clone());
            metrics::counter!("plausible_webhooks_task_restarts_total", "task" => name)
                .increment(1);
            // A task that ran well for a while starts its backoff over.
            if started.elapsed() > FAILURE_WINDOW {
                backoff = FIRST_BACKOFF;
            }
            let now = Instant::now();
            failures.retain(|at| now.duration_since(*at) < FAILURE_WINDOW);
            failures.push(now);
            if failures.len() >= MAX_FAILURES {
                let reason = format!(
                    "{reason}; it failed {} times within {} s",
                    failures.len(),
                    FAILURE_WINDOW.as_secs()
                );
                tracing::error!(task = name, reason = %reason, "task keeps failing; giving up");
                let _ = self.fatal.send(Fatal { task: name, reason });
                return;
            }
            tracing::error!(task = name, reason = %reason, restart_in = ?backoff, "task stopped; restarting");
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
            heartbeat.restarted();
        }
    }
}

fn panic_message(e: tokio::task::JoinError) -> String {
    let payload = e.into_panic();
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_string()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_panicking_task_is_marked_down_then_restarted() {
        let health = Health::default();
        health.set_registry_loaded();
        let (stop_tx, stop_rx) = watch::channel(false);
        let (supervisor, _fatal) = Supervisor::new(health.clone(), stop_rx);
        let runs = Arc::new(AtomicUsize::new(0));
        let counter = runs.clone();
        supervisor.spawn("flaky", move |mut stop: watch::Receiver<bool>, _hb| {
            let run = counter.fetch_add(1, Ordering::SeqCst);
            Ok::<_, String>(async move {
                if run == 0 {
                    panic!("boom");
                }
                let _ = stop.wait_for(|s| *s).await;
            })
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let report = health.report();
        assert!(!report.healthy());
        assert_eq!(
            report.problems(),
            vec!["task flaky is down: it panicked: boom"]
        );
        tokio::time::sleep(FIRST_BACKOFF * 2).await;
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        let report = health.report();
        assert!(report.healthy(), "{report:?}");
        assert_eq!(report.tasks[0].restarts, 1);
        let _ = stop_tx.send(true);
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_that_keeps_failing_is_fatal() {
        let health = Health::default();
        let (_stop_tx, stop_rx) = watch::channel(false);
        let (supervisor, mut fatal) = Supervisor::new(health, stop_rx);
        supervisor.spawn("broken", |_stop, _hb| Ok::<_, String>(async {}));
        let fatal = fatal.recv().await.expect("a fatal report");
        assert_eq!(fatal.task, "broken");
        assert!(fatal.reason.contains("failed 5 times"), "{}", fatal.reason);
    }

    #[tokio::test]
    async fn a_task_that_cannot_be_built_is_fatal() {
        let (_stop_tx, stop_rx) = watch::channel(false);
        let (supervisor, mut fatal) = Supervisor::new(Health::default(), stop_rx);
        supervisor.spawn("unbuildable", |_stop, _hb| {
            Err::<std::future::Ready<()>, _>("no client")
        });
        let fatal = fatal.recv().await.expect("a fatal report");
        assert_eq!(fatal.reason, "cannot be started again: no client");
    }
}
