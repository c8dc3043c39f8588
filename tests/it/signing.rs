//! Standard Webhooks interop: signatures made here verify with
//! implementations we did not write, from PyPI: `v1` with the
//! `standardwebhooks` package, `v1a` with PyNaCl (libsodium) following the
//! spec's signed content, `{id}.{timestamp}.{body}` (scripts/test installs
//! both; PYTHON names the interpreter that has them).

use std::io::Write;
use std::process::{Command, Stdio};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::Utc;
use plausible_webhooks::delivery::signing::{Keys, sign};
use plausible_webhooks::registry::keys;
use plausible_webhooks::registry::model::{AsymmetricKey, Scheme, SigningSecret};

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

/// Verifies the `v1a` entries of `signature` with each `whpk_` public key,
/// with PyNaCl: "ok" for a key that verifies one of them, "fail" otherwise.
const VERIFY_V1A: &str = r#"
import base64, json, sys
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey
case = json.load(sys.stdin)
content = (case["id"] + "." + case["timestamp"] + ".").encode() + base64.b64decode(case["body_base64"])
signatures = [s.split(",", 1)[1] for s in case["signature"].split(" ") if s.startswith("v1a,")]
for public in case["public_keys"]:
    assert public.startswith("whpk_"), public
    key = VerifyKey(base64.b64decode(public[len("whpk_"):]))
    verified = False
    for signature in signatures:
        try:
            key.verify(content, base64.b64decode(signature))
            verified = True
        except BadSignatureError:
            pass
    print("ok" if verified else "fail")
"#;

/// Asks the Python library to verify the request with each secret.
pub fn verify_with_python(case: serde_json::Value) -> Vec<String> {
    run_python(VERIFY, case)
}

/// Asks PyNaCl to verify the `v1a` signatures of a request (`id`,
/// `timestamp`, `signature`, `body`) with each public key.
pub fn verify_v1a_with_pynacl(
    id: &str,
    timestamp: &str,
    signature: &str,
    body: &[u8],
    public_keys: &[&str],
) -> Vec<String> {
    run_python(
        VERIFY_V1A,
        serde_json::json!({
            "id": id,
            "timestamp": timestamp,
            "signature": signature,
            "body_base64": STANDARD.encode(body),
            "public_keys": public_keys,
        }),
    )
}

fn run_python(script: &str, case: serde_json::Value) -> Vec<String> {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let mut child = Command::new(&python)
        .args(["-c", script])
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
        "{python} failed (are standardwebhooks and pynacl installed? scripts/test installs them): {}",
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

#[test]
fn v1a_signatures_verify_with_pynacl_during_and_after_a_rotation() {
    let now = Utc::now();
    let new = keys::generate().expect("key");
    let old = keys::generate().expect("key");
    let other = keys::generate().expect("key");
    let (new_public, old_public) = (keys::public(&new), keys::public(&old));
    let rotating = [
        AsymmetricKey::new(new.clone(), None),
        AsymmetricKey::new(old.clone(), Some(now + chrono::Duration::hours(24))),
    ];
    let body = r#"{"type":"traffic.spike","data":{"visitors":12,"site":"ünïcode.example"}}"#;
    let v1a = |at, signing_keys: &[AsymmetricKey]| {
        sign(
            "msg_v1a",
            at,
            body.as_bytes(),
            Keys {
                schemes: &[Scheme::V1a],
                secrets: &[],
                signing_keys,
            },
        )
        .expect("signed")
    };
    let during = v1a(now, &rotating);
    assert_eq!(during.signature.split(' ').count(), 2);
    let results = verify_v1a_with_pynacl(
        &during.id,
        &during.timestamp,
        &during.signature,
        body.as_bytes(),
        &[&new_public, &old_public, &keys::public(&other)],
    );
    assert_eq!(results, vec!["ok", "ok", "fail"], "during the overlap");
    let after = v1a(now + chrono::Duration::hours(25), &rotating);
    assert_eq!(after.signature.split(' ').count(), 1);
    let results = verify_v1a_with_pynacl(
        &after.id,
        &after.timestamp,
        &after.signature,
        body.as_bytes(),
        &[&new_public, &old_public],
    );
    assert_eq!(results, vec!["ok", "fail"], "after the old key expired");
}

#[test]
fn v1_and_v1a_in_one_header_each_verify_with_their_own_library() {
    let secret: Vec<u8> = vec![4; 32];
    let secrets = [SigningSecret::new(secret.clone(), None)];
    let key = keys::generate().expect("key");
    let signing_keys = [AsymmetricKey::new(key.clone(), None)];
    let body = r#"{"type":"goal.completed"}"#;
    let headers = sign(
        "msg_both",
        Utc::now(),
        body.as_bytes(),
        Keys {
            schemes: &[Scheme::V1, Scheme::V1a],
            secrets: &secrets,
            signing_keys: &signing_keys,
        },
    )
    .expect("signed");
    let results = verify_with_python(serde_json::json!({
        "id": headers.id,
        "timestamp": headers.timestamp,
        "signature": headers.signature,
        "body": body,
        "secrets": [whsec(&secret)],
    }));
    assert_eq!(results, vec!["ok"], "v1 with standardwebhooks");
    let results = verify_v1a_with_pynacl(
        &headers.id,
        &headers.timestamp,
        &headers.signature,
        body.as_bytes(),
        &[&keys::public(&key)],
    );
    assert_eq!(results, vec!["ok"], "v1a with PyNaCl");
}
