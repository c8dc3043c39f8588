//! The delivery client against real receivers on 127.0.0.1 that misbehave
//! on purpose, and the SSRF guard.

use bytes::Bytes;
use chrono::Utc;
use plausible_webhooks::config::{Config, DeliveryConfig};
use plausible_webhooks::delivery::client::{DeliveryClient, ErrorKind, SNIPPET_BYTES};
use plausible_webhooks::delivery::signing::{Keys, sign};
use plausible_webhooks::registry::model::SigningSecret;

use crate::support::receiver::Receiver;

fn delivery_config(tweak: impl FnOnce(&mut DeliveryConfig)) -> DeliveryConfig {
    let mut config = Config::defaults().delivery;
    config.allow_http = true;
    config.allowed_cidrs = vec!["127.0.0.0/8".into()];
    config.connect_timeout_secs = 1;
    config.request_timeout_secs = 2;
    tweak(&mut config);
    config
}

fn headers() -> plausible_webhooks::delivery::signing::SignedHeaders {
    let secret = SigningSecret::new(vec![5; 32], None);
    sign(
        "msg_client_test",
        Utc::now(),
        b"{}",
        Keys::v1(std::slice::from_ref(&secret)),
    )
    .expect("signed")
}

async fn post(
    client: &DeliveryClient,
    url: url::Url,
) -> Result<
    plausible_webhooks::delivery::client::Response,
    plausible_webhooks::delivery::client::AttemptError,
> {
    client
        .post(
            &url,
            &headers(),
            &[],
            Bytes::from_static(b"{\"type\":\"webhook.test\"}"),
        )
        .await
}

#[tokio::test]
async fn a_success_carries_the_signed_headers() {
    let receiver = Receiver::start().await;
    let client = DeliveryClient::new(&delivery_config(|_| {})).unwrap();
    let response = post(&client, receiver.url("/ok")).await.unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.snippet, "answered 200");
    let got = receiver.received();
    assert_eq!(got.len(), 1);
    let h = &got[0].headers;
    assert_eq!(h["content-type"], "application/json");
    assert!(h["user-agent"].starts_with("plausible-webhooks/"));
    assert_eq!(h["webhook-id"], "msg_client_test");
    assert!(h["webhook-signature"].starts_with("v1,"));
    assert!(h["webhook-timestamp"].parse::<i64>().is_ok());
    assert_eq!(got[0].body, b"{\"type\":\"webhook.test\"}");
}

#[tokio::test]
async fn each_failure_mode_is_reported_and_bounded() {
    let receiver = Receiver::start().await;
    let client = DeliveryClient::new(&delivery_config(|_| {})).unwrap();

    let r = post(&client, receiver.url("/status/500")).await.unwrap();
    assert_eq!((r.status, r.snippet.as_str()), (500, "answered 500"));
    let r = post(&client, receiver.url("/status/410")).await.unwrap();
    assert_eq!(r.status, 410);

    // Redirects are not followed.
    let r = post(&client, receiver.url("/redirect")).await.unwrap();
    assert_eq!(r.status, 302);
    assert!(receiver.received().iter().all(|r| r.path != "/ok"));

    let r = post(&client, receiver.url("/retry-after")).await.unwrap();
    assert_eq!((r.status, r.retry_after.as_deref()), (429, Some("120")));

    // A huge body: at most 16 KiB is kept, and quickly.
    let r = post(&client, receiver.url("/huge")).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.snippet.len(), SNIPPET_BYTES);

    let e = post(&client, receiver.url("/timeout")).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Timeout, "{e:?}");
    assert!(e.duration.as_secs_f64() < 3.0);

    // A body that trickles is cut by the total timeout too (it is under
    // the cap, so the client keeps reading).
    let e = post(&client, receiver.url("/slow-body")).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Timeout, "{e:?}");

    let e = post(&client, receiver.url("/reset")).await.unwrap_err();
    assert!(
        matches!(e.kind, ErrorKind::Protocol | ErrorKind::Connect),
        "{e:?}"
    );

    // Nothing listens: a connection error.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let e = post(
        &client,
        url::Url::parse(&format!("http://{closed}/")).unwrap(),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Connect, "{e:?}");
}

#[tokio::test]
async fn the_ssrf_guard_refuses_private_addresses_however_they_are_written() {
    let receiver = Receiver::start().await;
    let port = receiver.addr.port();
    // No allowlist this time.
    let client = DeliveryClient::new(&delivery_config(|c| c.allowed_cidrs.clear())).unwrap();
    for url in [
        format!("http://127.0.0.1:{port}/ok"),
        format!("http://localhost:{port}/ok"),
        format!("http://[::ffff:127.0.0.1]:{port}/ok"),
        "http://10.1.2.3/ok".to_string(),
        "http://169.254.169.254/latest/meta-data".to_string(),
    ] {
        let e = post(&client, url::Url::parse(&url).unwrap())
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Blocked, "{url}: {e:?}");
        assert!(
            e.message.contains("public addresses") || e.message.contains("refused"),
            "{url}: {}",
            e.message
        );
        // Site owners read this message: a name's internal addresses stay
        // out of it (an address literal is the owner's own URL).
        if url.contains("localhost") {
            assert!(
                !e.message.contains("127.0.0.1") && !e.message.contains("::1"),
                "{url}: {}",
                e.message
            );
            assert!(e.message.contains("non-public addresses"), "{}", e.message);
        }
    }
    assert!(
        receiver.received().is_empty(),
        "nothing reached the receiver"
    );

    // An allowed host name goes through whatever it resolves to.
    let client = DeliveryClient::new(&delivery_config(|c| {
        c.allowed_cidrs.clear();
        c.allowed_hosts = vec!["localhost".into()];
    }))
    .unwrap();
    let r = post(
        &client,
        url::Url::parse(&format!("http://localhost:{port}/ok")).unwrap(),
    )
    .await;
    assert_eq!(r.map(|r| r.status).ok(), Some(200));
}

#[tokio::test]
async fn a_missing_ca_file_is_a_clear_error() {
    let err = DeliveryClient::new(&delivery_config(|c| {
        c.ca_files = vec!["/nonexistent/ca.pem".into()]
    }))
    .err()
    .expect("refused");
    assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
}

/// A receiver that speaks only HTTP/2 over TLS (ALPN `h2`), with a
/// certificate trusted through `delivery.ca_files`.
#[tokio::test]
async fn http2_is_negotiated_over_tls_and_its_connection_reused() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

    let key = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("receiver-ca.pem");
    std::fs::write(&ca, key.cert.pem()).unwrap();
    let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![key.cert.der().clone()],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.signing_key.serialize_der())),
    )
    .unwrap();
    tls.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = Arc::new(AtomicUsize::new(0));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let accepted = connections.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            accepted.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut conn) = h2::server::handshake(tls).await else {
                    return;
                };
                while let Some(Ok((request, mut respond))) = conn.accept().await {
                    let (parts, mut body) = request.into_parts();
                    let mut bytes = Vec::new();
                    while let Some(Ok(chunk)) = body.data().await {
                        let _ = body.flow_control().release_capacity(chunk.len());
                        bytes.extend_from_slice(&chunk);
                    }
                    let _ = tx.send((parts.version, parts.headers, bytes));
                    let response = http::Response::builder().status(200).body(()).unwrap();
                    if let Ok(mut stream) = respond.send_response(response, false) {
                        let _ = stream.send_data(Bytes::from_static(b"answered over h2"), true);
                    }
                }
            });
        }
    });

    let client = DeliveryClient::new(&delivery_config(|c| {
        c.allow_http = false;
        c.ca_files = vec![ca.clone()];
    }))
    .unwrap();
    let url = url::Url::parse(&format!("https://127.0.0.1:{port}/hook")).unwrap();
    for _ in 0..3 {
        let response = post(&client, url.clone()).await.unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.snippet, "answered over h2");
    }
    for _ in 0..3 {
        let (version, headers, body) = rx.recv().await.unwrap();
        assert_eq!(version, http::Version::HTTP_2);
        assert_eq!(headers["webhook-id"], "msg_client_test");
        assert!(
            headers["webhook-signature"]
                .to_str()
                .unwrap()
                .starts_with("v1,")
        );
        assert_eq!(headers["content-type"], "application/json");
        assert_eq!(body, b"{\"type\":\"webhook.test\"}");
    }
    assert_eq!(
        connections.load(Ordering::SeqCst),
        1,
        "one pooled connection"
    );
}
