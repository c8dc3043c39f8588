//! A webhook receiver on 127.0.0.1 that misbehaves on purpose, chosen by
//! the request path: `/ok`, `/status/<code>`, `/redirect`, `/retry-after`
//! (429 with `Retry-After: 120`), `/delay` (answers 200 after 0.8 s),
//! `/timeout` (never answers), `/huge`
//! (a 10 MB body), `/slow-body` (a body that trickles), `/reset` (closes the
//! connection without answering). Plain HTTP/1.1 over TCP, written by hand
//! so that it can break the protocol in ways a server library would not.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    /// Lower-cased header names.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

pub struct Receiver {
    pub addr: SocketAddr,
    pub received: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = received.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let log = log.clone();
                tokio::spawn(async move {
                    let _ = serve(stream, log).await;
                });
            }
        });
        Receiver { addr, received }
    }

    pub fn url(&self, path: &str) -> url::Url {
        url::Url::parse(&format!("http://{}{path}", self.addr)).expect("url")
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("lock").clone()
    }
}

async fn serve(mut stream: TcpStream, log: Arc<Mutex<Vec<Received>>>) -> std::io::Result<()> {
    loop {
        let Some(request) = read_request(&mut stream).await? else {
            return Ok(());
        };
        let path = request.path.clone();
        log.lock().expect("lock").push(request);
        match path.as_str() {
            "/reset" => {
                // Close at once; with SO_LINGER 0 this is a TCP reset (a
                // zero linger never blocks on drop, which is what the
                // deprecation warns about).
                #[allow(deprecated)]
                let _ = stream.set_linger(Some(Duration::ZERO));
                return Ok(());
            }
            "/delay" => {
                tokio::time::sleep(Duration::from_millis(800)).await;
                stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await?;
            }
            "/timeout" => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                return Ok(());
            }
            "/huge" => {
                let size = 10 * 1024 * 1024;
                stream
                    .write_all(
                        format!("HTTP/1.1 200 OK\r\ncontent-length: {size}\r\n\r\n").as_bytes(),
                    )
                    .await?;
                let chunk = vec![b'x'; 64 * 1024];
                for _ in 0..size / chunk.len() {
                    stream.write_all(&chunk).await?;
                }
            }
            "/slow-body" => {
                stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n")
                    .await?;
                for _ in 0..1000 {
                    stream.write_all(b"x").await?;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            "/redirect" => {
                stream
                    .write_all(b"HTTP/1.1 302 Found\r\nlocation: /ok\r\ncontent-length: 0\r\n\r\n")
                    .await?;
            }
            "/retry-after" => {
                stream
                    .write_all(b"HTTP/1.1 429 Too Many Requests\r\nretry-after: 120\r\ncontent-length: 4\r\n\r\nslow")
                    .await?;
            }
            other => {
                let code: u16 = other
                    .strip_prefix("/status/")
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(200);
                let body = format!("answered {code}");
                stream
                    .write_all(
                        format!(
                            "HTTP/1.1 {code} Whatever\r\ncontent-length: {}\r\ncontent-type: text/plain\r\n\r\n{body}",
                            body.len()
                        )
                        .as_bytes(),
                    )
                    .await?;
            }
        }
    }
}

pub(crate) async fn read_request(stream: &mut TcpStream) -> std::io::Result<Option<Received>> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1024];
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = stream.read(&mut byte).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&byte[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let path = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .unwrap_or("/")
        .to_string();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .get("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut byte).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&byte[..n]);
    }
    Ok(Some(Received {
        path,
        headers,
        body,
    }))
}
