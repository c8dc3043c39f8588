//! The live registry against a real Postgres: every change shows within a
//! second, none is lost across a dropped connection, invalid rows get a
//! readable error written back.

use plausible_webhooks::telemetry::health::Heartbeat;
use std::time::Duration;

use plausible_webhooks::changes::ChangeStream;
use plausible_webhooks::config::Config;
use plausible_webhooks::registry::{Registry, RegistryHandle};
use tokio::sync::watch;
use tokio_postgres::Client;

use crate::postgres_schema::SECRET;
use crate::support::{TestPostgres, config_pg};

/// A running change stream; stops when dropped.
pub struct Running {
    pub registry: RegistryHandle,
    stop: watch::Sender<bool>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

async fn start(db: &TestPostgres, tweak: impl FnOnce(&mut Config)) -> Running {
    let mut config = config_pg(db);
    tweak(&mut config);
    run_change_stream(&config).await
}

/// Starts a change stream for `config` and waits for its first full read.
pub async fn run_change_stream(config: &Config) -> Running {
    let pool = plausible_webhooks::store::pool(&config.postgres).unwrap();
    let registry = RegistryHandle::default();
    let stream = ChangeStream::new(config, pool, registry.clone()).unwrap();
    let (stop, stop_rx) = watch::channel(false);
    let mut version = registry.subscribe();
    tokio::spawn(stream.run(stop_rx, Heartbeat::detached()));
    // The first full read publishes.
    tokio::time::timeout(Duration::from_secs(10), version.changed())
        .await
        .expect("the registry loads")
        .unwrap();
    Running { registry, stop }
}

/// Waits (up to 10 s) until `check` holds for the registry.
pub async fn eventually(registry: &RegistryHandle, what: &str, check: impl Fn(&Registry) -> bool) {
    let mut version = registry.subscribe();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if check(&registry.read()) {
            return;
        }
        if tokio::time::timeout_at(deadline, version.changed())
            .await
            .is_err()
        {
            panic!(
                "timed out waiting until {what}; registry: {:?}",
                registry.stats()
            );
        }
    }
}

async fn site(client: &Client, id: i64) {
    client
        .execute(
            "INSERT INTO sites (id, domain) VALUES ($1, $2) ON CONFLICT DO NOTHING",
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

async fn last_error(client: &Client, id: i64) -> Option<String> {
    client
        .query_one("SELECT last_error FROM webhooks WHERE id = $1", &[&id])
        .await
        .unwrap()
        .get(0)
}

async fn eventually_error(client: &Client, id: i64, expected: Option<&str>) {
    for _ in 0..100 {
        if last_error(client, id).await.as_deref() == expected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "last_error of {id} is {:?}, expected {expected:?}",
        last_error(client, id).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insert_update_disable_and_delete_show_in_the_registry() {
    let db = TestPostgres::migrated().await;
    let client = db.client().await;
    site(&client, 1).await;
    let existing = webhook(&client, 1, "https://before.example.com/hook").await;
    let running = start(&db, |_| {}).await;
    let registry = &running.registry;
    assert!(registry.webhook(existing).is_some(), "loaded at start");

    let id = webhook(&client, 1, "https://hooks.example.com/a").await;
    eventually(registry, "the insert shows", |r| r.webhook(id).is_some()).await;
    let one = registry.site(1).unwrap();
    assert_eq!(one.domain, "site1.example.com");
    assert_eq!(one.webhooks.len(), 2);

    client
        .execute("UPDATE webhooks SET spike_threshold = 77, url = 'https://hooks.example.com/b' WHERE id = $1", &[&id])
        .await
        .unwrap();
    eventually(registry, "the update shows", |r| {
        r.webhook(id).is_some_and(|w| {
            w.spike.map(|s| s.threshold) == Some(77)
                && w.url.as_str() == "https://hooks.example.com/b"
        })
    })
    .await;

    client
        .execute("UPDATE webhooks SET enabled = false WHERE id = $1", &[&id])
        .await
        .unwrap();
    eventually(registry, "the disable shows", |r| r.webhook(id).is_none()).await;
    client
        .execute("UPDATE webhooks SET enabled = true WHERE id = $1", &[&id])
        .await
        .unwrap();
    eventually(registry, "the re-enable shows", |r| r.webhook(id).is_some()).await;

    client
        .execute("DELETE FROM webhooks WHERE id = $1", &[&id])
        .await
        .unwrap();
    eventually(registry, "the delete shows", |r| r.webhook(id).is_none()).await;
    client
        .execute("DELETE FROM webhooks WHERE id = $1", &[&existing])
        .await
        .unwrap();
    eventually(registry, "the site goes with its last webhook", |r| {
        r.site(1).is_none()
    })
    .await;
    assert_eq!(registry.stats().webhooks, 0);

    // Moving a webhook to another site moves it in the registry.
    site(&client, 2).await;
    let moving = webhook(&client, 1, "https://hooks.example.com/m").await;
    eventually(registry, "the insert shows", |r| {
        r.webhook(moving).is_some()
    })
    .await;
    client
        .execute("UPDATE webhooks SET site_id = 2 WHERE id = $1", &[&moving])
        .await
        .unwrap();
    eventually(registry, "the move shows", |r| {
        r.site(1).is_none() && r.site(2).is_some_and(|s| s.webhooks.len() == 1)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_made_while_disconnected_are_there_after_reconnecting() {
    let db = TestPostgres::migrated().await;
    let client = db.client().await;
    site(&client, 1).await;
    let kept = webhook(&client, 1, "https://hooks.example.com/kept").await;
    let deleted = webhook(&client, 1, "https://hooks.example.com/deleted").await;
    let running = start(&db, |_| {}).await;
    let registry = &running.registry;
    assert_eq!(registry.stats().webhooks, 2);

    let pid_of_listener = "SELECT pid FROM pg_stat_activity WHERE application_name = 'plausible-webhooks changes' AND datname = current_database()";
    let before: i32 = client.query_one(pid_of_listener, &[]).await.unwrap().get(0);
    // Kill the listening connection and change things at once, in one
    // transaction, before the daemon can be back.
    client
        .batch_execute(&format!(
            "BEGIN;
             SELECT pg_terminate_backend({before});
             INSERT INTO sites (id, domain) VALUES (2, 'two.example.com');
             INSERT INTO webhooks (site_id, url, secret, event_types, drop_threshold)
               VALUES (2, 'https://hooks.example.com/new', '{SECRET}', ARRAY['traffic.drop'], 3);
             UPDATE webhooks SET spike_threshold = 999 WHERE id = {kept};
             DELETE FROM webhooks WHERE id = {deleted};
             COMMIT;"
        ))
        .await
        .unwrap();

    eventually(registry, "the changes made while down show", |r| {
        r.webhook(deleted).is_none()
            && r.webhook(kept).and_then(|w| w.spike).map(|s| s.threshold) == Some(999)
            && r.site(2)
                .is_some_and(|s| s.webhooks.len() == 1 && s.webhooks[0].drop.is_some())
    })
    .await;
    let mut listeners = Vec::new();
    for _ in 0..100 {
        listeners = client
            .query(pid_of_listener, &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<_, i32>(0))
            .collect();
        if listeners.len() == 1 && listeners[0] != before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        listeners.len() == 1 && listeners[0] != before,
        "a new listening connection: {listeners:?}"
    );

    // And it listens again.
    let id = webhook(&client, 2, "https://hooks.example.com/after").await;
    eventually(registry, "changes after the reconnect show", |r| {
        r.webhook(id).is_some()
    })
    .await;
}

/// The registry's view of the table: (id, site, spike threshold) of every
/// active webhook.
fn registry_rows(registry: &Registry) -> Vec<(i64, i64, Option<u32>)> {
    let mut rows: Vec<_> = registry
        .sites()
        .flat_map(|s| {
            s.webhooks
                .iter()
                .map(|w| (w.id, w.site_id, w.spike.map(|s| s.threshold)))
        })
        .collect();
    rows.sort();
    rows
}

async fn table_rows(client: &Client) -> Vec<(i64, i64, Option<u32>)> {
    client
        .query(
            "SELECT id, site_id, spike_threshold FROM webhooks WHERE enabled ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.get(0),
                r.get(1),
                r.get::<_, Option<i32>>(2).map(|t| t as u32),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_5000_changes_leaves_the_registry_equal_to_the_table() {
    let db = TestPostgres::migrated().await;
    let client = db.client().await;
    client
        .batch_execute("INSERT INTO sites (id, domain) SELECT i, 'site' || i || '.example.com' FROM generate_series(1, 1000) i")
        .await
        .unwrap();
    let running = start(&db, |_| {}).await;
    let registry = &running.registry;

    // 5,000 inserts in one transaction.
    client
        .batch_execute(&format!(
            "INSERT INTO webhooks (site_id, url, secret, event_types, spike_threshold)
             SELECT 1 + (i % 1000), 'https://hooks.example.com/' || i, '{SECRET}', ARRAY['traffic.spike'], i
             FROM generate_series(1, 5000) i"
        ))
        .await
        .unwrap();
    let expected = table_rows(&client).await;
    assert_eq!(expected.len(), 5000);
    eventually(registry, "the one-transaction burst is applied", |r| {
        registry_rows(r) == expected
    })
    .await;

    // 5,000 updates and deletes in as many transactions, from four
    // connections at once.
    let ids: Vec<i64> = expected.iter().map(|(id, _, _)| *id).collect();
    let mut tasks = Vec::new();
    for chunk in ids.chunks(1250) {
        let chunk = chunk.to_vec();
        let url = db.url.clone();
        tasks.push(tokio::spawn(async move {
            let client = crate::support::connect(&url).await;
            for id in chunk {
                if id % 10 == 0 {
                    client.execute("DELETE FROM webhooks WHERE id = $1", &[&id]).await.unwrap();
                } else if id % 10 == 1 {
                    client.execute("UPDATE webhooks SET enabled = false WHERE id = $1", &[&id]).await.unwrap();
                } else {
                    client
                        .execute("UPDATE webhooks SET spike_threshold = spike_threshold + 100000 WHERE id = $1", &[&id])
                        .await
                        .unwrap();
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let expected = table_rows(&client).await;
    assert_eq!(expected.len(), 4000);
    eventually(registry, "the many-transaction burst is applied", |r| {
        registry_rows(r) == expected
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_row_gets_its_error_written_back_and_cleared_when_fixed() {
    let db = TestPostgres::migrated().await;
    let client = db.client().await;
    site(&client, 1).await;
    // Invalid before the daemon starts: caught by the first full read.
    let early = webhook(&client, 1, "https://192.168.1.10/hook").await;
    let running = start(&db, |_| {}).await;
    let registry = &running.registry;
    eventually_error(
        &client,
        early,
        Some(
            "url host 192.168.1.10 is a private address; webhooks may only target public addresses",
        ),
    )
    .await;
    assert!(registry.webhook(early).is_none());

    // Invalid while running: plain http is allowed by the table, not by
    // the daemon's default config.
    let id = webhook(&client, 1, "http://hooks.example.com/hook").await;
    eventually_error(&client, id, Some("url must use https")).await;
    assert!(registry.webhook(id).is_none());
    // The write-back does not loop: the error stays, written once.
    let updated_at = "SELECT updated_at::text FROM webhooks WHERE id = $1";
    let first: String = client.query_one(updated_at, &[&id]).await.unwrap().get(0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let later: String = client.query_one(updated_at, &[&id]).await.unwrap().get(0);
    assert_eq!(first, later);

    // Fixing the row clears the error and activates the webhook.
    client
        .execute(
            "UPDATE webhooks SET url = 'https://hooks.example.com/hook' WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    eventually(registry, "the fixed row is active", |r| {
        r.webhook(id).is_some()
    })
    .await;
    eventually_error(&client, id, None).await;

    // A secret with stray base64 padding bits (which the table accepts) is
    // read, not refused.
    client
        .execute(
            "UPDATE webhooks SET secret = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSx' WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    eventually_error(&client, id, None).await;
    assert!(registry.webhook(id).is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cap_holds_even_when_the_trigger_is_bypassed() {
    let db = TestPostgres::migrated().await;
    let client = db.client().await;
    site(&client, 1).await;
    let running = start(&db, |_| {}).await;
    let registry = &running.registry;
    client
        .batch_execute("ALTER TABLE webhooks DISABLE TRIGGER webhooks_enforce_site_limit")
        .await
        .unwrap();
    let mut ids = Vec::new();
    for i in 0..12 {
        ids.push(webhook(&client, 1, &format!("https://hooks.example.com/{i}")).await);
    }
    eventually(registry, "ten are active", |r| {
        r.site(1).is_some_and(|s| s.webhooks.len() == 10)
    })
    .await;
    let active: Vec<i64> = registry
        .site(1)
        .unwrap()
        .webhooks
        .iter()
        .map(|w| w.id)
        .collect();
    assert_eq!(active, ids[..10].to_vec(), "the oldest ten");
    let capped = "site 1 already has 10 active webhooks; this one is not active";
    eventually_error(&client, ids[10], Some(capped)).await;
    eventually_error(&client, ids[11], Some(capped)).await;

    // Deleting an active one lets the next oldest in.
    client
        .execute("DELETE FROM webhooks WHERE id = $1", &[&ids[0]])
        .await
        .unwrap();
    eventually(registry, "the eleventh moves up", |r| {
        r.webhook(ids[10]).is_some()
    })
    .await;
    eventually_error(&client, ids[10], None).await;
    assert!(registry.webhook(ids[11]).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn goal_changes_show_in_the_registry() {
    let db = TestPostgres::migrated().await;
    let client = db.client().await;
    site(&client, 1).await;
    site(&client, 2).await;
    webhook(&client, 1, "https://hooks.example.com/1").await;
    let preexisting: i64 = client
        .query_one("INSERT INTO goals (site_id, event_name, display_name) VALUES (1, 'Signup', 'Signup') RETURNING id", &[])
        .await
        .unwrap()
        .get(0);
    let running = start(&db, |_| {}).await;
    let registry = &running.registry;
    let goals_of = |r: &Registry, site: i64| -> Vec<(i64, String)> {
        r.site(site)
            .map(|s| {
                s.goals
                    .iter()
                    .map(|g| (g.id, g.display_name.clone()))
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(
        goals_of(&registry.read(), 1),
        vec![(preexisting, "Signup".to_string())]
    );

    let page: i64 = client
        .query_one("INSERT INTO goals (site_id, page_path, display_name) VALUES (1, '/blog/**', 'Visit /blog/**') RETURNING id", &[])
        .await
        .unwrap()
        .get(0);
    eventually(registry, "the new goal shows", |r| {
        goals_of(r, 1).len() == 2
    })
    .await;
    let kind = registry.read().site(1).unwrap().goals[1].kind.as_str();
    assert_eq!(kind, "page");

    client
        .execute("UPDATE goals SET scroll_threshold = 50, display_name = 'Scroll /blog/** 50%' WHERE id = $1", &[&page])
        .await
        .unwrap();
    eventually(registry, "the goal update shows", |r| {
        r.site(1)
            .is_some_and(|s| s.goals.iter().any(|g| g.kind.as_str() == "scroll"))
    })
    .await;
    client
        .execute("DELETE FROM goals WHERE id = $1", &[&preexisting])
        .await
        .unwrap();
    eventually(registry, "the goal delete shows", |r| {
        goals_of(r, 1).len() == 1
    })
    .await;

    // Goals of a site without webhooks are not held, until it gets one.
    client
        .execute(
            "INSERT INTO goals (site_id, event_name, display_name) VALUES (2, 'Buy', 'Buy')",
            &[],
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(registry.site(2).is_none());
    webhook(&client, 2, "https://hooks.example.com/2").await;
    eventually(registry, "the new site's goals load", |r| {
        goals_of(r, 2).len() == 1
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciliation_fixes_changes_that_were_never_announced() {
    let db = TestPostgres::migrated().await;
    let client = db.client().await;
    site(&client, 1).await;
    let running = start(&db, |c| c.registry.reconcile_interval_secs = 1).await;
    let registry = &running.registry;
    client
        .batch_execute("ALTER TABLE webhooks DISABLE TRIGGER webhooks_notify_change")
        .await
        .unwrap();
    let silent = webhook(&client, 1, "https://hooks.example.com/silent").await;
    eventually(registry, "reconciliation finds the silent insert", |r| {
        r.webhook(silent).is_some()
    })
    .await;
}
