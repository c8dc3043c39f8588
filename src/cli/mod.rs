//! `plausible-webhooks webhooks …`: managing webhooks from the command line,
//! over the same tables and contract as the web app (docs/schema.md), so it
//! works beside the web app or without it. Everything but `test` works
//! without a running daemon. SQL lives in `store::manage`.

pub mod doctor;
mod flags;
mod render;
pub mod uninstall;
mod view;

use std::time::{Duration, Instant};

use base64::Engine;
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use tokio_postgres::Client;

use crate::config::Config;
use crate::registry::model::{Format, Scheme};
use crate::registry::{EventType, headers, keys};
use crate::store::deliveries::Status;
use crate::store::manage::{self, DeliveryInfo, HeaderChange, Settings, SiteRef, WebhookInfo};
use crate::store::{self, StoreError};
use render::{Table, opt, time};
use view::WebhookView;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A flag's value that the database or the CLI refuses (exit 2).
    #[error("{0}")]
    Invalid(String),
    /// What was named does not exist (exit 1).
    #[error("{0}")]
    NotFound(String),
    /// The command ran but did not succeed: a test delivery failed or was
    /// not picked up (exit 1).
    #[error("{0}")]
    Failed(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Invalid(_) => 2,
            _ => 1,
        }
    }
}

#[derive(Debug, Args)]
pub struct WebhooksArgs {
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: WebhooksCommand,
}

#[derive(Debug, Subcommand)]
enum WebhooksCommand {
    /// List webhooks (secrets, signing keys and header values are never
    /// shown; a chat hook's URL only by its host and a fingerprint).
    List {
        /// Only this site's (a domain or an id).
        #[arg(long, value_name = "DOMAIN|ID")]
        site: Option<String>,
    },
    /// One webhook's settings and state, as `list` shows them and more.
    Show { id: i64 },
    /// Create a webhook; prints its id and its signing secret (once).
    Add {
        /// The site (a domain or an id).
        #[arg(long, value_name = "DOMAIN|ID")]
        site: String,
        #[command(flatten)]
        // Boxed: the settings are most of the command's size.
        settings: Box<SettingsArgs>,
    },
    /// Change a webhook's settings; flags not given stay as they are.
    Update {
        id: i64,
        #[command(flatten)]
        // Boxed: the settings are most of the command's size.
        settings: Box<SettingsArgs>,
        /// goal.completed for every goal of the site (clears --goal).
        #[arg(long, conflicts_with = "goal")]
        all_goals: bool,
    },
    /// Enable a webhook (also one the daemon disabled).
    Enable { id: i64 },
    /// Disable a webhook.
    Disable { id: i64 },
    /// Delete a webhook with its deliveries.
    Remove { id: i64 },
    /// Replace the signing secret; prints the new one (once).
    RotateSecret {
        id: i64,
        /// How long the old secret keeps signing beside the new one.
        #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = flags::duration)]
        keep_previous: Duration,
    },
    /// Replace the Ed25519 signing key (v1a); prints the new public key for
    /// the receiver.
    RotateSigningKey {
        id: i64,
        /// How long the old key keeps signing beside the new one.
        #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = flags::duration)]
        keep_previous: Duration,
    },
    /// Make an Ed25519 key pair for v1a and print it, touching nothing: the
    /// signing key (whsk_…) for the webhook's signing_key, the public key
    /// (whpk_…) for the receiver.
    Keygen,
    /// Send a webhook.test delivery and wait for its outcome (needs a
    /// running daemon).
    Test {
        id: i64,
        /// How long to wait for a daemon to send it.
        #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = flags::duration)]
        timeout: Duration,
    },
    /// A webhook's deliveries, newest first; or one delivery's attempts.
    Deliveries {
        /// The webhook.
        #[arg(required_unless_present = "delivery")]
        webhook: Option<i64>,
        /// One delivery (msg_…): its payload and every attempt.
        #[arg(long = "id", value_name = "MSG", conflicts_with_all = ["status", "limit"])]
        delivery: Option<String>,
        /// Only deliveries in this status: pending, succeeded or failed.
        #[arg(long, value_parser = flags::status)]
        status: Option<Status>,
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(i64).range(1..=1000))]
        limit: i64,
    },
    /// Send failed deliveries again, with their ids.
    Replay {
        /// The webhook whose failed deliveries to replay (with --since).
        #[arg(required_unless_present = "delivery", requires = "since")]
        webhook: Option<i64>,
        /// Those inserted since then (RFC 3339, or a duration ago: 2h).
        #[arg(long, value_name = "TIME", value_parser = flags::time)]
        since: Option<DateTime<Utc>>,
        /// One delivery (msg_…).
        #[arg(long, value_name = "MSG", conflicts_with_all = ["webhook", "since"])]
        delivery: Option<String>,
    },
}

/// The settings `add` and `update` take.
#[derive(Debug, Args)]
struct SettingsArgs {
    /// Where to POST (https://…).
    #[arg(long, required = false)]
    url: Option<String>,
    /// Comma-separated: traffic.spike, traffic.drop, goal.completed.
    #[arg(long, value_delimiter = ',', value_parser = flags::event_type)]
    events: Option<Vec<EventType>>,
    /// traffic.spike: distinct visitors in the window at or above this.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    spike_threshold: Option<i32>,
    /// traffic.spike: the trailing window (1m to 60m).
    #[arg(long, value_name = "DURATION", value_parser = flags::duration)]
    spike_window: Option<Duration>,
    /// traffic.drop: distinct visitors in 12 hours below this.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    drop_threshold: Option<i32>,
    /// Quiet time after a spike or drop fired.
    #[arg(long, value_name = "DURATION", value_parser = flags::duration)]
    cooldown: Option<Duration>,
    /// goal.completed: only this goal (a name or an id); repeatable.
    #[arg(long, value_name = "NAME|ID")]
    goal: Vec<String>,
    /// goal.completed: at most one delivery per goal per this.
    #[arg(long, value_name = "DURATION", value_parser = flags::duration)]
    goal_interval: Option<Duration>,
    #[arg(long)]
    description: Option<String>,
    /// The shape of the requests: standard (Standard Webhooks), slack or
    /// discord (their incoming webhooks).
    #[arg(long, value_parser = flags::format)]
    format: Option<Format>,
    /// Which signatures each request carries: v1 (HMAC, the secret), v1a
    /// (Ed25519, the signing key) or v1,v1a.
    #[arg(long, value_delimiter = ',', value_parser = flags::scheme)]
    signatures: Option<Vec<Scheme>>,
    /// The Ed25519 key for v1a: `generate` (prints the public key for the
    /// receiver) or a whsk_… key.
    #[arg(long, value_name = "generate|whsk_…")]
    signing_key: Option<String>,
    /// A header sent with every request, as "Name: value"; repeatable. The
    /// value is never shown again.
    #[arg(long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// Drop every header the webhook has (before any --header).
    #[arg(long)]
    clear_headers: bool,
    /// At most this many requests a minute, or none.
    #[arg(long, value_name = "N|none", value_parser = flags::per_minute)]
    max_per_minute: Option<flags::PerMinute>,
}

/// Runs one `webhooks` command, printing to stdout.
pub async fn run(config: &Config, args: WebhooksArgs) -> Result<(), CliError> {
    let out = Output { json: args.json };
    if let WebhooksCommand::Keygen = args.command {
        return keygen(&out);
    }
    let client = store::connect(&config.postgres).await?;
    store::check_schema(&client).await?;
    match args.command {
        WebhooksCommand::Keygen => keygen(&out),
        WebhooksCommand::List { site } => list(&client, &out, site.as_deref()).await,
        WebhooksCommand::Show { id } => show(&client, &out, id).await,
        WebhooksCommand::Add { site, settings } => add(&client, &out, &site, *settings).await,
        WebhooksCommand::Update {
            id,
            settings,
            all_goals,
        } => update(&client, &out, id, *settings, all_goals).await,
        WebhooksCommand::Enable { id } => set_enabled(&client, &out, id, true).await,
        WebhooksCommand::Disable { id } => set_enabled(&client, &out, id, false).await,
        WebhooksCommand::Remove { id } => remove(&client, &out, id).await,
        WebhooksCommand::RotateSecret { id, keep_previous } => {
            rotate_secret(&client, &out, id, keep_previous).await
        }
        WebhooksCommand::RotateSigningKey { id, keep_previous } => {
            rotate_signing_key(&client, &out, id, keep_previous).await
        }
        WebhooksCommand::Test { id, timeout } => test(&client, &out, id, timeout).await,
        WebhooksCommand::Deliveries {
            webhook,
            delivery,
            status,
            limit,
        } => match delivery {
            Some(id) => delivery_detail(&client, &out, &id).await,
            None => deliveries(&client, &out, webhook.unwrap_or_default(), status, limit).await,
        },
        WebhooksCommand::Replay {
            webhook,
            since,
            delivery,
        } => replay(&client, &out, webhook, since, delivery).await,
    }
}

struct Output {
    json: bool,
}

impl Output {
    /// Prints `value` as JSON, or `text()` for people.
    fn print(&self, value: &impl serde::Serialize, text: impl FnOnce() -> String) {
        if self.json {
            print!("{}", render::json(value));
        } else {
            print!("{}", text());
        }
    }
}

async fn list(client: &Client, out: &Output, site: Option<&str>) -> Result<(), CliError> {
    let site_id = match site {
        Some(name) => Some(site_named(client, name).await?.id),
        None => None,
    };
    let webhooks = manage::list_webhooks(client, site_id).await?;
    let views: Vec<WebhookView> = webhooks.iter().map(WebhookView::of).collect();
    out.print(&views, || {
        let mut table = Table::new(vec![
            "id",
            "site",
            "format",
            "url",
            "events",
            "signatures",
            "public key",
            "headers",
            "per min",
            "enabled",
            "last error",
            "disabled because",
            "failing since",
            "last success",
        ]);
        for view in &views {
            let w = view.info;
            table.row(vec![
                w.id.to_string(),
                w.site_domain.clone(),
                w.format.clone(),
                view.url.clone(),
                w.event_types.join(","),
                w.signatures.join(","),
                opt(view.public_key.as_deref()),
                view.header_names(),
                opt(w.max_per_minute),
                if w.enabled { "yes" } else { "no" }.into(),
                opt(w.last_error.as_deref()),
                opt(w.disabled_reason.as_deref()),
                time(w.failing_since),
                time(w.last_success_at),
            ]);
        }
        table.render()
    });
    Ok(())
}

async fn show(client: &Client, out: &Output, id: i64) -> Result<(), CliError> {
    let webhook = webhook_numbered(client, id).await?;
    let view = WebhookView::of(&webhook);
    out.print(&view, || view.text());
    Ok(())
}

#[derive(serde::Serialize)]
struct Created {
    id: i64,
    site: SiteRef,
    secret: String,
    /// The v1a public key, when a signing key was given or generated.
    #[serde(skip_serializing_if = "Option::is_none")]
    public_key: Option<String>,
}

async fn add(
    client: &Client,
    out: &Output,
    site: &str,
    args: SettingsArgs,
) -> Result<(), CliError> {
    let site = site_named(client, site).await?;
    let (Some(url), Some(events)) = (args.url.clone(), args.events.clone()) else {
        return Err(CliError::Invalid("add needs --url and --events".into()));
    };
    let mut settings = Settings {
        url,
        format: Format::Standard.as_str().into(),
        signatures: vec![Scheme::V1.as_str().into()],
        signing_key: None,
        headers: HeaderChange::default(),
        max_per_minute: None,
        description: String::new(),
        event_types: Vec::new(),
        spike_threshold: None,
        spike_window_minutes: 5,
        drop_threshold: None,
        cooldown_minutes: 720,
        goal_ids: None,
        goal_interval_seconds: 60,
    };
    settings.event_types = events.iter().map(|e| e.as_str().to_string()).collect();
    let public_key = apply(client, site.id, &args, &mut settings).await?;
    let secret = new_secret()?;
    let id = manage::insert_webhook(client, site.id, &settings, &secret)
        .await
        .map_err(|e| explain(e, &args))?;
    let created = Created {
        id,
        site,
        secret,
        public_key,
    };
    out.print(&created, || {
        let mut text = format!(
            "created webhook {} for {}\nsigning secret (shown once; keep it for your receiver): {}\n",
            created.id, created.site.domain, created.secret
        );
        if let Some(public) = &created.public_key {
            text.push_str(&public_key_line(public));
        }
        text
    });
    Ok(())
}

async fn update(
    client: &Client,
    out: &Output,
    id: i64,
    args: SettingsArgs,
    all_goals: bool,
) -> Result<(), CliError> {
    let webhook = webhook_numbered(client, id).await?;
    let mut settings = Settings::of(&webhook);
    if let Some(url) = &args.url {
        settings.url = url.clone();
    }
    if let Some(events) = &args.events {
        settings.event_types = events.iter().map(|e| e.as_str().to_string()).collect();
    }
    if all_goals {
        settings.goal_ids = None;
    }
    let public_key = apply(client, webhook.site_id, &args, &mut settings).await?;
    let written = manage::update_webhook(client, id, &settings, webhook.updated_at)
        .await
        .map_err(|e| explain(e, &args))?;
    if !written {
        return Err(CliError::Failed(format!(
            "webhook {id} changed while it was being updated; run the command again"
        )));
    }
    let webhook = webhook_numbered(client, id).await?;
    out.print(&WebhookView::of(&webhook), || {
        let mut text = format!("updated webhook {id}\n");
        if let Some(public) = &public_key {
            text.push_str(&public_key_line(public));
        }
        text
    });
    Ok(())
}

fn public_key_line(public: &str) -> String {
    format!("v1a public key (for your receiver): {public}\n")
}

/// Applies the flags given (other than --url and --events) to `settings`;
/// returns the public key of a signing key given or generated.
async fn apply(
    client: &Client,
    site_id: i64,
    args: &SettingsArgs,
    settings: &mut Settings,
) -> Result<Option<String>, CliError> {
    if let Some(n) = args.spike_threshold {
        settings.spike_threshold = Some(n);
    }
    if let Some(window) = args.spike_window {
        settings.spike_window_minutes =
            flags::whole("--spike-window", window, 60, "minutes").map_err(CliError::Invalid)?;
    }
    if let Some(n) = args.drop_threshold {
        settings.drop_threshold = Some(n);
    }
    if let Some(cooldown) = args.cooldown {
        settings.cooldown_minutes =
            flags::whole("--cooldown", cooldown, 60, "minutes").map_err(CliError::Invalid)?;
    }
    if let Some(interval) = args.goal_interval {
        settings.goal_interval_seconds =
            flags::whole("--goal-interval", interval, 1, "seconds").map_err(CliError::Invalid)?;
    }
    if let Some(description) = &args.description {
        settings.description = description.clone();
    }
    if !args.goal.is_empty() {
        let mut ids = Vec::with_capacity(args.goal.len());
        for name in &args.goal {
            match manage::find_goal(client, site_id, name).await? {
                Some(id) => ids.push(id),
                None => {
                    return Err(CliError::Invalid(format!(
                        "--goal: the site has no goal named or numbered {name:?}"
                    )));
                }
            }
        }
        ids.sort_unstable();
        ids.dedup();
        settings.goal_ids = Some(ids);
    }
    apply_receiver_options(args, settings)
}

/// The flags of issue-11's receiver options: format, signatures, signing
/// key, headers, rate. Secret values are checked here rather than by clap,
/// so that no error repeats them.
fn apply_receiver_options(
    args: &SettingsArgs,
    settings: &mut Settings,
) -> Result<Option<String>, CliError> {
    if let Some(format) = args.format {
        settings.format = format.as_str().into();
    }
    if let Some(schemes) = &args.signatures {
        let mut names: Vec<String> = Vec::new();
        for scheme in schemes {
            if !names.iter().any(|n| n == scheme.as_str()) {
                names.push(scheme.as_str().into());
            }
        }
        settings.signatures = names;
    }
    if let Some(flags::PerMinute(n)) = args.max_per_minute {
        settings.max_per_minute = n;
    }
    settings.headers.clear = args.clear_headers;
    for given in &args.headers {
        let (name, value) = flags::header(given).map_err(CliError::Invalid)?;
        // The last of a name given twice (in any case) wins.
        let set = &mut settings.headers.set;
        set.retain(|other, _| !other.eq_ignore_ascii_case(&name));
        set.insert(name, serde_json::Value::String(value));
    }
    headers::parse(&serde_json::Value::Object(settings.headers.set.clone())).map_err(|e| {
        CliError::Invalid(format!(
            "--header: {}",
            e.strip_prefix("headers: ").unwrap_or(&e)
        ))
    })?;
    let Some(given) = &args.signing_key else {
        return Ok(None);
    };
    let key = if given == "generate" {
        keys::generate().map_err(no_randomness)?
    } else {
        keys::parse("--signing-key", given).map_err(CliError::Invalid)?
    };
    settings.signing_key = Some(keys::secret(&key));
    Ok(Some(keys::public(&key)))
}

/// A refused write, as a message naming the flag it came from. Every
/// constraint of `webhooks` (migrations/postgres/V1__webhooks.sql,
/// V12__receiver_options.sql) that a flag can break is named here; others
/// keep Postgres's words.
fn explain(e: StoreError, args: &SettingsArgs) -> CliError {
    let Some(constraint) = e.constraint().map(str::to_string) else {
        return CliError::Store(e);
    };
    let required_or_low = |flag: &str, given: Option<i32>, event: &str| match given {
        Some(_) => format!("{flag} must be at least 1"),
        None => format!("{flag} is required when --events includes {event}"),
    };
    let message = match constraint.as_str() {
        "webhooks_url_format" => {
            "--url must be an http:// or https:// URL with a host, at most 2048 characters".into()
        }
        "webhooks_description_length" => "--description must be at most 500 characters".into(),
        "webhooks_event_types_known" => {
            "--events must name 1 to 3 of traffic.spike, traffic.drop, goal.completed".into()
        }
        "webhooks_spike_threshold" => {
            required_or_low("--spike-threshold", args.spike_threshold, "traffic.spike")
        }
        "webhooks_drop_threshold" => {
            required_or_low("--drop-threshold", args.drop_threshold, "traffic.drop")
        }
        "webhooks_spike_window" => "--spike-window must be between 1m and 60m".into(),
        "webhooks_cooldown" => "--cooldown must be between 1m and 30d".into(),
        "webhooks_goal_ids" => "--goal may name at most 1000 goals".into(),
        "webhooks_goal_interval" => "--goal-interval must be between 1s and 24h".into(),
        "webhooks_format_known" => "--format must be standard, slack or discord".into(),
        "webhooks_signatures_known" => "--signatures must be v1, v1a or v1,v1a".into(),
        "webhooks_v1a_needs_signing_key" => {
            "--signatures v1a needs a signing key: add --signing-key generate".into()
        }
        "webhooks_signing_key_format" => {
            "--signing-key must be generate, or \"whsk_\" and the base64 of 32 or 64 bytes".into()
        }
        "webhooks_headers_valid" => format!(
            "--header: a webhook may have at most {} headers, each a valid name that the daemon does not set, with a value of visible ASCII characters",
            headers::MAX_HEADERS
        ),
        "webhooks_max_per_minute" => "--max-per-minute must be between 1 and 6000, or none".into(),
        "webhooks_per_site_limit" => format!("--site: {}", e.message()),
        "webhooks_site_id_fkey" => "--site: no such site".into(),
        _ => format!("{} (constraint {constraint})", e.message()),
    };
    CliError::Invalid(message)
}

async fn set_enabled(
    client: &Client,
    out: &Output,
    id: i64,
    enabled: bool,
) -> Result<(), CliError> {
    if !manage::set_enabled(client, id, enabled).await? {
        return Err(no_webhook(id));
    }
    let webhook = webhook_numbered(client, id).await?;
    let verb = if enabled { "enabled" } else { "disabled" };
    out.print(&WebhookView::of(&webhook), || {
        format!("{verb} webhook {id}\n")
    });
    Ok(())
}

#[derive(serde::Serialize)]
struct Removed {
    id: i64,
    removed: bool,
}

async fn remove(client: &Client, out: &Output, id: i64) -> Result<(), CliError> {
    if !manage::delete_webhook(client, id).await? {
        return Err(no_webhook(id));
    }
    out.print(&Removed { id, removed: true }, || {
        format!("removed webhook {id} and its deliveries\n")
    });
    Ok(())
}

#[derive(serde::Serialize)]
struct Rotated {
    id: i64,
    secret: String,
    previous_secret_expires_at: Option<DateTime<Utc>>,
}

async fn rotate_secret(
    client: &Client,
    out: &Output,
    id: i64,
    keep_previous: Duration,
) -> Result<(), CliError> {
    let secret = new_secret()?;
    let Some(expires) =
        manage::rotate_secret(client, id, &secret, keep_previous.as_secs_f64()).await?
    else {
        return Err(no_webhook(id));
    };
    let rotated = Rotated {
        id,
        secret,
        previous_secret_expires_at: expires,
    };
    out.print(&rotated, || {
        let previous = match expires {
            Some(at) => format!("the previous secret also signs until {}", time(Some(at))),
            None => "the previous secret no longer signs".into(),
        };
        format!(
            "new signing secret for webhook {id} (shown once): {}\n{previous}\n",
            rotated.secret
        )
    });
    Ok(())
}

#[derive(serde::Serialize)]
struct RotatedKey {
    id: i64,
    public_key: String,
    previous_signing_key_expires_at: Option<DateTime<Utc>>,
}

async fn rotate_signing_key(
    client: &Client,
    out: &Output,
    id: i64,
    keep_previous: Duration,
) -> Result<(), CliError> {
    let key = keys::generate().map_err(no_randomness)?;
    let Some(expires) =
        manage::rotate_signing_key(client, id, &keys::secret(&key), keep_previous.as_secs_f64())
            .await?
    else {
        return Err(no_webhook(id));
    };
    let rotated = RotatedKey {
        id,
        public_key: keys::public(&key),
        previous_signing_key_expires_at: expires,
    };
    out.print(&rotated, || {
        let previous = match expires {
            Some(at) => format!("the previous key also signs until {}", time(Some(at))),
            None => "no previous key signs".into(),
        };
        format!(
            "new signing key for webhook {id}; its public key (for your receiver): {}\n{previous}\n",
            rotated.public_key
        )
    });
    Ok(())
}

#[derive(serde::Serialize)]
struct KeyPair {
    signing_key: String,
    public_key: String,
}

/// `keygen`: a key pair, printed, nothing stored.
fn keygen(out: &Output) -> Result<(), CliError> {
    let key = keys::generate().map_err(no_randomness)?;
    let pair = KeyPair {
        signing_key: keys::secret(&key),
        public_key: keys::public(&key),
    };
    out.print(&pair, || {
        format!(
            "signing key (the webhook's signing_key; keep it secret): {}\npublic key (for the receiver): {}\n",
            pair.signing_key, pair.public_key
        )
    });
    Ok(())
}

#[derive(serde::Serialize)]
struct TestResult {
    delivery: DeliveryInfo,
    attempt: Option<manage::AttemptInfo>,
}

async fn test(client: &Client, out: &Output, id: i64, timeout: Duration) -> Result<(), CliError> {
    let webhook = webhook_numbered(client, id).await?;
    let payload = manage::test_payload(webhook.site_id, webhook.id, Utc::now());
    let delivery_id = manage::insert_test_delivery(client, id, &payload).await?;
    let delivery = wait_for_outcome(client, &delivery_id, timeout).await?;
    let attempts = manage::attempts_of(client, &delivery_id).await?;
    let result = TestResult {
        delivery,
        attempt: attempts.into_iter().last(),
    };
    out.print(&result, || describe_test(&result));
    match (result.delivery.status, &result.attempt) {
        (Status::Succeeded, _) => Ok(()),
        _ if out.json => Err(CliError::Failed(String::new())),
        _ => Err(CliError::Failed("the test delivery did not succeed".into())),
    }
}

/// Polls until a daemon has tried the delivery (or given it up).
async fn wait_for_outcome(
    client: &Client,
    id: &str,
    timeout: Duration,
) -> Result<DeliveryInfo, CliError> {
    let deadline = Instant::now() + timeout;
    loop {
        let delivery = manage::get_delivery(client, id)
            .await?
            .ok_or_else(|| CliError::Failed(format!("delivery {id} disappeared")))?;
        if delivery.status != Status::Pending || delivery.attempts > 0 {
            return Ok(delivery);
        }
        if Instant::now() >= deadline {
            return Err(CliError::Failed(format!(
                "no daemon picked delivery {id} up within {} s: is `plausible-webhooks run` running against this database?",
                timeout.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn describe_test(result: &TestResult) -> String {
    let d = &result.delivery;
    let mut text = format!("delivery {} {}\n", d.id, d.status.as_str());
    match &result.attempt {
        Some(a) => {
            text.push_str(&format!(
                "status code: {}\nduration: {} ms\n",
                opt(a.status_code),
                a.duration_ms
            ));
            if let Some(error) = &a.error {
                text.push_str(&format!("error: {error}\n"));
            }
            if let Some(snippet) = a.response_snippet.as_deref().filter(|s| !s.is_empty()) {
                let snippet: String = snippet.chars().take(500).collect();
                text.push_str(&format!("response: {snippet}\n"));
            }
            if d.status == Status::Pending {
                text.push_str(&format!("next attempt at {}\n", time(d.next_attempt_at)));
            }
        }
        None => text.push_str(&format!("not sent: {}\n", opt(d.last_error.as_deref()))),
    }
    text
}

async fn deliveries(
    client: &Client,
    out: &Output,
    webhook: i64,
    status: Option<Status>,
    limit: i64,
) -> Result<(), CliError> {
    webhook_numbered(client, webhook).await?;
    let rows = manage::list_deliveries(client, webhook, status, limit).await?;
    out.print(&rows, || {
        let mut table = Table::new(vec![
            "id",
            "event",
            "status",
            "attempts",
            "code",
            "error",
            "inserted",
            "next attempt",
        ]);
        for d in &rows {
            table.row(vec![
                d.id.clone(),
                d.event_type.clone(),
                d.status.as_str().to_string(),
                d.attempts.to_string(),
                opt(d.last_status_code),
                opt(d.last_error.as_deref()),
                time(Some(d.inserted_at)),
                if d.status == Status::Pending {
                    time(d.next_attempt_at)
                } else {
                    "-".into()
                },
            ]);
        }
        table.render()
    });
    Ok(())
}

#[derive(serde::Serialize)]
struct Detail {
    delivery: DeliveryInfo,
    attempts: Vec<manage::AttemptInfo>,
}

async fn delivery_detail(client: &Client, out: &Output, id: &str) -> Result<(), CliError> {
    let delivery = manage::get_delivery(client, id)
        .await?
        .ok_or_else(|| CliError::NotFound(format!("no delivery {id}")))?;
    let attempts = manage::attempts_of(client, id).await?;
    let detail = Detail { delivery, attempts };
    out.print(&detail, || {
        let d = &detail.delivery;
        let mut text = format!(
            "delivery {} ({}) to webhook {}: {} after {} attempt(s)\n",
            d.id,
            d.event_type,
            d.webhook_id,
            d.status.as_str(),
            d.attempts
        );
        if d.status == Status::Pending {
            text.push_str(&format!("next attempt at {}\n", time(d.next_attempt_at)));
        }
        let mut table = Table::new(vec![
            "attempt", "started", "ms", "code", "error", "response",
        ]);
        for a in &detail.attempts {
            table.row(vec![
                a.attempt.to_string(),
                time(Some(a.started_at)),
                a.duration_ms.to_string(),
                opt(a.status_code),
                opt(a.error.as_deref()),
                opt(a.response_snippet.as_deref()),
            ]);
        }
        text.push_str(&table.render());
        text
    });
    Ok(())
}

#[derive(serde::Serialize)]
struct Replayed {
    replayed: Vec<String>,
}

async fn replay(
    client: &Client,
    out: &Output,
    webhook: Option<i64>,
    since: Option<DateTime<Utc>>,
    delivery: Option<String>,
) -> Result<(), CliError> {
    let replayed = match (delivery, webhook, since) {
        (Some(id), _, _) => {
            if manage::get_delivery(client, &id).await?.is_none() {
                return Err(CliError::NotFound(format!("no delivery {id}")));
            }
            if !manage::replay_delivery(client, &id).await? {
                return Err(CliError::Invalid(format!(
                    "--delivery: {id} has not failed, so there is nothing to replay"
                )));
            }
            vec![id]
        }
        (None, Some(webhook), Some(since)) => {
            webhook_numbered(client, webhook).await?;
            manage::replay_since(client, webhook, since).await?
        }
        _ => {
            return Err(CliError::Invalid(
                "replay needs a webhook id with --since, or --delivery".into(),
            ));
        }
    };
    let result = Replayed { replayed };
    out.print(&result, || {
        format!(
            "replayed {} failed deliver{}\n",
            result.replayed.len(),
            if result.replayed.len() == 1 {
                "y"
            } else {
                "ies"
            }
        )
    });
    Ok(())
}

async fn site_named(client: &Client, name: &str) -> Result<SiteRef, CliError> {
    manage::find_site(client, name)
        .await?
        .ok_or_else(|| CliError::Invalid(format!("--site: no site with domain or id {name:?}")))
}

async fn webhook_numbered(client: &Client, id: i64) -> Result<WebhookInfo, CliError> {
    manage::get_webhook(client, id)
        .await?
        .ok_or_else(|| no_webhook(id))
}

fn no_webhook(id: i64) -> CliError {
    CliError::NotFound(format!("no webhook {id}"))
}

/// A Standard Webhooks signing secret: `whsec_` and 32 random bytes in
/// base64.
fn new_secret() -> Result<String, CliError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(no_randomness)?;
    Ok(format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    ))
}

fn no_randomness(e: getrandom::Error) -> CliError {
    CliError::Failed(format!("the operating system gave no random bytes: {e}"))
}
