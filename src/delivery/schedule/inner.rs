//! The scheduler's own supervision of its inner tasks (the outcome writer,
//! the resync and the listener). None of them is meant to end before the
//! scheduler stops; one that does, or panics, stops the whole scheduler,
//! which the daemon's supervisor then starts afresh (a new timeline, a full
//! read; the leases of outcomes not recorded simply run out).

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::{Id, JoinSet};

/// Why the scheduler's loop stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Stop {
    Shutdown,
    /// An inner task ended: which, and why.
    Failed {
        task: &'static str,
        reason: String,
    },
}

pub(super) struct Inner {
    tasks: JoinSet<()>,
    names: HashMap<Id, &'static str>,
    /// The task to fail at start (tests only).
    fault: Option<&'static str>,
}

impl Inner {
    pub(super) fn new(fault: Option<&'static str>) -> Inner {
        Inner {
            tasks: JoinSet::new(),
            names: HashMap::new(),
            fault,
        }
    }

    pub(super) fn spawn(
        &mut self,
        name: &'static str,
        task: impl Future<Output = ()> + Send + 'static,
    ) {
        let handle = if self.fault == Some(name) {
            self.tasks
                .spawn(async move { panic!("{name} failed on purpose (a test's fault)") })
        } else {
            self.tasks.spawn(task)
        };
        self.names.insert(handle.id(), name);
    }

    /// Waits for the first inner task to end; never returns if none does.
    pub(super) async fn ended(&mut self) -> Stop {
        let Some(result) = self.tasks.join_next_with_id().await else {
            return std::future::pending().await;
        };
        let (id, reason) = match result {
            Ok((id, ())) => (id, "it ended unexpectedly".to_string()),
            Err(e) if e.is_panic() => (e.id(), format!("it panicked: {}", panic_message(e))),
            Err(e) => (e.id(), format!("it was cancelled: {e}")),
        };
        Stop::Failed {
            task: self.names.get(&id).copied().unwrap_or("an inner task"),
            reason,
        }
    }

    /// Waits (at most `limit`) for the tasks to end once halted; aborts
    /// those that outstay it.
    pub(super) async fn stop(mut self, limit: Duration) {
        let all = async {
            while let Some(result) = self.tasks.join_next_with_id().await {
                if let Err(e) = result
                    && e.is_panic()
                {
                    let task = self.names.get(&e.id()).copied().unwrap_or("an inner task");
                    tracing::error!(task, reason = %panic_message(e), "a delivery scheduler task panicked while stopping");
                }
            }
        };
        if tokio::time::timeout(limit, all).await.is_err() {
            tracing::warn!(
                "delivery scheduler tasks still running at the end of shutdown; aborting them"
            );
            self.tasks.abort_all();
        }
    }
}

/// Resolves when the scheduler must stop: shutdown, or an inner task's end.
pub(super) async fn stopped(shutdown: &mut watch::Receiver<bool>, inner: &mut Inner) -> Stop {
    tokio::select! {
        _ = shutdown.wait_for(|stop| *stop) => Stop::Shutdown,
        stop = inner.ended() => stop,
    }
}

fn panic_message(e: tokio::task::JoinError) -> String {
    match e.try_into_panic() {
        Ok(payload) => {
            if let Some(s) = payload.downcast_ref::<&str>() {
                (*s).to_string()
            } else if let Some(s) = payload.downcast_ref::<String>() {
                s.clone()
            } else {
                "a panic without a message".into()
            }
        }
        Err(e) => e.to_string(),
    }
}
