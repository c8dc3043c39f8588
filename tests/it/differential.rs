//! The same answers on ClickHouse 18.16 and on a current engine.
//!
//! A generated day of events (page views on plain and wildcard paths,
//! engagement events with scroll depths, custom events with properties and
//! revenue, referrer sources, and late rows: a second insert of rows from
//! earlier in the day and from the month before) is loaded into the test
//! server (18.16, with `events_v2.18_16.sql`) and into chdb's current engine
//! (with `events_v2.current.sql`, Plausible's DDL), each with the daemon's
//! ClickHouse migrations. Every query file of `src/analytics/sql` then runs
//! on both as the same text: the daemon's templates, rendered and bound by
//! the same client code. Answers are compared row by row, before and after
//! the views' tables are merged (`OPTIMIZE ... FINAL`) and after a
//! retention drop, and every difference is reported.
//!
//! What cannot agree is left out and says why: the server's clock and
//! version (`server_now`, `version`, `newest_insert`, `changed_buckets`'s
//! insert time), the user's settings (`readonly`), the column types the
//! fixtures' headers list as different (`events_columns` compares names),
//! tables that exist on one side only (`database_tables` compares the
//! daemon's own), and on-disk sizes (`retention_partitions` compares rows).

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};

use chrono::{TimeZone, Utc};
use plausible_webhooks::analytics::{apply_migrations, embedded_migrations};
use serde_json::{Value, json};

use crate::support::{TestClickhouse, servers};

const CURRENT_FIXTURE: &str = include_str!("../fixtures/clickhouse/events_v2.current.sql");
const CHDB_HALF: &str = include_str!("differential_chdb.py");

/// How a query's answers are compared.
#[derive(Clone, Copy)]
enum Compare {
    /// Every row, as a set of lines (a query without ORDER BY may answer
    /// in any order).
    Rows,
    /// Every row, in order (the query sorts).
    Ordered,
    /// Only these columns of every row.
    Columns(&'static [usize]),
    /// Rows whose first column starts with one of these.
    FirstStartsWith(&'static [&'static str]),
    /// Run on both, not compared; the reason is in the module comment.
    RunOnly,
}

struct Step {
    name: String,
    kind: &'static str,
    sql: String,
    compare: Compare,
}

/// A small deterministic generator (64-bit LCG).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len() as u64) as usize]
    }
}

const PATHS: &[&str] = &[
    "/",
    "/pricing",
    "/blog/first",
    "/blog/2026/second",
    "/docs/api/keys",
    "/docs/setup",
    "/checkout/done",
    "/a|b",
];
const SOURCES: &[&str] = &["", "", "Google", "Twitter", "Hacker News", "DuckDuckGo"];
const MEDIUMS: &[&str] = &["", "", "cpc", "email", "social", "app-push"];

fn row(ts: i64, name: &str, site: u64, user: u64, session: u64, path: &str) -> Value {
    json!({
        "timestamp": Utc.timestamp_opt(ts, 0).single().expect("time").format("%Y-%m-%d %H:%M:%S").to_string(),
        "name": name,
        "site_id": site,
        "user_id": user,
        "session_id": session,
        "hostname": "example.com",
        "pathname": path,
        "meta.key": [],
        "meta.value": [],
        "scroll_depth": 0,
        "engagement_time": 0,
        "revenue_reporting_amount": null,
        "revenue_reporting_currency": "",
    })
}

/// The day's events: the first insert, and the late rows inserted after.
fn generate(day: i64) -> (Vec<Value>, Vec<Value>) {
    let mut rng = Lcg(20260302);
    let (mut first, mut late) = (Vec::new(), Vec::new());
    for site in [1u64, 2] {
        for user in 1..=150u64 {
            for s in 0..1 + rng.below(3) {
                let session = user * 100 + s;
                let mut ts = day + rng.below(86_000) as i64;
                let source = rng.pick(SOURCES);
                let medium = rng.pick(MEDIUMS);
                let mut events = Vec::new();
                for _ in 0..1 + rng.below(4) {
                    ts += rng.below(120) as i64;
                    let path = rng.pick(PATHS);
                    let mut pv = row(ts, "pageview", site, user, session, path);
                    pv["referrer_source"] = json!(source);
                    pv["utm_medium"] = json!(medium);
                    events.push(pv);
                    let mut depth = 0u64;
                    for _ in 0..rng.below(5) {
                        ts += 5 + rng.below(30) as i64;
                        depth = (depth + 10 + rng.below(50)).min(100);
                        let mut e = row(ts, "engagement", site, user, session, path);
                        e["scroll_depth"] = json!(if rng.below(12) == 0 { 255 } else { depth });
                        e["engagement_time"] = json!(rng.below(60_000));
                        e["referrer_source"] = json!(source);
                        events.push(e);
                    }
                    match rng.below(6) {
                        0 => {
                            let mut e = row(ts + 1, "Signup", site, user, session, path);
                            e["meta.key"] = json!(["plan", "via"]);
                            e["meta.value"] = json!([rng.pick(&["free", "pro"]), "form"]);
                            events.push(e);
                        }
                        1 => {
                            let mut e = row(ts + 2, "Purchase", site, user, session, path);
                            e["meta.key"] = json!(["plan"]);
                            e["meta.value"] = json!(["pro"]);
                            e["revenue_reporting_amount"] = json!(rng.below(10_000) as f64 / 100.0);
                            e["revenue_reporting_currency"] = json!("EUR");
                            events.push(e);
                        }
                        _ => {}
                    }
                }
                for mut e in events {
                    // Plausible copies the session's source onto each of
                    // its events (`ClickhouseEventV2.merge_session`).
                    e["referrer_source"] = json!(source);
                    if rng.below(10) == 0 {
                        late.push(e);
                    } else {
                        first.push(e);
                    }
                }
            }
        }
    }
    // Rows from the month before (another partition), inserted late too.
    for user in 1..=20u64 {
        let ts = day - 2 * 86_400 + (user as i64) * 600;
        late.push(row(ts, "pageview", 1, user, user * 100, "/blog/first"));
    }
    (first, late)
}

fn insert(database: &str, rows: &[Value]) -> String {
    let mut sql = format!(
        "INSERT INTO {database}.events_v2 (timestamp, name, site_id, user_id, session_id, hostname, pathname, referrer_source, utm_medium, `meta.key`, `meta.value`, scroll_depth, engagement_time, revenue_reporting_amount, revenue_reporting_currency) FORMAT JSONEachRow\n"
    );
    for r in rows {
        let mut r = r.clone();
        for key in ["referrer_source", "utm_medium"] {
            if r.get(key).is_none() {
                r[key] = json!("");
            }
        }
        sql.push_str(&r.to_string());
        sql.push('\n');
    }
    sql
}

/// The goals asked about: (event name, path regex, batch path columns
/// (any, exact, path, prefix, m1, m2, suffix), scroll range, properties).
type GoalAsk = (
    &'static str,
    &'static str,
    (
        u8,
        u8,
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        &'static str,
    ),
    (u8, u8),
    [(&'static str, &'static str); 3],
);

const NO_PROPS: [(&str, &str); 3] = [("", ""), ("", ""), ("", "")];

/// A goal's property filters as the queries take them (as
/// `GoalFilter::prop_arrays` makes them): `key\0value` for each filter
/// with a value, and the keys whose value must read `''`.
fn prop_arrays(props: &[(&str, &str)]) -> (Vec<String>, Vec<String>) {
    let mut pairs = Vec::new();
    let mut unset = Vec::new();
    for (k, v) in props.iter().filter(|(k, _)| !k.is_empty()) {
        if v.is_empty() {
            unset.push(k.to_string());
        } else {
            pairs.push(format!("{k}\0{v}"));
        }
    }
    (pairs, unset)
}
const GOALS: &[GoalAsk] = &[
    (
        "pageview",
        "^/pricing$",
        (0, 1, "/pricing", "", "", "", ""),
        (0, 255),
        NO_PROPS,
    ),
    (
        "pageview",
        "^/blog/.*$",
        (0, 0, "", "/blog/", "", "", ""),
        (0, 255),
        NO_PROPS,
    ),
    (
        "pageview",
        "^/docs/.*/keys$",
        (0, 0, "", "/docs/", "", "", "/keys"),
        (0, 255),
        NO_PROPS,
    ),
    (
        "engagement",
        "^/blog/.*$",
        (0, 0, "", "/blog/", "", "", ""),
        (50, 100),
        NO_PROPS,
    ),
    (
        "engagement",
        "",
        (1, 0, "", "", "", "", ""),
        (90, 100),
        NO_PROPS,
    ),
    (
        "Signup",
        "",
        (1, 0, "", "", "", "", ""),
        (0, 255),
        [("plan", "pro"), ("via", "form"), ("", "")],
    ),
    (
        "Signup",
        "",
        (1, 0, "", "", "", "", ""),
        (0, 255),
        [("absent", ""), ("", ""), ("", "")],
    ),
    (
        "Purchase",
        "^/checkout/done$",
        (0, 1, "/checkout/done", "", "", "", ""),
        (0, 255),
        NO_PROPS,
    ),
];

/// The batch query's request index, site, from, to and event name.
type BatchIds<'a> = (Vec<u32>, Vec<u64>, Vec<u32>, Vec<u32>, Vec<&'a str>);

/// The daemon's query files, bound as the daemon binds them.
fn queries(client: &clickhouse::Client, database: &str, day: u32, round: &str) -> Vec<Step> {
    let render = |sql: &str| {
        sql.replace("{database}", database)
            .replace("{events_table}", "events_v2")
    };
    let text = |q: clickhouse::query::Query| q.sql_display().to_string();
    let q = |file: &str| client.query(&render(file));
    let mut steps = Vec::new();
    let mut add = |name: &str, sql: String, compare: Compare| {
        steps.push(Step {
            name: format!("{round}/{name}"),
            kind: "query",
            sql,
            compare,
        })
    };
    let sites: Vec<u64> = vec![1, 2, 3];
    let mut minutes: Vec<u32> = (0..1440).map(|m| day + m * 60).collect();
    minutes.extend((0..300).map(|m| day - 2 * 86_400 + m * 60));
    let end = day + 86_340;

    add(
        "site_visitors",
        text(
            q(include_str!("../../src/analytics/sql/site_visitors.sql"))
                .bind(&sites)
                .bind(day),
        ),
        Compare::Rows,
    );
    add(
        "site_visitors.late",
        text(
            q(include_str!("../../src/analytics/sql/site_visitors.sql"))
                .bind(&sites)
                .bind(day - 3 * 86_400),
        ),
        Compare::Rows,
    );
    add(
        "sites_with_data",
        text(
            q(include_str!("../../src/analytics/sql/sites_with_data.sql"))
                .bind(vec![1u64, 2, 3, 99]),
        ),
        Compare::Rows,
    );
    add(
        "goal_key_counts",
        text(
            q(include_str!("../../src/analytics/sql/goal_key_counts.sql"))
                .bind(&sites)
                .bind(&minutes),
        ),
        Compare::Rows,
    );
    for (site, since) in [
        (1u64, day),
        (1, day + 6 * 3600),
        (2, day + 20 * 3600),
        (1, day - 3 * 86_400),
    ] {
        add(
            &format!("top_sources.{site}.{since}"),
            text(
                q(include_str!("../../src/analytics/sql/top_sources.sql"))
                    .bind(site)
                    .bind(since),
            ),
            Compare::Ordered,
        );
        add(
            &format!("top_pages.{site}.{since}"),
            text(
                q(include_str!("../../src/analytics/sql/top_pages.sql"))
                    .bind(site)
                    .bind(since),
            ),
            Compare::Ordered,
        );
    }
    let ranges = [
        (day, end),
        (day + 3600, day + 7200),
        (day - 3 * 86_400, end),
    ];
    for (i, (name, regex, _, (min, max), props)) in GOALS.iter().enumerate() {
        for site in [1u64, 2] {
            for (from, to) in ranges {
                let (pairs, unset) = prop_arrays(props);
                let query = q(include_str!("../../src/analytics/sql/goal_visitors.sql"))
                    .bind(site)
                    .bind(from)
                    .bind(to)
                    .bind(*name)
                    .bind(*regex)
                    .bind(*min)
                    .bind(*max)
                    .bind(pairs)
                    .bind(unset);
                add(
                    &format!("goal_visitors.{i}.{site}.{from}"),
                    text(query),
                    Compare::Rows,
                );
            }
        }
    }
    // One batch with every goal, site and range.
    let mut cols: BatchIds = Default::default();
    let mut paths: [Vec<&str>; 5] = Default::default();
    let mut flags: [Vec<u8>; 4] = Default::default();
    // Flat property arrays with each request's 1-based offset and length.
    let mut pairs: (Vec<String>, Vec<u32>, Vec<u32>) = Default::default();
    let mut unset: (Vec<String>, Vec<u32>, Vec<u32>) = Default::default();
    let flat = |column: &mut (Vec<String>, Vec<u32>, Vec<u32>), list: Vec<String>| {
        column.1.push(if list.is_empty() {
            1
        } else {
            column.0.len() as u32 + 1
        });
        column.2.push(list.len() as u32);
        column.0.extend(list);
    };
    for (name, _, (any, exact, path, prefix, m1, m2, suffix), (min, max), goal_props) in GOALS {
        for site in [1u64, 2] {
            for (from, to) in ranges {
                cols.0.push(cols.0.len() as u32);
                cols.1.push(site);
                cols.2.push(from);
                cols.3.push(to);
                cols.4.push(name);
                for (column, value) in paths.iter_mut().zip([*path, *prefix, *m1, *m2, *suffix]) {
                    column.push(value);
                }
                for (column, value) in flags.iter_mut().zip([*any, *exact, *min, *max]) {
                    column.push(value);
                }
                let (p, u) = prop_arrays(goal_props);
                flat(&mut pairs, p);
                flat(&mut unset, u);
            }
        }
    }
    let batch = q(include_str!(
        "../../src/analytics/sql/goal_visitors_batch.sql"
    ))
    .bind(vec![1u64, 2])
    .bind(day - 3 * 86_400)
    .bind(&cols.0)
    .bind(&cols.1)
    .bind(&cols.2)
    .bind(&cols.3)
    .bind(&cols.4)
    .bind(&flags[0])
    .bind(&flags[1])
    .bind(&paths[0])
    .bind(&paths[1])
    .bind(&paths[2])
    .bind(&paths[3])
    .bind(&paths[4])
    .bind(&flags[2])
    .bind(&flags[3])
    .bind(&pairs.0)
    .bind(&pairs.1)
    .bind(&pairs.2)
    .bind(&unset.0)
    .bind(&unset.1)
    .bind(&unset.2);
    add("goal_visitors_batch", text(batch), Compare::Rows);
    for (site, (from, to)) in [1u64, 2].into_iter().flat_map(|s| ranges.map(|r| (s, r))) {
        for (props, unset) in [
            (vec!["plan\0pro".to_string()], vec![]),
            (vec![], vec!["coupon".to_string()]),
        ] {
            add(
                &format!("goal_revenue.{site}.{from}.{}", props.len()),
                text(
                    q(include_str!("../../src/analytics/sql/goal_revenue.sql"))
                        .bind(site)
                        .bind(from)
                        .bind(to)
                        .bind("Purchase")
                        .bind("EUR")
                        .bind(props)
                        .bind(unset),
                ),
                Compare::Rows,
            );
        }
    }
    add(
        "changed_buckets",
        text(
            q(include_str!("../../src/analytics/sql/changed_buckets.sql"))
                .bind(0u32)
                .bind(u32::MAX),
        ),
        Compare::Columns(&[0, 1]),
    );
    add(
        "newest_insert",
        text(q(include_str!("../../src/analytics/sql/newest_insert.sql"))),
        Compare::RunOnly,
    );
    add(
        "applied_migrations",
        text(q(include_str!(
            "../../src/analytics/sql/applied_migrations.sql"
        ))),
        Compare::Ordered,
    );
    add(
        "events_columns",
        text(
            q(include_str!("../../src/analytics/sql/events_columns.sql"))
                .bind(database)
                .bind("events_v2"),
        ),
        Compare::Columns(&[0]),
    );
    add(
        "database_tables",
        text(q(include_str!("../../src/analytics/sql/database_tables.sql")).bind(database)),
        Compare::FirstStartsWith(&["webhooks_", "plausible_webhooks_"]),
    );
    add(
        "table_engine",
        text(
            q(include_str!("../../src/analytics/sql/table_engine.sql"))
                .bind(database)
                .bind("events_v2"),
        ),
        Compare::RunOnly,
    );
    add(
        "clusters",
        text(q(include_str!("../../src/analytics/sql/clusters.sql"))),
        Compare::RunOnly,
    );
    add(
        "server_now",
        text(q(include_str!("../../src/analytics/sql/server_now.sql"))),
        Compare::RunOnly,
    );
    add(
        "version",
        text(q(include_str!("../../src/analytics/sql/version.sql"))),
        Compare::RunOnly,
    );
    add(
        "readonly",
        text(q(include_str!("../../src/analytics/sql/readonly.sql"))),
        Compare::RunOnly,
    );
    steps
}

fn exec(name: &str, sql: String) -> Step {
    Step {
        name: name.to_string(),
        kind: "exec",
        sql,
        compare: Compare::RunOnly,
    }
}

/// Runs the steps on the 18.16 server; answers per query step.
async fn run_old(client: &clickhouse::Client, steps: &[Step]) -> BTreeMap<String, String> {
    let mut answers = BTreeMap::new();
    for step in steps {
        // The text is final: a `?` in it is literal, `??` to the client.
        let query = client.query(&step.sql.replace('?', "??"));
        if step.kind == "query" {
            let bytes = query
                .fetch_bytes("TabSeparated")
                .unwrap_or_else(|e| panic!("{} on 18.16: {e}", step.name))
                .collect()
                .await
                .unwrap_or_else(|e| panic!("{} on 18.16: {e}", step.name));
            answers.insert(
                step.name.clone(),
                String::from_utf8_lossy(&bytes).into_owned(),
            );
        } else {
            query
                .execute()
                .await
                .unwrap_or_else(|e| panic!("{} on 18.16: {e}", step.name));
        }
    }
    answers
}

/// Runs the steps on chdb (a current engine); its version and answers.
fn run_current(steps: &[Step]) -> (String, BTreeMap<String, String>) {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let input = json!({
        "steps": steps.iter().map(|s| json!({"name": s.name, "kind": s.kind, "sql": s.sql})).collect::<Vec<_>>(),
    });
    let mut child = Command::new(&python)
        .args(["-c", CHDB_HALF])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.to_string().as_bytes())
        .expect("write steps");
    let out = child.wait_with_output().expect("chdb half ends");
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "the chdb half printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    if let Some(error) = answer.get("error") {
        panic!("on the current engine: {error}");
    }
    let version = answer["version"].as_str().unwrap_or_default().to_string();
    let results = answer["results"]
        .as_object()
        .expect("results")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
        .collect();
    (version, results)
}

fn shape(text: &str, compare: Compare) -> Option<Vec<String>> {
    let lines = text.lines().map(str::to_string);
    let mut rows: Vec<String> = match compare {
        Compare::RunOnly => return None,
        Compare::Rows | Compare::Ordered => lines.collect(),
        Compare::Columns(columns) => lines
            .map(|l| {
                let fields: Vec<&str> = l.split('\t').collect();
                columns
                    .iter()
                    .map(|c| fields.get(*c).copied().unwrap_or(""))
                    .collect::<Vec<_>>()
                    .join("\t")
            })
            .collect(),
        Compare::FirstStartsWith(prefixes) => lines
            .filter(|l| prefixes.iter().any(|p| l.starts_with(p)))
            .collect(),
    };
    if !matches!(compare, Compare::Ordered) {
        rows.sort();
    }
    Some(rows)
}

/// Row-by-row differences, one line each: by position for a sorted
/// answer, otherwise the rows that only one engine gave.
fn differences(name: &str, ordered: bool, old: &[String], current: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    if ordered {
        for i in 0..old.len().max(current.len()) {
            let (a, b) = (old.get(i), current.get(i));
            if a != b {
                out.push(format!(
                    "{name} row {i}: 18.16 {:?} / current {:?}",
                    a.map_or("(none)", String::as_str),
                    b.map_or("(none)", String::as_str)
                ));
            }
        }
        return out;
    }
    let mut only_current: Vec<&String> = current.iter().collect();
    for row in old {
        match only_current.iter().position(|r| *r == row) {
            Some(i) => {
                only_current.remove(i);
            }
            None => out.push(format!("{name}: only 18.16 has row {row:?}")),
        }
    }
    out.extend(
        only_current
            .into_iter()
            .map(|row| format!("{name}: only the current engine has row {row:?}")),
    );
    out
}

#[tokio::test]
async fn every_query_answers_the_same_on_18_16_and_a_current_engine() {
    let ch = TestClickhouse::new().await;
    let analytics = ch.analytics();
    apply_migrations(&analytics, embedded_migrations())
        .await
        .expect("migrations on 18.16");
    let s = servers();
    let client = clickhouse::Client::default()
        .with_url(&s.clickhouse_url)
        .with_user(&s.clickhouse_user)
        .with_password(&s.clickhouse_password)
        .with_database(&ch.database);
    let database = ch.database.as_str();
    let render = |sql: &str| {
        sql.replace("{database}", database)
            .replace("{events_table}", "events_v2")
    };

    // The current engine's schema, as the daemon would build it there.
    let mut setup = vec![
        exec(
            "database",
            format!("CREATE DATABASE IF NOT EXISTS {database}"),
        ),
        Step {
            name: "fixture".into(),
            kind: "script",
            sql: render(CURRENT_FIXTURE),
            compare: Compare::RunOnly,
        },
        exec(
            "create_migrations_table",
            render(include_str!(
                "../../src/analytics/sql/create_migrations_table.sql"
            )),
        ),
    ];
    for m in embedded_migrations() {
        setup.push(Step {
            name: format!("V{}", m.version),
            kind: "script",
            sql: render(m.sql),
            compare: Compare::RunOnly,
        });
        let checksum: String = sha2::Digest::finalize(
            <sha2::Sha256 as sha2::Digest>::new_with_prefix(m.sql.as_bytes()),
        )
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
        let record = client
            .query(&render(include_str!(
                "../../src/analytics/sql/record_migration.sql"
            )))
            .bind(m.version)
            .bind(m.name)
            .bind(checksum);
        setup.push(exec(
            &format!("record V{}", m.version),
            record.sql_display().to_string(),
        ));
    }

    let day = Utc
        .with_ymd_and_hms(2026, 3, 2, 0, 0, 0)
        .single()
        .expect("day")
        .timestamp();
    let (first, late) = generate(day);
    let day = day as u32;
    let mut shared = vec![
        exec("insert", insert(database, &first)),
        exec("insert late rows", insert(database, &late)),
    ];
    shared.extend(queries(&client, database, day, "loaded"));
    for table in [
        "webhooks_site_minutes",
        "webhooks_goal_minutes",
        "webhooks_inserts",
    ] {
        shared.push(exec(
            &format!("optimize {table}"),
            format!("OPTIMIZE TABLE {database}.{table} FINAL"),
        ));
    }
    shared.extend(queries(&client, database, day, "merged"));
    let partitions = |round: &str| Step {
        name: format!("{round}/retention_partitions"),
        kind: "query",
        sql: client
            .query(&render(include_str!(
                "../../src/analytics/sql/retention_partitions.sql"
            )))
            .bind(database)
            .sql_display()
            .to_string(),
        compare: Compare::Columns(&[0, 1, 2]),
    };
    shared.push(partitions("merged"));
    let drop = client
        .query(&render(include_str!(
            "../../src/analytics/sql/retention_drop_partition.sql"
        )))
        .bind(clickhouse::sql::Identifier("webhooks_goal_minutes"))
        .bind(202602u32);
    shared.push(exec(
        "retention_drop_partition",
        drop.sql_display().to_string(),
    ));
    shared.push(exec(
        "drop_object",
        render(include_str!("../../src/analytics/sql/drop_object.sql"))
            .replace("{object}", "plausible_webhooks_absent"),
    ));
    shared.push(partitions("dropped"));
    shared.extend(queries(&client, database, day, "dropped"));

    let old = run_old(&client, &shared).await;
    let all: Vec<Step> = setup
        .into_iter()
        .chain(shared.iter().map(|s| Step {
            name: s.name.clone(),
            kind: s.kind,
            sql: s.sql.clone(),
            compare: s.compare,
        }))
        .collect();
    let (version, current) = run_current(&all);

    let mut report = Vec::new();
    let mut compared = 0;
    for step in shared.iter().filter(|s| s.kind == "query") {
        let (Some(a), Some(b)) = (old.get(&step.name), current.get(&step.name)) else {
            report.push(format!("{}: no answer from one engine", step.name));
            continue;
        };
        if let (Some(a), Some(b)) = (shape(a, step.compare), shape(b, step.compare)) {
            compared += 1;
            report.extend(differences(
                &step.name,
                matches!(step.compare, Compare::Ordered),
                &a,
                &b,
            ));
        }
    }
    assert!(compared > 100, "only {compared} queries compared");
    assert!(
        report.is_empty(),
        "ClickHouse 18.16 and {version} answered differently ({} rows):\n{}",
        report.len(),
        report.join("\n")
    );
    // The data must exercise what the queries ask about.
    let nonempty = |name: &str| {
        old.get(name)
            .is_some_and(|t| !t.trim().is_empty() && t.trim() != "0")
    };
    for name in [
        "loaded/goal_visitors.3.1.1772409600",
        "loaded/goal_visitors.5.1.1772409600",
        "loaded/top_sources.1.1772409600",
        "loaded/goal_key_counts",
    ] {
        assert!(
            nonempty(name),
            "{name} answered nothing: the generated day misses it"
        );
    }
}

/// Every query file the daemon has is run by the differential test above:
/// a new file must be added there (or to this list with its reason).
#[test]
fn the_differential_test_runs_every_query_file() {
    let source = include_str!("differential.rs");
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/analytics/sql");
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .expect("src/analytics/sql")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".sql"))
        .collect();
    files.sort();
    assert!(files.len() >= 20, "{files:?}");
    let missing: Vec<&String> = files
        .iter()
        .filter(|f| !source.contains(&format!("src/analytics/sql/{f}\"")))
        .collect();
    assert!(
        missing.is_empty(),
        "not run by the differential test: {missing:?}"
    );
}
