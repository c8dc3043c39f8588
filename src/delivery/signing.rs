//! Standard Webhooks signatures. `webhook-signature` carries, for each
//! scheme the webhook is configured with, one entry per active key,
//! space-separated, so that a receiver verifies with either key while one
//! is being rotated (the current key first, then the one rotated out until
//! it expires):
//!
//! - `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">` with each
//!   secret (`whsec_`);
//! - `v1a,<base64 Ed25519 signature of "{id}.{timestamp}.{body}">` with each
//!   signing key (`whsk_`; the receiver holds the public key, `whpk_`, see
//!   `registry::keys`).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use ed25519_dalek::Signer;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::registry::model::{AsymmetricKey, Scheme, SigningSecret, Webhook};

/// The three headers of a signed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    /// `webhook-id`: the delivery id, the same on every attempt.
    pub id: String,
    /// `webhook-timestamp`: this attempt's time, in Unix seconds.
    pub timestamp: String,
    /// `webhook-signature`.
    pub signature: String,
}

/// What a webhook signs with: its schemes, in the order configured, and
/// the keys of each, current first.
#[derive(Debug, Clone, Copy)]
pub struct Keys<'a> {
    pub schemes: &'a [Scheme],
    pub secrets: &'a [SigningSecret],
    pub signing_keys: &'a [AsymmetricKey],
}

impl<'a> Keys<'a> {
    pub fn of(webhook: &'a Webhook) -> Keys<'a> {
        Keys {
            schemes: &webhook.schemes,
            secrets: &webhook.secrets,
            signing_keys: &webhook.signing_keys,
        }
    }

    /// `v1` with these secrets alone.
    pub fn v1(secrets: &'a [SigningSecret]) -> Keys<'a> {
        Keys {
            schemes: &[Scheme::V1],
            secrets,
            signing_keys: &[],
        }
    }
}

/// Signs `body` for delivery `id` at `at` with every key active then.
/// Returns `None` when no key is active (never for a valid webhook: the
/// current secret and signing key do not expire, and `v1a` needs a key).
pub fn sign(id: &str, at: DateTime<Utc>, body: &[u8], keys: Keys<'_>) -> Option<SignedHeaders> {
    let timestamp = at.timestamp().to_string();
    let content = signed_content(id, &timestamp, body);
    let mut signatures: Vec<String> = Vec::new();
    for scheme in keys.schemes {
        match scheme {
            Scheme::V1 => signatures.extend(
                keys.secrets
                    .iter()
                    .filter(|s| s.is_active(at))
                    .filter_map(|secret| v1(secret, &content)),
            ),
            Scheme::V1a => signatures.extend(
                keys.signing_keys
                    .iter()
                    .filter(|k| k.is_active(at))
                    .map(|key| v1a(key, &content)),
            ),
        }
    }
    if signatures.is_empty() {
        return None;
    }
    Some(SignedHeaders {
        id: id.to_string(),
        timestamp,
        signature: signatures.join(" "),
    })
}

/// The spec's signed content: `{id}.{timestamp}.{body}`.
fn signed_content(id: &str, timestamp: &str, body: &[u8]) -> Vec<u8> {
    let mut content = Vec::with_capacity(id.len() + timestamp.len() + body.len() + 2);
    content.extend_from_slice(id.as_bytes());
    content.push(b'.');
    content.extend_from_slice(timestamp.as_bytes());
    content.push(b'.');
    content.extend_from_slice(body);
    content
}

fn v1(secret: &SigningSecret, content: &[u8]) -> Option<String> {
    // HMAC takes keys of any length; this cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.key()).ok()?;
    mac.update(content);
    Some(format!(
        "v1,{}",
        STANDARD.encode(mac.finalize().into_bytes())
    ))
}

fn v1a(key: &AsymmetricKey, content: &[u8]) -> String {
    format!(
        "v1a,{}",
        STANDARD.encode(key.key().sign(content).to_bytes())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example from the Standard Webhooks specification's reference
    /// libraries.
    #[test]
    fn matches_the_reference_vector() {
        let key = STANDARD
            .decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .expect("base64");
        let secret = SigningSecret::new(key, None);
        let at = DateTime::from_timestamp(1_614_265_330, 0).expect("time");
        let headers = sign(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            at,
            br#"{"test": 2432232314}"#,
            Keys::v1(std::slice::from_ref(&secret)),
        )
        .expect("signed");
        assert_eq!(
            headers.signature,
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        assert_eq!(headers.timestamp, "1614265330");
    }

    #[test]
    fn every_active_secret_signs_and_expired_ones_do_not() {
        let now = Utc::now();
        let current = SigningSecret::new(vec![1; 32], None);
        let previous = SigningSecret::new(vec![2; 32], Some(now + chrono::Duration::hours(1)));
        let expired = SigningSecret::new(vec![3; 32], Some(now - chrono::Duration::hours(1)));
        let secrets = [current, previous, expired];
        let headers = sign("msg_1", now, b"{}", Keys::v1(&secrets)).expect("signed");
        assert_eq!(headers.signature.split(' ').count(), 2);
        assert!(sign("msg_1", now, b"{}", Keys::v1(&secrets[2..])).is_none());
    }

    fn seed_key(expires_at: Option<DateTime<Utc>>) -> AsymmetricKey {
        let seed: Vec<u8> = (0u8..32).collect();
        let seed: [u8; 32] = seed.try_into().expect("32 bytes");
        AsymmetricKey::new(ed25519_dalek::SigningKey::from_bytes(&seed), expires_at)
    }

    /// The spec's example message signed by PyNaCl with seed 0, 1, …, 31
    /// (`nacl.signing.SigningKey(bytes(range(32))).sign(content)`).
    #[test]
    fn v1a_matches_an_independent_implementation() {
        let at = DateTime::from_timestamp(1_614_265_330, 0).expect("time");
        let keys = [seed_key(None)];
        let headers = sign(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            at,
            br#"{"test": 2432232314}"#,
            Keys {
                schemes: &[Scheme::V1a],
                secrets: &[],
                signing_keys: &keys,
            },
        )
        .expect("signed");
        assert_eq!(
            headers.signature,
            "v1a,yoUrgEkc12aGqm0n4Sydmdz55xJfTz4AsAgieHFjmkR7LJtqVCZOQYzvvHjI5kAey+r4iaBGxTFRrl2iBQxtDQ=="
        );
    }

    #[test]
    fn both_schemes_sign_in_order_with_every_active_key() {
        let now = Utc::now();
        let secrets = [SigningSecret::new(vec![1; 32], None)];
        let keys = [
            seed_key(None),
            AsymmetricKey::new(
                ed25519_dalek::SigningKey::from_bytes(&[9; 32]),
                Some(now + chrono::Duration::hours(1)),
            ),
            AsymmetricKey::new(
                ed25519_dalek::SigningKey::from_bytes(&[8; 32]),
                Some(now - chrono::Duration::hours(1)),
            ),
        ];
        let both = Keys {
            schemes: &[Scheme::V1, Scheme::V1a],
            secrets: &secrets,
            signing_keys: &keys,
        };
        let headers = sign("msg_1", now, b"{}", both).expect("signed");
        let entries: Vec<&str> = headers.signature.split(' ').collect();
        assert_eq!(entries.len(), 3, "{entries:?}");
        assert!(entries[0].starts_with("v1,"));
        assert!(entries[1].starts_with("v1a,") && entries[2].starts_with("v1a,"));
        // The current key's signature comes before the rotated-out one's.
        let current_only = sign(
            "msg_1",
            now,
            b"{}",
            Keys {
                signing_keys: &keys[..1],
                ..both
            },
        )
        .expect("signed");
        assert_eq!(current_only.signature.split(' ').nth(1), Some(entries[1]));
        // v1a alone carries no v1 entry; no scheme at all signs nothing.
        let v1a = sign(
            "msg_1",
            now,
            b"{}",
            Keys {
                schemes: &[Scheme::V1a],
                ..both
            },
        )
        .expect("signed");
        assert!(!v1a.signature.contains("v1,"));
        assert!(
            sign(
                "msg_1",
                now,
                b"{}",
                Keys {
                    schemes: &[],
                    ..both
                }
            )
            .is_none()
        );
    }
}
