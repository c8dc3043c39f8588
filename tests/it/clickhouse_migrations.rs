//! The ClickHouse migration runner and the `events_v2` fixture.

use plausible_webhooks::analytics::{Migration, apply_migrations, embedded_migrations};

use crate::support::TestClickhouse;

const FIRST: Migration = Migration {
    version: 1,
    name: "first",
    sql: "-- a table\nCREATE TABLE IF NOT EXISTS {database}.first (x UInt8) ENGINE = Memory;\n\
          CREATE TABLE IF NOT EXISTS {database}.second (y UInt8) ENGINE = Memory;\n",
};

const THIRD: Migration = Migration {
    version: 2,
    name: "third",
    sql: "CREATE TABLE IF NOT EXISTS {database}.third (x UInt8) ENGINE = Memory",
};

async fn tables(ch: &TestClickhouse) -> Vec<String> {
    let analytics = ch.analytics();
    let mut cursor = analytics_client(&analytics)
        .query("SELECT name FROM system.tables WHERE database = ? ORDER BY name")
        .bind(ch.database.as_str())
        .fetch::<String>()
        .unwrap();
    let mut names = Vec::new();
    while let Some(name) = cursor.next().await.unwrap() {
        names.push(name);
    }
    names
}

fn analytics_client(analytics: &plausible_webhooks::analytics::Analytics) -> clickhouse::Client {
    let servers = crate::support::servers();
    clickhouse::Client::default()
        .with_url(&servers.clickhouse_url)
        .with_user(&servers.clickhouse_user)
        .with_password(&servers.clickhouse_password)
        .with_database(analytics.database())
        .with_validation(false)
}

#[tokio::test]
async fn migrations_apply_in_order_and_reapply_as_a_no_op() {
    let ch = TestClickhouse::new().await;
    let analytics = ch.analytics();

    assert_eq!(
        apply_migrations(&analytics, &[FIRST]).await.unwrap(),
        vec![1]
    );
    assert_eq!(
        apply_migrations(&analytics, &[FIRST]).await.unwrap(),
        Vec::<u32>::new()
    );
    assert_eq!(
        apply_migrations(&analytics, &[FIRST, THIRD]).await.unwrap(),
        vec![2]
    );
    assert_eq!(
        tables(&ch).await,
        vec![
            "events_v2",
            "first",
            "plausible_webhooks_migrations",
            "second",
            "third"
        ]
    );

    // The embedded set applies on 18.16, then is a no-op.
    let ch = TestClickhouse::new().await;
    let analytics = ch.analytics();
    assert_eq!(
        apply_migrations(&analytics, embedded_migrations())
            .await
            .unwrap(),
        vec![1, 2, 3]
    );
    assert!(
        apply_migrations(&analytics, embedded_migrations())
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_changed_migration_is_refused() {
    let ch = TestClickhouse::new().await;
    let analytics = ch.analytics();
    apply_migrations(&analytics, &[FIRST]).await.unwrap();
    let changed = Migration {
        sql: "CREATE TABLE IF NOT EXISTS {database}.first (x UInt16) ENGINE = Memory",
        ..FIRST
    };
    let err = apply_migrations(&analytics, &[changed]).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "ClickHouse migration V1 (first) was changed after it was applied"
    );
}

#[tokio::test]
async fn a_failing_migration_names_itself_and_is_not_recorded() {
    let ch = TestClickhouse::new().await;
    let analytics = ch.analytics();
    let broken = Migration {
        version: 1,
        name: "broken",
        sql: "CREATE TABLE {database}.nope (x NoSuchType) ENGINE = Memory",
    };
    let err = apply_migrations(&analytics, &[broken]).await.unwrap_err();
    assert!(
        err.to_string()
            .starts_with("ClickHouse migration V1 (broken) failed"),
        "{err}"
    );
    // Fixed, it applies.
    assert_eq!(
        apply_migrations(&analytics, &[FIRST]).await.unwrap(),
        vec![1]
    );
}

#[tokio::test]
async fn the_events_fixture_takes_plausibles_rows() {
    let ch = TestClickhouse::new().await;
    let analytics = ch.analytics();
    analytics
        .execute(&analytics.render(
            "INSERT INTO {database}.{events_table} (timestamp, name, site_id, user_id, session_id, pathname, `meta.key`, `meta.value`, scroll_depth) \
             VALUES (now(), 'pageview', 1, 11, 111, '/', [], [], 0), (now(), 'Signup', 1, 12, 112, '/register', ['plan'], ['pro'], 0), (now(), 'engagement', 2, 13, 113, '/blog', [], [], 80)",
        ))
        .await
        .unwrap();
    let client = analytics_client(&analytics);
    let rows: Vec<(u64, u64)> = client
        .query("SELECT site_id, count() FROM events_v2 GROUP BY site_id ORDER BY site_id")
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(rows, vec![(1, 2), (2, 1)]);
    let props: Vec<String> = client
        .query(
            "SELECT `meta.value`[indexOf(`meta.key`, 'plan')] FROM events_v2 WHERE name = 'Signup'",
        )
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(props, vec!["pro".to_string()]);
}
