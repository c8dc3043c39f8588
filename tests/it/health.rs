//! Supervision and honest health: a task that dies shows in
//! `/health/ready` until it is restarted; systemd hears READY=1 and a
//! watchdog fed while the tasks beat.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use plausible_webhooks::daemon::supervisor::Supervisor;
use plausible_webhooks::http::AdminServer;
use plausible_webhooks::telemetry::health::Health;
use tokio::sync::watch;

use crate::daemon::{http_get, log_lines, signal, spawn, wait_exit, wait_for_message};
use crate::support::{TestClickhouse, TestPostgres, config, config_env, wait_for};

async fn get(addr: &str, path: &str) -> (u16, serde_json::Value) {
    let (addr, path) = (addr.to_string(), path.to_string());
    let (status, body) = tokio::task::spawn_blocking(move || http_get(&addr, &path))
        .await
        .unwrap();
    (
        status,
        serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body)),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_that_panics_is_reported_down_then_restarted() {
    let pg = TestPostgres::migrated().await;
    let ch = TestClickhouse::new().await;
    let config = config(&pg, &ch);
    plausible_webhooks::migrate::migrate(&config).await.unwrap();
    let pool = plausible_webhooks::store::pool(&config.postgres).unwrap();
    let analytics = plausible_webhooks::analytics::Analytics::new(&config.clickhouse);
    let health = Health::default();
    let admin = AdminServer::bind(&config.http, pool, analytics, health.clone(), None)
        .await
        .unwrap();
    let addr = admin.local_addr().unwrap().to_string();
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut admin_stop = stop_rx.clone();
    tokio::spawn(admin.serve(async move {
        let _ = admin_stop.wait_for(|s| *s).await;
    }));

    let (supervisor, _fatal) = Supervisor::new(health.clone(), stop_rx);
    let fixed = Arc::new(AtomicBool::new(false));
    let runs = Arc::new(AtomicUsize::new(0));
    let steady = supervisor.spawn("steady", |mut stop: watch::Receiver<bool>, beat| {
        Ok::<_, String>(async move {
            while !*stop.borrow() {
                beat.beat();
                let _ = tokio::time::timeout(Duration::from_millis(200), stop.changed()).await;
            }
        })
    });
    let flaky = supervisor.spawn("flaky", {
        let (fixed, runs) = (fixed.clone(), runs.clone());
        move |mut stop: watch::Receiver<bool>, _beat| {
            runs.fetch_add(1, Ordering::SeqCst);
            let fixed = fixed.load(Ordering::SeqCst);
            Ok::<_, String>(async move {
                assert!(fixed, "the flaky task fails");
                let _ = stop.wait_for(|s| *s).await;
            })
        }
    });

    // Not ready before the registry has loaded.
    let (status, body) = get(&addr, "/health/ready").await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["problems"]
            .as_array()
            .unwrap()
            .contains(&"the registry has not loaded yet".into()),
        "{body}"
    );
    health.set_registry_loaded();

    // While the task is down (between its failures and restarts), 503 names it.
    let mut seen = serde_json::Value::Null;
    wait_for(
        "the failing task shows in /health/ready",
        Duration::from_secs(20),
        async || {
            let (status, body) = get(&addr, "/health/ready").await;
            seen = body.clone();
            status == 503
                && body["problems"].as_array().is_some_and(|p| {
                    p.iter().any(|p| {
                        p.as_str().is_some_and(|p| {
                            p.starts_with("task flaky is down: it panicked: the flaky task fails")
                        })
                    })
                })
        },
    )
    .await;
    assert_eq!(seen["postgres"], "ok");
    assert_eq!(seen["clickhouse"], "ok");

    // Once it can run again, the supervisor's next restart makes us ready.
    fixed.store(true, Ordering::SeqCst);
    wait_for(
        "ready again after the restart",
        Duration::from_secs(30),
        async || get(&addr, "/health/ready").await.0 == 200,
    )
    .await;
    let (_, body) = get(&addr, "/health/ready").await;
    let flaky_state = body["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "flaky")
        .unwrap()
        .clone();
    assert_eq!(flaky_state["alive"], true);
    assert!(flaky_state["restarts"].as_u64().unwrap() >= 1, "{body}");
    assert!(runs.load(Ordering::SeqCst) >= 2);

    let _ = stop_tx.send(true);
    steady.await.unwrap();
    flaky.await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn systemd_hears_ready_then_watchdog_then_stopping() {
    let pg = TestPostgres::migrated().await;
    let ch = TestClickhouse::new().await;
    let mut env = config_env(&config(&pg, &ch));
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    env.push((
        "NOTIFY_SOCKET".into(),
        socket_path.to_string_lossy().into_owned(),
    ));
    // A one-second watchdog: fed every half second while the tasks beat.
    env.push(("WATCHDOG_USEC".into(), "1000000".into()));

    let mut daemon = spawn("run", &env);
    let logs = log_lines(&mut daemon);
    wait_for_message(&logs, "systemd watchdog enabled");
    let mut messages = Vec::new();
    let mut buf = [0u8; 512];
    while !messages.iter().any(|m: &String| m.contains("WATCHDOG=1")) {
        let n = socket
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("no notification ({e}); got {messages:?}"));
        messages.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    let ready = messages.iter().position(|m| m.contains("READY=1"));
    let watchdog = messages.iter().position(|m| m.contains("WATCHDOG=1"));
    assert!(
        ready.is_some() && ready < watchdog,
        "READY=1 comes first: {messages:?}"
    );

    signal(&daemon, "TERM");
    loop {
        let n = socket.recv(&mut buf).expect("STOPPING=1 arrives");
        if String::from_utf8_lossy(&buf[..n]).contains("STOPPING=1") {
            break;
        }
    }
    assert!(wait_exit(&mut daemon, Duration::from_secs(20)).success());
}
