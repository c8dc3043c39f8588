//! A replicated ClickHouse for the cluster tests: ZooKeeper (Debian's
//! `zookeeper` package) and two ClickHouse 18.16 servers, the two replicas
//! of one shard of the cluster [`CLUSTER`], on loopback ports in a temp dir
//! of their own. Started once, only when a cluster test asks; a missing
//! ZooKeeper skips the cluster tests (with a message) rather than failing.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::{
    clickhouse_command, free_port, launch_clickhouse, make_base_dir, prepare_clickhouse_dir, watch,
    write_clickhouse_config,
};

/// The cluster's name in both servers' `remote_servers`.
pub const CLUSTER: &str = "webhooks_cluster";

/// A second cluster of the same two servers, each its own shard: one the
/// daemon refuses (it does not shard).
pub const TWO_SHARDS: &str = "webhooks_two_shards";

/// The ZooKeeper jar Debian's package installs.
const ZOOKEEPER_JAR: &str = "/usr/share/java/zookeeper.jar";

pub struct Cluster {
    pub replicas: Vec<Replica>,
}

/// One ClickHouse replica, which a test may stop and start again.
pub struct Replica {
    /// Its HTTP URL, e.g. `http://127.0.0.1:8123`.
    pub url: String,
    http_port: u16,
    dir: PathBuf,
    config: PathBuf,
    child: Mutex<Option<Child>>,
}

impl Replica {
    /// Kills the server (as a crash would) and waits until it has gone.
    pub fn stop(&self) {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(mut c) = child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same ports and data.
    pub fn start(&self) {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        if child.is_none() {
            let started = launch_clickhouse(&self.dir, &self.config, self.http_port)
                .unwrap_or_else(|e| panic!("cannot start the replica again: {e}"));
            *child = Some(started);
        }
    }
}

/// The cluster, or `None` (with a message on stderr) when ZooKeeper is not
/// installed. Cluster tests take [`lock`] too: one stops a replica.
pub fn cluster() -> Option<&'static Cluster> {
    static CLUSTER_SERVERS: OnceLock<Option<Cluster>> = OnceLock::new();
    CLUSTER_SERVERS
        .get_or_init(|| {
            let java = Command::new("java")
                .arg("-version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !Path::new(ZOOKEEPER_JAR).exists() || !java {
                eprintln!(
                    "skipping the replicated ClickHouse tests: ZooKeeper is not installed ({ZOOKEEPER_JAR} and java; Debian's `zookeeper` package, which scripts/test installs as root)"
                );
                return None;
            }
            if let Err(e) = clickhouse_command() {
                eprintln!("skipping the replicated ClickHouse tests: {e}");
                return None;
            }
            match start() {
                Ok(c) => Some(c),
                Err(e) => panic!("cannot start the test cluster: {e}"),
            }
        })
        .as_ref()
}

/// Serialises the cluster tests: they share the two servers, and one of
/// them stops a replica.
pub async fn lock() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

fn start() -> Result<Cluster, String> {
    let base = make_base_dir()?;
    let zookeeper_port = start_zookeeper(&base.join("zookeeper"))?;
    let ports: Vec<(u16, u16, u16)> = (0..2)
        .map(|_| Ok((free_port()?, free_port()?, free_port()?)))
        .collect::<Result<_, String>>()?;
    let replicas_xml: String = ports
        .iter()
        .map(|(_, tcp, _)| format!("<replica><host>127.0.0.1</host><port>{tcp}</port></replica>"))
        .collect();
    let shards_xml: String = ports
        .iter()
        .map(|(_, tcp, _)| {
            format!("<shard><replica><host>127.0.0.1</host><port>{tcp}</port></replica></shard>")
        })
        .collect();
    let mut replicas = Vec::new();
    for (i, (http, tcp, interserver)) in ports.iter().enumerate() {
        let dir = base.join(format!("replica{}", i + 1));
        prepare_clickhouse_dir(&dir)?;
        let extra = REPLICA_XML
            .replace("{interserver_port}", &interserver.to_string())
            .replace("{zookeeper_port}", &zookeeper_port.to_string())
            .replace("{cluster}", CLUSTER)
            .replace("{replicas}", &replicas_xml)
            .replace("{two_shards}", TWO_SHARDS)
            .replace("{shards}", &shards_xml)
            .replace("{replica}", &format!("r{}", i + 1));
        let config = write_clickhouse_config(&dir, *http, *tcp, &extra)?;
        let child = launch_clickhouse(&dir, &config, *http).map_err(|e| {
            let log = std::fs::read_to_string(dir.join("err.log")).unwrap_or_default();
            format!("replica {} did not start: {e}\n{log}", i + 1)
        })?;
        replicas.push(Replica {
            url: format!("http://127.0.0.1:{http}"),
            http_port: *http,
            dir,
            config,
            child: Mutex::new(Some(child)),
        });
    }
    Ok(Cluster { replicas })
}

/// Starts a standalone ZooKeeper in `dir` on a free loopback port, under a
/// watchdog; returns the port.
fn start_zookeeper(dir: &Path) -> Result<u16, String> {
    std::fs::create_dir_all(dir.join("data")).map_err(|e| e.to_string())?;
    let mut last_error = String::new();
    for _ in 0..5 {
        let port = free_port()?;
        let config = dir.join("zoo.cfg");
        std::fs::write(
            &config,
            format!(
                "tickTime=2000\ndataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\nadmin.enableServer=false\nmaxClientCnxns=0\n4lw.commands.whitelist=srvr\n",
                dir.join("data").display()
            ),
        )
        .map_err(|e| e.to_string())?;
        let log = std::fs::File::create(dir.join("zookeeper.log")).map_err(|e| e.to_string())?;
        let mut child = Command::new("java")
            .args(["-Xmx256m", "-cp", ZOOKEEPER_JAR])
            .arg("org.apache.zookeeper.server.ZooKeeperServerMain")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot start zookeeper (java): {e}"))?;
        watch(child.id(), dir)?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                last_error = format!("zookeeper exited with {status}");
                break;
            }
            if zookeeper_ok(port) {
                std::mem::forget(child);
                return Ok(port);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        if last_error.is_empty() {
            last_error = "zookeeper was not ready within 30 s".into();
        }
    }
    let log = std::fs::read_to_string(dir.join("zookeeper.log")).unwrap_or_default();
    Err(format!("zookeeper did not start: {last_error}\n{log}"))
}

/// ZooKeeper's `srvr` four-letter word: it serves requests (a server that
/// is up but not serving yet closes new sessions, and ClickHouse 18.16's
/// DDL worker does not survive that at start).
fn zookeeper_ok(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream.write_all(b"srvr").is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("Zookeeper version") && answer.contains("Mode: standalone")
}

/// A replica's part of config.xml: replication between the servers,
/// ZooKeeper (a 30 s session, so a stall on a loaded machine does not
/// make the tables read-only), the one-shard cluster (and a two-shard
/// one), its macros and distributed DDL.
const REPLICA_XML: &str = r#"  <interserver_http_port>{interserver_port}</interserver_http_port>
  <interserver_http_host>127.0.0.1</interserver_http_host>
  <zookeeper>
    <node><host>127.0.0.1</host><port>{zookeeper_port}</port></node>
    <session_timeout_ms>30000</session_timeout_ms>
  </zookeeper>
  <remote_servers>
    <{cluster}>
      <shard><internal_replication>true</internal_replication>{replicas}</shard>
    </{cluster}>
    <{two_shards}>{shards}</{two_shards}>
  </remote_servers>
  <macros><shard>01</shard><replica>{replica}</replica></macros>
  <distributed_ddl><path>/clickhouse/task_queue/ddl</path></distributed_ddl>"#;
