//! Standard Webhooks interop: signatures made here verify with the
//! `standardwebhooks` package from PyPI, an implementation we did not write
//! (scripts/test installs it; PYTHON names the interpreter that has it).

use std::io::Write;
use std::process::{Command, Stdio};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::Utc;
use plausible_webhooks::delivery::signing::{Keys, sign};
use plausible_webhooks::registry::model::SigningSecret;

const VERIFY: &str = r#"
import json, sys
from standardwebhooks.webhooks import Webhook
case = json.load(sys.stdin)
headers = {
    "webhook-id": case["id"],
    "webhook-timestamp": case["timestamp"],
    "webhook-signature": case["signature"],
}
for secret in case["secrets"]:
    try:
        Webhook(secret).verify(case["body"], headers)
        print("ok")
    except Exception as e:
        print("fail:", type(e).__name__, e)
"#;

/// Asks the Python library to verify the request with each secret.
pub fn verify_with_python(case: serde_json::Value) -> Vec<String> {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let mut child = Command::new(&python)
        .args(["-c", VERIFY])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(case.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{python} failed (is the standardwebhooks package installed? scripts/test installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn whsec(key: &[u8]) -> String {
    format!("whsec_{}", STANDARD.encode(key))
}

#[test]
fn signatures_verify_with_the_standardwebhooks_library() {
    let key: Vec<u8> = (0u8..32).collect();
    let secret = SigningSecret::new(key.clone(), None);
    let body = r#"{"type":"goal.completed","data":{"completions":3,"goal":{"name":"Signup ✓"}}}"#;
    let headers = sign(
        "msg_2p0ggrq7rT1ruXmD4Eq3bZ",
        Utc::now(),
        body.as_bytes(),
        Keys::v1(std::slice::from_ref(&secret)),
    )
    .expect("signed");
    let results = verify_with_python(serde_json::json!({
        "id": headers.id,
        "timestamp": headers.timestamp,
        "signature": headers.signature,
        "body": body,
        "secrets": [whsec(&key), whsec(&[7u8; 32])],
    }));
    assert_eq!(results[0], "ok", "the right secret verifies");
    assert!(
        results[1].starts_with("fail"),
        "a wrong secret does not: {results:?}"
    );
}

#[test]
fn during_a_rotation_both_secrets_verify() {
    let old: Vec<u8> = vec![3; 24];
    let new: Vec<u8> = vec![9; 64];
    let now = Utc::now();
    let secrets = [
        SigningSecret::new(new.clone(), None),
        SigningSecret::new(old.clone(), Some(now + chrono::Duration::hours(24))),
    ];
    let body = r#"{"type":"traffic.spike"}"#;
    let headers = sign("msg_rotation", now, body.as_bytes(), Keys::v1(&secrets)).expect("signed");
    assert_eq!(headers.signature.split(' ').count(), 2);
    let results = verify_with_python(serde_json::json!({
        "id": headers.id,
        "timestamp": headers.timestamp,
        "signature": headers.signature,
        "body": body,
        "secrets": [whsec(&new), whsec(&old)],
    }));
    assert_eq!(results, vec!["ok", "ok"]);
}
