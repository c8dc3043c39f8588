//! The binary's edge: command-line parsing, exit codes, signals.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use plausible_webhooks::config::{Config, Sources};
use plausible_webhooks::{daemon, migrate, telemetry};

/// Exit code for a config that cannot be read or is invalid.
const EXIT_BAD_CONFIG: u8 = 2;

#[derive(Parser)]
#[command(
    name = "plausible-webhooks",
    version,
    about = "Webhook notifications for Plausible Analytics"
)]
struct Cli {
    /// The TOML config file (else $PLAUSIBLE_WEBHOOKS_CONFIG; environment
    /// variables PLAUSIBLE_WEBHOOKS_<SECTION>__<KEY> override it).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon until SIGTERM or SIGINT.
    Run,
    /// Apply the Postgres and ClickHouse migrations (idempotent).
    Migrate,
    /// Print the effective config with secrets redacted.
    CheckConfig,
    /// Manage webhooks: list, add, update, test, deliveries, replay, …
    Webhooks(plausible_webhooks::cli::WebhooksArgs),
    /// Check both connections, the schemas, the views, the trigger lag and
    /// the outbox; exit code 1 if a check fails.
    Doctor {
        #[arg(long)]
        json: bool,
    },
    /// Remove everything the daemon created in both databases.
    Uninstall {
        /// Do not ask.
        #[arg(long)]
        yes: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let sources = Sources::from_process(cli.config);
    if let Command::CheckConfig = cli.command {
        return match Config::render_sources(&sources) {
            Ok(rendered) => {
                print!("{rendered}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("plausible-webhooks: {e}");
                ExitCode::from(EXIT_BAD_CONFIG)
            }
        };
    }
    let config = match Config::load(&sources) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("plausible-webhooks: {e}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };

    match cli.command {
        Command::Webhooks(args) => return webhooks(&config, args),
        Command::Doctor { json } => {
            return tool(async {
                if plausible_webhooks::cli::doctor::run(&config, json).await {
                    Ok(())
                } else {
                    Err(plausible_webhooks::cli::CliError::Failed(String::new()))
                }
            });
        }
        Command::Uninstall { yes } => {
            return tool(plausible_webhooks::cli::uninstall::run(&config, yes));
        }
        Command::Run => {
            if let Some(refusal) = config.http.refusal() {
                eprintln!("plausible-webhooks: refusing to start: {refusal}");
                return ExitCode::from(EXIT_BAD_CONFIG);
            }
        }
        _ => {}
    }

    if let Err(e) = telemetry::init_logs(&config.log) {
        eprintln!("plausible-webhooks: {e}");
        return ExitCode::from(EXIT_BAD_CONFIG);
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("plausible-webhooks: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run => run(config).await,
            Command::Migrate => {
                let report = migrate::migrate(&config).await?;
                tracing::info!(
                    postgres_applied = ?report.postgres,
                    clickhouse_applied = ?report.clickhouse,
                    "migrations up to date"
                );
                Ok(())
            }
            _ => Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "exiting");
            eprintln!("plausible-webhooks: {e:#}");
            let refused = matches!(
                e.downcast_ref::<daemon::DaemonError>(),
                Some(daemon::DaemonError::Refused { .. })
            ) || e
                .downcast_ref::<migrate::MigrateError>()
                .is_some_and(|m| m.is_config_refusal());
            if refused {
                ExitCode::from(EXIT_BAD_CONFIG)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// The `webhooks` commands: their output on stdout, errors on stderr, no
/// logs; exit 2 for a refused flag, 1 for anything else that failed.
fn webhooks(config: &Config, args: plausible_webhooks::cli::WebhooksArgs) -> ExitCode {
    tool(plausible_webhooks::cli::run(config, args))
}

/// Runs an operator's command (`webhooks`, `doctor`, `uninstall`) to its
/// end: output on stdout, errors on stderr, the error's exit code.
fn tool(command: impl Future<Output = Result<(), plausible_webhooks::cli::CliError>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("plausible-webhooks: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let message = e.to_string();
            if !message.is_empty() {
                eprintln!("plausible-webhooks: {message}");
            }
            ExitCode::from(e.exit_code())
        }
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    let metrics = telemetry::init_metrics().context("cannot set up metrics")?;
    daemon::run(config, Some(metrics), shutdown_signal()).await?;
    Ok(())
}

/// Resolves on the first SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for sigterm");
            return std::future::pending().await;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!(signal = "SIGTERM", "shutdown requested"),
        _ = tokio::signal::ctrl_c() => tracing::info!(signal = "SIGINT", "shutdown requested"),
    }
}
