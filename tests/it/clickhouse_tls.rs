//! ClickHouse over HTTPS (the harness's server serves `https_port` with a
//! certificate from a CA it makes) and a `readonly = 1` user for `run`,
//! with `migrate` on other credentials.

use std::time::Duration;

use plausible_webhooks::analytics::Analytics;

use crate::daemon::{
    http_get, log_lines, signal, spawn, wait_exit, wait_for_message, wait_until_ready,
};
use crate::support::{TestClickhouse, TestPostgres, config, config_env, servers, wait_for};

#[tokio::test(flavor = "multi_thread")]
async fn https_with_the_right_ca_only() {
    let (Some(https), Some(ca)) = (
        servers().clickhouse_https_url.clone(),
        servers().clickhouse_ca.clone(),
    ) else {
        println!("skipped: CLICKHOUSE_URL names a server whose TLS setup is unknown");
        return;
    };
    let pg = TestPostgres::migrated().await;
    let ch = TestClickhouse::new().await;
    let mut config = config(&pg, &ch).clickhouse;
    config.url = https;
    config.ca_files = vec![ca];
    let version = Analytics::new(&config).version().await.unwrap();
    assert!(!version.is_empty());

    // Without the CA, the certificate is refused, and the error says so.
    config.ca_files.clear();
    let error = Analytics::new(&config)
        .version()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("certificate") || error.contains("UnknownIssuer"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_readonly_user_runs_the_daemon_and_migrate_uses_its_own_user() {
    let Some(reader) = servers().clickhouse_readonly_user.clone() else {
        println!("skipped: CLICKHOUSE_URL names a server without the harness's readonly user");
        return;
    };
    let pg = TestPostgres::with_plausible().await;
    let ch = TestClickhouse::new().await;
    let mut env = config_env(&config(&pg, &ch));
    let admin_user = servers().clickhouse_user.clone();
    let admin_password = servers().clickhouse_password.clone();
    env.retain(|(k, _)| {
        !k.starts_with("PLAUSIBLE_WEBHOOKS_CLICKHOUSE__USER")
            && !k.starts_with("PLAUSIBLE_WEBHOOKS_CLICKHOUSE__PASSWORD")
    });
    env.extend([
        (
            "PLAUSIBLE_WEBHOOKS_CLICKHOUSE__USER".to_string(),
            reader.clone(),
        ),
        (
            "PLAUSIBLE_WEBHOOKS_CLICKHOUSE__PASSWORD".to_string(),
            String::new(),
        ),
    ]);

    // As the readonly user, migrate cannot create the views.
    let mut migrate = spawn("migrate", &env);
    let status = wait_exit(&mut migrate, Duration::from_secs(60));
    assert!(!status.success(), "a readonly user cannot migrate");

    // With migrate's own user it can (Postgres was migrated above only in part).
    let mut migrate_env = env.clone();
    migrate_env.extend([
        (
            "PLAUSIBLE_WEBHOOKS_CLICKHOUSE__MIGRATE_USER".to_string(),
            admin_user,
        ),
        (
            "PLAUSIBLE_WEBHOOKS_CLICKHOUSE__MIGRATE_PASSWORD".to_string(),
            admin_password,
        ),
    ]);
    let mut migrate = spawn("migrate", &migrate_env);
    assert!(wait_exit(&mut migrate, Duration::from_secs(60)).success());
    let applied = clickhouse::Client::default()
        .with_url(&servers().clickhouse_url)
        .with_user(&servers().clickhouse_user)
        .with_password(&servers().clickhouse_password)
        .with_database(&ch.database)
        .with_validation(false)
        .query("SELECT count() FROM plausible_webhooks_migrations")
        .fetch_one::<u64>()
        .await
        .unwrap();
    assert!(applied > 0);

    // The daemon runs as the readonly user, and its ticks succeed.
    let mut daemon = spawn("run", &env);
    let logs = log_lines(&mut daemon);
    let listening = wait_for_message(&logs, "admin http server listening");
    let addr = listening["listen"].as_str().unwrap().to_string();
    wait_for_message(
        &logs,
        "the clickhouse user is read-only; no settings are sent",
    );
    wait_until_ready(&addr);
    wait_for(
        "trigger ticks succeed",
        Duration::from_secs(20),
        async || {
            let (_, body) = http_get(&addr, "/metrics");
            body.lines().any(|l| {
                l.starts_with("plausible_webhooks_trigger_ticks_total{result=\"ok\"}")
                    && l.split(' ')
                        .next_back()
                        .is_some_and(|n| n.parse::<f64>().unwrap_or(0.0) >= 2.0)
            })
        },
    )
    .await;
    let (_, body) = http_get(&addr, "/metrics");
    assert!(
        !body.contains("plausible_webhooks_trigger_ticks_total{result=\"error\"}"),
        "{body}"
    );
    signal(&daemon, "TERM");
    assert!(wait_exit(&mut daemon, Duration::from_secs(20)).success());
}
