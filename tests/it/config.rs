//! Config precedence and errors, through the library and through the
//! binary's `check-config`.

use std::io::Write;

use plausible_webhooks::config::{Config, ConfigError, Origin, Sources};

use crate::support::binary;

fn file(contents: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    f.write_all(contents.as_bytes()).unwrap();
    f
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn problems(result: Result<Config, ConfigError>) -> Vec<(String, Origin, String)> {
    match result {
        Ok(_) => panic!("the config should be invalid"),
        Err(e) => e
            .problems()
            .iter()
            .map(|p| (p.key.clone(), p.origin.clone(), p.message.clone()))
            .collect(),
    }
}

#[test]
fn defaults_then_file_then_environment() {
    let f =
        file("[postgres]\npool_size = 4\nconnect_timeout_secs = 9\n[log]\nformat = \"pretty\"\n");
    let config = Config::load(&Sources {
        file: Some(f.path().to_path_buf()),
        env: env(&[("PLAUSIBLE_WEBHOOKS_POSTGRES__POOL_SIZE", "7")]),
    })
    .unwrap();
    // Environment beats file.
    assert_eq!(config.postgres.pool_size, 7);
    // File beats defaults.
    assert_eq!(config.postgres.connect_timeout_secs, 9);
    assert_eq!(
        config.log.format,
        plausible_webhooks::config::LogFormat::Pretty
    );
    // Defaults fill the rest.
    assert_eq!(config.clickhouse.events_table, "events_v2");
    assert_eq!(
        config.delivery.retry_schedule_secs,
        vec![5, 300, 1800, 7200, 18000, 36000, 36000]
    );
}

#[test]
fn the_example_config_is_valid_and_documents_every_key() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/example.toml");
    let example = std::fs::read_to_string(path).unwrap();
    let config = Config::load(&Sources {
        file: Some(path.into()),
        env: vec![],
    })
    .unwrap();
    // Every key of the effective config appears in the example, with a
    // comment line above it.
    let rendered: toml::Table = toml::from_str(&config.render_redacted()).unwrap();
    for (section, table) in &rendered {
        assert!(
            example.contains(&format!("[{section}]")),
            "[{section}] missing"
        );
        for key in table.as_table().unwrap().keys() {
            let line = example
                .lines()
                .position(|l| l.trim_start().starts_with(&format!("{key} =")))
                .unwrap_or_else(|| panic!("{section}.{key} is not in config/example.toml"));
            let above = example.lines().nth(line.saturating_sub(1)).unwrap();
            assert!(
                above.trim_start().starts_with('#'),
                "{section}.{key} has no comment"
            );
        }
    }
}

#[test]
fn a_wrong_type_names_the_key_and_its_source() {
    let f = file("[delivery]\nmax_in_flight = \"many\"\n");
    let found = problems(Config::load(&Sources {
        file: Some(f.path().to_path_buf()),
        env: vec![],
    }));
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].0, "delivery.max_in_flight");
    assert_eq!(found[0].1, Origin::File(f.path().to_path_buf()));

    let found = problems(Config::load(&Sources {
        file: None,
        env: env(&[("PLAUSIBLE_WEBHOOKS_HTTP__LISTEN", "not-an-address")]),
    }));
    assert_eq!(found[0].0, "http.listen");
    assert_eq!(
        found[0].1,
        Origin::Env("PLAUSIBLE_WEBHOOKS_HTTP__LISTEN".into())
    );
}

#[test]
fn an_unknown_key_is_an_error() {
    let f = file("[postgres]\npool_sise = 3\n");
    let found = problems(Config::load(&Sources {
        file: Some(f.path().to_path_buf()),
        env: vec![],
    }));
    assert_eq!(found[0].0, "postgres.pool_sise");
    assert!(found[0].2.contains("unknown field"), "{}", found[0].2);

    let found = problems(Config::load(&Sources {
        file: None,
        env: env(&[("PLAUSIBLE_WEBHOOKS_DELIVERY__RETRIES", "3")]),
    }));
    assert_eq!(found[0].0, "delivery.retries");
    assert_eq!(
        found[0].1,
        Origin::Env("PLAUSIBLE_WEBHOOKS_DELIVERY__RETRIES".into())
    );

    let found = problems(Config::load(&Sources {
        file: None,
        env: env(&[("PLAUSIBLE_WEBHOOKS_METRICS__PORT", "3")]),
    }));
    assert_eq!(found[0].0, "metrics");
}

#[test]
fn an_invalid_value_names_the_key_and_its_source() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "postgres.url",
            "PLAUSIBLE_WEBHOOKS_POSTGRES__URL",
            "postgres://h:notaport/db",
        ),
        (
            "postgres.pool_size",
            "PLAUSIBLE_WEBHOOKS_POSTGRES__POOL_SIZE",
            "0",
        ),
        (
            "clickhouse.url",
            "PLAUSIBLE_WEBHOOKS_CLICKHOUSE__URL",
            "tcp://localhost:9000",
        ),
        (
            "clickhouse.database",
            "PLAUSIBLE_WEBHOOKS_CLICKHOUSE__DATABASE",
            "db; DROP TABLE x",
        ),
        (
            "clickhouse.events_table",
            "PLAUSIBLE_WEBHOOKS_CLICKHOUSE__EVENTS_TABLE",
            "events-v2",
        ),
        (
            "clickhouse.cluster",
            "PLAUSIBLE_WEBHOOKS_CLICKHOUSE__CLUSTER",
            "web-cluster' SETTINGS x",
        ),
        (
            "clickhouse.failover_urls",
            "PLAUSIBLE_WEBHOOKS_CLICKHOUSE__FAILOVER_URLS",
            "[\"clickhouse-2:8123\"]",
        ),
        (
            "clickhouse.failover_urls",
            "PLAUSIBLE_WEBHOOKS_CLICKHOUSE__FAILOVER_URLS",
            "[\"http://default:hunter2@clickhouse-2:8123\"]",
        ),
        (
            "clickhouse.failover_urls",
            "PLAUSIBLE_WEBHOOKS_CLICKHOUSE__FAILOVER_URLS",
            "[\"http://clickhouse-2:8123/?password=hunter2\"]",
        ),
        (
            "clickhouse.failover_urls",
            "PLAUSIBLE_WEBHOOKS_CLICKHOUSE__FAILOVER_URLS",
            "[\"http://clickhouse-2:8123/#x\"]",
        ),
        (
            "triggers.poll_interval_ms",
            "PLAUSIBLE_WEBHOOKS_TRIGGERS__POLL_INTERVAL_MS",
            "5",
        ),
        (
            "triggers.dashboard_base_url",
            "PLAUSIBLE_WEBHOOKS_TRIGGERS__DASHBOARD_BASE_URL",
            "plausible.io",
        ),
        (
            "delivery.retry_schedule_secs",
            "PLAUSIBLE_WEBHOOKS_DELIVERY__RETRY_SCHEDULE_SECS",
            "[]",
        ),
        (
            "delivery.request_timeout_secs",
            "PLAUSIBLE_WEBHOOKS_DELIVERY__REQUEST_TIMEOUT_SECS",
            "2",
        ),
        (
            "delivery.allowed_cidrs",
            "PLAUSIBLE_WEBHOOKS_DELIVERY__ALLOWED_CIDRS",
            "[\"10.0.0.0/40\"]",
        ),
        (
            "delivery.allowed_hosts",
            "PLAUSIBLE_WEBHOOKS_DELIVERY__ALLOWED_HOSTS",
            "[\"http://x\"]",
        ),
        (
            "delivery.max_in_flight_per_endpoint",
            "PLAUSIBLE_WEBHOOKS_DELIVERY__MAX_IN_FLIGHT_PER_ENDPOINT",
            "100000",
        ),
        (
            "delivery.max_in_flight",
            "PLAUSIBLE_WEBHOOKS_DELIVERY__MAX_IN_FLIGHT",
            "1000000",
        ),
        ("log.level", "PLAUSIBLE_WEBHOOKS_LOG__LEVEL", "loud=="),
        (
            "changes.source",
            "PLAUSIBLE_WEBHOOKS_CHANGES__SOURCE",
            "wal",
        ),
        (
            "changes.replica_name",
            "PLAUSIBLE_WEBHOOKS_CHANGES__REPLICA_NAME",
            "EU-1",
        ),
        (
            "changes.replica_name",
            "PLAUSIBLE_WEBHOOKS_CHANGES__REPLICA_NAME",
            "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        ),
        (
            "changes.slot_name",
            "PLAUSIBLE_WEBHOOKS_CHANGES__SLOT_NAME",
            "my-slot",
        ),
        (
            "changes.slot_name",
            "PLAUSIBLE_WEBHOOKS_CHANGES__SLOT_NAME",
            "1slot",
        ),
    ];
    for (key, var, value) in cases {
        let found = problems(Config::load(&Sources {
            file: None,
            env: env(&[(var, value)]),
        }));
        assert_eq!(found.len(), 1, "{var}={value}: {found:?}");
        assert_eq!(found[0].0, *key, "{var}={value}");
        assert_eq!(found[0].1, Origin::Env(var.to_string()), "{var}={value}");
    }

    let f = file("[log]\nformat = \"xml\"\n");
    let found = problems(Config::load(&Sources {
        file: Some(f.path().to_path_buf()),
        env: vec![],
    }));
    assert_eq!(found[0].0, "log.format");
    assert_eq!(found[0].1, Origin::File(f.path().to_path_buf()));
}

#[test]
fn a_missing_or_broken_file_is_an_error() {
    let missing = Config::load(&Sources {
        file: Some("/nonexistent/config.toml".into()),
        env: vec![],
    });
    assert!(matches!(missing, Err(ConfigError::ReadFile { .. })));
    assert!(
        missing
            .unwrap_err()
            .to_string()
            .contains("/nonexistent/config.toml")
    );

    let f = file("[postgres\nurl = 1\n");
    let err = Config::load(&Sources {
        file: Some(f.path().to_path_buf()),
        env: vec![],
    })
    .unwrap_err();
    assert!(err.to_string().contains("TOML parse error"), "{err}");
    assert!(
        err.to_string().contains(&f.path().display().to_string()),
        "{err}"
    );
}

#[test]
fn check_config_prints_the_redacted_config() {
    let f = file(
        "[postgres]\nurl = \"postgres://app:hunter2@db:5432/plausible_db\"\n[clickhouse]\npassword = \"s3cret-ch\"\n",
    );
    let out = binary()
        .args(["check-config", "--config"])
        .arg(f.path())
        .env("PLAUSIBLE_WEBHOOKS_DELIVERY__ALLOW_HTTP", "true")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.contains("url = \"postgres://app:[redacted]@db:5432/plausible_db\""),
        "{stdout}"
    );
    assert!(stdout.contains("password = \"[redacted]\""), "{stdout}");
    assert!(stdout.contains("allow_http = true"), "{stdout}");
    assert!(
        !stdout.contains("hunter2") && !stdout.contains("s3cret-ch"),
        "{stdout}"
    );

    // The example config, as the README shows.
    let out = binary()
        .args(["check-config", "--config"])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/config/example.toml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn plausible_variables_are_fallbacks_below_ours_and_check_config_names_each_source() {
    let out = binary()
        .arg("check-config")
        .env(
            "DATABASE_URL",
            "postgres://postgres:pg-secret@plausible_db:5432/plausible_db",
        )
        .env(
            "CLICKHOUSE_DATABASE_URL",
            "http://reader:ch%2Bsecret@plausible_events_db:8123/plausible_events_db",
        )
        .env("BASE_URL", "https://analytics.example.com")
        .env("PLAUSIBLE_WEBHOOKS_CLICKHOUSE__DATABASE", "other_db")
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "url = \"postgres://postgres:[redacted]@plausible_db:5432/plausible_db\"  # from environment variable DATABASE_URL",
        "url = \"http://plausible_events_db:8123\"  # from environment variable CLICKHOUSE_DATABASE_URL",
        "user = \"reader\"  # from environment variable CLICKHOUSE_DATABASE_URL",
        "password = \"[redacted]\"  # from environment variable CLICKHOUSE_DATABASE_URL",
        "database = \"other_db\"  # from environment variable PLAUSIBLE_WEBHOOKS_CLICKHOUSE__DATABASE",
        "dashboard_base_url = \"https://analytics.example.com\"  # from environment variable BASE_URL",
        "pool_size = 16  # from built-in defaults",
    ] {
        assert!(stdout.contains(line), "{line:?} missing from:\n{stdout}");
    }
    assert!(!stdout.contains("pg-secret") && !stdout.contains("ch+secret"));
    let parsed: Result<toml::Table, _> = toml::from_str(&stdout);
    assert!(parsed.is_ok(), "still TOML: {parsed:?}");

    // The password is decoded, and a file is above Plausible's variables.
    let f = file("[triggers]\ndashboard_base_url = \"https://from-file.example.com\"\n");
    let config = Config::load(&Sources {
        file: Some(f.path().to_path_buf()),
        env: vec![
            (
                "CLICKHOUSE_DATABASE_URL".into(),
                "http://reader:ch%2Bsecret@ch:8123/db".into(),
            ),
            ("BASE_URL".into(), "https://analytics.example.com".into()),
        ],
    })
    .unwrap();
    assert_eq!(config.clickhouse.password.expose(), "ch+secret");
    assert_eq!(
        config.triggers.dashboard_base_url,
        "https://from-file.example.com"
    );

    // A variable that is not a URL is named.
    let out = binary()
        .arg("check-config")
        .env("CLICKHOUSE_DATABASE_URL", "plausible_events_db:8123")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("CLICKHOUSE_DATABASE_URL") && stderr.contains("clickhouse.url"),
        "{stderr}"
    );
}

#[test]
fn check_config_exits_2_naming_the_key_and_variable() {
    let out = binary()
        .arg("check-config")
        .env("PLAUSIBLE_WEBHOOKS_POSTGRES__POOL_SIZE", "lots")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("postgres.pool_size"), "{stderr}");
    assert!(
        stderr.contains("environment variable PLAUSIBLE_WEBHOOKS_POSTGRES__POOL_SIZE"),
        "{stderr}"
    );

    let f = file("[clickhouse]\nevents_table = \"events v2\"\n");
    let out = binary()
        .args(["check-config", "--config"])
        .arg(f.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("clickhouse.events_table"), "{stderr}");
    assert!(
        stderr.contains(&format!("config file {}", f.path().display())),
        "{stderr}"
    );

    // The file named by the environment instead of --config.
    let out = binary()
        .arg("check-config")
        .env(
            "PLAUSIBLE_WEBHOOKS_CONFIG",
            "/nonexistent/plausible-webhooks.toml",
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/plausible-webhooks.toml"));

    // `run` and `migrate` refuse a bad config the same way.
    for command in ["run", "migrate"] {
        let out = binary()
            .arg(command)
            .env("PLAUSIBLE_WEBHOOKS_LOG__FORMAT", "xml")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{command}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("PLAUSIBLE_WEBHOOKS_LOG__FORMAT"));
    }
}

#[test]
fn every_count_has_an_upper_bound() {
    let many =
        |n: usize, item: &str| format!("[{}]", (0..n).map(|_| item).collect::<Vec<_>>().join(", "));
    let cases = [
        (
            "delivery.max_in_flight",
            "max_in_flight = 10001\nmax_in_flight_per_endpoint = 8".to_string(),
        ),
        (
            "delivery.allowed_cidrs",
            format!("allowed_cidrs = {}", many(1001, "\"10.0.0.0/8\"")),
        ),
        (
            "delivery.allowed_hosts",
            format!("allowed_hosts = {}", many(1001, "\"hooks.internal\"")),
        ),
        (
            "delivery.ca_files",
            format!("ca_files = {}", many(101, "\"/dev/null\"")),
        ),
        (
            "delivery.retry_schedule_secs",
            format!("retry_schedule_secs = {}", many(51, "5")),
        ),
        (
            "postgres.pool_size",
            "[postgres]\npool_size = 1025".to_string(),
        ),
    ];
    for (key, body) in cases {
        let text = if body.starts_with('[') {
            format!("{body}\n")
        } else {
            format!("[delivery]\n{body}\n")
        };
        let f = file(&text);
        let found = problems(Config::load(&Sources {
            file: Some(f.path().to_path_buf()),
            env: vec![],
        }));
        assert!(found.iter().any(|(k, _, _)| k == key), "{key}: {found:?}");
    }
    // The bounds themselves are allowed.
    let f = file(&format!(
        "[delivery]\nmax_in_flight = 10000\nallowed_hosts = {}\n",
        many(1000, "\"hooks.internal\"")
    ));
    assert!(
        Config::load(&Sources {
            file: Some(f.path().to_path_buf()),
            env: vec![],
        })
        .is_ok()
    );
}
