//! The logical replication change source against real servers (the
//! harness's Postgres runs with `wal_level = logical`): every change kind
//! reaches the registry and the delivery feed; positions survive a SIGKILL,
//! a Postgres restart and a dropped slot; a 100,000-row transaction; the
//! refusals; TLS; switching modes.

use std::time::Duration;

use plausible_webhooks::changes::ChangeStream;
use plausible_webhooks::config::{ChangeSource, Config, PostgresUrl};
use plausible_webhooks::delivery::feed::{Feed, Item};
use plausible_webhooks::registry::RegistryHandle;
use plausible_webhooks::store::replication;
use plausible_webhooks::telemetry::health::Heartbeat;
use tokio::sync::{broadcast, watch};
use tokio_postgres::Client;

use crate::daemon::{http_get, log_lines, signal, spawn, wait_exit, wait_until_ready};
use crate::postgres_schema::SECRET;
use crate::registry::eventually;
use crate::support::servers::PrivatePostgres;
use crate::support::{
    POSTGRES_FIXTURE, TestClickhouse, TestPostgres, config, config_env, config_pg, connect,
    wait_for,
};

/// A replica name no other test uses (slot names are cluster-wide).
fn replica_name(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("t{}_{tag}_{nanos:x}", std::process::id())
}

/// Replication mode for `config`, with a replica name of its own.
fn replicating(config: &mut Config, tag: &str) {
    config.changes.source = ChangeSource::Replication;
    config.changes.replica_name = replica_name(tag);
    config.registry.reconcile_interval_secs = 3600;
}

/// What `migrate` does in replication mode, on a migrated database.
async fn publish(client: &Client) {
    replication::ensure_publications(client).await.unwrap();
    replication::set_notify_triggers(client, false)
        .await
        .unwrap();
}

/// Drops a slot once nobody holds it (at most 10 s), on drop: every test
/// leaves no slot behind, failed or not.
struct SlotGuard {
    url: String,
    slot: String,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        let (url, slot) = (self.url.clone(), self.slot.clone());
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                let Ok((client, conn)) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await
                else {
                    return;
                };
                tokio::spawn(conn);
                for _ in 0..100 {
                    let dropped = client
                        .execute(
                            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
                             WHERE slot_name = $1 AND NOT active",
                            &[&slot],
                        )
                        .await;
                    let left = client
                        .query_opt(
                            "SELECT 1 FROM pg_replication_slots WHERE slot_name = $1",
                            &[&slot],
                        )
                        .await;
                    if dropped.is_ok() && matches!(left, Ok(None)) {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            });
        })
        .join();
    }
}

fn guard(config: &Config) -> SlotGuard {
    SlotGuard {
        url: config.postgres.url.expose().to_string(),
        slot: config.changes.slot(),
    }
}

/// A change stream in replication mode on `registry`; stops when dropped.
struct Stream {
    registry: RegistryHandle,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Stream {
    async fn start(config: &Config, registry: RegistryHandle, feed: &Feed) -> Stream {
        let pool = plausible_webhooks::store::pool(&config.postgres).unwrap();
        let stream = ChangeStream::new(config, pool, registry.clone())
            .unwrap()
            .with_feed(feed.clone());
        let (stop, stop_rx) = watch::channel(false);
        let loaded = *registry.subscribe().borrow();
        let task = tokio::spawn(stream.run(stop_rx, Heartbeat::detached()));
        let mut version = registry.subscribe();
        if loaded == 0 {
            tokio::time::timeout(Duration::from_secs(20), version.wait_for(|v| *v > 0))
                .await
                .expect("the registry loads")
                .unwrap();
        }
        Stream {
            registry,
            stop,
            task: Some(task),
        }
    }

    /// Stops the stream and waits until its session has ended.
    async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Waits until the slot is held by a session (the stream is reading).
async fn until_active(client: &Client, slot: &str) {
    wait_for("the slot is active", Duration::from_secs(20), async || {
        replication::slot(client, slot)
            .await
            .unwrap()
            .is_some_and(|s| s.active)
    })
    .await;
}

async fn site(client: &Client, id: i64) {
    client
        .execute(
            "INSERT INTO sites (id, domain) VALUES ($1, $2)",
            &[&id, &format!("site{id}.example.com")],
        )
        .await
        .unwrap();
}

async fn webhook(client: &Client, site_id: i64, url: &str) -> i64 {
    client
        .query_one(
            "INSERT INTO webhooks (site_id, url, secret, event_types, spike_threshold) \
             VALUES ($1, $2, $3, ARRAY['traffic.spike', 'goal.completed'], 50) RETURNING id",
            &[&site_id, &url, &SECRET],
        )
        .await
        .unwrap()
        .get(0)
}

async fn delivery(client: &Client, webhook_id: i64) -> String {
    client
        .query_one(
            "INSERT INTO webhook_deliveries (webhook_id, event_type, payload) \
             VALUES ($1, 'webhook.test', '{\"type\": \"webhook.test\"}') RETURNING id::text",
            &[&webhook_id],
        )
        .await
        .unwrap()
        .get(0)
}

/// Waits for a hint for delivery `id` on the feed (other items are passed
/// over).
async fn hinted(feed: &mut broadcast::Receiver<Item>, id: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, feed.recv()).await {
            Ok(Ok(Item::Hint(h))) if h.id == id => return,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("the feed failed: {e}"),
            Err(_) => panic!("no hint for delivery {id} within 10 s"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_change_kind_reaches_the_registry_and_the_schedule() {
    let db = TestPostgres::migrated().await;
    let client = db.client().await;
    publish(&client).await;
    let mut config = config_pg(&db);
    replicating(&mut config, "kinds");
    let _slot = guard(&config);
    let feed = Feed::default();
    let mut hints = feed.subscribe();
    site(&client, 1).await;
    site(&client, 2).await;
    let before = webhook(&client, 1, "https://before.example.com/hook").await;
    let stream = Stream::start(&config, RegistryHandle::default(), &feed).await;
    let registry = &stream.registry;
    assert!(registry.read().webhook(before).is_some());
    until_active(&client, &config.changes.slot()).await;

    // Webhooks: insert, update, move to another site, disable, delete.
    let id = webhook(&client, 1, "https://new.example.com/hook").await;
    eventually(registry, "the inserted webhook shows", |r| {
        r.webhook(id).is_some()
    })
    .await;
    client
        .execute(
            "UPDATE webhooks SET url = 'https://changed.example.com/hook' WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    eventually(registry, "the update shows", |r| {
        r.webhook(id)
            .is_some_and(|w| w.url.as_str() == "https://changed.example.com/hook")
    })
    .await;
    client
        .execute("UPDATE webhooks SET site_id = 2 WHERE id = $1", &[&id])
        .await
        .unwrap();
    eventually(registry, "the move shows", |r| {
        r.site_of_webhook(id) == Some(2)
    })
    .await;
    client
        .execute("UPDATE webhooks SET enabled = false WHERE id = $1", &[&id])
        .await
        .unwrap();
    eventually(registry, "the disabled webhook goes", |r| {
        r.webhook(id).is_none()
    })
    .await;
    client
        .execute("DELETE FROM webhooks WHERE id = $1", &[&before])
        .await
        .unwrap();
    eventually(registry, "the deleted webhook goes", |r| {
        r.webhook(before).is_none()
    })
    .await;

    // Goals: insert, update, delete.
    let kept = webhook(&client, 1, "https://kept.example.com/hook").await;
    let goal: i64 = client
        .query_one(
            "INSERT INTO goals (site_id, event_name, display_name) VALUES (1, 'Signup', 'Signup') RETURNING id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    eventually(registry, "the goal shows", |r| {
        r.site(1)
            .is_some_and(|s| s.goals.iter().any(|g| g.id == goal))
    })
    .await;
    client
        .execute(
            "UPDATE goals SET event_name = 'Purchase', display_name = 'Purchase' WHERE id = $1",
            &[&goal],
        )
        .await
        .unwrap();
    eventually(registry, "the goal's update shows", |r| {
        r.site(1)
            .is_some_and(|s| s.goals.iter().any(|g| g.display_name == "Purchase"))
    })
    .await;
    client
        .execute("DELETE FROM goals WHERE id = $1", &[&goal])
        .await
        .unwrap();
    eventually(registry, "the deleted goal goes", |r| {
        r.site(1).is_some_and(|s| s.goals.is_empty())
    })
    .await;

    // Sites: a domain change, then a delete.
    client
        .execute(
            "UPDATE sites SET domain = 'renamed.example.com' WHERE id = 1",
            &[],
        )
        .await
        .unwrap();
    eventually(registry, "the domain change shows", |r| {
        r.site(1).is_some_and(|s| s.domain == "renamed.example.com")
    })
    .await;

    // The outbox: a new delivery, a replay; a lease is not a hint.
    let d = delivery(&client, kept).await;
    hinted(&mut hints, &d).await;
    client
        .execute(
            "UPDATE webhook_deliveries SET status = 'failed' WHERE id = $1",
            &[&d],
        )
        .await
        .unwrap();
    client
        .execute(
            "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = now() WHERE id = $1",
            &[&d],
        )
        .await
        .unwrap();
    hinted(&mut hints, &d).await;

    client
        .execute("DELETE FROM sites WHERE id = 1", &[])
        .await
        .unwrap();
    eventually(registry, "the deleted site goes", |r| {
        r.webhook(kept).is_none() && r.site(1).is_none()
    })
    .await;

    // A truncation: everything is read again.
    let again = webhook(&client, 2, "https://again.example.com/hook").await;
    eventually(registry, "the webhook shows", |r| {
        r.webhook(again).is_some()
    })
    .await;
    client
        .batch_execute("TRUNCATE webhooks CASCADE")
        .await
        .unwrap();
    eventually(registry, "the truncated table is empty here too", |r| {
        r.webhook(again).is_none()
    })
    .await;

    // None of it needed a NOTIFY trigger.
    assert_eq!(
        replication::disabled_notify_triggers(&client)
            .await
            .unwrap()
            .len(),
        4
    );
    stream.stop().await;
}

/// The daemon's environment in replication mode with this replica name.
fn replication_env(config: &Config) -> Vec<(String, String)> {
    let mut env = config_env(config);
    env.push((
        "PLAUSIBLE_WEBHOOKS_CHANGES__SOURCE".into(),
        match config.changes.source {
            ChangeSource::Notify => "notify".into(),
            ChangeSource::Replication => "replication".into(),
        },
    ));
    env.push((
        "PLAUSIBLE_WEBHOOKS_CHANGES__REPLICA_NAME".into(),
        config.changes.replica_name.clone(),
    ));
    env
}

/// A running daemon binary and its admin address.
struct Daemon {
    child: std::process::Child,
    addr: String,
    /// Kept so that the daemon's stderr is read to the end (a full pipe
    /// would block its logging).
    _logs: std::sync::mpsc::Receiver<serde_json::Value>,
}

impl Daemon {
    fn run(env: &[(String, String)]) -> Daemon {
        let mut child = spawn("run", env);
        let logs = log_lines(&mut child);
        let listening = crate::daemon::wait_for_message(&logs, "admin http server listening");
        let addr = listening["listen"].as_str().unwrap().to_string();
        wait_until_ready(&addr);
        Daemon {
            child,
            addr,
            _logs: logs,
        }
    }

    /// A metric's value (`name` with its labels as the exporter writes
    /// them); 0 when absent.
    fn metric(&self, name: &str) -> f64 {
        let (_, body) = http_get(&self.addr, "/metrics");
        body.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }

    async fn until_metric(&self, what: &str, name: &str, check: impl Fn(f64) -> bool) {
        wait_for(what, Duration::from_secs(20), async || {
            check(self.metric(name))
        })
        .await;
    }

    fn resyncs(&self, reason: &str) -> f64 {
        self.metric(&format!(
            "plausible_webhooks_registry_resyncs_total{{reason=\"{reason}\"}}"
        ))
    }

    fn kill(mut self) {
        signal(&self.child, "KILL");
        wait_exit(&mut self.child, Duration::from_secs(10));
    }

    fn stop(mut self) {
        signal(&self.child, "TERM");
        assert!(wait_exit(&mut self.child, Duration::from_secs(30)).success());
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const WEBHOOKS: &str = "plausible_webhooks_registry_webhooks";
const APPLIED: &str = "plausible_webhooks_registry_changes_applied_total";

/// A migrated database (Plausible's tables, the daemon's, the
/// publications) and ClickHouse, for the binary in replication mode.
async fn binary_setup(tag: &str) -> (TestPostgres, TestClickhouse, Config) {
    let pg = TestPostgres::with_plausible().await;
    let ch = TestClickhouse::new().await;
    let mut config = config(&pg, &ch);
    replicating(&mut config, tag);
    let mut migrate = spawn("migrate", &replication_env(&config));
    assert!(wait_exit(&mut migrate, Duration::from_secs(60)).success());
    (pg, ch, config)
}

/// The WAL position now, and a wait until the slot has confirmed it.
async fn until_confirmed(client: &Client, slot: &str) {
    let now: String = client
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .unwrap()
        .get(0);
    wait_for("the slot confirms the WAL's end", Duration::from_secs(20), async || {
        client
            .query_one(
                "SELECT coalesce(confirmed_flush_lsn >= $2::text::pg_lsn, false) FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot, &now],
            )
            .await
            .is_ok_and(|r| r.get::<_, bool>(0))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_sigkill_the_daemon_resumes_from_its_slot_applying_each_change_once() {
    let (pg, _ch, config) = binary_setup("kill").await;
    let _slot = guard(&config);
    let env = replication_env(&config);
    let client = pg.client().await;
    site(&client, 1).await;
    webhook(&client, 1, "https://one.example.com/hook").await;

    let daemon = Daemon::run(&env);
    assert_eq!(daemon.resyncs("slot_created"), 1.0);
    assert_eq!(daemon.metric(WEBHOOKS), 1.0);
    until_confirmed(&client, &config.changes.slot()).await;
    daemon.kill();

    // Made while it is down: three inserts, an update, a delete.
    let a = webhook(&client, 1, "https://a.example.com/hook").await;
    webhook(&client, 1, "https://b.example.com/hook").await;
    webhook(&client, 1, "https://c.example.com/hook").await;
    client
        .execute(
            "UPDATE webhooks SET url = 'https://a2.example.com/hook' WHERE id = $1",
            &[&a],
        )
        .await
        .unwrap();
    client
        .execute(
            "DELETE FROM webhooks WHERE url = 'https://b.example.com/hook'",
            &[],
        )
        .await
        .unwrap();

    let daemon = Daemon::run(&env);
    // The process loads its registry once (it is in memory), then streams
    // the five changes from where the slot stood: none twice, and no
    // full read for a lost slot or lost notifications.
    daemon
        .until_metric("the five changes are applied", APPLIED, |v| v >= 5.0)
        .await;
    until_confirmed(&client, &config.changes.slot()).await;
    assert_eq!(daemon.metric(APPLIED), 5.0);
    assert_eq!(daemon.metric(WEBHOOKS), 3.0);
    assert_eq!(daemon.resyncs("start"), 1.0);
    assert_eq!(daemon.resyncs("slot_created"), 0.0);
    assert_eq!(daemon.resyncs("slot_lost"), 0.0);
    daemon.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_slot_is_made_again_with_one_full_read_and_nothing_lost() {
    let (pg, _ch, config) = binary_setup("dropped").await;
    let _slot = guard(&config);
    let env = replication_env(&config);
    let client = pg.client().await;
    site(&client, 1).await;
    let daemon = Daemon::run(&env);
    let slot = config.changes.slot();
    until_active(&client, &slot).await;

    // Dropped by hand: its walsender is ended first (the daemon may take
    // it again in between, so until the drop succeeds).
    wait_for("the slot is dropped", Duration::from_secs(20), async || {
        let _ = client
            .execute(
                "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active",
                &[&slot],
            )
            .await;
        client
            .execute("SELECT pg_drop_replication_slot($1)", &[&slot])
            .await
            .is_ok()
    })
    .await;
    // Made while there is no slot: only a full read can find it.
    webhook(&client, 1, "https://while-gone.example.com/hook").await;
    daemon
        .until_metric(
            "the webhook made while the slot was gone shows",
            WEBHOOKS,
            |v| v == 1.0,
        )
        .await;
    assert_eq!(daemon.resyncs("slot_lost"), 1.0);
    assert_eq!(
        daemon.metric("plausible_webhooks_replication_slot_recreated_total{reason=\"missing\"}"),
        1.0
    );
    // And the new slot streams.
    until_active(&client, &slot).await;
    webhook(&client, 1, "https://after.example.com/hook").await;
    daemon
        .until_metric("the next webhook shows", WEBHOOKS, |v| v == 2.0)
        .await;
    assert_eq!(daemon.resyncs("slot_lost"), 1.0);
    daemon.stop();
}

/// A database `plausible` on a private server, with Plausible's tables,
/// the daemon's migrations and its publications; its URL.
async fn database_on(server: &PrivatePostgres) -> String {
    let admin = connect(&server.url).await;
    admin
        .batch_execute("CREATE DATABASE plausible")
        .await
        .unwrap();
    let base = server.url.rsplit_once('/').map_or("", |(base, _)| base);
    let url = format!("{base}/plausible");
    let mut client = connect(&url).await;
    client.batch_execute(POSTGRES_FIXTURE).await.unwrap();
    plausible_webhooks::store::migrate(&mut client)
        .await
        .unwrap();
    publish(&client).await;
    url
}

/// A private Postgres server started with `args`, a database on it with
/// Plausible's tables and the daemon's migrations, and a replication-mode
/// config for it (and the harness's ClickHouse).
async fn on_private_server(
    args: &'static [&'static str],
    tag: &str,
) -> (PrivatePostgres, String, Config) {
    let server = tokio::task::spawn_blocking(move || PrivatePostgres::start(args))
        .await
        .unwrap()
        .unwrap();
    let url = database_on(&server).await;
    let ch = TestClickhouse::new().await;
    let pg = TestPostgres {
        name: "plausible".into(),
        url: url.clone(),
    };
    let mut config = config(&pg, &ch);
    replicating(&mut config, tag);
    (server, url, config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restart_is_survived_without_a_full_read() {
    let (mut server, url, config) = on_private_server(&[], "restart").await;
    let mut migrate = spawn("migrate", &replication_env(&config));
    assert!(wait_exit(&mut migrate, Duration::from_secs(60)).success());
    let client = connect(&url).await;
    site(&client, 1).await;
    webhook(&client, 1, "https://first.example.com/hook").await;
    let daemon = Daemon::run(&replication_env(&config));
    assert_eq!(daemon.metric(WEBHOOKS), 1.0);
    until_active(&client, &config.changes.slot()).await;

    let server = tokio::task::spawn_blocking(move || {
        server.restart().unwrap();
        server
    })
    .await
    .unwrap();
    let client = connect(&url).await;
    until_active(&client, &config.changes.slot()).await;
    webhook(&client, 1, "https://second.example.com/hook").await;
    daemon
        .until_metric("a webhook made after the restart shows", WEBHOOKS, |v| {
            v == 2.0
        })
        .await;
    // The stream resumed from the slot: the only full read is the start's.
    assert_eq!(daemon.resyncs("slot_created"), 1.0);
    assert_eq!(daemon.resyncs("start"), 0.0);
    assert_eq!(daemon.resyncs("slot_lost"), 0.0);
    assert!(daemon.metric("plausible_webhooks_change_stream_reconnects_total") >= 1.0);
    daemon.stop();
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_daemon_on_the_same_slot_is_told_to_set_a_replica_name_and_is_not_ready() {
    let (pg, _ch, config) = binary_setup("twice").await;
    let _slot = guard(&config);
    let env = replication_env(&config);
    let client = pg.client().await;
    let first = Daemon::run(&env);
    until_active(&client, &config.changes.slot()).await;

    let mut second = spawn("run", &env);
    let logs = log_lines(&mut second);
    let listening = crate::daemon::wait_for_message(&logs, "admin http server listening");
    let addr = listening["listen"].as_str().unwrap().to_string();
    let interrupted = crate::daemon::wait_for_message(&logs, "change stream interrupted");
    let error = interrupted["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        error.contains("in use by another process (PID") && error.contains("changes.replica_name"),
        "{interrupted}"
    );
    let (status, body) = http_get(&addr, "/health/ready");
    assert_eq!(status, 503, "{body}");
    let _ = second.kill();
    let _ = second.wait();
    first.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_is_sent_through_the_feed_without_notify_triggers() {
    let db = TestPostgres::migrated().await;
    let client = db.client().await;
    publish(&client).await;
    let mut config = crate::delivery::test_config(&db);
    replicating(&mut config, "send");
    config.delivery.resync_interval_secs = 3600;
    let _slot = guard(&config);
    site(&client, 1).await;
    let receiver = crate::support::receiver::Receiver::start().await;
    let hook = webhook(&client, 1, receiver.url("/hook").as_str()).await;
    let feed = Feed::default();
    let stream = Stream::start(&config, RegistryHandle::default(), &feed).await;
    eventually(&stream.registry, "the webhook is active", |r| {
        r.webhook(hook).is_some()
    })
    .await;
    let pool = plausible_webhooks::store::pool(&config.postgres).unwrap();
    let scheduler = plausible_webhooks::delivery::schedule::Scheduler::new(
        &config,
        pool,
        stream.registry.clone(),
    )
    .unwrap()
    .with_feed(feed.clone());
    let (stop, stop_rx) = watch::channel(false);
    let running = tokio::spawn(scheduler.run(stop_rx, Heartbeat::detached()));
    until_active(&client, &config.changes.slot()).await;
    // Past the scheduler's first full read, and no periodic one soon:
    // only the feed can bring it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let id = delivery(&client, hook).await;
    wait_for(
        "the delivery succeeds",
        Duration::from_secs(15),
        async || {
            client
                .query_one(
                    "SELECT status FROM webhook_deliveries WHERE id = $1",
                    &[&id],
                )
                .await
                .unwrap()
                .get::<_, String>(0)
                == "succeeded"
        },
    )
    .await;
    assert_eq!(receiver.received().len(), 1);
    let _ = stop.send(true);
    let _ = running.await;
    stream.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_of_100000_outbox_rows_is_applied() {
    let db = TestPostgres::migrated().await;
    let client = db.client().await;
    publish(&client).await;
    let mut config = config_pg(&db);
    replicating(&mut config, "large");
    let _slot = guard(&config);
    site(&client, 1).await;
    let hook = webhook(&client, 1, "https://large.example.com/hook").await;
    let feed = Feed::default();
    let mut hints = feed.subscribe();
    let stream = Stream::start(&config, RegistryHandle::default(), &feed).await;
    until_active(&client, &config.changes.slot()).await;

    let started = std::time::Instant::now();
    client
        .execute(
            "INSERT INTO webhook_deliveries (webhook_id, event_type, payload) \
             SELECT $1, 'webhook.test', '{\"type\": \"webhook.test\"}' FROM generate_series(1, 100000)",
            &[&hook],
        )
        .await
        .unwrap();
    // Every row reaches the feed, or (behind by more than it buffers) the
    // feed says to read the outbox in full: either way the schedule gets
    // all of them.
    let mut seen = 0;
    let mut resync = false;
    while seen < 100_000 && !resync {
        match tokio::time::timeout(Duration::from_secs(60), hints.recv()).await {
            Ok(Ok(Item::Hint(_))) => seen += 1,
            Ok(Ok(Item::Resync)) | Ok(Err(broadcast::error::RecvError::Lagged(_))) => resync = true,
            other => panic!("the feed stopped after {seen} hints: {other:?}"),
        }
    }
    until_confirmed(&client, &config.changes.slot()).await;
    eprintln!(
        "100,000 outbox rows streamed and acknowledged in {:?} ({seen} hints{})",
        started.elapsed(),
        if resync { ", then a full read" } else { "" }
    );
    assert!(stream.registry.read().webhook(hook).is_some());
    stream.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_runs_over_tls_verifying_the_server() {
    let db = TestPostgres::migrated().await;
    let client = db.client().await;
    publish(&client).await;
    let Some(ca) = crate::support::servers().postgres_ca.clone() else {
        return; // a server named by DATABASE_URL: no CA known
    };
    let mut config = config_pg(&db);
    let url = db.url.replace("127.0.0.1", "localhost");
    config.postgres.url = PostgresUrl::new(format!(
        "{url}?sslmode=verify-full&sslrootcert={}",
        ca.display()
    ));
    replicating(&mut config, "tls");
    let _slot = guard(&config);
    site(&client, 1).await;
    let feed = Feed::default();
    let stream = Stream::start(&config, RegistryHandle::default(), &feed).await;
    until_active(&client, &config.changes.slot()).await;
    let id = webhook(&client, 1, "https://tls.example.com/hook").await;
    eventually(&stream.registry, "the webhook shows", |r| {
        r.webhook(id).is_some()
    })
    .await;
    let encrypted: bool = client
        .query_one(
            "SELECT coalesce(bool_and(s.ssl), false) FROM pg_stat_replication AS r \
             JOIN pg_stat_ssl AS s USING (pid) WHERE r.application_name = 'plausible-webhooks replication' \
             AND r.pid = (SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1)",
            &[&config.changes.slot()],
        )
        .await
        .unwrap()
        .get(0);
    assert!(encrypted, "the replication connection is not encrypted");
    stream.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_without_replication_or_publications_is_refused() {
    let db = TestPostgres::migrated().await;
    let client = db.client().await;
    // No publications yet: `migrate` is named.
    let problems = replication::prerequisites(&client).await.unwrap();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("migrate"), "{problems:?}");
    publish(&client).await;
    assert!(
        replication::prerequisites(&client)
            .await
            .unwrap()
            .is_empty()
    );

    let role = format!("norepl_{}", replica_name("role"));
    client
        .batch_execute(&format!("CREATE ROLE {role} LOGIN"))
        .await
        .unwrap();
    let url = db.url.replace("postgres@", &format!("{role}@"));
    let as_role = connect(&url).await;
    let problems = replication::prerequisites(&as_role).await.unwrap();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].contains("REPLICATION") && problems[0].contains("changes.source"),
        "{problems:?}"
    );
    drop(as_role);
    let _ = client.batch_execute(&format!("DROP ROLE {role}")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wal_level_replica_refuses_replication_mode_with_exit_code_2() {
    let (server, _, config) = on_private_server(&["-c", "wal_level=replica"], "replica").await;
    let mut daemon = spawn("run", &replication_env(&config));
    let status = wait_exit(&mut daemon, Duration::from_secs(60));
    let mut err = String::new();
    std::io::Read::read_to_string(&mut daemon.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(
        err.contains("changes.source") && err.contains("wal_level = logical"),
        "{err}"
    );
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_between_notify_and_replication_both_ways_loses_nothing() {
    let pg = TestPostgres::with_plausible().await;
    let ch = TestClickhouse::new().await;
    let mut notify = config(&pg, &ch);
    notify.changes.replica_name = replica_name("switch");
    let mut replicate = notify.clone();
    replicate.changes.source = ChangeSource::Replication;
    let _slot = guard(&replicate);
    let migrate = |config: &Config| {
        let mut child = spawn("migrate", &replication_env(config));
        assert!(wait_exit(&mut child, Duration::from_secs(60)).success());
    };
    let client = pg.client().await;

    migrate(&notify);
    site(&client, 1).await;
    let daemon = Daemon::run(&replication_env(&notify));
    let a = webhook(&client, 1, "https://a.example.com/hook").await;
    daemon
        .until_metric("a shows (notify)", WEBHOOKS, |v| v == 1.0)
        .await;
    daemon.stop();

    // To replication: what changed in between is in the start's full read.
    webhook(&client, 1, "https://b.example.com/hook").await;
    migrate(&replicate);
    assert_eq!(
        replication::disabled_notify_triggers(&client)
            .await
            .unwrap()
            .len(),
        4
    );
    let daemon = Daemon::run(&replication_env(&replicate));
    daemon
        .until_metric("b shows (replication)", WEBHOOKS, |v| v == 2.0)
        .await;
    webhook(&client, 1, "https://c.example.com/hook").await;
    daemon
        .until_metric("c shows (replication)", WEBHOOKS, |v| v == 3.0)
        .await;
    daemon.stop();

    // And back: the triggers are on again, the slot is dropped.
    webhook(&client, 1, "https://d.example.com/hook").await;
    client
        .execute("DELETE FROM webhooks WHERE id = $1", &[&a])
        .await
        .unwrap();
    migrate(&notify);
    assert!(
        replication::disabled_notify_triggers(&client)
            .await
            .unwrap()
            .is_empty()
    );
    let daemon = Daemon::run(&replication_env(&notify));
    daemon
        .until_metric("b, c and d show (notify)", WEBHOOKS, |v| v == 3.0)
        .await;
    wait_for("the slot is dropped", Duration::from_secs(10), async || {
        replication::slot(&client, &replicate.changes.slot())
            .await
            .unwrap()
            .is_none()
    })
    .await;
    webhook(&client, 1, "https://e.example.com/hook").await;
    daemon
        .until_metric("e shows (notify)", WEBHOOKS, |v| v == 4.0)
        .await;
    daemon.stop();
}

fn run_tool(env: &[(String, String)], args: &[&str]) -> (Option<i32>, String) {
    let out = crate::support::binary()
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_flags_unread_slots_and_disabled_triggers_and_uninstall_drops_slots_and_publications()
 {
    let (pg, _ch, config) = binary_setup("doctor").await;
    let _slot = guard(&config);
    let client = pg.client().await;
    let slot = config.changes.slot();
    replication::create_slot(&client, &slot).await.unwrap();

    let env = replication_env(&config);
    let (code, report) = run_tool(&env, &["doctor"]);
    assert_eq!(code, Some(0), "{report}");
    assert!(
        report.contains("ok    change source: replication from slot"),
        "{report}"
    );
    assert!(
        report.contains(&format!("warn  replication slot: {slot} is not being read")),
        "{report}"
    );

    // The same install in notify mode, its triggers left disabled.
    let mut notify = config.clone();
    notify.changes.source = ChangeSource::Notify;
    let (code, report) = run_tool(&replication_env(&notify), &["doctor"]);
    assert_eq!(code, Some(1), "{report}");
    assert!(
        report.contains("FAIL  change source: notify, but its triggers"),
        "{report}"
    );
    // And a daemon started so says so.
    let mut daemon = spawn("run", &replication_env(&notify));
    let logs = log_lines(&mut daemon);
    let line = crate::daemon::wait_for_message(
        &logs,
        "changes.source is notify but its NOTIFY triggers are disabled: run `plausible-webhooks migrate` with changes.source = \"notify\"",
    );
    assert_eq!(line["level"], "ERROR", "{line}");
    // Stopped before its registry loaded, it still stops.
    signal(&daemon, "TERM");
    assert!(wait_exit(&mut daemon, Duration::from_secs(30)).success());
    // In notify mode, its unread slot was dropped.
    assert!(replication::slot(&client, &slot).await.unwrap().is_none());

    replication::create_slot(&client, &slot).await.unwrap();
    let (code, out) = run_tool(&env, &["uninstall", "--yes"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains(&format!("removed replication slots: {slot}")),
        "{out}"
    );
    assert!(replication::slot(&client, &slot).await.unwrap().is_none());
    assert!(replication::publications(&client).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_invalidated_by_max_slot_wal_keep_size_is_made_again_with_one_full_read() {
    let (server, url, config) =
        on_private_server(&["-c", "max_slot_wal_keep_size=1MB"], "lost").await;
    let env = replication_env(&config);
    let mut migrate = spawn("migrate", &env);
    assert!(wait_exit(&mut migrate, Duration::from_secs(60)).success());
    let client = connect(&url).await;
    site(&client, 1).await;
    webhook(&client, 1, "https://first.example.com/hook").await;
    let daemon = Daemon::run(&env);
    assert_eq!(daemon.metric(WEBHOOKS), 1.0);
    daemon.stop();

    // Unread, the slot falls behind by more than Postgres may keep for it.
    let slot = config.changes.slot();
    client
        .batch_execute("CREATE TABLE filler (n int)")
        .await
        .unwrap();
    wait_for("the slot is invalidated", Duration::from_secs(60), async || {
        client
            .batch_execute(
                "INSERT INTO filler SELECT generate_series(1, 1000); SELECT pg_switch_wal(); CHECKPOINT",
            )
            .await
            .unwrap();
        replication::slot(&client, &slot)
            .await
            .unwrap()
            .is_some_and(|s| s.is_lost())
    })
    .await;
    webhook(&client, 1, "https://while-lost.example.com/hook").await;

    let daemon = Daemon::run(&env);
    daemon
        .until_metric("the webhook made meanwhile shows", WEBHOOKS, |v| v == 2.0)
        .await;
    assert_eq!(
        daemon
            .metric("plausible_webhooks_replication_slot_recreated_total{reason=\"invalidated\"}"),
        1.0
    );
    assert_eq!(daemon.resyncs("slot_lost"), 1.0);
    until_active(&client, &slot).await;
    webhook(&client, 1, "https://after.example.com/hook").await;
    daemon
        .until_metric("the new slot streams", WEBHOOKS, |v| v == 3.0)
        .await;
    daemon.stop();
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_partition_is_survived() {
    let server =
        tokio::task::spawn_blocking(|| PrivatePostgres::start(&["-c", "wal_sender_timeout=2s"]))
            .await
            .unwrap()
            .unwrap();
    let url = database_on(&server).await;
    let (proxy, proxied) = crate::support::proxy::Proxy::for_postgres_url(&url).await;
    let mut config = Config::defaults();
    config.postgres.url = PostgresUrl::new(proxied);
    replicating(&mut config, "partition");
    let client = connect(&url).await;
    site(&client, 1).await;
    let feed = Feed::default();
    let stream = Stream::start(&config, RegistryHandle::default(), &feed).await;
    until_active(&client, &config.changes.slot()).await;

    // Nothing gets through for a while: no error reaches the daemon, and
    // the server ends its walsender (wal_sender_timeout).
    proxy.blackhole();
    wait_for(
        "the server lets the slot go",
        Duration::from_secs(20),
        async || {
            replication::slot(&client, &config.changes.slot())
                .await
                .unwrap()
                .is_some_and(|s| !s.active)
        },
    )
    .await;
    let during = webhook(&client, 1, "https://during.example.com/hook").await;
    proxy.restore();
    // The stream notices that the server let its slot go at the second
    // slot read in a row that finds it unheld (5 s apart), then resumes.
    wait_for(
        "the change made during the partition shows",
        Duration::from_secs(40),
        async || stream.registry.read().webhook(during).is_some(),
    )
    .await;
    stream.stop().await;
    drop(server);
}

/// The wait before re-reading a streamed commit's rows: a transaction still
/// open (the newest one, at the snapshot's xmax, which no snapshot lists as
/// running) is not visible; once committed it is. The first form of the
/// check looked only at the snapshot's running list and let the newest
/// transaction through, so its rows were re-read before it was visible.
#[tokio::test]
async fn the_newest_open_transaction_is_not_yet_visible() {
    let pg = TestPostgres::migrated().await;
    let mut holder = pg.client().await;
    let watcher = pg.client().await;
    let tx = holder.transaction().await.unwrap();
    let xid: i64 = tx
        .query_one("SELECT pg_current_xact_id()::text::bigint", &[])
        .await
        .unwrap()
        .get(0);
    let xid32 = (xid % (1 << 32)) as u32;
    assert_eq!(
        replication::not_visible(&watcher, &[xid32]).await.unwrap(),
        1,
        "an open transaction is not visible"
    );
    tx.commit().await.unwrap();
    assert_eq!(
        replication::not_visible(&watcher, &[xid32]).await.unwrap(),
        0,
        "a committed transaction is visible"
    );
    // The first normal id, committed long ago, is visible.
    assert_eq!(replication::not_visible(&watcher, &[3]).await.unwrap(), 0);
}
