//! Install checks, `doctor` and `uninstall`, with the real binary against
//! real servers: `migrate` refuses an older Plausible without changing
//! anything; a broken view (its table dropped) shows in `doctor` and in
//! `/health/ready`, and `migrate` restores it; `uninstall` leaves both
//! catalogs as they were before `migrate`, and can run twice.

use std::process::{Output, Stdio};
use std::time::Duration;

use crate::daemon::{http_get, log_lines, signal, spawn, wait_exit, wait_for_message};
use crate::support::{TestClickhouse, TestPostgres, binary, config, config_env, wait_for};

fn run(env: &[(String, String)], args: &[&str]) -> Output {
    binary()
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Everything in the Postgres database's own schema, one line each.
async fn postgres_catalog(pg: &TestPostgres) -> Vec<String> {
    pg.client()
        .await
        .query(
            "SELECT 'relation ' || c.relname || ' ' || c.relkind::text FROM pg_class c
               JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'
             UNION ALL SELECT 'function ' || p.proname::text FROM pg_proc p
               JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public'
             UNION ALL SELECT 'trigger ' || t.tgname::text || ' on ' || t.tgrelid::regclass::text
               FROM pg_trigger t WHERE NOT t.tgisinternal
             UNION ALL SELECT 'type ' || t.typname::text FROM pg_type t
               JOIN pg_namespace n ON n.oid = t.typnamespace WHERE n.nspname = 'public'
             UNION ALL SELECT 'constraint ' || c.conname::text FROM pg_constraint c
               JOIN pg_namespace n ON n.oid = c.connamespace WHERE n.nspname = 'public'
             ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

async fn clickhouse_catalog(ch: &TestClickhouse) -> Vec<(String, String)> {
    let mut tables = plausible_webhooks::analytics::install::tables(&ch.analytics())
        .await
        .unwrap();
    tables.sort();
    tables
}

#[tokio::test(flavor = "multi_thread")]
async fn migrate_refuses_a_plausible_without_scroll_depth_and_changes_nothing() {
    let pg = TestPostgres::with_plausible().await;
    let ch = TestClickhouse::new().await;
    ch.analytics()
        .execute(
            &ch.analytics()
                .render("ALTER TABLE {database}.events_v2 DROP COLUMN scroll_depth"),
        )
        .await
        .unwrap();
    let env = config_env(&config(&pg, &ch));
    let pg_before = postgres_catalog(&pg).await;
    let ch_before = clickhouse_catalog(&ch).await;

    let out = run(&env, &["migrate"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let message = text(&out);
    assert!(message.contains("nothing was changed"), "{message}");
    assert!(
        message.contains("no column `scroll_depth` (UInt8)"),
        "{message}"
    );
    assert!(
        message.contains("Plausible CE v3 or later is needed"),
        "{message}"
    );
    assert_eq!(postgres_catalog(&pg).await, pg_before);
    assert_eq!(clickhouse_catalog(&ch).await, ch_before);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broken_view_shows_in_doctor_and_readiness_and_migrate_restores_it() {
    let pg = TestPostgres::with_plausible().await;
    let ch = TestClickhouse::new().await;
    let env = config_env(&config(&pg, &ch));
    assert!(run(&env, &["migrate"]).status.success());

    let out = run(&env, &["doctor"]);
    assert!(out.status.success(), "{}", text(&out));
    let report = text(&out);
    for line in [
        "ok    postgres connection: PostgreSQL",
        "ok    plausible's postgres tables",
        "ok    postgres schema",
        "ok    clickhouse connection: ClickHouse",
        "ok    plausible's events table",
        "ok    clickhouse views",
        "ok    trigger cursor",
        "ok    outbox: 0 pending",
    ] {
        assert!(report.contains(line), "{line:?} missing from:\n{report}");
    }

    // The table a view writes into goes: Plausible's own inserts now fail.
    let analytics = ch.analytics();
    analytics
        .execute(&analytics.render("DROP TABLE {database}.webhooks_inserts"))
        .await
        .unwrap();
    let insert = analytics
        .execute(&analytics.render(
            "INSERT INTO {database}.events_v2 (timestamp, name, site_id, user_id, pathname) VALUES (now(), 'pageview', 1, 1, '/')",
        ))
        .await;
    assert!(insert.is_err(), "a broken view fails Plausible's insert");

    let out = run(&env, &["doctor", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let checks: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let views = checks
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "clickhouse views")
        .unwrap();
    assert_eq!(views["verdict"], "fail");
    assert!(
        views["detail"]
            .as_str()
            .unwrap()
            .contains("the table webhooks_inserts is missing"),
        "{views}"
    );

    // The daemon runs, but is not ready, and says why.
    let mut daemon = spawn("run", &env);
    let logs = log_lines(&mut daemon);
    let listening = wait_for_message(&logs, "admin http server listening");
    let addr = listening["listen"].as_str().unwrap().to_string();
    let logged = wait_for_message(
        &logs,
        "clickhouse is not as migrate left it; not ready until fixed",
    );
    assert!(
        logged["problem"]
            .as_str()
            .unwrap()
            .contains("webhooks_inserts")
    );
    wait_for_message(&logs, "registry loaded");
    let (status, body) = http_get(&addr, "/health/ready");
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("the table webhooks_inserts is missing"),
        "{body}"
    );

    // migrate puts it back, and the daemon is ready.
    assert!(run(&env, &["migrate"]).status.success());
    wait_for(
        "ready once migrate restored the table",
        Duration::from_secs(20),
        async || http_get(&addr, "/health/ready").0 == 200,
    )
    .await;
    assert!(run(&env, &["doctor"]).status.success());
    signal(&daemon, "TERM");
    assert!(wait_exit(&mut daemon, Duration::from_secs(20)).success());
}

#[tokio::test(flavor = "multi_thread")]
async fn uninstall_leaves_both_catalogs_as_they_were_and_can_run_again() {
    let pg = TestPostgres::with_plausible().await;
    let ch = TestClickhouse::new().await;
    let env = config_env(&config(&pg, &ch));
    let pg_before = postgres_catalog(&pg).await;
    let ch_before = clickhouse_catalog(&ch).await;

    assert!(run(&env, &["migrate"]).status.success());
    let client = pg.client().await;
    client
        .batch_execute(&format!(
            "INSERT INTO sites (id, domain) VALUES (1, 'a.example.com');
             INSERT INTO goals (site_id, event_name, display_name) VALUES (1, 'Signup', 'Signup');
             INSERT INTO webhooks (site_id, url, secret, event_types) VALUES (1, 'https://a.example.com/h', '{}', ARRAY['goal.completed']);
             INSERT INTO webhook_deliveries (webhook_id, event_type, payload) SELECT id, 'webhook.test', '{{}}' FROM webhooks;",
            crate::postgres_schema::SECRET
        ))
        .await
        .unwrap();
    assert_ne!(postgres_catalog(&pg).await, pg_before);
    assert_ne!(clickhouse_catalog(&ch).await, ch_before);

    // Without --yes and no one to answer, nothing goes.
    let out = run(&env, &["uninstall"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("nothing was removed"));

    let out = run(&env, &["uninstall", "--yes"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(postgres_catalog(&pg).await, pg_before);
    assert_eq!(clickhouse_catalog(&ch).await, ch_before);
    // Plausible's rows stay.
    let goals: i64 = client
        .query_one("SELECT count(*) FROM goals", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(goals, 1);

    let out = run(&env, &["uninstall", "--yes"]);
    assert!(
        out.status.success(),
        "a second run changes nothing: {}",
        text(&out)
    );
    assert!(text(&out).contains("nothing (already gone)"));
    assert_eq!(postgres_catalog(&pg).await, pg_before);
}
