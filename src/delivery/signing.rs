//! Standard Webhooks signatures: `webhook-signature` is
//! `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, one entry per
//! active secret, space-separated, so that a receiver verifies with either
//! secret while one is being rotated.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::registry::model::SigningSecret;

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

/// Signs `body` for delivery `id` at `at` with every secret active then.
/// Returns `None` when no secret is active (never for a valid webhook: the
/// current secret does not expire).
pub fn sign<'a>(
    id: &str,
    at: DateTime<Utc>,
    body: &[u8],
    secrets: impl IntoIterator<Item = &'a SigningSecret>,
) -> Option<SignedHeaders> {
    let timestamp = at.timestamp().to_string();
    let signatures: Vec<String> = secrets
        .into_iter()
        .filter(|s| s.is_active(at))
        .filter_map(|secret| {
            // HMAC takes keys of any length; this cannot fail.
            let mut mac = Hmac::<Sha256>::new_from_slice(secret.key()).ok()?;
            mac.update(id.as_bytes());
            mac.update(b".");
            mac.update(timestamp.as_bytes());
            mac.update(b".");
            mac.update(body);
            Some(format!(
                "v1,{}",
                STANDARD.encode(mac.finalize().into_bytes())
            ))
        })
        .collect();
    if signatures.is_empty() {
        return None;
    }
    Some(SignedHeaders {
        id: id.to_string(),
        timestamp,
        signature: signatures.join(" "),
    })
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
            [&secret],
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
        let headers = sign("msg_1", now, b"{}", [&current, &previous, &expired]).expect("signed");
        assert_eq!(headers.signature.split(' ').count(), 2);
        assert!(sign("msg_1", now, b"{}", [&expired]).is_none());
    }
}
