//! The daemon's configuration: built-in defaults < Plausible's own
//! variables (`DATABASE_URL`, `CLICKHOUSE_DATABASE_URL`, `BASE_URL`; see
//! `plausible_env`) < a TOML file < `PLAUSIBLE_WEBHOOKS_<SECTION>__<KEY>`
//! environment variables.
//!
//! Every error names the key and where its value came from, so an operator
//! can fix it without reading the source. Secrets never reach `Debug` or the
//! rendered config.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use figment::providers::{Format, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use serde::{Deserialize, Serialize, Serializer};

mod plausible_env;

/// The compiled-in defaults; `config/example.toml` documents each key.
const DEFAULTS: &str = include_str!("../config/default.toml");

/// The prefix of environment variables that override config keys.
pub const ENV_PREFIX: &str = "PLAUSIBLE_WEBHOOKS_";

/// The environment variable that names the config file (like `--config`).
pub const CONFIG_FILE_ENV: &str = "PLAUSIBLE_WEBHOOKS_CONFIG";

const REDACTED: &str = "[redacted]";

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub postgres: PostgresConfig,
    pub clickhouse: ClickhouseConfig,
    pub registry: RegistryConfig,
    pub changes: ChangesConfig,
    pub triggers: TriggersConfig,
    pub delivery: DeliveryConfig,
    pub http: HttpConfig,
    pub log: LogConfig,
    pub retention: RetentionConfig,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// A libpq-style URL or key=value string; its password is a secret.
    pub url: PostgresUrl,
    pub pool_size: usize,
    pub connect_timeout_secs: u64,
    /// libpq's `sslmode`; empty: the URL's, else `prefer`.
    pub sslmode: String,
    /// A CA certificate file (PEM) to verify the server with; empty: the
    /// URL's `sslrootcert`, else Mozilla's and the system's roots.
    pub sslrootcert: PathBuf,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClickhouseConfig {
    pub url: String,
    pub database: String,
    pub user: String,
    pub password: Secret,
    pub events_table: String,
    pub request_timeout_secs: u64,
    /// Trust the system's CA certificates for an https:// URL (Mozilla's
    /// are always trusted).
    pub use_system_roots: bool,
    /// More CA certificates (PEM files) for an https:// URL.
    pub ca_files: Vec<PathBuf>,
    /// `migrate` connects as this user when set (it creates views and
    /// tables; `run` only reads and may use a `readonly = 1` user).
    pub migrate_user: String,
    pub migrate_password: Secret,
    /// The ClickHouse cluster (`remote_servers`) whose replicas hold
    /// Plausible's replicated events table; empty: a single server.
    pub cluster: String,
    /// More URLs of the same data (other replicas), tried in order when the
    /// current one cannot be reached; same user, password and TLS.
    pub failover_urls: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    pub reconcile_interval_secs: u64,
}

/// Where the registry and the delivery schedule learn of changes.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ChangesConfig {
    pub source: ChangeSource,
    /// Tells this replica's replication slot apart from the others'.
    pub replica_name: String,
    /// The replication slot; empty: derived from `replica_name`.
    pub slot_name: String,
}

/// `changes.source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeSource {
    /// LISTEN/NOTIFY, fed by the migrations' triggers.
    Notify,
    /// Logical replication (`pgoutput`) from a slot of this replica's own.
    Replication,
}

impl ChangesConfig {
    /// The slot this replica reads: `changes.slot_name`, else
    /// `plausible_webhooks` or `plausible_webhooks_<replica_name>`.
    pub fn slot(&self) -> String {
        if !self.slot_name.is_empty() {
            self.slot_name.clone()
        } else if self.replica_name.is_empty() {
            SLOT_PREFIX.to_string()
        } else {
            format!("{SLOT_PREFIX}_{}", self.replica_name)
        }
    }
}

/// The start of every slot name the daemon derives (and of those `doctor`
/// and `uninstall` look after).
pub const SLOT_PREFIX: &str = "plausible_webhooks";

/// A replication slot's name as Postgres takes it: lower-case letters,
/// digits and `_`, at most 63 bytes.
/// Lower-case letters, digits and `_`, at most 63 bytes: what a slot name
/// (or the part a replica name adds to one) may hold.
fn is_slot_chars(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// A slot name that `START_REPLICATION SLOT <name>` takes unquoted: it
/// starts with a letter or `_`.
fn is_slot_name(s: &str) -> bool {
    is_slot_chars(s)
        && s.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TriggersConfig {
    pub poll_interval_ms: u64,
    pub dashboard_base_url: String,
    pub rescan_margin_secs: u32,
    pub drop_check_interval_secs: u64,
    pub goal_count_retention_hours: u32,
    pub failover_secs: u64,
    pub catchup_step_secs: u32,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryConfig {
    pub connect_timeout_secs: u64,
    pub request_timeout_secs: u64,
    pub max_in_flight: usize,
    pub max_in_flight_per_endpoint: usize,
    pub resync_interval_secs: u64,
    pub retry_schedule_secs: Vec<u64>,
    pub disable_endpoint_after_secs: u64,
    pub allow_http: bool,
    pub allowed_cidrs: Vec<String>,
    pub allowed_hosts: Vec<String>,
    pub use_system_roots: bool,
    pub ca_files: Vec<PathBuf>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    pub deliveries_days: u32,
    pub interval_secs: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// The bearer token of the status page and `/api/v1` (empty: none, and
    /// then the page answers on a loopback listen address only).
    pub admin_token: Secret,
}

impl HttpConfig {
    /// Why `run` must not start with this config: a status page on a
    /// non-loopback address with no token would be open to anyone who
    /// can reach it.
    pub fn refusal(&self) -> Option<String> {
        if self.admin_token.expose().is_empty() && !self.listen.ip().is_loopback() {
            return Some(format!(
                "http.listen is {} (not a loopback address) but http.admin_token is not set: \
                 set http.admin_token (PLAUSIBLE_WEBHOOKS_HTTP__ADMIN_TOKEN) or listen on 127.0.0.1",
                self.listen
            ));
        }
        None
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub level: String,
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Pretty,
}

/// A string that is never printed: `Debug` and `Serialize` show
/// `[redacted]` (or `""` when unset, so that an operator can tell).
#[derive(Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { REDACTED })
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(if self.0.is_empty() { "" } else { REDACTED })
    }
}

/// A Postgres connection string whose password is redacted wherever it is
/// shown.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct PostgresUrl(String);

impl PostgresUrl {
    pub fn new(value: impl Into<String>) -> Self {
        PostgresUrl(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The connection string with any password replaced by `[redacted]`.
    pub fn redacted(&self) -> String {
        redact_connection_string(&self.0)
    }

    /// The parsed connection settings, without the TLS settings that
    /// `store::tls` applies (`sslmode`, `sslrootcert`).
    pub fn parse(&self) -> Result<tokio_postgres::Config, tokio_postgres::Error> {
        tokio_postgres::Config::from_str(&crate::store::tls::split(&self.0).rest)
    }
}

impl fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.redacted())
    }
}

impl Serialize for PostgresUrl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.redacted())
    }
}

/// Hides the password of a `postgres://user:password@host/db` URL, of a
/// `?password=` query parameter, and of a `password=...` key-value pair.
fn redact_connection_string(s: &str) -> String {
    if let Some(scheme_end) = s.find("://") {
        let rest = &s[scheme_end + 3..];
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        let authority = match authority.rfind('@') {
            Some(at) => {
                let userinfo = &authority[..at];
                match userinfo.find(':') {
                    Some(colon) => format!("{}:{REDACTED}{}", &userinfo[..colon], &authority[at..]),
                    None => authority.to_string(),
                }
            }
            None => authority.to_string(),
        };
        let tail = redact_pairs(tail, '&');
        format!("{}{authority}{tail}", &s[..scheme_end + 3])
    } else {
        redact_pairs(s, ' ')
    }
}

fn redact_pairs(s: &str, separator: char) -> String {
    s.split(separator)
        .map(|part| {
            let key_start = part.rfind('?').map_or(0, |q| q + 1);
            match part[key_start..].split_once('=') {
                Some((key, _)) if key.trim() == "password" => {
                    format!("{}{key}={REDACTED}", &part[..key_start])
                }
                _ => part.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join(&separator.to_string())
}

/// Where a config value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Defaults,
    File(PathBuf),
    Env(String),
    Unknown,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Defaults => f.write_str("built-in defaults"),
            Origin::File(path) => write!(f, "config file {}", path.display()),
            Origin::Env(name) => write!(f, "environment variable {name}"),
            Origin::Unknown => f.write_str("unknown source"),
        }
    }
}

/// One thing wrong with the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The dotted key, such as `postgres.pool_size`.
    pub key: String,
    pub origin: Origin,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{} (in {})", self.message, self.origin)
        } else {
            write!(
                f,
                "key `{}` (from {}): {}",
                self.key, self.origin, self.message
            )
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}: {source}", path.display())]
    ReadFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid config:{}", problems.iter().map(|p| format!("\n  - {p}")).collect::<String>())]
    Invalid { problems: Vec<Problem> },
}

impl ConfigError {
    /// The problems found, if the config was read but is invalid.
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Invalid { problems } => problems,
            ConfigError::ReadFile { .. } => &[],
        }
    }
}

/// Where to read the config from: an optional file and the environment.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    pub file: Option<PathBuf>,
    /// `(name, value)` pairs; only those starting with [`ENV_PREFIX`] and
    /// Plausible's `DATABASE_URL`, `CLICKHOUSE_DATABASE_URL` and `BASE_URL`
    /// are read.
    pub env: Vec<(String, String)>,
}

impl Sources {
    /// The process environment, and the file named by `--config` or else by
    /// `PLAUSIBLE_WEBHOOKS_CONFIG`.
    pub fn from_process(file: Option<PathBuf>) -> Self {
        let env: Vec<(String, String)> = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .filter(|(k, _)| {
                k.starts_with(ENV_PREFIX) || plausible_env::NAMES.contains(&k.as_str())
            })
            .collect();
        let file = file.or_else(|| {
            env.iter()
                .find(|(k, _)| k == CONFIG_FILE_ENV)
                .map(|(_, v)| PathBuf::from(v))
        });
        Sources { file, env }
    }
}

impl Config {
    /// Reads, merges and validates the config.
    pub fn load(sources: &Sources) -> Result<Config, ConfigError> {
        Config::load_traced(sources).map(|(config, _)| config)
    }

    /// The effective config as TOML, with every secret redacted and each
    /// value's source in a comment after it (`check-config`).
    pub fn render_sources(sources: &Sources) -> Result<String, ConfigError> {
        let (config, figment) = Config::load_traced(sources)?;
        let rendered = config.render_redacted();
        let table: toml::Table = toml::from_str(&rendered).unwrap_or_default();
        let mut out = String::new();
        for (section, keys) in &table {
            let Some(keys) = keys.as_table() else {
                continue;
            };
            out.push_str(&format!("[{section}]\n"));
            for (key, value) in keys {
                let origin = origin_of(&figment, &format!("{section}.{key}"), None);
                out.push_str(&format!("{key} = {value}  # from {origin}\n"));
            }
            out.push('\n');
        }
        Ok(out)
    }

    /// [`Config::load`], keeping the merged sources to say where each value
    /// came from.
    fn load_traced(sources: &Sources) -> Result<(Config, Figment), ConfigError> {
        let mut figment = Figment::new().merge(Named {
            inner: Toml::string(DEFAULTS),
            metadata: Metadata::named("built-in defaults"),
        });
        let (plausible, mut problems) = plausible_env::providers(&sources.env);
        for provider in plausible {
            figment = figment.merge(provider);
        }
        if let Some(path) = &sources.file {
            // Figment skips a missing file silently; an operator who named
            // one wants to hear about it.
            std::fs::metadata(path).map_err(|source| ConfigError::ReadFile {
                path: path.clone(),
                source,
            })?;
            figment = figment.merge(Toml::file_exact(path));
        }
        let mut env: Vec<&(String, String)> = sources
            .env
            .iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX) && k != CONFIG_FILE_ENV)
            .collect();
        env.sort();
        for (name, value) in env {
            figment = figment.merge(EnvVar::new(name, value));
        }

        let config: Config = figment.extract().map_err(|e| {
            problems.extend(e.into_iter().map(|e| problem_from_figment(&figment, e)));
            ConfigError::Invalid {
                problems: problems.clone(),
            }
        })?;
        problems.extend(config.validate().into_iter().map(|(key, message)| Problem {
            origin: origin_of(&figment, key, None),
            key: key.to_string(),
            message,
        }));
        if problems.is_empty() {
            Ok((config, figment))
        } else {
            Err(ConfigError::Invalid { problems })
        }
    }

    /// The effective config as TOML, with every secret redacted.
    pub fn render_redacted(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }

    /// Checks what types alone cannot: returns `(key, message)` pairs.
    fn validate(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        let mut check = |ok: bool, key: &'static str, message: &dyn Fn() -> String| {
            if !ok {
                problems.push((key, message()));
            }
        };

        let pg = &self.postgres;
        if let Err(e) = pg.url.parse() {
            check(false, "postgres.url", &|| {
                format!("not a valid Postgres connection string: {e}")
            });
        }
        if let Err(e) = crate::store::tls::PgTls::from_config(pg) {
            let key = if pg.sslmode.is_empty() {
                "postgres.url"
            } else {
                "postgres.sslmode"
            };
            check(false, key, &|| e.clone());
        }
        check(
            (1..=1024).contains(&pg.pool_size),
            "postgres.pool_size",
            &|| "must be between 1 and 1024".into(),
        );
        check(
            (1..=3600).contains(&pg.connect_timeout_secs),
            "postgres.connect_timeout_secs",
            &|| "must be between 1 and 3600".into(),
        );

        let ch = &self.clickhouse;
        check(is_http_url(&ch.url), "clickhouse.url", &|| {
            format!("must be an http:// or https:// URL, got {:?}", ch.url)
        });
        check(is_identifier(&ch.database), "clickhouse.database", &|| {
            format!(
                "must be a plain identifier (letters, digits, _), got {:?}",
                ch.database
            )
        });
        check(
            is_identifier(&ch.events_table),
            "clickhouse.events_table",
            &|| {
                format!(
                    "must be a plain identifier (letters, digits, _), got {:?}",
                    ch.events_table
                )
            },
        );
        check(
            ch.cluster.is_empty() || is_identifier(&ch.cluster),
            "clickhouse.cluster",
            &|| {
                format!(
                    "must be empty or a plain identifier (letters, digits, _), got {:?}",
                    ch.cluster
                )
            },
        );
        check(
            ch.failover_urls.len() <= 16,
            "clickhouse.failover_urls",
            &|| "must list at most 16 URLs".into(),
        );
        if let Some(bad) = ch.failover_urls.iter().find(|u| !is_http_url(u)) {
            check(false, "clickhouse.failover_urls", &|| {
                format!(
                    "must list http:// or https:// URLs, got {:?}",
                    crate::redact::url(bad, false)
                )
            });
        }
        let has_userinfo = |u: &String| {
            url::Url::parse(u).is_ok_and(|p| !p.username().is_empty() || p.password().is_some())
        };
        let has_query = |u: &String| {
            url::Url::parse(u).is_ok_and(|p| p.query().is_some() || p.fragment().is_some())
        };
        if let Some(bad) = ch.failover_urls.iter().find(|u| has_query(u)) {
            check(false, "clickhouse.failover_urls", &|| {
                format!(
                    "must not carry a query string or fragment (settings and credentials come from the other clickhouse keys), got {:?}",
                    crate::redact::url(bad, false)
                )
            });
        }
        if let Some(bad) = ch.failover_urls.iter().find(|u| has_userinfo(u)) {
            check(false, "clickhouse.failover_urls", &|| {
                format!(
                    "must not carry a user or password (clickhouse.user and clickhouse.password apply to every URL), got {:?}",
                    crate::redact::url(bad, false)
                )
            });
        }
        check(!ch.user.is_empty(), "clickhouse.user", &|| {
            "must not be empty".into()
        });
        check(
            (1..=3600).contains(&ch.request_timeout_secs),
            "clickhouse.request_timeout_secs",
            &|| "must be between 1 and 3600".into(),
        );
        check(ch.ca_files.len() <= 64, "clickhouse.ca_files", &|| {
            "must list at most 64 files".into()
        });
        if let Err(e) = crate::tls::roots(false, false, &ch.ca_files) {
            check(false, "clickhouse.ca_files", &|| e.to_string());
        }

        check(
            (1..=86_400).contains(&self.registry.reconcile_interval_secs),
            "registry.reconcile_interval_secs",
            &|| "must be between 1 and 86400".into(),
        );

        let changes = &self.changes;
        check(
            changes.replica_name.is_empty() || is_slot_chars(&changes.replica_name),
            "changes.replica_name",
            &|| {
                format!(
                    "must be lower-case letters, digits and _ (it names a replication slot), got {:?}",
                    changes.replica_name
                )
            },
        );
        let slot_key = if changes.slot_name.is_empty() {
            "changes.replica_name"
        } else {
            "changes.slot_name"
        };
        let replica_ok = changes.replica_name.is_empty() || is_slot_chars(&changes.replica_name);
        let derived_or_set = !changes.slot_name.is_empty() || replica_ok;
        check(
            !derived_or_set || is_slot_name(&changes.slot()),
            slot_key,
            &|| {
                format!(
                    "the replication slot name {:?} must be 1 to 63 lower-case letters, digits and _, starting with a letter or _",
                    changes.slot()
                )
            },
        );

        let tr = &self.triggers;
        check(
            (100..=60_000).contains(&tr.poll_interval_ms),
            "triggers.poll_interval_ms",
            &|| "must be between 100 and 60000".into(),
        );
        check(
            is_http_url(&tr.dashboard_base_url),
            "triggers.dashboard_base_url",
            &|| {
                format!(
                    "must be an http:// or https:// URL, got {:?}",
                    tr.dashboard_base_url
                )
            },
        );

        check(
            (1..=3600).contains(&tr.rescan_margin_secs),
            "triggers.rescan_margin_secs",
            &|| "must be between 1 and 3600".into(),
        );
        check(
            (10..=3600).contains(&tr.drop_check_interval_secs),
            "triggers.drop_check_interval_secs",
            &|| "must be between 10 and 3600".into(),
        );
        check(
            (1..=720).contains(&tr.goal_count_retention_hours),
            "triggers.goal_count_retention_hours",
            &|| "must be between 1 and 720".into(),
        );
        check(
            (2..=300).contains(&tr.failover_secs),
            "triggers.failover_secs",
            &|| "must be between 2 and 300".into(),
        );
        check(
            (10..=3600).contains(&tr.catchup_step_secs),
            "triggers.catchup_step_secs",
            &|| "must be between 10 and 3600".into(),
        );

        let d = &self.delivery;
        check(
            (1..=3600).contains(&d.connect_timeout_secs),
            "delivery.connect_timeout_secs",
            &|| "must be between 1 and 3600".into(),
        );
        check(
            (d.connect_timeout_secs.max(1)..=3600).contains(&d.request_timeout_secs),
            "delivery.request_timeout_secs",
            &|| "must be at least delivery.connect_timeout_secs and at most 3600".into(),
        );
        check(
            (1..=MAX_IN_FLIGHT).contains(&d.max_in_flight),
            "delivery.max_in_flight",
            &|| format!("must be between 1 and {MAX_IN_FLIGHT}"),
        );
        check(
            (1..=d.max_in_flight.max(1)).contains(&d.max_in_flight_per_endpoint),
            "delivery.max_in_flight_per_endpoint",
            &|| "must be between 1 and delivery.max_in_flight".into(),
        );
        check(
            (1..=3600).contains(&d.resync_interval_secs),
            "delivery.resync_interval_secs",
            &|| "must be between 1 and 3600".into(),
        );
        check(
            !d.retry_schedule_secs.is_empty()
                && d.retry_schedule_secs.len() <= 50
                && d.retry_schedule_secs
                    .iter()
                    .all(|s| (1..=7 * 86_400).contains(s)),
            "delivery.retry_schedule_secs",
            &|| "must list 1 to 50 waits, each between 1 and 604800 seconds".into(),
        );
        check(
            (60..=366 * 86_400).contains(&d.disable_endpoint_after_secs),
            "delivery.disable_endpoint_after_secs",
            &|| "must be between 60 and 31622400 (366 days)".into(),
        );
        check(
            d.allowed_cidrs.len() <= MAX_LIST,
            "delivery.allowed_cidrs",
            &|| format!("must list at most {MAX_LIST} CIDR blocks"),
        );
        check(
            d.allowed_hosts.len() <= MAX_LIST,
            "delivery.allowed_hosts",
            &|| format!("must list at most {MAX_LIST} host names"),
        );
        check(
            d.ca_files.len() <= MAX_CA_FILES,
            "delivery.ca_files",
            &|| format!("must list at most {MAX_CA_FILES} files"),
        );
        for cidr in &d.allowed_cidrs {
            if let Err(e) = parse_cidr(cidr) {
                check(false, "delivery.allowed_cidrs", &|| {
                    format!("{cidr:?} is not a CIDR block: {e}")
                });
            }
        }
        for host in &d.allowed_hosts {
            check(
                !host.is_empty() && !host.contains(['/', ':', ' ', '@']),
                "delivery.allowed_hosts",
                &|| format!("{host:?} is not a host name"),
            );
        }

        for file in &d.ca_files {
            if let Err(e) = std::fs::metadata(file) {
                check(false, "delivery.ca_files", &|| {
                    format!("cannot read {}: {e}", file.display())
                });
            }
        }

        if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&self.log.level) {
            check(false, "log.level", &|| {
                format!("not a valid level or filter: {e}")
            });
        }

        let r = &self.retention;
        check(
            (1..=3650).contains(&r.deliveries_days),
            "retention.deliveries_days",
            &|| "must be between 1 and 3650".into(),
        );
        check(
            (10..=86_400).contains(&r.interval_secs),
            "retention.interval_secs",
            &|| "must be between 10 and 86400".into(),
        );
        problems
    }
}

/// The most requests in flight `delivery.max_in_flight` allows (each holds
/// a connection and up to 16 KiB of response; twice as many are leased).
const MAX_IN_FLIGHT: usize = 10_000;
/// The most entries `delivery.allowed_cidrs` or `delivery.allowed_hosts`
/// may list (each is checked on every connection).
const MAX_LIST: usize = 1000;
/// The most files `delivery.ca_files` may list.
const MAX_CA_FILES: usize = 100;

fn is_http_url(s: &str) -> bool {
    let rest = s
        .strip_prefix("http://")
        .or_else(|| s.strip_prefix("https://"));
    matches!(rest, Some(r) if !r.is_empty() && !r.starts_with('/') && !r.contains(char::is_whitespace))
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Parses `addr/len` (or a bare address, as a single host).
pub fn parse_cidr(s: &str) -> Result<(std::net::IpAddr, u8), String> {
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let addr: std::net::IpAddr = addr.trim().parse().map_err(|e| format!("{e}"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = match len {
        Some(l) => l
            .trim()
            .parse::<u8>()
            .map_err(|_| format!("prefix length {l:?} is not a number"))?,
        None => max,
    };
    if len > max {
        return Err(format!("prefix length {len} is larger than {max}"));
    }
    Ok((addr, len))
}

/// `PLAUSIBLE_WEBHOOKS_POSTGRES__POOL_SIZE` for `postgres.pool_size`.
pub fn env_var_for(key: &str) -> String {
    format!(
        "{ENV_PREFIX}{}",
        key.replace('.', "__").to_ascii_uppercase()
    )
}

fn problem_from_figment(figment: &Figment, e: figment::Error) -> Problem {
    // For an unknown field the path already ends with the field itself.
    let key = e.path.join(".");
    Problem {
        origin: origin_of(figment, &key, e.metadata.as_ref()),
        message: e.kind.to_string(),
        key,
    }
}

fn origin_of(figment: &Figment, key: &str, fallback: Option<&Metadata>) -> Origin {
    let metadata = if key.is_empty() {
        fallback
    } else {
        figment.find_metadata(key).or(fallback)
    };
    match metadata {
        None => Origin::Unknown,
        Some(md) => match &md.source {
            Some(figment::Source::File(path)) => Origin::File(path.clone()),
            Some(figment::Source::Custom(name)) => Origin::Env(name.clone()),
            _ if md.name == "built-in defaults" => Origin::Defaults,
            _ => Origin::Unknown,
        },
    }
}

/// A provider with a name of our choosing, for the built-in defaults.
struct Named<P> {
    inner: P,
    metadata: Metadata,
}

impl<P: Provider> Provider for Named<P> {
    fn metadata(&self) -> Metadata {
        self.metadata.clone()
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        self.inner.data()
    }
}

/// One environment variable as a provider of its own, so that an error can
/// name the very variable that set a bad value.
struct EnvVar {
    name: String,
    key: String,
    value: String,
}

impl EnvVar {
    fn new(name: &str, value: &str) -> Self {
        let key = name[ENV_PREFIX.len()..]
            .to_ascii_lowercase()
            .replace("__", ".");
        EnvVar {
            name: name.to_string(),
            key,
            value: value.to_string(),
        }
    }
}

impl Provider for EnvVar {
    fn metadata(&self) -> Metadata {
        Metadata::named(format!("environment variable {}", self.name))
            .source(figment::Source::Custom(self.name.clone()))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        // Values are parsed as figment parses environment variables: numbers,
        // booleans and `[arrays]` are recognised, anything else is a string.
        let value = match Value::from_str(&self.value) {
            Ok(v) => v,
            Err(never) => match never {},
        };
        let dict = figment::util::nest(&self.key, value)
            .into_dict()
            .ok_or_else(|| figment::Error::from(format!("{} has no key", self.name)))?;
        Ok(Profile::Default.collect(dict))
    }
}

impl Config {
    /// The defaults alone, for tests and tools.
    pub fn defaults() -> Config {
        match Config::load(&Sources::default()) {
            Ok(c) => c,
            // The defaults are compiled in and covered by tests.
            Err(e) => unreachable!("built-in defaults are invalid: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn redacts_passwords_in_every_form() {
        assert_eq!(
            redact_connection_string("postgres://u:secret@h:5432/db?sslmode=disable"),
            "postgres://u:[redacted]@h:5432/db?sslmode=disable"
        );
        assert_eq!(
            redact_connection_string("postgres://u@h/db?password=secret&x=1"),
            "postgres://u@h/db?password=[redacted]&x=1"
        );
        assert_eq!(
            redact_connection_string("host=h user=u password=secret dbname=d"),
            "host=h user=u password=[redacted] dbname=d"
        );
        assert_eq!(
            redact_connection_string("postgres://h/db"),
            "postgres://h/db"
        );
    }

    #[test]
    fn env_var_names_map_to_keys() {
        assert_eq!(
            env_var_for("postgres.pool_size"),
            "PLAUSIBLE_WEBHOOKS_POSTGRES__POOL_SIZE"
        );
        assert_eq!(
            EnvVar::new("PLAUSIBLE_WEBHOOKS_DELIVERY__MAX_IN_FLIGHT", "1").key,
            "delivery.max_in_flight"
        );
    }

    #[test]
    fn defaults_are_valid() {
        let c = Config::defaults();
        assert_eq!(c.clickhouse.events_table, "events_v2");
        assert_eq!(c.delivery.retry_schedule_secs.len(), 7);
    }

    #[test]
    fn env_arrays_and_the_config_variable() {
        let c = Config::load(&Sources {
            file: None,
            env: env(&[
                ("PLAUSIBLE_WEBHOOKS_DELIVERY__RETRY_SCHEDULE_SECS", "[1, 2]"),
                ("PLAUSIBLE_WEBHOOKS_CONFIG", "/ignored/here"),
                ("OTHER_VARIABLE", "x"),
            ]),
        })
        .unwrap();
        assert_eq!(c.delivery.retry_schedule_secs, vec![1, 2]);
    }

    #[test]
    fn slot_names_are_derived_from_the_replica_name() {
        let mut c = Config::defaults().changes;
        assert_eq!(c.source, ChangeSource::Notify);
        assert_eq!(c.slot(), "plausible_webhooks");
        c.replica_name = "eu_1".into();
        assert_eq!(c.slot(), "plausible_webhooks_eu_1");
        c.slot_name = "mine".into();
        assert_eq!(c.slot(), "mine");
        assert!(is_slot_name("a_1"));
        assert!(!is_slot_name("A"));
        assert!(!is_slot_name("a-b"));
        assert!(!is_slot_name(&"a".repeat(64)));
    }

    #[test]
    fn cidrs() {
        assert!(parse_cidr("127.0.0.0/8").is_ok());
        assert!(parse_cidr("::1").is_ok());
        assert!(parse_cidr("10.0.0.0/33").is_err());
        assert!(parse_cidr("nope/8").is_err());
    }
}
