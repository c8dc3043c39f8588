//! The delivery client against real receivers on 127.0.0.1 that misbehave
//! on purpose, and the SSRF guard.

use bytes::Bytes;
use chrono::Utc;
use plausible_webhooks::config::{Config, DeliveryConfig};
use plausible_webhooks::delivery::client::{DeliveryClient, ErrorKind, SNIPPET_BYTES};
use plausible_webhooks::delivery::signing::sign;
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
    sign("msg_client_test", Utc::now(), b"{}", [&secret]).expect("signed")
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
