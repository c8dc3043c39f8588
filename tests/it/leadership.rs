//! Leadership of the trigger engine among daemons on one database: the
//! real binary three times over while goal events stream in, with leaders
//! SIGKILLed one after the other; a leader cut off from Postgres; and two
//! engines in one process that both believe they lead, of which only one
//! commit lands.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use plausible_webhooks::analytics::{Analytics, apply_migrations, embedded_migrations};
use plausible_webhooks::triggers::TriggerError;
use serde_json::Value;
use tokio::sync::watch;

use crate::postgres_schema::SECRET;
use crate::support::proxy::Proxy;
use crate::support::receiver::Receiver;
use crate::support::{TestClickhouse, TestPostgres, binary, config, config_env, wait_for};
use crate::triggers::{Ev, World, pv};

/// `triggers.failover_secs` in these tests.
const FAILOVER_SECS: u64 = 3;

/// One daemon process, its admin address and its JSON log lines.
struct Daemon {
    child: Child,
    addr: String,
    logs: Arc<Mutex<Vec<Value>>>,
}

impl Daemon {
    fn start(env: &[(String, String)]) -> Daemon {
        let mut child = binary()
            .arg("run")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let value =
                    serde_json::from_str(&line).unwrap_or(serde_json::json!({ "raw": line }));
                sink.lock().unwrap().push(value);
            }
        });
        let mut daemon = Daemon {
            child,
            addr: String::new(),
            logs,
        };
        let listening = daemon.wait_log("admin http server listening");
        daemon.addr = listening["listen"].as_str().unwrap().to_string();
        daemon
    }

    fn log(&self, message: &str) -> Option<Value> {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .find(|l| l["message"] == message)
            .cloned()
    }

    fn wait_log(&self, message: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(line) = self.log(message) {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "no {message:?} log line: {:#?}",
                self.logs.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The `role` /health/ready reports.
    fn role(&self) -> String {
        let Ok(mut stream) = std::net::TcpStream::connect(&self.addr) else {
            return "unreachable".into();
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = write!(
            stream,
            "GET /health/ready HTTP/1.0\r\nHost: {}\r\n\r\n",
            self.addr
        );
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        let body = response.split("\r\n\r\n").nth(1).unwrap_or("");
        serde_json::from_str::<Value>(body)
            .ok()
            .and_then(|v| v["role"].as_str().map(str::to_string))
            .unwrap_or_else(|| "none".into())
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A database with site 1, its `Buy` goal and a goal webhook (1 s
/// interval) to `receiver`; and the daemons' environment.
async fn setup(receiver: &Receiver) -> (TestPostgres, TestClickhouse, Vec<(String, String)>) {
    let pg = TestPostgres::migrated().await;
    let ch = TestClickhouse::new().await;
    apply_migrations(&ch.analytics(), embedded_migrations())
        .await
        .unwrap();
    let client = pg.client().await;
    client
        .batch_execute(&format!(
            "INSERT INTO sites (id, domain) VALUES (1, 'one.example.com');
             INSERT INTO goals (site_id, event_name, display_name) VALUES (1, 'Buy', 'Buy');
             INSERT INTO webhooks (site_id, url, secret, event_types, goal_interval_seconds)
               VALUES (1, '{}', '{SECRET}', ARRAY['goal.completed'], 1);",
            receiver.url("/ok"),
        ))
        .await
        .unwrap();
    let mut env = config_env(&config(&pg, &ch));
    for (key, value) in [
        ("TRIGGERS__FAILOVER_SECS", FAILOVER_SECS.to_string()),
        ("TRIGGERS__POLL_INTERVAL_MS", "200".into()),
        ("DELIVERY__ALLOW_HTTP", "true".into()),
        ("DELIVERY__ALLOWED_CIDRS", "[\"127.0.0.0/8\"]".into()),
        ("DELIVERY__REQUEST_TIMEOUT_SECS", "2".into()),
        ("DELIVERY__CONNECT_TIMEOUT_SECS", "1".into()),
        ("DELIVERY__RESYNC_INTERVAL_SECS", "2".into()),
        ("LOG__FORMAT", "json".into()),
        ("LOG__LEVEL", "info".into()),
    ] {
        env.push((format!("PLAUSIBLE_WEBHOOKS_{key}"), value));
    }
    (pg, ch, env)
}

/// Inserts three `Buy` events, of new visitors, every 200 ms until stopped.
struct Traffic {
    inserted: Arc<AtomicU64>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Traffic {
    fn start(analytics: Analytics) -> Traffic {
        let inserted = Arc::new(AtomicU64::new(0));
        let (stop, mut stopped) = watch::channel(false);
        let count = inserted.clone();
        let task = tokio::spawn(async move {
            let mut user = 1u64;
            while !*stopped.borrow() {
                let rows: Vec<String> = (user..user + 3)
                    .map(|u| format!("(now(), 'Buy', 1, {u}, {u}, '/')"))
                    .collect();
                analytics
                    .execute(&analytics.render(&format!(
                        "INSERT INTO {{database}}.{{events_table}} (timestamp, name, site_id, user_id, session_id, pathname) VALUES {}",
                        rows.join(", ")
                    )))
                    .await
                    .unwrap();
                user += 3;
                count.fetch_add(3, Ordering::SeqCst);
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(200)) => {}
                    _ = stopped.changed() => {}
                }
            }
        });
        Traffic {
            inserted,
            stop,
            task,
        }
    }

    /// Stops, and returns the events inserted.
    async fn stop(self) -> u64 {
        let _ = self.stop.send(true);
        self.task.await.unwrap();
        self.inserted.load(Ordering::SeqCst)
    }
}

/// The completions the receiver got, each delivery counted once however
/// often it arrived; checks that no delivery arrived with two bodies and no
/// completion interval under two ids.
fn delivered(receiver: &Receiver) -> u64 {
    let mut bodies: BTreeMap<String, Value> = BTreeMap::new();
    for request in receiver.received() {
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        let id = request.headers["webhook-id"].clone();
        if let Some(earlier) = bodies.get(&id) {
            assert_eq!(earlier, &body, "delivery {id} arrived with two bodies");
        }
        bodies.insert(id, body);
    }
    let mut intervals: BTreeMap<String, BTreeSet<&String>> = BTreeMap::new();
    for (id, body) in &bodies {
        let interval = format!(
            "{}..{}",
            body["data"]["interval"]["from"], body["data"]["interval"]["to"]
        );
        intervals.entry(interval).or_default().insert(id);
    }
    for (interval, ids) in &intervals {
        assert_eq!(ids.len(), 1, "interval {interval} sent under ids {ids:?}");
    }
    bodies
        .values()
        .filter(|b| b["type"] == "goal.completed")
        .filter_map(|b| b["data"]["completions"].as_u64())
        .sum()
}

/// Waits until exactly one of the live daemons reports leading; returns
/// its index.
async fn leader(daemons: &[Option<Daemon>]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let leading: Vec<usize> = daemons
            .iter()
            .enumerate()
            .filter(|(_, d)| d.as_ref().is_some_and(|d| d.role() == "leader"))
            .map(|(i, _)| i)
            .collect();
        if leading.len() == 1 {
            return leading[0];
        }
        assert!(Instant::now() < deadline, "no single leader: {leading:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the receiver's completions pass `floor`.
async fn deliveries_pass(receiver: &Receiver, floor: u64) {
    wait_for(
        "more completions are delivered",
        Duration::from_secs(30),
        async || delivered(receiver) > floor,
    )
    .await;
}

async fn all_delivered(receiver: &Receiver, inserted: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = delivered(receiver);
        if got == inserted {
            return;
        }
        assert!(got < inserted, "{got} completions delivered of {inserted}");
        assert!(
            Instant::now() < deadline,
            "only {got} of {inserted} completions delivered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn three_daemons_leaders_killed_one_after_another_every_completion_once() {
    let receiver = Receiver::start().await;
    let (_pg, ch, env) = setup(&receiver).await;
    let mut daemons: Vec<Option<Daemon>> = (0..3).map(|_| Some(Daemon::start(&env))).collect();
    let traffic = Traffic::start(ch.analytics());

    let mut failovers = Vec::new();
    let mut current = leader(&daemons).await;
    deliveries_pass(&receiver, 0).await;
    for _ in 0..2 {
        let before = delivered(&receiver);
        let killed = Instant::now();
        if let Some(mut d) = daemons[current].take() {
            d.kill();
        }
        current = leader(&daemons).await;
        let failover = killed.elapsed();
        failovers.push(failover);
        // The new leader ticks: completions keep arriving.
        deliveries_pass(&receiver, before).await;
        assert!(
            failover < Duration::from_secs(3 * FAILOVER_SECS),
            "failover took {failover:?}"
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let inserted = traffic.stop().await;
    all_delivered(&receiver, inserted).await;
    println!(
        "leadership: failover after SIGKILL with triggers.failover_secs = {FAILOVER_SECS}: {failovers:?}; {inserted} completions delivered once each"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn a_leader_cut_off_from_postgres_stops_before_another_takes_over() {
    let receiver = Receiver::start().await;
    let (pg, ch, env) = setup(&receiver).await;
    let (proxy, proxied) = Proxy::for_postgres_url(&pg.url).await;
    let mut cut_env = env.clone();
    cut_env.push(("PLAUSIBLE_WEBHOOKS_POSTGRES__URL".into(), proxied));
    let cut = Daemon::start(&cut_env);
    let daemons = [Some(cut), None];
    assert_eq!(leader(&daemons).await, 0);
    let [Some(cut), None] = daemons else {
        unreachable!()
    };
    let other = Daemon::start(&env);
    wait_for(
        "the second daemon stands by",
        Duration::from_secs(30),
        async || other.role() == "standby",
    )
    .await;
    let traffic = Traffic::start(ch.analytics());
    deliveries_pass(&receiver, 0).await;

    // A silent partition: the leader's connections stay open, and nothing
    // comes back.
    proxy.blackhole();
    let partitioned = Instant::now();
    let daemons = [None, Some(other)];
    assert_eq!(leader(&daemons).await, 1);
    let failover = partitioned.elapsed();
    let [None, Some(other)] = daemons else {
        unreachable!()
    };
    assert_ne!(cut.role(), "leader");
    let stopped = cut.wait_log("trigger lease not renewed in time; the tick stopped");
    let taken = other.wait_log("trigger leadership taken");
    let at = |line: &Value| {
        chrono::DateTime::parse_from_rfc3339(line["timestamp"].as_str().unwrap()).unwrap()
    };
    assert!(
        at(&stopped) < at(&taken),
        "the cut-off leader stopped ({}) before the other took over ({})",
        at(&stopped),
        at(&taken)
    );

    tokio::time::sleep(Duration::from_secs(1)).await;
    let inserted = traffic.stop().await;
    all_delivered(&receiver, inserted).await;
    println!(
        "leadership: failover after a partition from Postgres with triggers.failover_secs = {FAILOVER_SECS}: {failover:?}; {inserted} completions delivered once each"
    );
    drop(cut);
    drop(other);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_engines_that_both_believe_they_lead_only_one_commits() {
    let w = World::with_buy_goal().await;
    let buy = |user| Ev {
        name: "Buy",
        ..pv(1, user, "/")
    };
    let mut first = w.engine().await;
    first.tick().await.unwrap();
    w.events(&[buy(1), buy(2)]).await;

    // The first engine's lease runs out on Postgres's clock while it still
    // believes it leads (paused, say); a second engine takes over and
    // counts the completions.
    let mut second = w.engine().await;
    second.tick().await.unwrap();
    assert_eq!(w.completions().await, 2);

    // The first engine's tick sees the same completions as new, and its
    // commit is fenced out: it writes nothing.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(matches!(first.tick().await, Err(TriggerError::Fenced)));
    assert_eq!(w.completions().await, 2);
    // Nor can it take the lease back while the second holds it.
    assert!(matches!(first.tick().await, Err(TriggerError::NotLeader)));

    w.events(&[buy(3)]).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    second.tick().await.unwrap();
    assert_eq!(w.completions().await, 3);
}
