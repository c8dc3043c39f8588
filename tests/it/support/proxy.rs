//! A TCP proxy on 127.0.0.1 that a test can cut: a stand-in for a network
//! partition between the daemon and a database.
//!
//! `cut()` drops every open connection and refuses new ones (they are
//! accepted and closed at once) until `restore()`; `blackhole()` instead
//! keeps connections open but forwards nothing, as a silent partition does.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

const OPEN: u8 = 0;
const CUT: u8 = 1;
const BLACKHOLE: u8 = 2;

pub struct Proxy {
    pub addr: SocketAddr,
    state: Arc<AtomicU8>,
    /// Bumped on every cut, so that live connections end.
    generation: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Forwards 127.0.0.1:<free port> to `target`.
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy binds");
        let addr = listener.local_addr().expect("proxy address");
        let state = Arc::new(AtomicU8::new(OPEN));
        let (generation, _) = watch::channel(0u64);
        let task = tokio::spawn({
            let state = state.clone();
            let generation = generation.clone();
            async move {
                loop {
                    let Ok((client, _)) = listener.accept().await else {
                        continue;
                    };
                    if state.load(Ordering::Acquire) == CUT {
                        drop(client);
                        continue;
                    }
                    let state = state.clone();
                    let mut cut = generation.subscribe();
                    tokio::spawn(async move {
                        let Ok(server) = TcpStream::connect(target).await else {
                            return;
                        };
                        let _ = client.set_nodelay(true);
                        let _ = server.set_nodelay(true);
                        tokio::select! {
                            () = pipe(client, server, state) => {}
                            _ = cut.changed() => {}
                        }
                    });
                }
            }
        });
        Proxy {
            addr,
            state,
            generation,
            task,
        }
    }

    /// Forwards `url`'s host and port, and returns the proxy and the same
    /// URL pointing at it.
    pub async fn for_postgres_url(url: &str) -> (Proxy, String) {
        let parsed = url::Url::parse(url).expect("postgres URL parses");
        let host = parsed.host_str().expect("postgres URL has a host");
        let port = parsed.port().unwrap_or(5432);
        let target: SocketAddr = tokio::net::lookup_host((host, port))
            .await
            .expect("postgres host resolves")
            .next()
            .expect("an address");
        let proxy = Proxy::start(target).await;
        let mut proxied = parsed.clone();
        proxied.set_host(Some("127.0.0.1")).expect("host set");
        proxied.set_port(Some(proxy.addr.port())).expect("port set");
        (proxy, proxied.to_string())
    }

    /// Drops every connection and refuses new ones.
    pub fn cut(&self) {
        self.state.store(CUT, Ordering::Release);
        self.generation.send_modify(|g| *g += 1);
    }

    /// Keeps connections (and accepts new ones) but forwards nothing.
    pub fn blackhole(&self) {
        self.state.store(BLACKHOLE, Ordering::Release);
    }

    /// Forwards again (connections cut before stay closed).
    pub fn restore(&self) {
        self.state.store(OPEN, Ordering::Release);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.generation.send_modify(|g| *g += 1);
        self.task.abort();
    }
}

/// Copies both ways until either side closes; while black-holed, bytes are
/// read and dropped.
async fn pipe(client: TcpStream, server: TcpStream, state: Arc<AtomicU8>) {
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let up = copy(&mut cr, &mut sw, state.clone());
    let down = copy(&mut sr, &mut cw, state);
    tokio::select! {
        () = up => {}
        () = down => {}
    }
    let _ = cw.shutdown().await;
    let _ = sw.shutdown().await;
}

async fn copy(
    from: &mut tokio::net::tcp::OwnedReadHalf,
    to: &mut tokio::net::tcp::OwnedWriteHalf,
    state: Arc<AtomicU8>,
) {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if state.load(Ordering::Acquire) == BLACKHOLE {
            continue;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
