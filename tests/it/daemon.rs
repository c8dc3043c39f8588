//! The binary end to end: `migrate` (also twice at once) and `run` with a
//! clean shutdown on SIGTERM and SIGINT.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::support::{TestClickhouse, TestPostgres, binary, config, config_env};

pub fn spawn(command: &str, env: &[(String, String)]) -> Child {
    binary()
        .arg(command)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("PLAUSIBLE_WEBHOOKS_LOG__FORMAT", "json")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Reads JSON log lines from the child's stderr on a thread.
pub fn log_lines(child: &mut Child) -> std::sync::mpsc::Receiver<serde_json::Value> {
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let value = serde_json::from_str(&line).unwrap_or(serde_json::json!({ "raw": line }));
            if tx.send(value).is_err() {
                break;
            }
        }
    });
    rx
}

pub fn wait_for_message(
    rx: &std::sync::mpsc::Receiver<serde_json::Value>,
    message: &str,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) if line["message"] == message => return line,
            Ok(line) => seen.push(line),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(_) => break,
        }
    }
    panic!("no {message:?} log line; saw {seen:#?}");
}

pub fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the daemon did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn signal(child: &Child, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

/// Polls `/health/ready` until it answers 200; returns its JSON body.
pub fn wait_until_ready(addr: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = http_get(addr, "/health/ready");
        if status == 200 {
            return serde_json::from_str(&body).unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "not ready within 30 s: {status} {body}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn migrate_twice_at_once_then_run_until_sigterm() {
    let pg = TestPostgres::with_plausible().await;
    let ch = TestClickhouse::new().await;
    let env = config_env(&config(&pg, &ch));

    // Two migrate processes at once: both succeed, the schema is whole.
    let mut first = spawn("migrate", &env);
    let mut second = spawn("migrate", &env);
    let a = wait_exit(&mut first, Duration::from_secs(60));
    let b = wait_exit(&mut second, Duration::from_secs(60));
    let mut err = String::new();
    second
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(a.success() && b.success(), "{a} {b}: {err}");
    let client = pg.client().await;
    assert_eq!(
        plausible_webhooks::store::schema_version(&client)
            .await
            .unwrap(),
        plausible_webhooks::store::latest_version()
    );
    // And once more, serially: nothing to do.
    let mut third = spawn("migrate", &env);
    assert!(wait_exit(&mut third, Duration::from_secs(60)).success());

    for (sig, name) in [("TERM", "SIGTERM"), ("INT", "SIGINT")] {
        let mut daemon = spawn("run", &env);
        let logs = log_lines(&mut daemon);
        let listening = wait_for_message(&logs, "admin http server listening");
        let addr = listening["listen"].as_str().unwrap().to_string();
        wait_for_message(&logs, "ready");

        assert_eq!(http_get(&addr, "/health/live").0, 200);
        // Ready once the registry has loaded and every task runs.
        let body = wait_until_ready(&addr);
        assert_eq!(body["status"], "ready");
        assert_eq!(body["registry_loaded"], true);
        let tasks: Vec<&str> = body["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        for task in ["change stream", "trigger engine", "delivery scheduler"] {
            assert!(tasks.contains(&task), "{task} missing from {body}");
        }
        let (status, body) = http_get(&addr, "/metrics");
        assert_eq!(status, 200);
        assert!(body.contains("plausible_webhooks_up 1"), "{body}");

        signal(&daemon, sig);
        let requested = wait_for_message(&logs, "shutdown requested");
        assert_eq!(requested["signal"], name);
        wait_for_message(&logs, "stopped");
        let status = wait_exit(&mut daemon, Duration::from_secs(10));
        assert!(status.success(), "{status}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn run_refuses_an_unmigrated_database() {
    let pg = TestPostgres::with_plausible().await;
    let ch = TestClickhouse::new().await;
    let env = config_env(&config(&pg, &ch));
    let mut daemon = spawn("run", &env);
    let logs = log_lines(&mut daemon);
    let status = wait_exit(&mut daemon, Duration::from_secs(30));
    assert_eq!(status.code(), Some(1));
    let exiting = wait_for_message(&logs, "exiting");
    assert!(
        exiting["error"]
            .as_str()
            .unwrap()
            .contains("run `plausible-webhooks migrate`"),
        "{exiting}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn run_waits_for_an_unreachable_database_and_still_stops_cleanly() {
    let pg = TestPostgres::migrated().await;
    let ch = TestClickhouse::new().await;
    let mut env = config_env(&config(&pg, &ch));
    // Nothing listens on port 9 (discard) here.
    env.retain(|(k, _)| k != "PLAUSIBLE_WEBHOOKS_CLICKHOUSE__URL");
    env.push((
        "PLAUSIBLE_WEBHOOKS_CLICKHOUSE__URL".into(),
        "http://127.0.0.1:9".into(),
    ));
    let mut daemon = spawn("run", &env);
    let logs = log_lines(&mut daemon);
    let listening = wait_for_message(&logs, "admin http server listening");
    let addr = listening["listen"].as_str().unwrap().to_string();
    let warning = wait_for_message(&logs, "clickhouse is not reachable");
    assert_eq!(warning["level"], "WARN");
    let (status, body) = http_get(&addr, "/health/ready");
    assert_eq!(status, 503);
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["postgres"], "ok");
    assert_ne!(body["clickhouse"], "ok");

    signal(&daemon, "TERM");
    wait_for_message(&logs, "stopped");
    assert!(wait_exit(&mut daemon, Duration::from_secs(10)).success());
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_mid_delivery_every_delivery_still_arrives_with_its_id() {
    let pg = TestPostgres::with_plausible().await;
    let ch = TestClickhouse::new().await;
    let mut env = config_env(&config(&pg, &ch));
    env.extend([
        (
            "PLAUSIBLE_WEBHOOKS_DELIVERY__ALLOW_HTTP".to_string(),
            "true".to_string(),
        ),
        (
            "PLAUSIBLE_WEBHOOKS_DELIVERY__ALLOWED_CIDRS".to_string(),
            "[\"127.0.0.0/8\"]".to_string(),
        ),
        (
            "PLAUSIBLE_WEBHOOKS_DELIVERY__REQUEST_TIMEOUT_SECS".to_string(),
            "2".to_string(),
        ),
        (
            "PLAUSIBLE_WEBHOOKS_DELIVERY__CONNECT_TIMEOUT_SECS".to_string(),
            "1".to_string(),
        ),
    ]);
    let mut migrate = spawn("migrate", &env);
    assert!(wait_exit(&mut migrate, Duration::from_secs(60)).success());

    let receiver = crate::support::receiver::Receiver::start().await;
    let client = pg.client().await;
    client
        .batch_execute(&format!(
            "INSERT INTO sites (id, domain) VALUES (1, 'one.example.com');
             INSERT INTO webhooks (id, site_id, url, secret, event_types, spike_threshold)
               VALUES (1, 1, '{}', '{}', ARRAY['traffic.spike'], 10);
             INSERT INTO webhook_deliveries (webhook_id, event_type, payload)
               SELECT 1, 'webhook.test', json_build_object('type', 'webhook.test', 'n', i)
               FROM generate_series(1, 20) i;",
            receiver.url("/delay"),
            crate::postgres_schema::SECRET
        ))
        .await
        .unwrap();
    let ids: std::collections::BTreeSet<String> = client
        .query("SELECT id FROM webhook_deliveries", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();

    // Kill the daemon while requests are in flight.
    let mut daemon = spawn("run", &env);
    let _logs = log_lines(&mut daemon);
    let deadline = Instant::now() + Duration::from_secs(30);
    while receiver.received().is_empty() {
        assert!(Instant::now() < deadline, "nothing was sent");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    signal(&daemon, "KILL");
    let _ = wait_exit(&mut daemon, Duration::from_secs(10));
    let succeeded_before: i64 = client
        .query_one(
            "SELECT count(*) FROM webhook_deliveries WHERE status = 'succeeded'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(succeeded_before < 20, "the kill came mid-delivery");

    // Restarted, it sends the rest, and again what was in flight.
    let mut daemon = spawn("run", &env);
    let _logs = log_lines(&mut daemon);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done: i64 = client
            .query_one(
                "SELECT count(*) FROM webhook_deliveries WHERE status = 'succeeded'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if done == 20 {
            break;
        }
        if Instant::now() > deadline {
            let rows: Vec<String> = client
                .query("SELECT status || ' ' || attempts || ' ' || coalesce(leased_until::text, '-') || ' ' || coalesce(last_error, '-') || ' next ' || next_attempt_at::text FROM webhook_deliveries", &[])
                .await
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect();
            let logs: Vec<serde_json::Value> = _logs.try_iter().collect();
            panic!("only {done} of 20 delivered: {rows:#?}\n{logs:#?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    signal(&daemon, "TERM");
    assert!(wait_exit(&mut daemon, Duration::from_secs(20)).success());

    let received: std::collections::BTreeSet<String> = receiver
        .received()
        .iter()
        .map(|r| r.headers["webhook-id"].clone())
        .collect();
    assert_eq!(received, ids, "every delivery arrived, and no id is new");
}

#[tokio::test(flavor = "multi_thread")]
async fn plausible_variables_alone_start_the_daemon() {
    let pg = TestPostgres::with_plausible().await;
    let ch = TestClickhouse::new().await;
    let servers = crate::support::servers();
    let mut clickhouse = url::Url::parse(&servers.clickhouse_url).unwrap();
    clickhouse.set_username(&servers.clickhouse_user).unwrap();
    if !servers.clickhouse_password.is_empty() {
        clickhouse
            .set_password(Some(&servers.clickhouse_password))
            .unwrap();
    }
    clickhouse.set_path(&ch.database);
    // Only the admin server's port comes from elsewhere (a file), so that
    // tests do not fight over the default one.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.toml");
    std::fs::write(&file, "[http]\nlisten = \"127.0.0.1:0\"\n").unwrap();
    let plausible = |command: &str| {
        let mut cmd = binary();
        cmd.arg(command)
            .arg("--config")
            .arg(&file)
            .env("DATABASE_URL", &pg.url)
            .env("CLICKHOUSE_DATABASE_URL", clickhouse.as_str())
            .env("BASE_URL", "https://analytics.example.com");
        cmd
    };
    let migrated = plausible("migrate").output().unwrap();
    assert!(
        migrated.status.success(),
        "{}",
        String::from_utf8_lossy(&migrated.stderr)
    );
    let mut daemon = plausible("run")
        .env("PLAUSIBLE_WEBHOOKS_LOG__FORMAT", "json")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let logs = log_lines(&mut daemon);
    let listening = wait_for_message(&logs, "admin http server listening");
    let addr = listening["listen"].as_str().unwrap().to_string();
    let body = wait_until_ready(&addr);
    assert_eq!(body["postgres"], "ok");
    assert_eq!(body["clickhouse"], "ok");
    signal(&daemon, "TERM");
    assert!(wait_exit(&mut daemon, Duration::from_secs(20)).success());
}
