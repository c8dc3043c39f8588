//! Logical replication's Postgres side: the replication connection's
//! settings (from `postgres.url`, TLS as for every other connection), the
//! publications `migrate` keeps, the slots (look-up, creation, drop, lag),
//! the NOTIFY triggers that replication mode switches off, and the check
//! of what the mode needs of the server. The stream itself is read by
//! `changes::replication`.

use std::path::PathBuf;
use std::time::Duration;

use pgwire_replication::{Lsn, PgWireError, ReplicationClient, ReplicationConfig, TlsConfig};
use tokio_postgres::GenericClient;

use super::tls::{PgTls, SslMode};
use super::{StoreError, pg_config};
use crate::config::PostgresConfig;

/// The publication of the registry's tables (`webhooks`, `goals`, `sites`).
pub const PUBLICATION: &str = "plausible_webhooks";
/// The publication of the outbox (`webhook_deliveries`, inserts and
/// updates of the columns the schedule needs).
pub const OUTBOX_PUBLICATION: &str = "plausible_webhooks_outbox";
/// Every publication the stream reads, as `migrate` creates them.
pub const PUBLICATIONS: [&str; 2] = [PUBLICATION, OUTBOX_PUBLICATION];

/// The oldest server with publication column lists.
const MIN_VERSION: i32 = 150_000;

#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the replication connection cannot use postgres.url: {0}")]
    Settings(String),
    #[error(
        "replication slot {slot} is in use by another process{}: each replica needs a slot of its own; give each its own changes.replica_name",
        pid.map(|p| format!(" (PID {p})")).unwrap_or_default()
    )]
    SlotBusy { slot: String, pid: Option<i32> },
    #[error("replication slot {slot} can no longer be read: {reason}")]
    SlotInvalidated { slot: String, reason: String },
    #[error("the replication stream did not start within {0:?} (postgres.connect_timeout_secs)")]
    StartTimeout(Duration),
    #[error("replication slot {slot} does not exist")]
    SlotMissing { slot: String },
    #[error("replication stream: {0}")]
    Stream(#[source] PgWireError),
}

/// A slot as `pg_replication_slots` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    pub name: String,
    pub active: bool,
    /// The backend that holds it, while active.
    pub active_pid: Option<i32>,
    /// `reserved`, `extended`, `unreserved` or `lost` (invalidated by
    /// `max_slot_wal_keep_size`).
    pub wal_status: Option<String>,
    /// How far its confirmed position is behind the server's WAL.
    pub lag_bytes: Option<i64>,
}

impl Slot {
    /// The slot can never be read again: its WAL was removed.
    pub fn is_lost(&self) -> bool {
        self.wal_status.as_deref() == Some("lost")
    }

    fn from_row(row: &tokio_postgres::Row) -> Result<Slot, StoreError> {
        Ok(Slot {
            name: row.try_get(0)?,
            active: row.try_get(1)?,
            active_pid: row.try_get(2)?,
            wal_status: row.try_get(3)?,
            lag_bytes: row.try_get(4)?,
        })
    }
}

/// One slot, if it exists.
pub async fn slot(client: &impl GenericClient, name: &str) -> Result<Option<Slot>, StoreError> {
    let row = client
        .query_opt(include_str!("sql/replication/slot.sql"), &[&name])
        .await?;
    row.as_ref().map(Slot::from_row).transpose()
}

/// This database's logical slots whose names start with `prefix`.
pub async fn slots(client: &impl GenericClient, prefix: &str) -> Result<Vec<Slot>, StoreError> {
    let rows = client
        .query(include_str!("sql/replication/slots.sql"), &[&prefix])
        .await?;
    rows.iter().map(Slot::from_row).collect()
}

/// Creates a `pgoutput` slot; changes committed after it returns are kept
/// for it.
pub async fn create_slot(client: &impl GenericClient, name: &str) -> Result<(), StoreError> {
    client
        .query_one(include_str!("sql/replication/slot_create.sql"), &[&name])
        .await?;
    Ok(())
}

/// Drops a slot; fails while a session holds it.
pub async fn drop_slot(client: &impl GenericClient, name: &str) -> Result<(), StoreError> {
    client
        .query_one(include_str!("sql/replication/slot_drop.sql"), &[&name])
        .await?;
    Ok(())
}

/// Waits (at most `limit`) until the transactions `xids` are visible to
/// new snapshots: a streamed commit can arrive just before it is. Returns
/// false if some still are not after `limit`.
pub async fn until_visible(
    client: &impl GenericClient,
    xids: &[u32],
    limit: Duration,
) -> Result<bool, StoreError> {
    if xids.is_empty() {
        return Ok(true);
    }
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if not_visible(client, xids).await? == 0 {
            return Ok(true);
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// How many of `xids` (32-bit, as a stream's Begin names them) a snapshot
/// taken now does not see as committed, including the newest transaction
/// (at or past the snapshot's xmax), which no snapshot lists as running.
pub async fn not_visible(client: &impl GenericClient, xids: &[u32]) -> Result<i64, StoreError> {
    let ids: Vec<i64> = xids.iter().map(|x| i64::from(*x)).collect();
    Ok(client
        .query_one(include_str!("sql/replication/xacts_running.sql"), &[&ids])
        .await?
        .try_get(0)?)
}

/// `uninstall`: drops every slot of this database whose name starts with
/// `prefix`, and `also` (a configured name), unless a session holds it.
/// Returns the slots dropped and those held, with the holder's PID.
pub async fn drop_slots(
    client: &impl GenericClient,
    prefix: &str,
    also: &str,
) -> Result<(Vec<String>, Vec<Slot>), StoreError> {
    let mut found = slots(client, prefix).await?;
    if !found.iter().any(|s| s.name == also)
        && let Some(own) = slot(client, also).await?
    {
        found.push(own);
    }
    let (mut dropped, mut held) = (Vec::new(), Vec::new());
    for s in found {
        if s.active {
            held.push(s);
        } else {
            drop_slot(client, &s.name).await?;
            dropped.push(s.name);
        }
    }
    Ok((dropped, held))
}

/// `migrate` in replication mode: creates or corrects the publications.
pub async fn ensure_publications(client: &impl GenericClient) -> Result<(), StoreError> {
    client
        .batch_execute(include_str!("sql/replication/publications.sql"))
        .await?;
    Ok(())
}

/// Which of [`PUBLICATIONS`] exist.
pub async fn publications(client: &impl GenericClient) -> Result<Vec<String>, StoreError> {
    let rows = client
        .query(
            include_str!("sql/replication/publications_present.sql"),
            &[],
        )
        .await?;
    rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
}

/// `uninstall`: drops the publications.
pub async fn drop_publications(client: &impl GenericClient) -> Result<(), StoreError> {
    client
        .batch_execute(include_str!("sql/replication/publications_drop.sql"))
        .await?;
    Ok(())
}

/// `migrate`: enables the NOTIFY triggers (notify mode) or disables them
/// (replication mode).
pub async fn set_notify_triggers(
    client: &impl GenericClient,
    enabled: bool,
) -> Result<(), StoreError> {
    let sql = if enabled {
        include_str!("sql/replication/notify_triggers_enable.sql")
    } else {
        include_str!("sql/replication/notify_triggers_disable.sql")
    };
    client.batch_execute(sql).await?;
    Ok(())
}

/// The NOTIFY triggers that are disabled, by name.
pub async fn disabled_notify_triggers(
    client: &impl GenericClient,
) -> Result<Vec<String>, StoreError> {
    let rows = client
        .query(
            include_str!("sql/replication/notify_triggers_disabled.sql"),
            &[],
        )
        .await?;
    rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
}

/// What replication mode lacks on this server, in words naming
/// `changes.source`; empty when it can run.
pub async fn prerequisites(client: &impl GenericClient) -> Result<Vec<String>, StoreError> {
    let row = client
        .query_one(include_str!("sql/replication/prerequisites.sql"), &[])
        .await?;
    let wal_level: String = row.try_get(0)?;
    let may_replicate: Option<bool> = row.try_get(1)?;
    let role: String = row.try_get(2)?;
    let version: i32 = row.try_get(3)?;
    let mut problems = Vec::new();
    if version < MIN_VERSION {
        problems.push(format!(
            "changes.source = \"replication\" needs PostgreSQL 15 or newer (publication column lists); this server is {}.{}",
            version / 10_000,
            version % 10_000
        ));
    }
    if wal_level != "logical" {
        problems.push(format!(
            "changes.source = \"replication\" needs wal_level = logical, but the server has wal_level = {wal_level}: set it (postgres -c wal_level=logical) and restart Postgres, or use changes.source = \"notify\""
        ));
    }
    if may_replicate != Some(true) {
        problems.push(format!(
            "changes.source = \"replication\" needs a user with the REPLICATION attribute, but {role} lacks it: ALTER ROLE {role} REPLICATION, or use changes.source = \"notify\""
        ));
    }
    if problems.is_empty() {
        let present = publications(client).await?;
        if PUBLICATIONS.iter().any(|p| !present.iter().any(|q| q == p)) {
            problems.push(
                "changes.source = \"replication\" needs the publications that `migrate` creates: run `plausible-webhooks migrate` with changes.source = \"replication\"".into(),
            );
        }
    }
    Ok(problems)
}

/// Where and how to open replication connections to one slot.
#[derive(Clone)]
pub struct Target {
    config: ReplicationConfig,
    /// `postgres.connect_timeout_secs`: how long connecting and starting
    /// the stream may take.
    connect_timeout: Duration,
}

impl Target {
    /// Settings from `postgres` (host, port, user, password, database and
    /// TLS, as for the pool) for `slot`.
    pub fn new(
        postgres: &PostgresConfig,
        slot: &str,
        application_name: &str,
    ) -> Result<Target, ReplicationError> {
        let pg = pg_config(postgres)?;
        let tls = PgTls::from_config(postgres).map_err(ReplicationError::Settings)?;
        let user = pg
            .get_user()
            .ok_or_else(|| ReplicationError::Settings("it names no user".into()))?
            .to_string();
        let password = pg
            .get_password()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .unwrap_or_default();
        let database = pg.get_dbname().unwrap_or(&user).to_string();
        let port = pg.get_ports().first().copied().unwrap_or(5432);
        let publications: Vec<&str> = PUBLICATIONS.to_vec();
        let config = match pg.get_hosts().first() {
            Some(tokio_postgres::config::Host::Unix(dir)) => ReplicationConfig::unix(
                dir.display().to_string(),
                port,
                user,
                password,
                database,
                slot,
                publications,
            ),
            Some(tokio_postgres::config::Host::Tcp(host)) => {
                ReplicationConfig::new(host, user, password, database, slot, publications)
                    .with_port(port)
                    .with_tls(tls_config(&tls))
            }
            None => {
                ReplicationConfig::new("localhost", user, password, database, slot, publications)
                    .with_port(port)
                    .with_tls(tls_config(&tls))
            }
        };
        Ok(Target {
            config: config
                .with_binary(true)
                .with_start_lsn(Lsn::ZERO)
                .with_status_interval(Duration::from_secs(1))
                .with_wakeup_interval(Duration::from_secs(5))
                .with_buffer_size(8192)
                .with_application_name(application_name),
            connect_timeout: Duration::from_secs(postgres.connect_timeout_secs),
        })
    }

    pub fn slot(&self) -> &str {
        &self.config.slot
    }

    /// Opens the stream at the slot's confirmed position; returns once the
    /// server accepted START_REPLICATION (the slot is then this session's).
    /// A server that accepts the connection but never answers fails it
    /// after `postgres.connect_timeout_secs`.
    pub async fn start(&self) -> Result<ReplicationClient, ReplicationError> {
        let started = async {
            let mut client = ReplicationClient::connect_gated(self.config.clone())
                .await
                .map_err(|e| self.classify(e))?;
            client.start().await.map_err(|e| self.classify(e))?;
            client.wait_started().await.map_err(|e| self.classify(e))?;
            Ok(client)
        };
        tokio::time::timeout(self.connect_timeout, started)
            .await
            .map_err(|_| ReplicationError::StartTimeout(self.connect_timeout))?
    }

    /// Turns the server's refusals of a slot into errors that say what to
    /// do.
    pub fn classify(&self, e: PgWireError) -> ReplicationError {
        let slot = self.config.slot.clone();
        let PgWireError::Server(message) = &e else {
            return ReplicationError::Stream(e);
        };
        if message.contains("SQLSTATE 55006") || message.contains("is active for PID") {
            let pid = message
                .split("is active for PID ")
                .nth(1)
                .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|digits| digits.parse().ok());
            ReplicationError::SlotBusy { slot, pid }
        } else if message.contains("SQLSTATE 42704") {
            ReplicationError::SlotMissing { slot }
        } else if message.contains("invalidated") || message.contains("can no longer get changes") {
            ReplicationError::SlotInvalidated {
                slot,
                reason: message.clone(),
            }
        } else {
            ReplicationError::Stream(e)
        }
    }
}

/// libpq's `sslmode` and `sslrootcert` as the replication transport takes
/// them: the same checks as the pool's connector, with `require` and a
/// root certificate checking the chain (as libpq). Without a root
/// certificate, a verifying mode trusts Mozilla's roots.
pub fn tls_config(tls: &PgTls) -> TlsConfig {
    let root: Option<PathBuf> = tls.root_cert.clone();
    match tls.mode {
        SslMode::Disable => TlsConfig::disabled(),
        SslMode::Prefer => TlsConfig {
            mode: pgwire_replication::SslMode::Prefer,
            ..TlsConfig::default()
        },
        SslMode::Require if root.is_some() => TlsConfig::verify_ca(root),
        SslMode::Require => TlsConfig::require(),
        SslMode::VerifyCa => TlsConfig::verify_ca(root),
        SslMode::VerifyFull => TlsConfig::verify_full(root),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls(mode: SslMode, root: Option<&str>) -> TlsConfig {
        tls_config(&PgTls {
            mode,
            root_cert: root.map(PathBuf::from),
        })
    }

    #[test]
    fn libpq_modes_map_onto_the_transport() {
        use pgwire_replication::SslMode as Wire;
        assert_eq!(tls(SslMode::Disable, None).mode, Wire::Disable);
        assert_eq!(tls(SslMode::Prefer, None).mode, Wire::Prefer);
        assert_eq!(tls(SslMode::Require, None).mode, Wire::Require);
        let chain = tls(SslMode::Require, Some("/ca.pem"));
        assert_eq!(chain.mode, Wire::VerifyCa);
        assert_eq!(chain.ca_pem_path, Some(PathBuf::from("/ca.pem")));
        assert_eq!(tls(SslMode::VerifyCa, None).mode, Wire::VerifyCa);
        let full = tls(SslMode::VerifyFull, Some("/ca.pem"));
        assert_eq!(full.mode, Wire::VerifyFull);
        assert_eq!(full.ca_pem_path, Some(PathBuf::from("/ca.pem")));
        assert_eq!(tls(SslMode::VerifyFull, None).ca_pem_path, None);
    }

    #[test]
    fn a_busy_slot_names_the_pid_and_the_fix() {
        let config = PostgresConfig {
            url: crate::config::PostgresUrl::new("postgres://u@h/db"),
            pool_size: 1,
            connect_timeout_secs: 1,
            sslmode: "disable".into(),
            sslrootcert: PathBuf::new(),
        };
        let target = Target::new(&config, "plausible_webhooks_a", "test").unwrap();
        let e = target.classify(PgWireError::Server(
            "ERROR: replication slot \"plausible_webhooks_a\" is active for PID 4242 (SQLSTATE 55006)"
                .into(),
        ));
        let text = e.to_string();
        assert!(text.contains("PID 4242"), "{text}");
        assert!(text.contains("changes.replica_name"), "{text}");
        let e = target.classify(PgWireError::Server(
            "ERROR: can no longer get changes from replication slot \"x\" (SQLSTATE 55000)".into(),
        ));
        assert!(matches!(e, ReplicationError::SlotInvalidated { .. }));
    }
}
