//! Issue 11's receiver options end to end, with the real binary, a real
//! Postgres and a real receiver: `v1a` signatures of real deliveries
//! verified by PyNaCl with only the public key the CLI printed (through a
//! rotation and after it), `v1` beside it by the standardwebhooks library;
//! custom headers that arrive, reserved ones refused by the CLI, by the
//! database and (with the constraint dropped) by the registry, their values
//! never shown; and every new flag of the CLI, chat URLs never printed.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::cli::{cli, env_for, ok_json, refused, start_daemon, stderr, stdout, verify};
use crate::daemon::{signal, wait_exit};
use crate::signing::verify_v1a_with_pynacl;
use crate::support::receiver::{Received, Receiver};
use crate::support::{TestClickhouse, TestPostgres, wait_for};

/// Runs `test ID` until a delivery arrives whose signature has `entries`
/// entries (the daemon's registry may lag a change by a moment); returns it.
async fn test_until(
    env: &[(String, String)],
    receiver: &Receiver,
    id: i64,
    entries: usize,
) -> Received {
    let mut last = None;
    wait_for(
        "a test delivery signed as expected",
        Duration::from_secs(20),
        async || {
            let before = receiver.received().len();
            let out = cli(env, &["test", &id.to_string()]);
            assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
            last = receiver.received()[before..].last().cloned();
            last.as_ref()
                .is_some_and(|r| r.headers["webhook-signature"].split(' ').count() == entries)
        },
    )
    .await;
    last.expect("a delivery")
}

fn pynacl(request: &Received, public_keys: &[&str]) -> Vec<String> {
    verify_v1a_with_pynacl(
        &request.headers["webhook-id"],
        &request.headers["webhook-timestamp"],
        &request.headers["webhook-signature"],
        &request.body,
        public_keys,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn v1a_deliveries_verify_with_pynacl_and_the_printed_public_key_through_a_rotation() {
    let pg = TestPostgres::migrated().await;
    let ch = TestClickhouse::new().await;
    let env = env_for(&pg, &ch);
    let client = pg.client().await;
    client
        .batch_execute("INSERT INTO sites (id, domain) VALUES (1, 'shop.example.com');")
        .await
        .unwrap();
    let receiver = Receiver::start().await;
    let url = receiver.url("/ok").to_string();

    let created = ok_json(
        &env,
        &[
            "add",
            "--site",
            "1",
            "--url",
            &url,
            "--events",
            "goal.completed",
            "--signatures",
            "v1,v1a",
            "--signing-key",
            "generate",
        ],
    );
    let id = created["id"].as_i64().unwrap();
    let secret = created["secret"].as_str().unwrap().to_string();
    let old_public = created["public_key"].as_str().unwrap().to_string();
    assert!(old_public.starts_with("whpk_"), "{created}");
    assert!(!created.to_string().contains("whsk_"), "{created}");

    // v1 and v1a in one header, each verified by its own library.
    let (mut daemon, _logs) = start_daemon(&env);
    let both = test_until(&env, &receiver, id, 2).await;
    let signature = &both.headers["webhook-signature"];
    assert!(
        signature.starts_with("v1,") && signature.contains(" v1a,"),
        "{signature}"
    );
    assert_eq!(verify(&both, &[&secret]), vec!["ok"]);
    assert_eq!(pynacl(&both, &[&old_public]), vec!["ok"]);

    // v1a alone.
    ok_json(&env, &["update", &id.to_string(), "--signatures", "v1a"]);
    let alone = test_until(&env, &receiver, id, 1).await;
    assert!(alone.headers["webhook-signature"].starts_with("v1a,"));
    assert_eq!(pynacl(&alone, &[&old_public]), vec!["ok"]);

    // A rotation: during the overlap both public keys verify.
    let rotated = ok_json(
        &env,
        &[
            "rotate-signing-key",
            &id.to_string(),
            "--keep-previous",
            "1h",
        ],
    );
    let new_public = rotated["public_key"].as_str().unwrap().to_string();
    assert_ne!(new_public, old_public);
    assert!(rotated["previous_signing_key_expires_at"].is_string());
    let shown = ok_json(&env, &["show", &id.to_string()]);
    assert_eq!(shown["public_key"], new_public.as_str());
    assert_eq!(shown["previous_public_key"], old_public.as_str());
    let during = test_until(&env, &receiver, id, 2).await;
    assert_eq!(
        pynacl(&during, &[&new_public, &old_public]),
        vec!["ok", "ok"]
    );

    // Once the old key has expired, only the new one verifies.
    client
        .execute(
            "UPDATE webhooks SET previous_signing_key_expires_at = now() - interval '1 second' WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    let after = test_until(&env, &receiver, id, 1).await;
    assert_eq!(
        pynacl(&after, &[&new_public, &old_public]),
        vec!["ok", "fail"]
    );

    // The signing key itself was never printed, nor is it listed.
    let stored: String = client
        .query_one("SELECT signing_key FROM webhooks WHERE id = $1", &[&id])
        .await
        .unwrap()
        .get(0);
    for args in [vec!["list"], vec!["show", &id.to_string()]] {
        let text = stdout(&cli(&env, &args));
        let mut json_args = vec!["--json"];
        json_args.extend(&args);
        let json = stdout(&cli(&env, &json_args));
        for out in [text, json] {
            assert!(out.contains(&new_public), "{out}");
            assert!(
                !out.contains("whsk_") && !out.contains(&stored[5..40]),
                "{out}"
            );
        }
    }

    signal(&daemon, "TERM");
    assert!(wait_exit(&mut daemon, Duration::from_secs(20)).success());
}

#[tokio::test(flavor = "multi_thread")]
async fn custom_headers_arrive_reserved_ones_are_refused_and_values_never_show() {
    let pg = TestPostgres::migrated().await;
    let ch = TestClickhouse::new().await;
    let mut env = env_for(&pg, &ch);
    env.push(("PLAUSIBLE_WEBHOOKS_LOG__LEVEL".into(), "debug".into()));
    let client = pg.client().await;
    client
        .batch_execute("INSERT INTO sites (id, domain) VALUES (1, 'shop.example.com');")
        .await
        .unwrap();
    let receiver = Receiver::start().await;
    let url = receiver.url("/ok").to_string();
    const VALUE: &str = "Bearer hv-s3cr3t-0123";

    // Reserved, malformed and oversized headers: refused by the CLI, named
    // by the flag, the value never repeated.
    let add = |header: &str| {
        vec![
            "add".to_string(),
            "--site".into(),
            "1".into(),
            "--url".into(),
            url.clone(),
            "--events".into(),
            "goal.completed".into(),
            "--header".into(),
            header.to_string(),
        ]
    };
    for (header, message) in [
        (
            format!("Webhook-Signature: {VALUE}"),
            "--header: Webhook-Signature is set by the daemon and cannot be overridden",
        ),
        (
            format!("content-type: {VALUE}"),
            "--header: content-type is set by the daemon",
        ),
        (
            format!("Host: {VALUE}"),
            "--header: Host is set by the daemon",
        ),
        (
            format!("User-Agent: {VALUE}"),
            "--header: User-Agent is set by the daemon",
        ),
        (format!("bad name: {VALUE}"), "is not a valid header name"),
        (
            format!("X-Value: {VALUE}é"),
            "must be at most 4096 visible ASCII",
        ),
        (
            VALUE.to_string(),
            "--header must be given as \"Name: value\"",
        ),
    ] {
        let args = add(&header);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        refused(&env, &args, message);
        let out = cli(&env, &args);
        assert!(!stderr(&out).contains("s3cr3t"), "{}", stderr(&out));
    }

    // Accepted ones arrive.
    let authorization = format!("Authorization: {VALUE}");
    let created = ok_json(
        &env,
        &[
            "add",
            "--site",
            "1",
            "--url",
            &url,
            "--events",
            "goal.completed",
            "--header",
            &authorization,
            "--header",
            "X-Team:growth",
        ],
    );
    let id = created["id"].as_i64().unwrap();
    let (mut daemon, logs) = start_daemon(&env);
    let out = cli(&env, &["test", &id.to_string()]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let got = receiver.received().last().cloned().unwrap();
    assert_eq!(got.headers["authorization"], VALUE);
    assert_eq!(got.headers["x-team"], "growth");
    assert_eq!(got.headers["content-type"], "application/json");
    assert!(got.headers["user-agent"].starts_with("plausible-webhooks/"));

    // Names only, in every output.
    let shown = ok_json(&env, &["show", &id.to_string()]);
    assert_eq!(
        shown["headers"],
        json!({"Authorization": "[redacted]", "X-Team": "[redacted]"})
    );
    for args in [
        vec!["list"],
        vec!["--json", "list"],
        vec!["show", &id.to_string()],
    ] {
        let out = stdout(&cli(&env, &args));
        assert!(out.contains("Authorization"), "{out}");
        assert!(!out.contains("s3cr3t") && !out.contains("growth"), "{out}");
    }

    // update: --header replaces one of the same name in any case and keeps
    // the others; --clear-headers drops them all first.
    let updated = ok_json(
        &env,
        &["update", &id.to_string(), "--header", "x-team: data"],
    );
    assert_eq!(
        updated["headers"],
        json!({"Authorization": "[redacted]", "x-team": "[redacted]"})
    );
    let stored: Value = client
        .query_one("SELECT headers FROM webhooks WHERE id = $1", &[&id])
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, json!({"Authorization": VALUE, "x-team": "data"}));
    // More than 20 once merged: the database refuses, named by the flag.
    let mut args = vec!["update".to_string(), id.to_string()];
    for i in 0..19 {
        args.extend(["--header".into(), format!("X-H{i}: v")]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    refused(
        &env,
        &args,
        "--header: a webhook may have at most 20 headers",
    );
    let cleared = ok_json(
        &env,
        &[
            "update",
            &id.to_string(),
            "--clear-headers",
            "--header",
            "X-Only: 1",
            "--header",
            "x-only: 2",
        ],
    );
    assert_eq!(cleared["headers"], json!({"x-only": "[redacted]"}));
    ok_json(&env, &["update", &id.to_string(), "--clear-headers"]);
    let stored: Value = client
        .query_one("SELECT headers FROM webhooks WHERE id = $1", &[&id])
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, json!({}));

    // The database refuses a reserved name written by hand (the web app).
    let e = client
        .execute(
            "UPDATE webhooks SET headers = '{\"Webhook-Id\": \"x\"}' WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap_err();
    assert_eq!(
        e.as_db_error().and_then(|d| d.constraint()),
        Some("webhooks_headers_valid")
    );

    // Without the constraint, the registry refuses the row with a
    // last_error naming the header, and sends nothing to it.
    client
        .batch_execute(&format!(
            "ALTER TABLE webhooks DROP CONSTRAINT webhooks_headers_valid;
             UPDATE webhooks SET headers = '{{\"Webhook-Signature\": \"{VALUE}\"}}' WHERE id = {id};"
        ))
        .await
        .unwrap();
    wait_for(
        "the registry's verdict",
        Duration::from_secs(20),
        async || {
            client
                .query_one("SELECT last_error FROM webhooks WHERE id = $1", &[&id])
                .await
                .unwrap()
                .get::<_, Option<String>>(0)
                .is_some()
        },
    )
    .await;
    let last_error: String = client
        .query_one("SELECT last_error FROM webhooks WHERE id = $1", &[&id])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        last_error,
        "headers: Webhook-Signature is set by the daemon and cannot be overridden"
    );
    let shown = stdout(&cli(&env, &["--json", "show", &id.to_string()]));
    assert!(
        shown.contains("Webhook-Signature") && !shown.contains("s3cr3t"),
        "{shown}"
    );

    signal(&daemon, "TERM");
    assert!(wait_exit(&mut daemon, Duration::from_secs(20)).success());
    let lines: Vec<String> = logs.try_iter().map(|l| l.to_string()).collect();
    assert!(!lines.is_empty());
    for line in &lines {
        assert!(
            !line.contains("s3cr3t"),
            "a header value in the logs: {line}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_new_flag_with_json_and_chat_urls_never_printed() {
    let pg = TestPostgres::migrated().await;
    let ch = TestClickhouse::new().await;
    let env = env_for(&pg, &ch);
    let client = pg.client().await;
    client
        .batch_execute("INSERT INTO sites (id, domain) VALUES (1, 'a.example.com');")
        .await
        .unwrap();
    let add = |url: &str, extra: &[&str]| {
        let mut args = vec![
            "add",
            "--site",
            "1",
            "--url",
            url,
            "--events",
            "goal.completed",
        ];
        args.extend_from_slice(extra);
        args.into_iter().map(str::to_string).collect::<Vec<_>>()
    };
    let ok = |args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ok_json(&env, &args)
    };
    let no = |args: Vec<String>, message: &str| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        refused(&env, &args, message);
    };

    // Refusals, each naming its flag, exit code 2.
    let hook = "https://hooks.example.com/x";
    no(
        add(hook, &["--format", "teams"]),
        "unknown format \"teams\"",
    );
    no(
        add(hook, &["--signatures", "v2"]),
        "unknown signature scheme \"v2\"",
    );
    no(
        add(hook, &["--signatures", "v1a"]),
        "--signatures v1a needs a signing key: add --signing-key generate",
    );
    no(
        add(hook, &["--signing-key", "whsk_c2VjcmV0LXNob3J0"]),
        "--signing-key must decode to 32 or 64 bytes",
    );
    let out = cli(
        &env,
        &add(hook, &["--signing-key", "whsk_c2VjcmV0LXNob3J0"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert!(!stderr(&out).contains("c2VjcmV0"), "{}", stderr(&out));
    no(
        add(hook, &["--signing-key", "sk_x"]),
        "--signing-key must start with \"whsk_\"",
    );
    no(
        add(hook, &["--max-per-minute", "0"]),
        "--max-per-minute must be between 1 and 6000, or none",
    );
    no(
        add(hook, &["--max-per-minute", "lots"]),
        "is neither a number of requests nor none",
    );
    let count: i64 = client
        .query_one("SELECT count(*) FROM webhooks", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 0, "nothing refused was written");

    // keygen prints a pair and touches no database (there is none here).
    let out = crate::support::binary()
        .args(["webhooks", "--json", "keygen"])
        .env(
            "PLAUSIBLE_WEBHOOKS_POSTGRES__URL",
            "postgres://nobody@127.0.0.1:1/none",
        )
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let pair: Value = serde_json::from_slice(&out.stdout).unwrap();
    let signing_key = pair["signing_key"].as_str().unwrap().to_string();
    let public_key = pair["public_key"].as_str().unwrap().to_string();
    let bytes = STANDARD.decode(&signing_key["whsk_".len()..]).unwrap();
    assert_eq!(bytes.len(), 64);
    assert_eq!(
        STANDARD.decode(&public_key["whpk_".len()..]).unwrap(),
        bytes[32..]
    );

    // add with every new flag; a given key is stored as given.
    let created = ok(add(
        hook,
        &[
            "--format",
            "standard",
            "--signatures",
            "v1a,v1",
            "--signing-key",
            &signing_key,
            "--max-per-minute",
            "60",
        ],
    ));
    let id = created["id"].as_i64().unwrap();
    assert_eq!(created["public_key"], public_key.as_str());
    let row = client
        .query_one(
            "SELECT format, signatures, signing_key, max_per_minute FROM webhooks WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "standard");
    assert_eq!(row.get::<_, Vec<String>>(1), vec!["v1a", "v1"]);
    assert_eq!(row.get::<_, String>(2), signing_key);
    assert_eq!(row.get::<_, Option<i32>>(3), Some(60));
    let shown = ok_json(&env, &["show", &id.to_string()]);
    assert_eq!(shown["format"], "standard");
    assert_eq!(shown["signatures"], json!(["v1a", "v1"]));
    assert_eq!(shown["public_key"], public_key.as_str());
    assert_eq!(shown["previous_public_key"], Value::Null);
    assert_eq!(shown["max_per_minute"], 60);
    assert_eq!(shown["url"], hook, "a standard URL keeps its path");
    let text = stdout(&cli(&env, &["show", &id.to_string()]));
    assert!(
        text.contains("max per minute") && text.contains(&public_key),
        "{text}"
    );

    // update: each flag, and what is not given stays.
    let updated = ok_json(
        &env,
        &[
            "update",
            &id.to_string(),
            "--max-per-minute",
            "none",
            "--signatures",
            "v1",
        ],
    );
    assert_eq!(updated["max_per_minute"], Value::Null);
    assert_eq!(updated["signatures"], json!(["v1"]));
    assert_eq!(updated["public_key"], public_key.as_str(), "the key stays");
    let out = cli(
        &env,
        &["update", &id.to_string(), "--signing-key", "generate"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("v1a public key (for your receiver): whpk_"));
    assert!(!stdout(&out).contains("whsk_"));
    refused(
        &env,
        &["update", &id.to_string(), "--max-per-minute", "6001"],
        "--max-per-minute must be between 1 and 6000, or none",
    );
    // rotate-signing-key as text.
    let out = cli(
        &env,
        &[
            "rotate-signing-key",
            &id.to_string(),
            "--keep-previous",
            "0s",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("its public key (for your receiver): whpk_"),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains("no previous key signs"),
        "{}",
        stdout(&out)
    );
    let out = cli(&env, &["rotate-signing-key", "999999"]);
    assert_eq!(out.status.code(), Some(1));

    // Chat hooks: the URL is the secret, never printed, in table or JSON.
    let slack = "https://hooks.slack.com/services/T0AAA/B0BBB/slackSECRETtoken";
    let slack_id = ok(add(slack, &["--format", "slack"]))["id"]
        .as_i64()
        .unwrap();
    let discord = "https://chat.example.com/api/webhooks/123/discordSECRETtoken";
    let discord_id = ok(add(discord, &["--format", "discord"]))["id"]
        .as_i64()
        .unwrap();
    let query = "https://hooks.example.com/q?token=querySECRET";
    let query_id = ok(add(query, &[]))["id"].as_i64().unwrap();
    for args in [
        vec!["list".to_string()],
        vec!["--json".into(), "list".into()],
        vec!["show".into(), slack_id.to_string()],
        vec!["--json".into(), "show".into(), slack_id.to_string()],
        vec!["show".into(), discord_id.to_string()],
        vec!["--json".into(), "show".into(), discord_id.to_string()],
        vec![
            "--json".into(),
            "update".into(),
            slack_id.to_string(),
            "--description".into(),
            "x".into(),
        ],
        vec!["--json".into(), "disable".into(), discord_id.to_string()],
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = cli(&env, &args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        let out = stdout(&out);
        for secret in ["SECRET", "/services", "T0AAA", "/api/webhooks"] {
            assert!(!out.contains(secret), "{args:?} shows {secret}: {out}");
        }
    }
    let listed = ok_json(&env, &["list"]);
    let url_of = |id: i64| {
        listed
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["id"] == id)
            .unwrap()["url"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(
        url_of(slack_id).starts_with("https://hooks.slack.com/… ["),
        "{listed}"
    );
    assert!(
        url_of(discord_id).starts_with("https://chat.example.com/… ["),
        "{listed}"
    );
    assert!(
        url_of(query_id).starts_with("https://hooks.example.com/q?… ["),
        "{listed}"
    );
    assert_eq!(listed.as_array().unwrap()[0]["format"], "standard");
    let table = stdout(&cli(&env, &["list"]));
    assert!(table.lines().next().unwrap().contains("format"), "{table}");
    assert!(
        table.contains("slack") && table.contains("discord"),
        "{table}"
    );
    // --format on update.
    let updated = ok_json(
        &env,
        &["update", &query_id.to_string(), "--format", "slack"],
    );
    assert_eq!(updated["format"], "slack");
    assert!(!updated.to_string().contains("/q"), "{updated}");
}
