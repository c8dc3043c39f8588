//! Goals matched as Plausible matches them, on real ClickHouse (18.16) and
//! Postgres: `|` alternatives and regex metacharacters in page paths, the
//! derived regex as ClickHouse reads it, every custom property checked,
//! `engagement` refused, and revenue goals.

use plausible_webhooks::registry::PathPattern;
use serde_json::Value;

use crate::support::TestClickhouse;

#[path = "../../src/registry/generate.rs"]
mod generate;
use crate::triggers::{Ev, World, check_contract, pv};
use generate::Gen;

/// A plain client on the test's database, for queries with binds.
fn client(analytics: &plausible_webhooks::analytics::Analytics) -> clickhouse::Client {
    let servers = crate::support::servers();
    clickhouse::Client::default()
        .with_url(&servers.clickhouse_url)
        .with_user(&servers.clickhouse_user)
        .with_password(&servers.clickhouse_password)
        .with_database(analytics.database())
        .with_validation(false)
}

/// Pageviews on site 1 now, with paths passed as bound values (a path may
/// hold `?`, `'` or `\\`): (user, path).
async fn pageviews(w: &World, views: &[(u64, &str)]) {
    let analytics = w.ch.analytics();
    let users: Vec<u64> = views.iter().map(|v| v.0).collect();
    let paths: Vec<&str> = views.iter().map(|v| v.1).collect();
    client(&analytics)
        .query(&analytics.render(
            "INSERT INTO {database}.{events_table} (timestamp, name, site_id, user_id, session_id, pathname) \
             SELECT now(), 'pageview', toUInt64(1), u, u + 1000000, p \
             FROM (SELECT CAST(? AS Array(UInt64)) AS us, CAST(? AS Array(String)) AS ps) \
             ARRAY JOIN us AS u, ps AS p",
        ))
        .bind(users)
        .bind(paths)
        .execute()
        .await
        .unwrap();
}

/// A path and whether each pattern's regex matched it.
#[derive(clickhouse::Row, serde::Deserialize)]
struct Answers {
    path: String,
    answers: Vec<u8>,
}

/// ClickHouse's `match` reads each derived regex as the daemon's matcher
/// reads the pattern: generated patterns, each against paths made for it
/// and for others, many pairs a query (ClickHouse 18.16 takes a regex only
/// as a constant, so each pattern is a constant of its own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_reads_the_derived_regex_as_the_matcher_does() {
    let ch = TestClickhouse::new().await;
    let analytics = ch.analytics();
    let mut generator = Gen(0x5851_f42d_4c95_7f2d);
    let (mut pairs, mut matched) = (0usize, 0usize);
    for _ in 0..6 {
        let patterns: Vec<PathPattern> = (0..150)
            .map(|_| PathPattern::new(&generator.pattern()))
            .collect();
        let mut paths: Vec<String> = Vec::new();
        for p in &patterns {
            for _ in 0..3 {
                paths.push(generator.path_for(p.as_str()));
            }
        }
        let columns: Vec<&str> = patterns.iter().map(|_| "match(p, ?)").collect();
        let sql = format!(
            "SELECT p, [{}] FROM (SELECT arrayJoin(CAST(? AS Array(String))) AS p)",
            columns.join(", ")
        );
        let mut query = client(&analytics).query(&sql);
        for p in &patterns {
            query = query.bind(p.regex());
        }
        let rows: Vec<Answers> = query.bind(&paths).fetch_all().await.unwrap();
        assert_eq!(rows.len(), paths.len());
        for Answers { path, answers } in rows {
            for (pattern, answer) in patterns.iter().zip(answers) {
                let ours = pattern.matches(&path);
                assert_eq!(
                    answer == 1,
                    ours,
                    "ClickHouse reads {:?} (from {pattern:?}) otherwise on {path:?}",
                    pattern.regex()
                );
                pairs += 1;
                matched += usize::from(ours);
            }
        }
    }
    assert!(
        pairs > 400_000 && matched > 3_000,
        "{pairs} pairs, {matched} matched"
    );
}

/// The same on a current ClickHouse engine (chdb, which `PYTHON` has:
/// scripts/test installs it), the engine Plausible runs.
#[test]
fn a_current_clickhouse_reads_the_derived_regex_as_the_matcher_does() {
    let mut generator = Gen(0x1405_7b7e_f767_814f);
    let patterns: Vec<PathPattern> = (0..300)
        .map(|_| PathPattern::new(&generator.pattern()))
        .collect();
    let paths: Vec<String> = patterns
        .iter()
        .flat_map(|p| {
            [
                generator.path_for(p.as_str()),
                generator.path_for(p.as_str()),
            ]
        })
        .collect();
    let regexes: Vec<String> = patterns.iter().map(PathPattern::regex).collect();
    let case = serde_json::json!({"regexes": regexes, "paths": paths});
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let mut child = std::process::Command::new(&python)
        .args(["-c", CHDB_MATCH])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    std::io::Write::write_all(
        &mut child.stdin.take().unwrap(),
        case.to_string().as_bytes(),
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{python} failed (is chdb-core installed? scripts/test installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answers: Vec<Vec<u8>> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answers.len(), paths.len());
    let mut matched = 0;
    for (path, row) in paths.iter().zip(&answers) {
        for (pattern, answer) in patterns.iter().zip(row) {
            let ours = pattern.matches(path);
            assert_eq!(
                *answer == 1,
                ours,
                "chdb reads {:?} (from {pattern:?}) otherwise on {path:?}",
                pattern.regex()
            );
            matched += usize::from(ours);
        }
    }
    assert!(matched > 1_000, "{matched} matched");
}

/// Reads `{"regexes": [...], "paths": [...]}` and prints, per path in
/// order, whether each regex matches it (ClickHouse's `match`, in chdb).
const CHDB_MATCH: &str = r#"
import json, sys
import chdb
case = json.load(sys.stdin)
def lit(s):
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"
matches = ", ".join("match(p, %s)" % lit(r) for r in case["regexes"])
paths = "[" + ", ".join(lit(p) for p in case["paths"]) + "]"
sql = ("SELECT i, [%s] FROM (SELECT CAST(%s AS Array(String)) AS ps) "
       "ARRAY JOIN ps AS p, arrayEnumerate(ps) AS i ORDER BY i") % (matches, paths)
rows = json.loads(chdb.query(sql, "JSONCompact").bytes())["data"]
print(json.dumps([row[1] for row in rows]))
"#;

/// The `goal.completed` of one goal in the outbox.
fn delivery_of(outbox: &[(i64, String, Value, String)], goal: i64) -> Option<Value> {
    outbox
        .iter()
        .find(|(_, _, p, _)| p["data"]["goal"]["id"] == goal)
        .map(|(_, _, p, _)| p.clone())
}

/// Page goals with `|`, regex metacharacters and `**` in the middle: the
/// completions (matched in Rust) and the visitors (counted in ClickHouse,
/// by the batch query or one goal a query with the regex) agree with
/// Plausible's reading.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_paths_match_as_plausibles_page_regex() {
    let w = World::new().await;
    w.site(1).await;
    let either = w
        .goal(1, "page_path, display_name", "'/a/*|/b/*', 'A or B'")
        .await;
    let meta = w
        .goal(1, "page_path, display_name", "'/p.q+(r)?/*|/s', 'Meta'")
        .await;
    let middle = w
        .goal(1, "page_path, display_name", "'/docs/**/v2/**/x', 'Middle'")
        .await;
    let literal = w
        .goal(1, "page_path, display_name", "'/l|/m', 'Literal bar'")
        .await;
    w.webhook(1, "event_types", "ARRAY['goal.completed']").await;
    let mut engine = w.engine().await;
    engine.tick().await.unwrap();

    pageviews(
        &w,
        &[
            (1, "/a/x"),
            (1, "/a/y"),
            // `^/a/.*|/b/.*$`: the last alternative need not start the path.
            (2, "/z/b/y"),
            (3, "/z/a/y"),
            (4, "/p.q+(r)?/1"),
            (5, "/pXq+(r)?/1"),
            (5, "/p.qq(r)/1"),
            // `^/p…/.*|/s$`: the first alternative need not end it.
            (6, "/t/s"),
            (7, "/docs/a/v2/c/x"),
            (7, "/docs/a/c/x"),
            (8, "/l|/m"),
            (9, "/l"),
        ],
    )
    .await;
    let report = engine.tick().await.unwrap();
    let outbox = w.outbox().await;
    let expect = |goal: i64, completions: u64, visitors: u64| {
        let p = delivery_of(&outbox, goal).unwrap_or_else(|| panic!("no {goal}: {outbox:#?}"));
        assert_eq!(p["data"]["completions"], completions, "{p}");
        assert_eq!(p["data"]["visitors"], visitors, "{p}");
        check_contract(&p);
    };
    expect(either, 3, 2);
    expect(meta, 2, 2);
    expect(middle, 1, 1);
    expect(literal, 1, 1);
    assert_eq!(report.goal_deliveries, 4, "{outbox:#?}");
}

/// Every property of a goal is checked (four here), and one the event
/// lacks reads as `''`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_custom_property_is_checked_and_an_absent_one_reads_empty() {
    let w = World::new().await;
    w.site(1).await;
    let four = w
        .goal(
            1,
            "event_name, display_name, custom_props",
            r#"'Buy', 'Buy four', '{"a": "1", "b": "2", "c": "3", "d": "4"}'"#,
        )
        .await;
    let no_coupon = w
        .goal(
            1,
            "event_name, display_name, custom_props",
            r#"'Buy', 'Buy without coupon', '{"coupon": ""}'"#,
        )
        .await;
    w.webhook(1, "event_types", "ARRAY['goal.completed']").await;
    let mut engine = w.engine().await;
    engine.tick().await.unwrap();

    let all = [("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")];
    let three_of_four = [("a", "1"), ("b", "2"), ("c", "3"), ("d", "5")];
    fn buy<'a>(user: u64, props: &'a [(&'a str, &'a str)]) -> Ev<'a> {
        Ev {
            name: "Buy",
            props,
            ..pv(1, user, "/")
        }
    }
    w.events(&[
        buy(1, &all),
        buy(1, &all),
        buy(2, &three_of_four),
        buy(3, &[("coupon", "")]),
        buy(4, &[("coupon", "SPRING")]),
    ])
    .await;
    engine.tick().await.unwrap();
    let outbox = w.outbox().await;
    let four = delivery_of(&outbox, four).expect("a delivery of the four-property goal");
    assert_eq!(four["data"]["completions"], 2, "{four}");
    assert_eq!(
        four["data"]["visitors"], 1,
        "the fourth property is checked"
    );
    let none = delivery_of(&outbox, no_coupon).expect("a delivery of the coupon goal");
    // Users 1 and 2 have no coupon (absent reads ''), user 3 an empty one.
    assert_eq!(none["data"]["completions"], 4, "{none}");
    assert_eq!(none["data"]["visitors"], 3, "{none}");
}

/// A goal named `engagement` is refused (Plausible refuses it): it is not
/// in the registry and engagement events complete nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engagement_goal_is_refused() {
    let w = World::new().await;
    w.site(1).await;
    let buy = w.goal(1, "event_name, display_name", "'Buy', 'Buy'").await;
    w.webhook(1, "event_types", "ARRAY['goal.completed']").await;
    let engaged = w
        .goal(1, "event_name, display_name", "'engagement', 'Engaged'")
        .await;
    let later = w
        .goal(1, "event_name, display_name", "'Sell', 'Sell'")
        .await;
    w.until(|r| {
        r.site(1)
            .is_some_and(|s| s.goals.iter().any(|g| g.id == later))
    })
    .await;
    let ids: Vec<i64> = w
        .registry
        .read()
        .site(1)
        .unwrap()
        .goals
        .iter()
        .map(|g| g.id)
        .collect();
    assert_eq!(ids, vec![buy, later], "the engagement goal is left out");

    let mut engine = w.engine().await;
    engine.tick().await.unwrap();
    w.events(&[
        Ev {
            name: "engagement",
            scroll: 40,
            ..pv(1, 1, "/")
        },
        Ev {
            name: "Buy",
            ..pv(1, 2, "/")
        },
    ])
    .await;
    engine.tick().await.unwrap();
    let outbox = w.outbox().await;
    assert!(delivery_of(&outbox, engaged).is_none(), "{outbox:#?}");
    assert!(delivery_of(&outbox, buy).is_some(), "{outbox:#?}");
}

/// A revenue goal's `goal.completed` carries the summed reporting amount
/// of its completions in the goal's currency; a goal without a currency
/// carries none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revenue_goal_carries_the_summed_revenue() {
    let w = World::new().await;
    w.site(1).await;
    let purchase = w
        .goal(
            1,
            "event_name, display_name, currency, custom_props",
            r#"'Purchase', 'Purchase', 'EUR', '{"plan": "pro"}'"#,
        )
        .await;
    let signup = w
        .goal(1, "event_name, display_name", "'Signup', 'Signup'")
        .await;
    w.webhook(1, "event_types", "ARRAY['goal.completed']").await;
    let mut engine = w.engine().await;
    engine.tick().await.unwrap();

    let analytics = w.ch.analytics();
    analytics
        .execute(&analytics.render(
            "INSERT INTO {database}.{events_table} (timestamp, name, site_id, user_id, session_id, pathname, `meta.key`, `meta.value`, revenue_reporting_amount, revenue_reporting_currency) VALUES \
             (now(), 'Purchase', 1, 1, 11, '/', ['plan'], ['pro'], 12.5, 'EUR'), \
             (now(), 'Purchase', 1, 2, 12, '/', ['plan'], ['pro'], 0.001, 'EUR'), \
             (now(), 'Purchase', 1, 3, 13, '/', ['plan'], ['pro'], NULL, ''), \
             (now(), 'Purchase', 1, 4, 14, '/', ['plan'], ['free'], 100, 'EUR'), \
             (now(), 'Signup', 1, 5, 15, '/', [], [], NULL, '')",
        ))
        .await
        .unwrap();
    engine.tick().await.unwrap();
    let outbox = w.outbox().await;
    let p = delivery_of(&outbox, purchase).expect("a delivery of the revenue goal");
    assert_eq!(p["data"]["completions"], 3, "{p}");
    assert_eq!(
        p["data"]["revenue"],
        serde_json::json!({"amount": "12.501", "currency": "EUR"}),
        "{p}"
    );
    check_contract(&p);
    let s = delivery_of(&outbox, signup).expect("a delivery of the plain goal");
    assert!(s["data"].get("revenue").is_none(), "{s}");
    check_contract(&s);
}

/// Generated page goals and paths through the engine: each goal's
/// completions (matched in Rust) and visitors (the batch query's glob, or
/// the regex one goal a query) are what the matcher says of the paths.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_page_goals_count_as_the_matcher_says() {
    let w = World::new().await;
    w.site(1).await;
    let mut generator = Gen(0x3c6e_f372_fe94_f82b);
    let patterns: Vec<String> = (0..80).map(|_| generator.pattern()).collect();
    let mut goals = Vec::new();
    for (i, pattern) in patterns.iter().enumerate() {
        let id: i64 = w
            .client
            .query_one(
                "INSERT INTO goals (site_id, page_path, display_name) VALUES (1, $1, $2) RETURNING id",
                &[pattern, &format!("g{i}")],
            )
            .await
            .unwrap()
            .get(0);
        goals.push((id, PathPattern::new(pattern)));
    }
    w.webhook(1, "event_types", "ARRAY['goal.completed']").await;
    let mut engine = w.engine().await;
    engine.tick().await.unwrap();

    let paths: Vec<String> = (0..400)
        .map(|i| generator.path_for(&patterns[i % patterns.len()]))
        .collect();
    let views: Vec<(u64, &str)> = paths
        .iter()
        .enumerate()
        .map(|(i, p)| (i as u64 % 7 + 1, p.as_str()))
        .collect();
    pageviews(&w, &views).await;
    engine.tick().await.unwrap();
    let outbox = w.outbox().await;
    let mut delivered = 0;
    for (id, pattern) in &goals {
        let matching: Vec<&(u64, &str)> = views.iter().filter(|v| pattern.matches(v.1)).collect();
        let mut users: Vec<u64> = matching.iter().map(|v| v.0).collect();
        users.sort_unstable();
        users.dedup();
        match delivery_of(&outbox, *id) {
            None => assert!(matching.is_empty(), "{pattern:?}: no delivery"),
            Some(p) => {
                assert_eq!(p["data"]["completions"], matching.len(), "{pattern:?}: {p}");
                assert_eq!(p["data"]["visitors"], users.len(), "{pattern:?}: {p}");
                delivered += 1;
            }
        }
    }
    assert!(delivered > 40, "{delivered} goals had completions");
}
