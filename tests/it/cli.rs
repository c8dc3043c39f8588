//! The operator's CLI end to end, with the real binary against a real
//! Postgres (and a real daemon for `test`): add, list, test (received and
//! verified with the standardwebhooks library), deliveries, replay,
//! rotate-secret (both secrets sign), disable, enable, remove, and each
//! refused flag.

use std::process::{Child, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::daemon::{log_lines, signal, spawn, wait_exit, wait_for_message};
use crate::signing::verify_with_python;
use crate::support::receiver::{Received, Receiver};
use crate::support::{TestClickhouse, TestPostgres, binary, config, config_env, wait_for};

/// Runs `plausible-webhooks webhooks <args>` and returns its output.
pub(crate) fn cli(env: &[(String, String)], args: &[&str]) -> Output {
    binary()
        .arg("webhooks")
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

pub(crate) fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub(crate) fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs a command that must succeed with `--json`; returns its JSON.
pub(crate) fn ok_json(env: &[(String, String)], args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = cli(env, &all);
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        stdout(&out),
        stderr(&out)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {}", stdout(&out)))
}

/// Runs a command that must be refused with exit code 2 and a message
/// containing `message`.
pub(crate) fn refused(env: &[(String, String)], args: &[&str], message: &str) {
    let out = cli(env, args);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{args:?} should be refused: {}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stderr(&out).contains(message),
        "{args:?}: expected {message:?} in {}",
        stderr(&out)
    );
}

pub(crate) fn env_for(pg: &TestPostgres, ch: &TestClickhouse) -> Vec<(String, String)> {
    let mut env = config_env(&config(pg, ch));
    env.extend([
        (
            "PLAUSIBLE_WEBHOOKS_DELIVERY__ALLOW_HTTP".into(),
            "true".into(),
        ),
        (
            "PLAUSIBLE_WEBHOOKS_DELIVERY__ALLOWED_CIDRS".into(),
            "[\"127.0.0.0/8\"]".into(),
        ),
        (
            "PLAUSIBLE_WEBHOOKS_DELIVERY__RETRY_SCHEDULE_SECS".into(),
            "[1]".into(),
        ),
    ]);
    env
}

pub(crate) fn start_daemon(env: &[(String, String)]) -> (Child, std::sync::mpsc::Receiver<Value>) {
    let mut daemon = spawn("run", env);
    let logs = log_lines(&mut daemon);
    wait_for_message(&logs, "registry loaded");
    (daemon, logs)
}

/// Verifies a received request with each secret, with the Python library.
pub(crate) fn verify(request: &Received, secrets: &[&str]) -> Vec<String> {
    verify_with_python(serde_json::json!({
        "id": request.headers["webhook-id"],
        "timestamp": request.headers["webhook-timestamp"],
        "signature": request.headers["webhook-signature"],
        "body": String::from_utf8_lossy(&request.body),
        "secrets": secrets,
    }))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_whole_cli_path_from_add_to_remove() {
    let pg = TestPostgres::migrated().await;
    let ch = TestClickhouse::new().await;
    let env = env_for(&pg, &ch);
    let client = pg.client().await;
    client
        .batch_execute(
            "INSERT INTO sites (id, domain) VALUES (1, 'shop.example.com');
             INSERT INTO goals (id, site_id, event_name, display_name) VALUES (7, 1, 'Signup', 'Signup');",
        )
        .await
        .unwrap();
    let receiver = Receiver::start().await;
    let url = receiver.url("/ok").to_string();

    // add: a new id and a secret, shown once.
    let created = ok_json(
        &env,
        &[
            "add",
            "--site",
            "shop.example.com",
            "--url",
            &url,
            "--events",
            "goal.completed,traffic.spike",
            "--spike-threshold",
            "50",
            "--spike-window",
            "10m",
            "--cooldown",
            "2h",
            "--goal",
            "Signup",
            "--goal-interval",
            "5m",
            "--description",
            "shop alerts",
        ],
    );
    let id = created["id"].as_i64().unwrap();
    let secret = created["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"), "{created}");
    let row = client
        .query_one(
            "SELECT secret, spike_window_minutes, cooldown_minutes, goal_ids, goal_interval_seconds, description
             FROM webhooks WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), secret);
    assert_eq!(row.get::<_, i32>(1), 10);
    assert_eq!(row.get::<_, i32>(2), 120);
    assert_eq!(row.get::<_, Option<Vec<i64>>>(3), Some(vec![7]));
    assert_eq!(row.get::<_, i32>(4), 300);
    assert_eq!(row.get::<_, String>(5), "shop alerts");

    // list: the webhook, never its secret, as a table and as JSON.
    let table = cli(&env, &["list", "--site", "1"]);
    assert!(table.status.success());
    let text = stdout(&table);
    assert!(text.starts_with("id  site"), "{text}");
    assert!(
        text.contains("shop.example.com") && text.contains(&url),
        "{text}"
    );
    assert!(
        !text.contains(&secret[6..]),
        "the secret never shows: {text}"
    );
    let listed = ok_json(&env, &["list"]);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert!(!listed.to_string().contains(&secret[6..]));

    // test, without a daemon: it says so.
    let out = cli(&env, &["test", &id.to_string(), "--timeout", "1s"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no daemon picked delivery"),
        "{}",
        stderr(&out)
    );

    // test, with one: the delivery arrives, signed with the secret.
    let (mut daemon, _logs) = start_daemon(&env);
    let out = cli(&env, &["test", &id.to_string()]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("status code: 200"),
        "{}",
        stdout(&out)
    );
    let tests: Vec<Received> = receiver
        .received()
        .into_iter()
        .filter(|r| String::from_utf8_lossy(&r.body).contains("webhook.test"))
        .collect();
    assert!(!tests.is_empty());
    assert_eq!(verify(tests.last().unwrap(), &[&secret]), vec!["ok"]);

    // deliveries: the log, and one delivery's attempts.
    let log = ok_json(&env, &["deliveries", &id.to_string()]);
    let deliveries = log.as_array().unwrap();
    assert!(!deliveries.is_empty());
    let succeeded = deliveries
        .iter()
        .find(|d| d["status"] == "succeeded")
        .expect("a succeeded delivery");
    let msg = succeeded["id"].as_str().unwrap().to_string();
    let detail = ok_json(&env, &["deliveries", "--id", &msg]);
    assert_eq!(detail["attempts"][0]["status_code"], 200);
    assert_eq!(detail["delivery"]["payload"]["type"], "webhook.test");
    let failed_only = ok_json(&env, &["deliveries", &id.to_string(), "--status", "failed"]);
    assert!(failed_only.as_array().unwrap().is_empty());

    // replay: a failed delivery goes again, with its id.
    client
        .execute(
            "UPDATE webhook_deliveries SET status = 'failed' WHERE id = $1",
            &[&msg],
        )
        .await
        .unwrap();
    let before = receiver.received().len();
    let replayed = ok_json(&env, &["replay", "--delivery", &msg]);
    assert_eq!(replayed["replayed"], serde_json::json!([msg]));
    wait_for("the replay arrives", Duration::from_secs(20), async || {
        receiver.received().len() > before
    })
    .await;
    assert_eq!(
        receiver.received().last().unwrap().headers["webhook-id"],
        msg
    );
    refused(&env, &["replay", "--delivery", &msg], "has not failed");
    wait_for(
        "the replay is recorded",
        Duration::from_secs(20),
        async || {
            client
                .query_one(
                    "SELECT status FROM webhook_deliveries WHERE id = $1",
                    &[&msg],
                )
                .await
                .unwrap()
                .get::<_, String>(0)
                == "succeeded"
        },
    )
    .await;
    client
        .execute(
            "UPDATE webhook_deliveries SET status = 'failed' WHERE webhook_id = $1",
            &[&id],
        )
        .await
        .unwrap();
    let replayed = ok_json(&env, &["replay", &id.to_string(), "--since", "1h"]);
    assert!(!replayed["replayed"].as_array().unwrap().is_empty());

    // rotate-secret: both secrets sign while the old one is kept.
    let rotated = ok_json(
        &env,
        &["rotate-secret", &id.to_string(), "--keep-previous", "1h"],
    );
    let new_secret = rotated["secret"].as_str().unwrap().to_string();
    assert_ne!(new_secret, secret);
    assert!(rotated["previous_secret_expires_at"].is_string());
    wait_for(
        "the daemon reads the new secret",
        Duration::from_secs(10),
        async || {
            let before = receiver.received().len();
            let out = cli(&env, &["test", &id.to_string()]);
            assert!(out.status.success(), "{}", stderr(&out));
            let last = receiver.received()[before..].last().cloned();
            last.is_some_and(|r| r.headers["webhook-signature"].split(' ').count() == 2)
        },
    )
    .await;
    let last = receiver.received().last().cloned().unwrap();
    assert_eq!(verify(&last, &[&new_secret, &secret]), vec!["ok", "ok"]);

    // disable, enable, remove.
    let disabled = ok_json(&env, &["disable", &id.to_string()]);
    assert_eq!(disabled["enabled"], false);
    let out = cli(&env, &["list"]);
    assert!(stdout(&out).contains(" no "), "{}", stdout(&out));
    let enabled = ok_json(&env, &["enable", &id.to_string()]);
    assert_eq!(enabled["enabled"], true);
    let updated = ok_json(
        &env,
        &[
            "update",
            &id.to_string(),
            "--all-goals",
            "--drop-threshold",
            "3",
            "--events",
            "traffic.drop",
        ],
    );
    assert_eq!(updated["goal_ids"], Value::Null);
    assert_eq!(updated["event_types"], serde_json::json!(["traffic.drop"]));
    assert_eq!(updated["drop_threshold"], 3);
    ok_json(&env, &["remove", &id.to_string()]);
    let left: i64 = client
        .query_one("SELECT count(*) FROM webhook_deliveries", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "the deliveries went with the webhook");
    let out = cli(&env, &["remove", &id.to_string()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains(&format!("no webhook {id}")));

    signal(&daemon, "TERM");
    assert!(wait_exit(&mut daemon, Duration::from_secs(20)).success());
}

#[tokio::test(flavor = "multi_thread")]
async fn every_refused_flag_is_named_with_exit_code_2() {
    let pg = TestPostgres::migrated().await;
    let ch = TestClickhouse::new().await;
    let env = env_for(&pg, &ch);
    let client = pg.client().await;
    client
        .batch_execute("INSERT INTO sites (id, domain) VALUES (1, 'a.example.com');")
        .await
        .unwrap();
    let add = |extra: &[&str]| {
        let mut args = vec![
            "add",
            "--site",
            "a.example.com",
            "--url",
            "https://hooks.example.com/x",
        ];
        args.extend_from_slice(extra);
        args.into_iter().map(str::to_string).collect::<Vec<_>>()
    };
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            add(&["--events", "traffic.spike", "--spike-threshold", "0"]),
            "--spike-threshold must be at least 1",
        ),
        (
            add(&["--events", "traffic.spike"]),
            "--spike-threshold is required when --events includes traffic.spike",
        ),
        (
            add(&["--events", "traffic.drop", "--drop-threshold", "-3"]),
            "--drop-threshold must be at least 1",
        ),
        (
            add(&[
                "--events",
                "traffic.spike",
                "--spike-threshold",
                "5",
                "--spike-window",
                "2h",
            ]),
            "--spike-window must be between 1m and 60m",
        ),
        (
            add(&[
                "--events",
                "traffic.spike",
                "--spike-threshold",
                "5",
                "--spike-window",
                "90s",
            ]),
            "--spike-window must be a whole number of minutes",
        ),
        (
            add(&[
                "--events",
                "traffic.drop",
                "--drop-threshold",
                "5",
                "--cooldown",
                "60d",
            ]),
            "--cooldown must be between 1m and 30d",
        ),
        (
            add(&["--events", "goal.completed", "--goal-interval", "2d"]),
            "--goal-interval must be between 1s and 24h",
        ),
        (
            add(&["--events", "goal.completed", "--goal", "Nope"]),
            "--goal: the site has no goal named or numbered \"Nope\"",
        ),
        (
            add(&["--events", "goal.done"]),
            "unknown event type \"goal.done\"",
        ),
        (
            add(&["--events", "goal.completed", "--cooldown", "soon"]),
            "is not a duration",
        ),
        (
            add(&[
                "--events",
                "goal.completed",
                "--description",
                &"x".repeat(501),
            ]),
            "--description must be at most 500 characters",
        ),
        (
            vec![
                "add".into(),
                "--site".into(),
                "a.example.com".into(),
                "--url".into(),
                "ftp://x".into(),
                "--events".into(),
                "goal.completed".into(),
            ],
            "--url must be an http:// or https:// URL",
        ),
        (
            vec![
                "add".into(),
                "--site".into(),
                "nowhere.example.com".into(),
                "--url".into(),
                "https://x.example.com".into(),
                "--events".into(),
                "goal.completed".into(),
            ],
            "--site: no site with domain or id \"nowhere.example.com\"",
        ),
    ];
    for (args, message) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        refused(&env, &args, message);
    }
    let count: i64 = client
        .query_one("SELECT count(*) FROM webhooks", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 0, "nothing refused was written");

    // The site's cap of 10, named with the flag.
    for _ in 0..10 {
        ok_json(
            &env,
            &add(&["--events", "goal.completed"])
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        );
    }
    refused(
        &env,
        &add(&["--events", "goal.completed"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        "--site: site 1 already has 10 webhooks",
    );
    // Updating with a bad value changes nothing.
    let first: i64 = client
        .query_one("SELECT min(id) FROM webhooks", &[])
        .await
        .unwrap()
        .get(0);
    refused(
        &env,
        &["update", &first.to_string(), "--events", "traffic.spike"],
        "--spike-threshold is required when --events includes traffic.spike",
    );
    let out = cli(&env, &["update", "999999", "--description", "x"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no webhook 999999"),
        "{}",
        stderr(&out)
    );
}
