//! TLS to Postgres against the harness's server (TLS on, a certificate for
//! `localhost` from a CA the harness made): `require` and `verify-full`
//! work, and a wrong host name or an unknown CA fail with a clear error
//! that names the host and the reason.

use std::time::Duration;

use plausible_webhooks::config::{Config, PostgresUrl};
use plausible_webhooks::store;

use crate::daemon::{log_lines, signal, spawn, wait_exit, wait_for_message, wait_until_ready};
use crate::support::certs::TestCa;
use crate::support::{TestClickhouse, TestPostgres, binary, config, config_env, servers, wait_for};

/// The test database's URL with `host` and extra query parameters.
fn url(pg: &TestPostgres, host: &str, query: &str) -> String {
    let mut url = url::Url::parse(&pg.url).unwrap();
    url.set_host(Some(host)).unwrap();
    url.set_query(Some(query));
    url.to_string()
}

fn with_url(url: String) -> Config {
    let mut config = Config::defaults();
    config.postgres.url = PostgresUrl::new(url);
    config.postgres.connect_timeout_secs = 5;
    config
}

/// Connects and says whether the session is encrypted.
async fn encrypted(config: &Config) -> Result<bool, String> {
    let client = store::connect(&config.postgres)
        .await
        .map_err(|e| e.to_string())?;
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(row.get(0))
}

#[tokio::test(flavor = "multi_thread")]
async fn require_and_verify_full_work_and_bad_certificates_fail_clearly() {
    let Some(ca) = servers().postgres_ca.clone() else {
        println!("skipped: DATABASE_URL names a server whose TLS setup is unknown");
        return;
    };
    let pg = TestPostgres::migrated().await;
    let ca = ca.display().to_string();

    assert_eq!(
        encrypted(&with_url(url(&pg, "127.0.0.1", "sslmode=disable"))).await,
        Ok(false)
    );
    assert_eq!(
        encrypted(&with_url(url(&pg, "127.0.0.1", "sslmode=require"))).await,
        Ok(true)
    );
    // prefer (the default) encrypts when the server offers it.
    assert_eq!(
        encrypted(&with_url(url(&pg, "127.0.0.1", ""))).await,
        Ok(true)
    );
    let full = url(
        &pg,
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    );
    assert_eq!(encrypted(&with_url(full.clone())).await, Ok(true));
    // The same through the config keys instead of the URL.
    let mut keyed = with_url(url(&pg, "localhost", ""));
    keyed.postgres.sslmode = "verify-full".into();
    keyed.postgres.sslrootcert = ca.clone().into();
    assert_eq!(encrypted(&keyed).await, Ok(true));
    // And through the pool.
    let pool = store::pool(&with_url(full.clone()).postgres).unwrap();
    store::ping(&pool).await.unwrap();

    // A host name the certificate is not for.
    let wrong_host = url(
        &pg,
        "127.0.0.1",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    );
    let error = encrypted(&with_url(wrong_host)).await.unwrap_err();
    assert!(
        error.contains("127.0.0.1") && error.contains("not valid for name"),
        "{error}"
    );
    // verify-ca does not check the name.
    let chain_only = url(
        &pg,
        "127.0.0.1",
        &format!("sslmode=verify-ca&sslrootcert={ca}"),
    );
    assert_eq!(encrypted(&with_url(chain_only)).await, Ok(true));

    // A CA that did not sign the server's certificate.
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other-ca.pem");
    std::fs::write(&other, TestCa::new("another CA").pem).unwrap();
    let unknown = url(
        &pg,
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={}", other.display()),
    );
    let error = encrypted(&with_url(unknown)).await.unwrap_err();
    assert!(
        error.contains("localhost:") && error.contains("UnknownIssuer"),
        "{error}"
    );

    // A CA file that is not there, and an sslmode that does not exist.
    let missing = url(
        &pg,
        "localhost",
        "sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
    );
    let error = encrypted(&with_url(missing)).await.unwrap_err();
    assert!(error.contains("/nonexistent/ca.pem"), "{error}");
    let out = binary()
        .arg("check-config")
        .env(
            "PLAUSIBLE_WEBHOOKS_POSTGRES__URL",
            url(&pg, "localhost", "sslmode=verify-everything"),
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("postgres.url") && stderr.contains("verify-everything"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn migrate_and_run_over_verify_full() {
    let Some(ca) = servers().postgres_ca.clone() else {
        println!("skipped: DATABASE_URL names a server whose TLS setup is unknown");
        return;
    };
    let pg = TestPostgres::with_plausible().await;
    let ch = TestClickhouse::new().await;
    let mut env = config_env(&config(&pg, &ch));
    env.retain(|(k, _)| k != "PLAUSIBLE_WEBHOOKS_POSTGRES__URL");
    env.push((
        "PLAUSIBLE_WEBHOOKS_POSTGRES__URL".into(),
        url(&pg, "localhost", "sslmode=verify-full"),
    ));
    env.push((
        "PLAUSIBLE_WEBHOOKS_POSTGRES__SSLROOTCERT".into(),
        ca.display().to_string(),
    ));
    let mut migrate = binary()
        .arg("migrate")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_exit(&mut migrate, Duration::from_secs(60));
    assert!(status.success(), "{status}");
    let client = pg.client().await;
    assert_eq!(
        store::schema_version(&client).await.unwrap(),
        store::latest_version()
    );

    // The daemon's pool and both LISTEN connections go over TLS too.
    let mut daemon = spawn("run", &env);
    let logs = log_lines(&mut daemon);
    let listening = wait_for_message(&logs, "admin http server listening");
    wait_until_ready(listening["listen"].as_str().unwrap());
    // The scheduler's LISTEN connection opens a moment after readiness.
    let listeners = "SELECT count(*) FROM pg_stat_activity a JOIN pg_stat_ssl s ON s.pid = a.pid
         WHERE a.datname = current_database() AND s.ssl
           AND a.application_name IN ('plausible-webhooks changes', 'plausible-webhooks delivery')";
    wait_for(
        "both LISTEN connections are up, encrypted",
        Duration::from_secs(20),
        async || {
            client
                .query_one(listeners, &[])
                .await
                .unwrap()
                .get::<_, i64>(0)
                == 2
        },
    )
    .await;
    let plain: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity a LEFT JOIN pg_stat_ssl s ON s.pid = a.pid
             WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()
               AND a.application_name LIKE 'plausible-webhooks%' AND NOT coalesce(s.ssl, false)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(plain, 0, "every connection of the daemon is encrypted");
    signal(&daemon, "TERM");
    assert!(wait_exit(&mut daemon, Duration::from_secs(20)).success());
}
