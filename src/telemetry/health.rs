//! What the daemon's long-lived tasks say about themselves: whether each is
//! alive, when it last made progress, and (for the trigger engine) whether
//! this replica leads. The supervisor (`daemon::supervisor`) marks tasks
//! alive and dead; each task beats its [`Heartbeat`] from its own loop;
//! `/health/ready` and the systemd watchdog read the [`Health`] report.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A task beats at least this often, even when it has nothing to do: its
/// idle waits are bounded by this, so that a silent task is a stuck one.
pub const BEAT_EVERY: Duration = Duration::from_secs(5);

/// A task that has not beaten for this long counts as stalled.
pub const STALLED_AFTER: Duration = Duration::from_secs(60);

/// The trigger engine's part in a group of replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Not decided yet (starting, or a task with no role).
    None,
    /// This replica runs the trigger engine.
    Leader,
    /// Another replica leads; this one waits to take over.
    Standby,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::None => "none",
            Role::Leader => "leader",
            Role::Standby => "standby",
        }
    }

    fn from_u8(v: u8) -> Role {
        match v {
            1 => Role::Leader,
            2 => Role::Standby,
            _ => Role::None,
        }
    }

    fn to_u8(self) -> u8 {
        match self {
            Role::None => 0,
            Role::Leader => 1,
            Role::Standby => 2,
        }
    }
}

/// One task's slot.
#[derive(Debug)]
struct Slot {
    name: &'static str,
    alive: AtomicBool,
    /// Milliseconds since `Inner::epoch` of the last beat.
    last_beat_ms: AtomicU64,
    restarts: AtomicU64,
    role: AtomicU8,
    /// Set by a task whose work needs a connection it has lost (the
    /// change stream between sessions).
    disconnected: AtomicBool,
    /// Why it last ended, if it did.
    last_failure: Mutex<Option<String>>,
}

#[derive(Debug)]
struct Inner {
    epoch: Instant,
    tasks: Mutex<Vec<Arc<Slot>>>,
    registry_loaded: AtomicBool,
}

impl Inner {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis().min(u128::from(u64::MAX)) as u64
    }
}

/// The daemon's health: a shared, cheap handle.
#[derive(Debug, Clone)]
pub struct Health {
    inner: Arc<Inner>,
}

impl Default for Health {
    fn default() -> Health {
        Health {
            inner: Arc::new(Inner {
                epoch: Instant::now(),
                tasks: Mutex::new(Vec::new()),
                registry_loaded: AtomicBool::new(false),
            }),
        }
    }
}

/// One task's state, as reported.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TaskReport {
    pub name: &'static str,
    pub alive: bool,
    /// Seconds since the last beat.
    pub idle_secs: u64,
    pub stalled: bool,
    pub restarts: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    /// Alive, but without the connection its work needs.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub disconnected: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<String>,
}

/// Everything `/health/ready` and the watchdog look at.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Report {
    pub registry_loaded: bool,
    pub tasks: Vec<TaskReport>,
}

impl Report {
    /// The registry has loaded and every task is alive and beating.
    pub fn healthy(&self) -> bool {
        self.registry_loaded
            && self
                .tasks
                .iter()
                .all(|t| t.alive && !t.stalled && !t.disconnected)
    }

    /// What is wrong, in words; empty when healthy.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !self.registry_loaded {
            problems.push("the registry has not loaded yet".to_string());
        }
        for t in &self.tasks {
            if !t.alive {
                problems.push(match &t.last_failure {
                    Some(why) => format!("task {} is down: {why}", t.name),
                    None => format!("task {} is down", t.name),
                });
            } else if t.stalled {
                problems.push(format!(
                    "task {} has made no progress for {} s",
                    t.name, t.idle_secs
                ));
            } else if t.disconnected {
                problems.push(format!("task {} is not connected to Postgres", t.name));
            }
        }
        problems
    }

    /// This replica's role in the trigger engine, if a task has one.
    pub fn role(&self) -> Option<&'static str> {
        self.tasks.iter().find_map(|t| t.role)
    }
}

impl Health {
    /// Registers a task and returns its heartbeat. It starts dead; the
    /// supervisor marks it alive when it runs.
    pub fn task(&self, name: &'static str) -> Heartbeat {
        let slot = Arc::new(Slot {
            name,
            alive: AtomicBool::new(false),
            last_beat_ms: AtomicU64::new(self.inner.now_ms()),
            restarts: AtomicU64::new(0),
            role: AtomicU8::new(Role::None.to_u8()),
            disconnected: AtomicBool::new(false),
            last_failure: Mutex::new(None),
        });
        self.inner
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(slot.clone());
        Heartbeat {
            slot,
            inner: self.inner.clone(),
        }
    }

    /// The registry has been read in full once.
    pub fn set_registry_loaded(&self) {
        self.inner.registry_loaded.store(true, Ordering::Release);
    }

    pub fn report(&self) -> Report {
        let now = self.inner.now_ms();
        let tasks = self
            .inner
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|s| {
                let idle = Duration::from_millis(
                    now.saturating_sub(s.last_beat_ms.load(Ordering::Acquire)),
                );
                let role = Role::from_u8(s.role.load(Ordering::Acquire));
                TaskReport {
                    name: s.name,
                    alive: s.alive.load(Ordering::Acquire),
                    idle_secs: idle.as_secs(),
                    stalled: idle > STALLED_AFTER,
                    restarts: s.restarts.load(Ordering::Acquire),
                    role: (role != Role::None).then(|| role.as_str()),
                    disconnected: s.disconnected.load(Ordering::Acquire),
                    last_failure: s
                        .last_failure
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .clone(),
                }
            })
            .collect();
        Report {
            registry_loaded: self.inner.registry_loaded.load(Ordering::Acquire),
            tasks,
        }
    }

    /// True when the registry has loaded and every task is alive and has
    /// beaten within `limit` (for the watchdog).
    pub fn all_beating_within(&self, limit: Duration) -> bool {
        let now = self.inner.now_ms();
        self.inner.registry_loaded.load(Ordering::Acquire)
            && self
                .inner
                .tasks
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .all(|s| {
                    s.alive.load(Ordering::Acquire)
                        && Duration::from_millis(
                            now.saturating_sub(s.last_beat_ms.load(Ordering::Acquire)),
                        ) <= limit
                })
    }
}

/// A task's handle on its own health slot.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    slot: Arc<Slot>,
    inner: Arc<Inner>,
}

impl Heartbeat {
    /// A heartbeat nobody watches, for running a task on its own (tests,
    /// benches).
    pub fn detached() -> Heartbeat {
        Health::default().task("detached")
    }

    /// The task made progress (or looked and found nothing to do).
    pub fn beat(&self) {
        self.slot
            .last_beat_ms
            .store(self.inner.now_ms(), Ordering::Release);
    }

    /// This replica's role (the trigger engine only).
    pub fn set_role(&self, role: Role) {
        self.slot.role.store(role.to_u8(), Ordering::Release);
    }

    pub fn name(&self) -> &'static str {
        self.slot.name
    }

    /// Whether the task has the connection its work needs; a task that
    /// has not is down in `/health/ready`, though alive.
    pub fn set_connected(&self, connected: bool) {
        self.slot.disconnected.store(!connected, Ordering::Release);
    }

    /// Set by the supervisor when the task starts.
    pub(crate) fn started(&self) {
        self.beat();
        self.slot.alive.store(true, Ordering::Release);
    }

    /// Set by the supervisor when the task ended or panicked.
    pub(crate) fn ended(&self, why: String) {
        self.slot.alive.store(false, Ordering::Release);
        self.slot.role.store(Role::None.to_u8(), Ordering::Release);
        *self
            .slot
            .last_failure
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(why);
    }

    pub(crate) fn restarted(&self) {
        self.slot.restarts.fetch_add(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_task_makes_the_report_unhealthy_and_says_why() {
        let health = Health::default();
        let a = health.task("a");
        let b = health.task("b");
        health.set_registry_loaded();
        a.started();
        b.started();
        assert!(health.report().healthy());
        b.ended("it panicked: boom".into());
        let report = health.report();
        assert!(!report.healthy());
        assert_eq!(report.problems(), vec!["task b is down: it panicked: boom"]);
        b.started();
        b.set_role(Role::Standby);
        assert!(health.report().healthy());
        assert_eq!(health.report().role(), Some("standby"));
        b.set_connected(false);
        assert_eq!(
            health.report().problems(),
            vec!["task b is not connected to Postgres"]
        );
        b.set_connected(true);
        assert!(health.report().healthy());
    }

    #[test]
    fn not_loaded_is_unhealthy() {
        let health = Health::default();
        health.task("a").started();
        assert_eq!(
            health.report().problems(),
            vec!["the registry has not loaded yet"]
        );
    }
}
