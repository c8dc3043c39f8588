//! The status page and the admin API: the token, the lists and actions, the
//! pages in a real headless Chromium (figures checked against Postgres, a
//! hostile response snippet shown as text, screenshots for the docs), and
//! the startup refusal of an unguarded non-loopback listen address.

use std::time::Duration;

use plausible_webhooks::config::Secret;
use plausible_webhooks::daemon::supervisor::Supervisor;
use plausible_webhooks::http::AdminServer;
use plausible_webhooks::telemetry::health::{Health, Role};
use serde_json::Value;
use tokio::sync::watch;

use crate::support::webdriver::{Browser, chromium_available, http};
use crate::support::{TestPostgres, binary, config_pg};

const TOKEN: &str = "test-admin-token-7f3a";
const SECRET: &str = "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
const SNIPPET: &str = "<script>alert(1)</script>";

/// Two sites, three webhooks (healthy, failing, a Slack hook), and their
/// deliveries: 4 events of which 3 arrived within 30 s, 120 failed
/// deliveries and one pending retry of the failing webhook, each with an
/// attempt whose response was `SNIPPET`.
async fn fixture(pg: &TestPostgres) -> tokio_postgres::Client {
    let client = pg.client().await;
    client
        .batch_execute(&format!(
            "INSERT INTO sites (id, domain) VALUES (1, 'shop.example.com'), (2, 'blog.example.com');
             INSERT INTO webhooks (id, site_id, url, secret, description, event_types, goal_interval_seconds)
             VALUES (1, 1, 'https://receiver.example.com/ok?token=hunter2', '{SECRET}', 'orders', ARRAY['goal.completed'], 60),
                    (2, 1, 'https://failing.example.com/hook', '{SECRET}', '<b>bold</b> & sales', ARRAY['goal.completed'], 60);
             INSERT INTO webhooks (id, site_id, url, secret, format, event_types, goal_interval_seconds)
             VALUES (3, 2, 'https://hooks.slack.com/services/T0/B0/sekrit', '{SECRET}', 'slack', ARRAY['goal.completed'], 60);
             INSERT INTO webhook_endpoint_health (webhook_id, failing_since, last_success_at)
             VALUES (2, now() - interval '2 hours', now() - interval '3 hours'),
                    (1, NULL, now() - interval '5 minutes');
             UPDATE webhooks SET last_error = NULL;
             INSERT INTO webhook_deliveries
                 (webhook_id, event_type, payload, status, attempts, inserted_at, triggered_at,
                  delivered_at, last_status_code, dedupe_key)
             SELECT 1, 'goal.completed', ('{{\"type\":\"goal.completed\",\"n\":' || g || '}}')::json, 'succeeded', 1,
                    now() - interval '10 minutes', now() - interval '10 minutes',
                    now() - interval '10 minutes' + CASE WHEN g = 4 THEN interval '60 seconds'
                                                         ELSE interval '2 seconds' END,
                    200, 'ok:' || g
             FROM generate_series(1, 4) g;
             INSERT INTO webhook_deliveries
                 (id, webhook_id, event_type, payload, status, attempts, inserted_at, last_attempt_at,
                  last_status_code, last_error, dedupe_key)
             SELECT 'msg_fail' || lpad(g::text, 4, '0'), 2, 'goal.completed',
                    '{{\"type\":\"goal.completed\",\"data\":{{\"goal\":\"<img src=x onerror=alert(2)>\"}}}}',
                    'failed', 1, now() - g * interval '1 minute', now() - g * interval '1 minute',
                    500, 'the endpoint answered 500 <Internal>', 'fail:' || g
             FROM generate_series(1, 120) g;
             INSERT INTO webhook_deliveries
                 (id, webhook_id, event_type, payload, status, attempts, next_attempt_at, last_status_code,
                  last_error, dedupe_key)
             VALUES ('msg_pending0001', 2, 'goal.completed', '{{\"type\":\"goal.completed\"}}', 'pending', 1,
                     now() + interval '5 minutes', 500, 'the endpoint answered 500 <Internal>', 'pending:1');
             INSERT INTO webhook_delivery_attempts
                 (delivery_id, attempt, started_at, duration_ms, status_code, error_kind, error, response_snippet)
             SELECT id, 1, coalesce(last_attempt_at, now() - interval '1 minute'), 40 + (random() * 10)::int,
                    500, 'status', 'the endpoint answered 500', '{SNIPPET}'
             FROM webhook_deliveries WHERE webhook_id = 2;
             INSERT INTO webhook_delivery_attempts (delivery_id, attempt, started_at, duration_ms, status_code)
             SELECT id, 1, now() - interval '10 minutes', 120, 200 FROM webhook_deliveries WHERE webhook_id = 1;
             INSERT INTO webhook_leases (name, holder, token, lease_until, acquired_at, renewed_at)
             VALUES ('triggers', 'host-a:4242', 'token', now() + interval '1 minute', now(), now());
             INSERT INTO webhook_cursors (stream, position) VALUES ('triggers', now() - interval '3 seconds')
             ON CONFLICT (stream) DO UPDATE SET position = EXCLUDED.position;"
        ))
        .await
        .unwrap();
    client
}

/// An admin server on 127.0.0.1 over `pg`, with `token` (empty: none).
async fn serve(pg: &TestPostgres, token: &str) -> (String, watch::Sender<bool>) {
    let mut config = config_pg(pg);
    config.http.admin_token = Secret::new(token);
    let pool = plausible_webhooks::store::pool(&config.postgres).unwrap();
    let analytics = plausible_webhooks::analytics::Analytics::new(&config.clickhouse);
    let health = Health::default();
    let admin = AdminServer::bind(&config.http, pool, analytics, health.clone(), None)
        .await
        .unwrap();
    let addr = admin.local_addr().unwrap().to_string();
    let (stop_tx, mut stop_rx) = watch::channel(false);
    // The daemon's tasks, beating, as the overview reports them.
    let (supervisor, _fatal) = Supervisor::new(health.clone(), stop_rx.clone());
    for name in ["change stream", "triggers", "delivery", "retention"] {
        supervisor.spawn(name, move |mut stop: watch::Receiver<bool>, beat| {
            if name == "triggers" {
                beat.set_role(Role::Leader);
            }
            Ok::<_, String>(async move {
                while !*stop.borrow() {
                    beat.beat();
                    let _ = tokio::time::timeout(Duration::from_millis(500), stop.changed()).await;
                }
            })
        });
    }
    tokio::spawn(admin.serve(async move {
        let _ = stop_rx.wait_for(|s| *s).await;
    }));
    (addr, stop_tx)
}

async fn call(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, Value) {
    let (addr, method, path) = (addr.to_string(), method.to_string(), path.to_string());
    let auth = token.map(|t| format!("Bearer {t}"));
    let body = body.map(str::to_string);
    let (status, _, text) = tokio::task::spawn_blocking(move || {
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(auth) = &auth {
            headers.push(("Authorization", auth.as_str()));
        }
        http(&addr, &method, &path, &headers, body.as_deref())
    })
    .await
    .unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn count(client: &tokio_postgres::Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.unwrap().get(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_needs_the_token_lists_pages_and_acts() {
    let pg = TestPostgres::migrated().await;
    let client = fixture(&pg).await;
    let (addr, _stop) = serve(&pg, TOKEN).await;

    // The token is required, on loopback too; a wrong one is refused.
    for path in [
        "/api/v1/webhooks",
        "/api/v1/overview",
        "/api/v1/deliveries/msg_fail0001",
    ] {
        let (status, _) = call(&addr, "GET", path, None, None).await;
        assert_eq!(status, 401, "{path}");
        let (status, _) = call(&addr, "GET", path, Some("wrong"), None).await;
        assert_eq!(status, 401, "{path}");
    }
    let (status, _) = call(
        &addr,
        "POST",
        "/api/v1/deliveries/msg_fail0001/replay",
        Some("wrong"),
        None,
    )
    .await;
    assert_eq!(status, 401);
    // Health and metrics stay open.
    let (status, _) = call(&addr, "GET", "/health/live", None, None).await;
    assert_eq!(status, 200);

    // Webhooks: URLs redacted, secrets never there.
    let (status, body) = call(&addr, "GET", "/api/v1/webhooks", Some(TOKEN), None).await;
    assert_eq!(status, 200, "{body}");
    let text = body.to_string();
    assert!(!text.contains("whsec_"), "{text}");
    assert!(
        !text.contains("hunter2") && !text.contains("sekrit"),
        "{text}"
    );
    let list = body["webhooks"].as_array().unwrap();
    assert_eq!(list.len(), 3);
    let failing = list.iter().find(|w| w["id"] == 2).unwrap();
    assert_eq!(failing["health"], "failing");
    assert_eq!(failing["failed_day"], 120);
    assert_eq!(failing["pending"], 1);
    assert_eq!(failing["url"], "https://failing.example.com/hook");

    let (status, body) = call(&addr, "GET", "/api/v1/webhooks/2", Some(TOKEN), None).await;
    assert_eq!(status, 200);
    assert_eq!(body["stats"]["attempts"], 121);
    assert_eq!(body["stats"]["success_rate"], 0.0);
    let (status, _) = call(&addr, "GET", "/api/v1/webhooks/99", Some(TOKEN), None).await;
    assert_eq!(status, 404);

    // The overview agrees with the database.
    let (_, body) = call(&addr, "GET", "/api/v1/overview", Some(TOKEN), None).await;
    assert_eq!(
        body["overview"]["pending"],
        count(
            &client,
            "SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'"
        )
        .await
    );
    assert_eq!(body["overview"]["failed_day"], 120);
    assert_eq!(body["delivered_within_30s"]["hour"], 0.75);

    // Deliveries, paginated by cursor: every one once, newest first.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/webhooks/2/deliveries?limit=50&cursor={c}"),
            None => "/api/v1/webhooks/2/deliveries?limit=50".to_string(),
        };
        let (status, body) = call(&addr, "GET", &path, Some(TOKEN), None).await;
        assert_eq!(status, 200, "{body}");
        for d in body["deliveries"].as_array().unwrap() {
            seen.push(d["id"].as_str().unwrap().to_string());
        }
        match body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 121);
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 121);
    assert_eq!(
        seen[1], "msg_fail0001",
        "newest first after the pending one"
    );

    // Filters: status, event type, time.
    let (_, body) = call(
        &addr,
        "GET",
        "/api/v1/webhooks/2/deliveries?status=pending",
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(body["deliveries"].as_array().unwrap().len(), 1);
    let (_, body) = call(
        &addr,
        "GET",
        "/api/v1/webhooks/2/deliveries?event_type=traffic.spike",
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(body["deliveries"].as_array().unwrap().len(), 0);
    let since = (chrono::Utc::now() - chrono::Duration::seconds(330)).to_rfc3339();
    let (_, body) = call(
        &addr,
        "GET",
        &format!(
            "/api/v1/webhooks/2/deliveries?status=failed&since={}",
            since.replace('+', "%2B")
        ),
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(body["deliveries"].as_array().unwrap().len(), 5, "{body}");
    let (status, _) = call(
        &addr,
        "GET",
        "/api/v1/webhooks/2/deliveries?status=lost",
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = call(
        &addr,
        "GET",
        "/api/v1/webhooks/2/deliveries?cursor=nonsense",
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(status, 400);

    // One delivery and its attempts.
    let (status, body) = call(
        &addr,
        "GET",
        "/api/v1/deliveries/msg_fail0001",
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["delivery"]["status"], "failed");
    assert_eq!(body["attempts"][0]["response_snippet"], SNIPPET);
    let (_, body) = call(
        &addr,
        "GET",
        "/api/v1/deliveries/msg_fail0001/attempts",
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(body["attempts"].as_array().unwrap().len(), 1);
    let (status, _) = call(
        &addr,
        "GET",
        "/api/v1/deliveries/msg_nothere00",
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(status, 404);

    // Replay one failed delivery; a second replay of it conflicts.
    let (status, body) = call(
        &addr,
        "POST",
        "/api/v1/deliveries/msg_fail0001/replay",
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let state: String = client
        .query_one(
            "SELECT status FROM webhook_deliveries WHERE id = 'msg_fail0001'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(state, "pending");
    let (status, _) = call(
        &addr,
        "POST",
        "/api/v1/deliveries/msg_fail0001/replay",
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(status, 409);

    // Replay the webhook's failed deliveries since a time.
    let since = (chrono::Utc::now() - chrono::Duration::seconds(330)).to_rfc3339();
    let (status, body) = call(
        &addr,
        "POST",
        "/api/v1/webhooks/2/replay",
        Some(TOKEN),
        Some(&serde_json::json!({ "since": since }).to_string()),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["replayed"].as_array().unwrap().len(), 4, "{body}");
    let (status, _) = call(
        &addr,
        "POST",
        "/api/v1/webhooks/2/replay",
        Some(TOKEN),
        Some("{}"),
    )
    .await;
    assert_eq!(status, 400);

    // A test delivery.
    let (status, body) = call(&addr, "POST", "/api/v1/webhooks/1/test", Some(TOKEN), None).await;
    assert_eq!(status, 202, "{body}");
    let id = body["delivery_id"].as_str().unwrap().to_string();
    let kind: String = client
        .query_one(
            "SELECT event_type FROM webhook_deliveries WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(kind, "webhook.test");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_token_the_api_is_off_and_pages_open_on_loopback() {
    let pg = TestPostgres::migrated().await;
    fixture(&pg).await;
    let (addr, _stop) = serve(&pg, "").await;
    let (status, body) = call(&addr, "GET", "/api/v1/webhooks", None, None).await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = call(&addr, "GET", "/", None, None).await;
    assert_eq!(status, 200);
    assert!(body.as_str().unwrap().contains("shop.example.com"));
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_need_a_login_when_a_token_is_set() {
    let pg = TestPostgres::migrated().await;
    fixture(&pg).await;
    let (addr, _stop) = serve(&pg, TOKEN).await;
    let a = addr.clone();
    let (status, headers, _) =
        tokio::task::spawn_blocking(move || http(&a, "GET", "/webhooks/2", &[], None))
            .await
            .unwrap();
    assert_eq!(status, 303);
    assert!(
        headers
            .iter()
            .any(|(k, v)| k == "location" && v == "/login")
    );
    let a = addr.clone();
    let (status, _, _) = tokio::task::spawn_blocking(move || {
        let body = "token=wrong";
        http(
            &a,
            "POST",
            "/login",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            Some(body),
        )
    })
    .await
    .unwrap();
    assert_eq!(status, 401);
    let a = addr.clone();
    let (status, headers, _) = tokio::task::spawn_blocking(move || {
        let body = format!("token={TOKEN}");
        http(
            &a,
            "POST",
            "/login",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            Some(&body),
        )
    })
    .await
    .unwrap();
    assert_eq!(status, 303);
    let cookie = headers
        .iter()
        .find(|(k, _)| k == "set-cookie")
        .map(|(_, v)| v.clone())
        .unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(!cookie.contains(TOKEN));
    let pair = cookie.split(';').next().unwrap().to_string();
    let a = addr.clone();
    let (status, _, body) = tokio::task::spawn_blocking(move || {
        http(
            &a,
            "GET",
            "/deliveries/msg_fail0001",
            &[("Cookie", &pair)],
            None,
        )
    })
    .await
    .unwrap();
    assert_eq!(status, 200);
    assert!(
        body.contains("&#60;script&#62;alert(1)&#60;/script&#62;"),
        "{body}"
    );
    assert!(!body.contains(SNIPPET));
    assert!(!body.contains("<img src=x"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_queries_never_scan_the_outbox() {
    let pg = TestPostgres::migrated().await;
    let client = fixture(&pg).await;
    client
        .batch_execute("ANALYZE; SET enable_seqscan = off;")
        .await
        .unwrap();
    let plans = plausible_webhooks::store::status::explain(&client, 2, "msg_fail0001")
        .await
        .unwrap();
    assert_eq!(plans.len(), 7);
    for (name, plan) in plans {
        assert!(
            !plan.contains("Seq Scan on webhook_deliveries")
                && !plan.contains("Seq Scan on webhook_delivery_attempts"),
            "{name} scans the outbox:\n{plan}"
        );
    }
}

#[test]
fn a_non_loopback_listen_without_a_token_is_refused() {
    let output = binary()
        .arg("run")
        .env("PLAUSIBLE_WEBHOOKS_HTTP__LISTEN", "0.0.0.0:0")
        .env(
            "PLAUSIBLE_WEBHOOKS_POSTGRES__URL",
            "postgres://nobody@127.0.0.1:1/none",
        )
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("refusing to start") && stderr.contains("http.admin_token"),
        "{stderr}"
    );
}

/// The three pages in headless Chromium, logged in through the form, on a
/// desktop and a phone width; their figures against Postgres; screenshots
/// into target/screenshots/ for a person to look at, or into docs/ (which
/// docs/status-page.md shows) with `PLAUSIBLE_WEBHOOKS_SCREENSHOTS=docs`,
/// so that a test run leaves the checked-in ones as they are.
#[tokio::test(flavor = "multi_thread")]
async fn the_pages_in_a_real_browser() {
    if !chromium_available() {
        if std::env::var_os("CI").is_some() {
            panic!("chromium and chromedriver are needed (scripts/lib/ensure-deps.sh)");
        }
        eprintln!("skipped: no /usr/bin/chromium or /usr/bin/chromedriver");
        return;
    }
    let pg = TestPostgres::migrated().await;
    let client = fixture(&pg).await;
    let (addr, _stop) = serve(&pg, TOKEN).await;
    let pending = count(
        &client,
        "SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'",
    )
    .await;
    let failed = count(
        &client,
        "SELECT count(*) FROM webhook_deliveries WHERE status = 'failed' AND inserted_at > now() - interval '1 day'",
    )
    .await;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let docs = match std::env::var("PLAUSIBLE_WEBHOOKS_SCREENSHOTS").as_deref() {
        Ok("docs") => root.join("docs"),
        _ => root.join("target/screenshots"),
    };
    std::fs::create_dir_all(&docs).expect("the screenshots' directory");
    tokio::task::spawn_blocking(move || {
        for (name, width, height) in [("desktop", 1280, 900), ("phone", 390, 844)] {
            let b = Browser::start(width, height);
            let base = format!("http://{addr}");
            b.goto(&format!("{base}/"));
            assert!(b.current_url().ends_with("/login"), "{}", b.current_url());
            if name == "desktop" {
                b.screenshot(&docs.join("status-page-login.png"), width);
            }
            b.type_into("#token", "wrong");
            b.click("#login");
            b.wait_until("the refusal", |b| b.count("#login-error") > 0);
            assert!(b.text("#login-error").contains("not the admin token"));
            b.type_into("#token", TOKEN);
            b.click("#login");
            let home = format!("{base}/");
            b.wait_until("the overview", |b| b.current_url() == home);

            // The overview's figures are the database's.
            assert_eq!(b.text("#pending .value"), pending.to_string());
            assert_eq!(b.text("#failed .value"), failed.to_string());
            assert_eq!(b.text("#failing .value"), "1");
            assert_eq!(b.text("#goal-hour .value"), "75.0 %");
            assert_eq!(b.text("#goal-day .detail"), "3 of 4 events");
            assert_eq!(b.text("#version .value"), env!("CARGO_PKG_VERSION"));
            assert_eq!(b.text("#tasks .value"), "4 / 4");
            assert_eq!(b.text("#leader .value"), "host-a:4242");
            assert!(b.text("#leader .detail").contains("leader"));
            assert!(b.text("#lag .value").ends_with(" s"));
            let row = b.text("#webhook-2");
            assert!(row.contains("failing") && row.contains("120"), "{row}");
            assert!(row.contains("<b>bold</b> & sales"), "{row}");
            let slack = b.text("#webhook-3");
            assert!(
                slack.contains("hooks.slack.com/…") && !slack.contains("sekrit"),
                "{slack}"
            );
            assert!(!b.text("#webhook-1").contains("hunter2"));
            b.screenshot(
                &docs.join(format!("status-page-overview-{name}.png")),
                width,
            );

            // The failing webhook.
            b.click_to_new_page("#webhook-2 a");
            assert!(b.current_url().ends_with("/webhooks/2"));
            let state = b.text("#state");
            assert!(
                state.contains("Failing since") && state.contains("failing"),
                "{state}"
            );
            assert!(state.contains("0.0 %"), "{state}");
            assert_eq!(b.count("#deliveries tbody tr"), 50);
            assert_eq!(b.count("svg rect"), 72);
            assert!(b.text("#settings").contains("never shown"));
            assert!(!b.text("#settings").contains("whsec_"));
            b.screenshot(&docs.join(format!("status-page-webhook-{name}.png")), width);
            b.click_to_new_page("#older");
            assert_eq!(b.count("#deliveries tbody tr"), 50);
            b.click_to_new_page("#older");
            assert_eq!(b.count("#deliveries tbody tr"), 21);

            // One delivery: the snippet is text, no script ran.
            b.goto(&format!("{base}/deliveries/msg_fail0001"));
            assert_eq!(b.text("#attempt-1 .snippet"), SNIPPET);
            assert_eq!(b.count("#attempt-1 .snippet script"), 0);
            assert!(b.text("#payload").contains("<img src=x onerror=alert(2)>"));
            assert_eq!(b.count("#payload img"), 0);
            assert!(!b.alert_open());
            assert!(b.text("#summary").contains("none (finished)"));
            b.screenshot(
                &docs.join(format!("status-page-delivery-{name}.png")),
                width,
            );
        }
    })
    .await
    .unwrap();
    // The pages' figures held while the browser looked.
    tokio::time::sleep(Duration::from_millis(1)).await;
}

#[test]
fn check_config_never_shows_the_admin_token() {
    let output = binary()
        .arg("check-config")
        .env("PLAUSIBLE_WEBHOOKS_HTTP__ADMIN_TOKEN", TOKEN)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("admin_token = \"[redacted]\""), "{stdout}");
    assert!(!stdout.contains(TOKEN), "{stdout}");
}
