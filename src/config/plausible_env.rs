//! Plausible's own settings, read as fallbacks: an install of Plausible
//! Community Edition already has `DATABASE_URL`, `CLICKHOUSE_DATABASE_URL`
//! (the database is the URL's path) and `BASE_URL` in `plausible-conf.env`,
//! so the sidecar can share that file. They sit below the config file and
//! `PLAUSIBLE_WEBHOOKS_*` variables, above the built-in defaults.

use figment::value::{Dict, Map, Value};
use figment::{Metadata, Profile, Provider};

use super::{Origin, Problem};

/// The variables read, in the order they are merged.
pub(super) const NAMES: [&str; 3] = ["DATABASE_URL", "CLICKHOUSE_DATABASE_URL", "BASE_URL"];

/// One of Plausible's variables as a figment provider, so that an error or
/// `check-config` names it.
pub(super) struct PlausibleVar {
    name: &'static str,
    values: Vec<(&'static str, String)>,
}

impl Provider for PlausibleVar {
    fn metadata(&self) -> Metadata {
        Metadata::named(format!("Plausible's environment variable {}", self.name))
            .source(figment::Source::Custom(self.name.to_string()))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut root = Dict::new();
        for (key, value) in &self.values {
            let nested = figment::util::nest(key, Value::from(value.clone()));
            if let Some(dict) = nested.into_dict() {
                merge(&mut root, dict);
            }
        }
        Ok(Profile::Default.collect(root))
    }
}

fn merge(into: &mut Dict, from: Dict) {
    for (k, v) in from {
        match (into.get_mut(&k), v) {
            (Some(Value::Dict(_, a)), Value::Dict(_, b)) => merge(a, b),
            (_, v) => {
                into.insert(k, v);
            }
        }
    }
}

/// The providers for those of Plausible's variables that are set, and the
/// problems with any that cannot be read.
pub(super) fn providers(env: &[(String, String)]) -> (Vec<PlausibleVar>, Vec<Problem>) {
    let mut providers = Vec::new();
    let mut problems = Vec::new();
    for name in NAMES {
        let Some((_, value)) = env.iter().find(|(k, _)| k == name) else {
            continue;
        };
        if value.is_empty() {
            continue;
        }
        let values = match name {
            "DATABASE_URL" => Ok(vec![("postgres.url", value.clone())]),
            "CLICKHOUSE_DATABASE_URL" => clickhouse(value),
            _ => Ok(vec![("triggers.dashboard_base_url", value.clone())]),
        };
        match values {
            Ok(values) => providers.push(PlausibleVar { name, values }),
            Err(message) => problems.push(Problem {
                key: "clickhouse.url".into(),
                origin: Origin::Env(name.to_string()),
                message,
            }),
        }
    }
    (providers, problems)
}

/// `http://user:password@host:8123/database` as `clickhouse.url`,
/// `clickhouse.database` and, when given, `user` and `password`.
fn clickhouse(value: &str) -> Result<Vec<(&'static str, String)>, String> {
    let url = url::Url::parse(value)
        .map_err(|e| format!("CLICKHOUSE_DATABASE_URL is not a URL ({e})"))?;
    let host = url
        .host_str()
        .ok_or("CLICKHOUSE_DATABASE_URL has no host")?
        .to_string();
    let mut base = format!("{}://{host}", url.scheme());
    if let Some(port) = url.port() {
        base.push_str(&format!(":{port}"));
    }
    let mut values = vec![("clickhouse.url", base)];
    let database = url.path().trim_matches('/');
    if !database.is_empty() {
        values.push(("clickhouse.database", decode(database)));
    }
    if !url.username().is_empty() {
        values.push(("clickhouse.user", decode(url.username())));
    }
    if let Some(password) = url.password() {
        values.push(("clickhouse.password", decode(password)));
    }
    Ok(values)
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clickhouse_url_splits_into_keys() {
        assert_eq!(
            clickhouse("http://plausible_events_db:8123/plausible_events_db").unwrap(),
            vec![
                (
                    "clickhouse.url",
                    "http://plausible_events_db:8123".to_string()
                ),
                ("clickhouse.database", "plausible_events_db".to_string()),
            ]
        );
        assert_eq!(
            clickhouse("https://reader:p%40ss@ch.example.com/events").unwrap(),
            vec![
                ("clickhouse.url", "https://ch.example.com".to_string()),
                ("clickhouse.database", "events".to_string()),
                ("clickhouse.user", "reader".to_string()),
                ("clickhouse.password", "p@ss".to_string()),
            ]
        );
        assert!(clickhouse("not a url").is_err());
    }
}
