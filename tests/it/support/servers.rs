//! Throwaway PostgreSQL and ClickHouse servers for the tests.
//!
//! Started once per test process from the installed Debian packages, in a
//! temp dir, on free ports; or taken from `DATABASE_URL` / `CLICKHOUSE_URL`
//! when those are set. A watchdog shell stops the servers and removes their
//! dir when the test process ends, however it ends: it waits for EOF on a
//! pipe whose only writer is this process.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

#[path = "certs.rs"]
pub mod certs;
#[path = "cluster.rs"]
pub mod cluster;

/// Where the servers are.
pub struct Servers {
    /// A superuser URL for the `postgres` maintenance database.
    pub postgres_admin_url: String,
    /// The CA that signed the test Postgres's certificate (for the name
    /// `localhost` only), when the harness started it with TLS on; `None`
    /// for a server named by `DATABASE_URL`.
    pub postgres_ca: Option<PathBuf>,
    /// ClickHouse over HTTPS (`https://localhost:<port>`, a certificate
    /// for `localhost` from the CA at `clickhouse_ca`), when the harness
    /// started it.
    pub clickhouse_https_url: Option<String>,
    pub clickhouse_ca: Option<PathBuf>,
    /// A `readonly = 1` ClickHouse user (no password) on the harness's
    /// server.
    pub clickhouse_readonly_user: Option<String>,
    /// The ClickHouse HTTP URL, e.g. `http://127.0.0.1:8123`.
    pub clickhouse_url: String,
    pub clickhouse_user: String,
    pub clickhouse_password: String,
}

/// Watchdog pipes, kept open for the life of the process.
static WATCHDOGS: Mutex<Vec<ChildStdin>> = Mutex::new(Vec::new());

pub fn servers() -> &'static Servers {
    static SERVERS: OnceLock<Servers> = OnceLock::new();
    SERVERS.get_or_init(|| match start() {
        Ok(s) => s,
        Err(e) => panic!("cannot start the test servers: {e}"),
    })
}

fn start() -> Result<Servers, String> {
    let external_pg = std::env::var("DATABASE_URL").ok().filter(|s| !s.is_empty());
    let external_ch = std::env::var("CLICKHOUSE_URL")
        .ok()
        .filter(|s| !s.is_empty());
    let dir = if external_pg.is_none() || external_ch.is_none() {
        Some(make_base_dir()?)
    } else {
        None
    };

    let mut clickhouse_tls = None;
    let (postgres_admin_url, postgres_ca) = match external_pg {
        Some(url) => (url, None),
        None => {
            let (url, ca) = start_postgres(dir.as_deref().ok_or("no dir")?)?;
            (url, Some(ca))
        }
    };
    let (clickhouse_url, clickhouse_user, clickhouse_password) = match &external_ch {
        Some(url) => (
            url.clone(),
            std::env::var("CLICKHOUSE_USER").unwrap_or_else(|_| "default".into()),
            std::env::var("CLICKHOUSE_PASSWORD").unwrap_or_default(),
        ),
        None => {
            let ch = start_clickhouse(dir.as_deref().ok_or("no dir")?)?;
            clickhouse_tls = Some((ch.https_url, ch.ca));
            (ch.url, "default".into(), String::new())
        }
    };
    let (clickhouse_https_url, clickhouse_ca) = clickhouse_tls.unzip();
    Ok(Servers {
        postgres_admin_url,
        postgres_ca,
        clickhouse_readonly_user: clickhouse_https_url.as_ref().map(|_| "reader".to_string()),
        clickhouse_https_url,
        clickhouse_ca,
        clickhouse_url,
        clickhouse_user,
        clickhouse_password,
    })
}

fn make_base_dir() -> Result<PathBuf, String> {
    let dir = tempfile::Builder::new()
        .prefix("plausible-webhooks-test-")
        .tempdir()
        .map_err(|e| format!("cannot create a temp dir: {e}"))?
        .keep();
    // Readable by the postgres user, which needs to reach its data dir.
    set_mode(&dir, 0o755)?;
    Ok(dir)
}

fn set_mode(path: &Path, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("cannot chmod {}: {e}", path.display()))
}

fn free_port() -> Result<u16, String> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(|e| format!("cannot find a free port: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

/// Starts a watchdog that, once this process has gone, stops `pid` (TERM,
/// then KILL), removes `dir`, and removes its parent if that is now empty.
fn watch(pid: u32, dir: &Path) -> Result<(), String> {
    let script = r#"cat >/dev/null; kill -TERM "$1" 2>/dev/null
        for i in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$1" 2>/dev/null || break; sleep 0.5; done
        kill -KILL "$1" 2>/dev/null; rm -rf "$2"; rmdir "$(dirname "$2")" 2>/dev/null"#;
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg("watchdog")
        .arg(pid.to_string())
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot start the watchdog: {e}"))?;
    let stdin = child.stdin.take().ok_or("watchdog has no stdin")?;
    WATCHDOGS.lock().map_err(|e| e.to_string())?.push(stdin);
    Ok(())
}

// ---------------------------------------------------------------- Postgres

fn postgres_bin_dir() -> Result<PathBuf, String> {
    if let Ok(dir) = std::env::var("PG_BIN_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|e| {
            format!("PostgreSQL is not installed (/usr/lib/postgresql: {e}); run scripts/test as root to install it, or set DATABASE_URL")
        })?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .ok_or_else(|| "no PostgreSQL server binaries under /usr/lib/postgresql".to_string())
}

/// The uid and gid to run PostgreSQL as: ours, or `postgres`'s when we are
/// root (initdb and postgres refuse to run as root).
fn postgres_user() -> Result<Option<(u32, u32)>, String> {
    let id = |flag: &str, user: Option<&str>| -> Result<u32, String> {
        let mut cmd = Command::new("id");
        cmd.arg(flag);
        if let Some(u) = user {
            cmd.arg(u);
        }
        let out = cmd.output().map_err(|e| format!("cannot run id: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "id {flag} {}: {}",
                user.unwrap_or(""),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .map_err(|e| format!("id printed no number: {e}"))
    };
    if id("-u", None)? != 0 {
        return Ok(None);
    }
    Ok(Some((
        id("-u", Some("postgres"))?,
        id("-g", Some("postgres"))?,
    )))
}

fn as_postgres_user(cmd: &mut Command, user: Option<(u32, u32)>) {
    if let Some((uid, gid)) = user {
        cmd.uid(uid).gid(gid);
        cmd.env("HOME", "/tmp");
    }
}

/// Writes a CA and a server certificate for `localhost` into `dir`, the key
/// readable by the server's user only; returns the CA's and the
/// certificate's and key's paths.
fn server_certificates(
    dir: &Path,
    user: Option<(u32, u32)>,
) -> Result<(PathBuf, PathBuf, PathBuf), String> {
    let ca = certs::TestCa::new("plausible-webhooks test CA");
    let (cert, key) = ca.issue(&["localhost"]);
    let write = |name: &str, contents: &str, mode: u32| -> Result<PathBuf, String> {
        let path = dir.join(name);
        std::fs::write(&path, contents).map_err(|e| format!("cannot write {name}: {e}"))?;
        set_mode(&path, mode)?;
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(&path, Some(uid), Some(gid))
                .map_err(|e| format!("cannot chown {name}: {e}"))?;
        }
        Ok(path)
    };
    Ok((
        write("ca.pem", &ca.pem, 0o644)?,
        write("server.crt", &cert, 0o644)?,
        write("server.key", &key, 0o600)?,
    ))
}

/// Starts PostgreSQL with TLS on (for the certificate `postgres_certificates`
/// makes); returns its admin URL and the CA's path.
fn start_postgres(base: &Path) -> Result<(String, PathBuf), String> {
    let cluster = PgCluster::init(base, "postgres")?;
    let mut last_error = String::new();
    for _ in 0..5 {
        let port = free_port()?;
        match cluster.launch(port, &[]) {
            Ok(child) => {
                // The watchdog stops it; this process never waits for it.
                std::mem::forget(child);
                return Ok((
                    format!("postgres://postgres@127.0.0.1:{port}/postgres"),
                    cluster.ca.clone(),
                ));
            }
            Err(e) => last_error = e,
        }
    }
    let log = std::fs::read_to_string(cluster.dir.join("postgres.log")).unwrap_or_default();
    Err(format!("postgres did not start: {last_error}\n{log}"))
}

/// An initialised data directory with its certificates, ready to launch.
struct PgCluster {
    bin: PathBuf,
    user: Option<(u32, u32)>,
    dir: PathBuf,
    data: PathBuf,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl PgCluster {
    /// Runs initdb in `base/name` and writes the server's certificates.
    fn init(base: &Path, name: &str) -> Result<PgCluster, String> {
        let bin = postgres_bin_dir()?;
        let user = postgres_user()?;
        let dir = base.join(name);
        std::fs::create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
                .map_err(|e| format!("cannot chown {}: {e}", dir.display()))?;
        }
        let data = dir.join("data");

        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        as_postgres_user(&mut initdb, user);
        let out = initdb
            .output()
            .map_err(|e| format!("cannot run initdb: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let (ca, cert, key) = server_certificates(&dir, user)?;
        Ok(PgCluster {
            bin,
            user,
            dir,
            data,
            ca,
            cert,
            key,
        })
    }

    /// Starts the server on `port` (with `extra` settings, `-c` pairs,
    /// after the harness's own) and waits until it answers; a watchdog
    /// stops it when the test process ends.
    fn launch(&self, port: u16, extra: &[&str]) -> Result<Child, String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("postgres.log"))
            .map_err(|e| e.to_string())?;
        let mut server = Command::new(self.bin.join("postgres"));
        server
            .arg("-D")
            .arg(&self.data)
            .args(["-p", &port.to_string()])
            .arg("-k")
            .arg(&self.dir)
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=300",
                "-c",
                "wal_level=logical",
                "-c",
                "max_replication_slots=100",
                "-c",
                "max_wal_senders=100",
                "-c",
                "shared_buffers=256MB",
                "-c",
                "ssl=on",
            ])
            .arg("-c")
            .arg(format!("ssl_cert_file={}", self.cert.display()))
            .arg("-c")
            .arg(format!("ssl_key_file={}", self.key.display()))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .process_group(0);
        as_postgres_user(&mut server, self.user);
        let child = server
            .spawn()
            .map_err(|e| format!("cannot start postgres: {e}"))?;
        watch(child.id(), &self.dir)?;
        wait_for_postgres(&self.bin, port, child)
    }
}

/// A Postgres server of one test's own, which it may stop and start again
/// (the shared one serves every test at once). Same settings as the
/// shared server, plus the test's.
pub struct PrivatePostgres {
    cluster: PgCluster,
    port: u16,
    extra: Vec<String>,
    child: Option<Child>,
    /// A superuser URL for the `postgres` database.
    pub url: String,
    /// The CA of its certificate (for `localhost`).
    pub ca: PathBuf,
}

impl PrivatePostgres {
    /// Starts one with `extra` settings (`-c`, `key=value` pairs).
    pub fn start(extra: &[&str]) -> Result<PrivatePostgres, String> {
        let base = make_base_dir()?;
        let cluster = PgCluster::init(&base, "postgres")?;
        let port = free_port()?;
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let args: Vec<&str> = extra.iter().map(String::as_str).collect();
        let child = cluster.launch(port, &args)?;
        Ok(PrivatePostgres {
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            ca: cluster.ca.clone(),
            cluster,
            port,
            extra,
            child: Some(child),
        })
    }

    /// Stops it (a fast shutdown) and waits until it has gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGINT: Postgres's fast shutdown.
            let _ = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) -> Result<(), String> {
        self.stop();
        let args: Vec<&str> = self.extra.iter().map(String::as_str).collect();
        self.child = Some(self.cluster.launch(self.port, &args)?);
        Ok(())
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        self.stop();
    }
}

fn wait_for_postgres(bin: &Path, port: u16, mut child: Child) -> Result<Child, String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("postgres exited with {status}"));
        }
        let ready = Command::new(bin.join("pg_isready"))
            .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string()])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ready {
            return Ok(child);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    Err("postgres was not ready within 30 s".into())
}

// -------------------------------------------------------------- ClickHouse

fn clickhouse_command() -> Result<Command, String> {
    if let Ok(path) = std::env::var("CLICKHOUSE_SERVER") {
        return Ok(Command::new(path));
    }
    for path in ["/usr/sbin/clickhouse-server", "/usr/bin/clickhouse-server"] {
        if Path::new(path).exists() {
            return Ok(Command::new(path));
        }
    }
    if Path::new("/usr/bin/clickhouse").exists() {
        let mut cmd = Command::new("/usr/bin/clickhouse");
        cmd.arg("server");
        return Ok(cmd);
    }
    Err("ClickHouse is not installed (no clickhouse-server); run scripts/test as root to install it, or set CLICKHOUSE_URL".into())
}

/// The harness's ClickHouse: plain HTTP, HTTPS, and the CA of the latter.
struct StartedClickhouse {
    url: String,
    https_url: String,
    ca: PathBuf,
}

fn start_clickhouse(base: &Path) -> Result<StartedClickhouse, String> {
    let dir = base.join("clickhouse");
    prepare_clickhouse_dir(&dir)?;
    let (ca, cert, key) = server_certificates(&dir, None)?;

    let mut last_error = String::new();
    for _ in 0..5 {
        let http_port = free_port()?;
        let https_port = free_port()?;
        let tcp_port = free_port()?;
        let tls = TLS_XML
            .replace("{https_port}", &https_port.to_string())
            .replace("{cert}", &cert.display().to_string())
            .replace("{key}", &key.display().to_string());
        let config = write_clickhouse_config(&dir, http_port, tcp_port, &tls)?;
        match launch_clickhouse(&dir, &config, http_port) {
            Ok(child) => {
                // The watchdog stops it; this process never waits for it.
                std::mem::forget(child);
                return Ok(StartedClickhouse {
                    url: format!("http://127.0.0.1:{http_port}"),
                    https_url: format!("https://localhost:{https_port}"),
                    ca,
                });
            }
            Err(e) => last_error = e,
        }
    }
    let log = std::fs::read_to_string(dir.join("err.log")).unwrap_or_default();
    Err(format!("clickhouse did not start: {last_error}\n{log}"))
}

fn prepare_clickhouse_dir(dir: &Path) -> Result<(), String> {
    for sub in ["data", "tmp", "user_files", "format_schemas"] {
        std::fs::create_dir_all(dir.join(sub)).map_err(|e| e.to_string())?;
    }
    std::fs::write(dir.join("users.xml"), USERS_XML).map_err(|e| e.to_string())
}

/// Writes `dir/config.xml`: the common settings, the ports and `extra`
/// (TLS for the single server; ZooKeeper, the cluster and macros for a
/// replica).
fn write_clickhouse_config(
    dir: &Path,
    http_port: u16,
    tcp_port: u16,
    extra: &str,
) -> Result<PathBuf, String> {
    let config = dir.join("config.xml");
    let xml = CONFIG_XML
        .replace("{extra}", extra)
        .replace("{dir}", &dir.display().to_string())
        .replace("{http_port}", &http_port.to_string())
        .replace("{tcp_port}", &tcp_port.to_string());
    std::fs::write(&config, xml).map_err(|e| e.to_string())?;
    Ok(config)
}

/// Starts clickhouse-server on `config`, under a watchdog, and waits until
/// it answers on `http_port`.
fn launch_clickhouse(dir: &Path, config: &Path, http_port: u16) -> Result<Child, String> {
    let mut cmd = clickhouse_command()?;
    let child = cmd
        .arg(format!("--config-file={}", config.display()))
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot start clickhouse-server: {e}"))?;
    watch(child.id(), dir)?;
    wait_for_clickhouse(http_port, child)
}

fn wait_for_clickhouse(port: u16, mut child: Child) -> Result<Child, String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("clickhouse-server exited with {status}"));
        }
        if ping_clickhouse(port) {
            return Ok(child);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    Err("clickhouse was not ready within 60 s".into())
}

fn ping_clickhouse(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream
        .write_all(b"GET /ping HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.starts_with("HTTP/1.") && response.contains(" 200 ") && response.ends_with("Ok.\n")
}

const CONFIG_XML: &str = r#"<?xml version="1.0"?>
<yandex>
  <logger>
    <level>warning</level>
    <log>{dir}/server.log</log>
    <errorlog>{dir}/err.log</errorlog>
    <console>0</console>
  </logger>
  <http_port>{http_port}</http_port>
  <tcp_port>{tcp_port}</tcp_port>
{extra}
  <listen_host>127.0.0.1</listen_host>
  <path>{dir}/data/</path>
  <tmp_path>{dir}/tmp/</tmp_path>
  <user_files_path>{dir}/user_files/</user_files_path>
  <format_schema_path>{dir}/format_schemas/</format_schema_path>
  <users_config>{dir}/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
  <mark_cache_size>268435456</mark_cache_size>
  <uncompressed_cache_size>268435456</uncompressed_cache_size>
  <max_concurrent_queries>200</max_concurrent_queries>
</yandex>
"#;

const TLS_XML: &str = r#"  <https_port>{https_port}</https_port>
  <openSSL>
    <server>
      <certificateFile>{cert}</certificateFile>
      <privateKeyFile>{key}</privateKeyFile>
      <verificationMode>none</verificationMode>
      <loadDefaultCAFile>false</loadDefaultCAFile>
      <cacheSessions>true</cacheSessions>
      <disableProtocols>sslv2,sslv3</disableProtocols>
      <preferServerCiphers>true</preferServerCiphers>
    </server>
  </openSSL>"#;

const USERS_XML: &str = r#"<?xml version="1.0"?>
<yandex>
  <profiles>
    <default>
      <max_memory_usage>4000000000</max_memory_usage>
    </default>
    <readonly>
      <readonly>1</readonly>
    </readonly>
  </profiles>
  <users>
    <default>
      <password></password>
      <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
      <profile>default</profile>
      <quota>default</quota>
    </default>
    <reader>
      <password></password>
      <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
      <profile>readonly</profile>
      <quota>default</quota>
    </reader>
  </users>
  <quotas>
    <default>
      <interval>
        <duration>3600</duration>
        <queries>0</queries>
        <errors>0</errors>
        <result_rows>0</result_rows>
        <read_rows>0</read_rows>
        <execution_time>0</execution_time>
      </interval>
    </default>
  </quotas>
</yandex>
"#;
