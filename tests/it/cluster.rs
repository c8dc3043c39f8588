//! A replicated ClickHouse: two 18.16 replicas of one shard with ZooKeeper
//! (`support::servers::cluster`), Plausible's `events_v2` a
//! `ReplicatedMergeTree` on both. `migrate` refuses without
//! `clickhouse.cluster` and creates everything `ON CLUSTER` with it; goal
//! completions and spikes are counted once wherever each INSERT lands and
//! however often an identical block is retried; a replica stopped
//! mid-stream loses nothing and the engine fails over; pruning, `doctor`
//! and `uninstall` work on the cluster.

use std::time::Duration;

use plausible_webhooks::analytics::{Analytics, embedded_migrations, install, retention};
use plausible_webhooks::triggers::TriggerEngine;

use crate::support::servers::cluster::{self, CLUSTER, Cluster, TWO_SHARDS};
use crate::support::{TestClickhouse, TestPostgres, binary, config, config_env, wait_for};
use crate::triggers::World;

/// The cluster with every replica running, and the cluster tests' lock;
/// `None` (the test passes) when ZooKeeper is not installed.
async fn cluster_for_test() -> Option<(&'static Cluster, tokio::sync::MutexGuard<'static, ()>)> {
    let cluster = cluster::cluster()?;
    let guard = cluster::lock().await;
    for replica in &cluster.replicas {
        replica.start();
    }
    Some((cluster, guard))
}

fn raw(url: &str, database: &str) -> clickhouse::Client {
    clickhouse::Client::default()
        .with_url(url)
        .with_database(database)
        .with_validation(false)
}

/// One number from one replica.
async fn number(url: &str, database: &str, sql: &str) -> u64 {
    raw(url, database)
        .query(sql)
        .fetch_one::<u64>()
        .await
        .unwrap_or_else(|e| panic!("{sql} at {url}: {e}"))
}

/// The daemon's tables and views on one replica, with their engines.
async fn catalog(url: &str, database: &str) -> Vec<(String, String)> {
    raw(url, database)
        .query("SELECT name, engine FROM system.tables WHERE database = ? AND (name LIKE 'webhooks_%' OR name = 'plausible_webhooks_migrations') ORDER BY name")
        .bind(database)
        .fetch_all::<(String, String)>()
        .await
        .unwrap()
}

/// Runs the binary with `config`; its exit code and stderr.
fn run_binary(config: &plausible_webhooks::config::Config, args: &[&str]) -> (i32, String, String) {
    let out = binary()
        .args(args)
        .envs(config_env(config))
        .output()
        .expect("the binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A block of events at one fixed time, so that sending it again sends
/// the identical block (as Plausible retries its buffer): (name, site,
/// user) each.
async fn insert_block(analytics: &Analytics, at: &str, rows: &[(&str, u64, u64)]) {
    let values: Vec<String> = rows
        .iter()
        .map(|(name, site, user)| {
            format!(
                "('{at}', '{name}', {site}, {user}, {}, '/', [], [], 0, '')",
                user + 1_000_000
            )
        })
        .collect();
    analytics
        .execute(&analytics.render(&format!(
            "INSERT INTO {{database}}.{{events_table}} (timestamp, name, site_id, user_id, session_id, pathname, `meta.key`, `meta.value`, scroll_depth, referrer_source) VALUES {}",
            values.join(", ")
        )))
        .await
        .unwrap_or_else(|e| panic!("insert at {}: {e}", analytics.current_url()));
}

/// A time a few seconds ago, as ClickHouse (UTC) reads it.
fn recent() -> String {
    (chrono::Utc::now() - chrono::Duration::seconds(5))
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// Waits until every replica reads `expected` from `sql`.
async fn replicated(cluster: &Cluster, database: &str, sql: &str, expected: u64) {
    for replica in &cluster.replicas {
        wait_for(
            &format!("{} answers {expected} to {sql}", replica.url),
            Duration::from_secs(30),
            async || {
                raw(&replica.url, database)
                    .query(sql)
                    .fetch_one::<u64>()
                    .await
                    .is_ok_and(|n| n == expected)
            },
        )
        .await;
    }
}

const COMPLETIONS: &str =
    "SELECT toUInt64(countMerge(completions)) FROM webhooks_goal_minutes WHERE name = 'Buy'";
const EVENTS: &str = "SELECT count() FROM events_v2";

/// A world on the cluster, the daemon's migrations applied `ON CLUSTER`,
/// site 1 with a `Buy` goal webhook and a spike webhook (5 visitors).
async fn cluster_world(cluster: &Cluster) -> World {
    let mut ch = TestClickhouse::on_cluster(cluster).await;
    ch.config.cluster = CLUSTER.into();
    let w = World::with(ch).await;
    w.site(1).await;
    w.goal(1, "event_name, display_name", "'Buy', 'Buy'").await;
    w.webhook(
        1,
        "event_types, goal_interval_seconds",
        "ARRAY['goal.completed'], 1",
    )
    .await;
    w.webhook(
        1,
        "event_types, spike_threshold, cooldown_minutes",
        "ARRAY['traffic.spike'], 5, 60",
    )
    .await;
    w
}

/// A fresh engine reading through `analytics`.
async fn engine_on(w: &World, analytics: Analytics) -> TriggerEngine {
    let pool = plausible_webhooks::store::pool(&w.config.postgres).unwrap();
    let mut engine = TriggerEngine::new(&w.config, pool, analytics, w.registry.clone());
    engine.load().await.unwrap();
    engine
}

/// Ticks until the outbox holds `expected` completions (a goal webhook
/// sends at most one delivery a second), then for another 1.5 s (past the
/// throttle and a rescan) to show that no more come.
async fn tick_until(engine: &mut TriggerEngine, w: &World, expected: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while w.completions().await < expected {
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {expected} completions",
            w.completions().await
        );
        engine.tick().await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        engine.tick().await.unwrap();
    }
    assert_eq!(w.completions().await, expected);
}

async fn spikes(w: &World) -> usize {
    w.outbox()
        .await
        .iter()
        .filter(|d| d.1 == "traffic.spike")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_refuses_without_the_cluster_then_installs_on_every_replica() {
    let Some((cluster, _guard)) = cluster_for_test().await else {
        return;
    };
    let pg = TestPostgres::with_plausible().await;
    let ch = TestClickhouse::on_cluster(cluster).await;
    let db = ch.database.clone();
    let (a, b) = (&cluster.replicas[0].url, &cluster.replicas[1].url);
    let mut config = config(&pg, &ch);

    // A replicated events_v2 and no cluster: refused, nothing created.
    let (code, _, stderr) = run_binary(&config, &["migrate"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("clickhouse.cluster"), "{stderr}");
    assert!(
        stderr.contains(CLUSTER),
        "names the server's clusters: {stderr}"
    );
    assert!(catalog(a, &db).await.is_empty());
    // doctor (and readiness, through the same check) says the same.
    let (code, stdout, _) = run_binary(&config, &["doctor"]);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("Set clickhouse.cluster"), "{stdout}");
    config.clickhouse.cluster = "no_such_cluster".into();
    let (code, _, stderr) = run_binary(&config, &["migrate"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("no_such_cluster") && stderr.contains(CLUSTER),
        "{stderr}"
    );
    // A cluster of two shards: sharding is not supported.
    config.clickhouse.cluster = TWO_SHARDS.into();
    let (code, _, stderr) = run_binary(&config, &["migrate"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("2 shards"), "{stderr}");
    // A cluster over an events table that is not replicated.
    config.clickhouse.cluster = CLUSTER.into();
    raw(a, &db)
        .query("CREATE TABLE events_plain AS events_v2 ENGINE = MergeTree ORDER BY tuple()")
        .execute()
        .await
        .unwrap();
    let mut plain = config.clone();
    plain.clickhouse.events_table = "events_plain".into();
    let (code, _, stderr) = run_binary(&plain, &["migrate"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("not replicated"), "{stderr}");
    assert!(catalog(a, &db).await.is_empty());
    // The daemon's tables left unreplicated by a single-server migrate.
    raw(a, &db)
        .query("CREATE TABLE plausible_webhooks_migrations (version UInt32) ENGINE = MergeTree ORDER BY version")
        .execute()
        .await
        .unwrap();
    let (code, _, stderr) = run_binary(&config, &["migrate"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("plausible_webhooks_migrations (MergeTree)")
            && stderr.contains("uninstall"),
        "{stderr}"
    );
    assert_eq!(catalog(a, &db).await.len(), 1, "nothing changed");
    let (code, stdout, stderr) = run_binary(&config, &["uninstall", "--yes"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(catalog(a, &db).await.is_empty());

    // With it: every object on both replicas, tables replicated, one history.
    let (code, _, stderr) = run_binary(&config, &["migrate"]);
    assert_eq!(code, 0, "{stderr}");
    let expected = install::all_objects().len() + 1;
    for url in [a, b] {
        let objects = catalog(url, &db).await;
        assert_eq!(objects.len(), expected, "{url}: {objects:?}");
        for (name, engine) in &objects {
            let view = name.ends_with("_mv");
            assert!(
                if view {
                    engine == "MaterializedView"
                } else {
                    engine.starts_with("Replicated")
                },
                "{url}: {name} is {engine}"
            );
        }
    }
    let history = "SELECT count() FROM plausible_webhooks_migrations";
    replicated(cluster, &db, history, embedded_migrations().len() as u64).await;
    // Through the other replica: nothing to apply, the same history.
    let mut via_b = config.clone();
    via_b.clickhouse.url = b.clone();
    via_b.clickhouse.failover_urls = vec![a.clone()];
    let (code, _, stderr) = run_binary(&via_b, &["migrate"]);
    assert_eq!(code, 0, "{stderr}");
    replicated(cluster, &db, history, embedded_migrations().len() as u64).await;

    // doctor checks both replicas and names the cluster.
    let (code, stdout, stderr) = run_binary(&config, &["doctor"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("clickhouse replicas") && stdout.contains(CLUSTER),
        "{stdout}"
    );
    // A replica without the views fails it.
    raw(b, &db)
        .query("DROP TABLE webhooks_inserts_mv")
        .execute()
        .await
        .unwrap();
    let (code, stdout, _) = run_binary(&config, &["doctor"]);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("webhooks_inserts_mv is missing"),
        "{stdout}"
    );
    let (code, _, stderr) = run_binary(&via_b, &["migrate"]);
    assert_eq!(code, 0, "migrate restores it: {stderr}");
    assert_eq!(catalog(b, &db).await.len(), expected);

    // Pruning on one replica drops the partition on both.
    let a_client = ch.analytics_at(a);
    insert_block(&a_client, "2020-01-15 10:00:00", &[("pageview", 1, 7)]).await;
    let old_rows = "SELECT count() FROM webhooks_site_minutes WHERE toYYYYMM(minute) = 202001";
    replicated(cluster, &db, old_rows, 1).await;
    let partition = retention::partitions(&a_client)
        .await
        .unwrap()
        .into_iter()
        .find(|p| p.table.name() == "webhooks_site_minutes" && p.value == 202001)
        .expect("the 2020-01 partition");
    retention::drop_partition(&a_client, &partition)
        .await
        .unwrap();
    replicated(cluster, &db, old_rows, 0).await;

    // uninstall drops everything on both, ZooKeeper paths with it: a new
    // migrate starts afresh.
    let (code, stdout, stderr) = run_binary(&config, &["uninstall", "--yes"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    for url in [a, b] {
        assert!(catalog(url, &db).await.is_empty(), "{url}");
    }
    let (code, _, stderr) = run_binary(&config, &["migrate"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(catalog(b, &db).await.len(), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn goals_and_spikes_count_once_wherever_inserts_land_and_however_often_retried() {
    let Some((cluster, _guard)) = cluster_for_test().await else {
        return;
    };
    let w = cluster_world(cluster).await;
    let db = w.ch.database.clone();
    let (a, b) = (
        w.ch.analytics_at(&cluster.replicas[0].url),
        w.ch.analytics_at(&cluster.replicas[1].url),
    );
    let mut engine = engine_on(&w, w.ch.analytics()).await;
    engine.tick().await.unwrap();

    // Alternating replicas; each block retried whole, on the same replica
    // and on the other one.
    let at = recent();
    let first = [("Buy", 1, 1), ("Buy", 1, 2), ("pageview", 1, 3)];
    let second = [("Buy", 1, 4), ("pageview", 1, 5), ("pageview", 1, 6)];
    insert_block(&a, &at, &first).await;
    insert_block(&b, &at, &second).await;
    insert_block(&a, &at, &first).await;
    insert_block(&b, &at, &first).await;
    insert_block(&a, &at, &second).await;
    replicated(cluster, &db, EVENTS, 6).await;
    replicated(cluster, &db, COMPLETIONS, 3).await;
    // The views fired once per block that events_v2 kept, and only on the
    // replica that took it: one insert-log row per kept block.
    replicated(cluster, &db, "SELECT count() FROM webhooks_inserts", 2).await;

    tick_until(&mut engine, &w, 3).await;
    assert_eq!(spikes(&w).await, 1, "6 visitors, threshold 5");

    // Late through replication: replica A fetches nothing of the views'
    // tables while B takes an insert; the engine (reading A) sees it once
    // A has it.
    for table in [
        "webhooks_inserts",
        "webhooks_goal_minutes",
        "webhooks_site_minutes",
    ] {
        a.execute(&a.render(&format!("SYSTEM STOP FETCHES {{database}}.{table}")))
            .await
            .unwrap();
    }
    insert_block(&b, &recent(), &[("Buy", 1, 8)]).await;
    engine.tick().await.unwrap();
    assert_eq!(w.completions().await, 3, "not on A yet");
    for table in [
        "webhooks_inserts",
        "webhooks_goal_minutes",
        "webhooks_site_minutes",
    ] {
        a.execute(&a.render(&format!("SYSTEM START FETCHES {{database}}.{table}")))
            .await
            .unwrap();
    }
    replicated(cluster, &db, COMPLETIONS, 4).await;
    tick_until(&mut engine, &w, 4).await;
    assert_eq!(spikes(&w).await, 1);

    // Two different blocks whose views' output is identical (same site,
    // minute, name, path and user; another session): events_v2 keeps both,
    // and the views' replicated tables do not drop the second's output as
    // a duplicate, so both count.
    let at = recent();
    for session in [2_000_001, 2_000_002] {
        a.execute(&a.render(&format!(
            "INSERT INTO {{database}}.{{events_table}} (timestamp, name, site_id, user_id, session_id, pathname, `meta.key`, `meta.value`, scroll_depth, referrer_source) VALUES ('{at}', 'Buy', 1, 9, {session}, '/', [], [], 0, '')"
        )))
        .await
        .unwrap();
    }
    replicated(cluster, &db, COMPLETIONS, 6).await;
    tick_until(&mut engine, &w, 6).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_stopped_mid_stream_loses_nothing_and_the_engine_fails_over() {
    let Some((cluster, _guard)) = cluster_for_test().await else {
        return;
    };
    let w = cluster_world(cluster).await;
    let db = w.ch.database.clone();
    let (a_url, b_url) = (&cluster.replicas[0].url, &cluster.replicas[1].url);
    let (a, b) = (w.ch.analytics_at(a_url), w.ch.analytics_at(b_url));
    let analytics = w.ch.analytics();
    let mut engine = engine_on(&w, analytics.clone()).await;
    engine.tick().await.unwrap();

    insert_block(&a, &recent(), &[("Buy", 1, 1), ("Buy", 1, 2)]).await;
    insert_block(&b, &recent(), &[("Buy", 1, 3)]).await;
    replicated(cluster, &db, COMPLETIONS, 3).await;
    tick_until(&mut engine, &w, 3).await;
    assert_eq!(analytics.current_url().trim_end_matches('/'), *a_url);

    // A goes down: inserts go to B, the engine moves to B.
    cluster.replicas[0].stop();
    insert_block(&b, &recent(), &[("Buy", 1, 4), ("Buy", 1, 5)]).await;
    engine.tick().await.unwrap();
    assert_eq!(
        analytics.current_url().trim_end_matches('/'),
        *b_url,
        "failed over"
    );
    tick_until(&mut engine, &w, 5).await;

    // A comes back, catches up, and takes inserts again; the engine stays
    // on B, which receives A's through replication.
    cluster.replicas[0].start();
    let at = recent();
    wait_for("replica A takes inserts again", Duration::from_secs(30), async || {
        a.execute(&a.render(&format!(
            "INSERT INTO {{database}}.{{events_table}} (timestamp, name, site_id, user_id, session_id, pathname) VALUES ('{at}', 'Buy', 1, 6, 1000006, '/')"
        )))
        .await
        .is_ok()
    })
    .await;
    replicated(cluster, &db, COMPLETIONS, 6).await;
    replicated(cluster, &db, EVENTS, 6).await;
    tick_until(&mut engine, &w, 6).await;
    assert_eq!(
        analytics.current_url().trim_end_matches('/'),
        *b_url,
        "stays on the replica that answers"
    );
    for url in [a_url, b_url] {
        assert_eq!(
            number(url, &db, "SELECT count() FROM webhooks_inserts").await,
            4
        );
    }
}

/// Failover on the single test server: an unreachable `clickhouse.url`
/// moves queries to the next URL, and an SQL error moves nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analytics_fails_over_on_unreachable_urls_and_not_on_sql_errors() {
    let ch = TestClickhouse::new().await;
    // A port that accepts connections and drops them unanswered: held for
    // the test, so no other process can take it meanwhile.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for connection in listener.incoming() {
                drop(connection);
            }
        });
        format!("http://127.0.0.1:{port}")
    };
    let mut config = ch.config.clone();
    config.url = closed.clone();
    config.failover_urls = vec![ch.config.url.clone()];
    let analytics = Analytics::new(&config);
    assert!(
        analytics.version().await.is_ok(),
        "answered by the failover URL"
    );
    assert_eq!(
        analytics.current_url().trim_end_matches('/'),
        ch.config.url,
        "stays on the URL that answered"
    );

    config.url = ch.config.url.clone();
    config.failover_urls = vec![closed];
    let analytics = Analytics::new(&config);
    assert!(
        analytics
            .execute("SELECT no_such_column FROM system.one")
            .await
            .is_err()
    );
    assert_eq!(
        analytics.current_url().trim_end_matches('/'),
        ch.config.url,
        "an SQL error is an answer"
    );
}
