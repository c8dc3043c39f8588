//! The Plausible CE recipe (deploy/plausible-ce/), as far as it can be
//! tested without a Docker engine: the compose override parses, uses CE's
//! service names and variables, mounts the ClickHouse settings file into
//! users.d, and the environment it sets is one `check-config` accepts.

use std::collections::BTreeMap;

use serde_yaml_ng::Value;

use crate::support::binary;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/plausible-ce");

fn override_file() -> Value {
    let text = std::fs::read_to_string(format!("{DIR}/compose.override.yml")).unwrap();
    serde_yaml_ng::from_str(&text).expect("compose.override.yml parses")
}

fn service<'a>(compose: &'a Value, name: &str) -> &'a Value {
    compose["services"]
        .get(name)
        .unwrap_or_else(|| panic!("no service {name}"))
}

/// A compose value `${NAME:-default}` as compose resolves it when NAME is
/// unset.
fn resolve(value: &str) -> String {
    match value.strip_prefix("${").and_then(|v| v.strip_suffix('}')) {
        Some(inner) => inner
            .split_once(":-")
            .map(|(_, d)| d)
            .unwrap_or("")
            .to_string(),
        None => value.to_string(),
    }
}

/// The environment a service gets, merged anchors included.
fn environment(service: &Value) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    let lookup = |key: &str| -> Option<&Value> {
        service
            .get(key)
            .or_else(|| service.get("<<").and_then(|base| base.get(key)))
    };
    if let Some(Value::Mapping(map)) = lookup("environment") {
        for (k, v) in map {
            env.insert(
                k.as_str().unwrap().to_string(),
                resolve(v.as_str().unwrap()),
            );
        }
    }
    env
}

#[test]
fn the_override_fits_ce_and_its_environment_passes_check_config() {
    let mut compose = override_file();
    compose.apply_merge().expect("anchors merge");

    // CE's own services, by their names.
    let migrate = service(&compose, "plausible_webhooks_migrate");
    let daemon = service(&compose, "plausible_webhooks");
    for ce in ["plausible_db", "plausible_events_db", "plausible"] {
        assert!(
            migrate["depends_on"].get(ce).is_some(),
            "migrate waits for {ce}"
        );
    }
    assert_eq!(migrate["command"][0], "migrate");
    assert_eq!(daemon["command"][0], "run");
    assert_eq!(
        daemon["depends_on"]["plausible_webhooks_migrate"]["condition"],
        "service_completed_successfully"
    );
    // CE's settings files, whichever layout the install has.
    let env_files: Vec<&str> = daemon["env_file"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(env_files, vec![".env", "plausible-conf.env"]);

    // CE's variables, with CE's defaults pointing at CE's services.
    let env = environment(daemon);
    assert_eq!(
        env["DATABASE_URL"],
        "postgres://postgres:postgres@plausible_db:5432/plausible_db"
    );
    assert_eq!(
        env["CLICKHOUSE_DATABASE_URL"],
        "http://plausible_events_db:8123/plausible_events_db"
    );

    // The settings file goes into ClickHouse's users.d, and exists.
    let mounts: Vec<&str> = service(&compose, "plausible_events_db")["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let mount = mounts
        .iter()
        .find(|m| m.contains("/etc/clickhouse-server/users.d/"))
        .expect("a users.d mount");
    let source = mount.split(':').next().unwrap();
    let in_repo = source
        .strip_prefix("./plausible-webhooks/")
        .expect("mounted from the plausible-webhooks checkout");
    assert!(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(in_repo)
            .exists(),
        "{in_repo} exists"
    );

    // check-config accepts that environment with a CE .env beside it.
    let mut cmd = binary();
    cmd.arg("check-config")
        .envs(&env)
        .env("BASE_URL", "https://plausible.example.com")
        .env("SECRET_KEY_BASE", "not-read-by-the-daemon");
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "url = \"postgres://postgres:[redacted]@plausible_db:5432/plausible_db\"  # from environment variable DATABASE_URL",
        "url = \"http://plausible_events_db:8123\"  # from environment variable CLICKHOUSE_DATABASE_URL",
        "database = \"plausible_events_db\"  # from environment variable CLICKHOUSE_DATABASE_URL",
        "dashboard_base_url = \"https://plausible.example.com\"  # from environment variable BASE_URL",
    ] {
        assert!(stdout.contains(line), "{line:?} missing from:\n{stdout}");
    }
}
