//! Ed25519 keys for `v1a` signatures in Standard Webhooks form: the signing
//! key `whsk_` (base64 of the 32-byte seed, or of the 64-byte seed then
//! public key, as Svix writes it), and the public key `whpk_` (base64 of
//! its 32 bytes) that the receiver verifies with. The one place that reads,
//! writes and makes them, for the registry, delivery and the CLI alike.

use base64::Engine;
use base64::alphabet;
use base64::engine::general_purpose::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use ed25519_dalek::SigningKey;

/// Standard base64, decoded as leniently as other Standard Webhooks
/// libraries accept it (padding optional, stray trailing bits ignored); the
/// database check is stricter (it requires the padding).
pub(crate) const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A `whsk_` key, or a sentence naming `column` (or the flag) that says
/// why not. The key itself is never part of the sentence.
pub fn parse(column: &str, value: &str) -> Result<SigningKey, String> {
    let Some(encoded) = value.strip_prefix("whsk_") else {
        return Err(format!("{column} must start with \"whsk_\""));
    };
    let bytes = LENIENT
        .decode(encoded)
        .map_err(|_| format!("{column} must be \"whsk_\" followed by base64"))?;
    let seed: [u8; 32] = match bytes.len() {
        32 | 64 => bytes[..32]
            .try_into()
            .map_err(|_| format!("{column} is malformed"))?,
        n => return Err(format!("{column} must decode to 32 or 64 bytes, not {n}")),
    };
    let key = SigningKey::from_bytes(&seed);
    if bytes.len() == 64 && key.verifying_key().as_bytes()[..] != bytes[32..] {
        return Err(format!(
            "{column}'s last 32 bytes are not the public key of its first 32"
        ));
    }
    Ok(key)
}

/// The receiver's key: `whpk_` and the base64 of the public key.
pub fn public(key: &SigningKey) -> String {
    format!("whpk_{}", STANDARD.encode(key.verifying_key().as_bytes()))
}

/// The signing key as stored: `whsk_` and the base64 of seed then public
/// key (64 bytes).
pub fn secret(key: &SigningKey) -> String {
    let mut bytes = key.to_bytes().to_vec();
    bytes.extend_from_slice(key.verifying_key().as_bytes());
    format!("whsk_{}", STANDARD.encode(bytes))
}

/// A new key from the operating system's randomness.
pub fn generate() -> Result<SigningKey, getrandom::Error> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed)?;
    Ok(SigningKey::from_bytes(&seed))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Seed 0, 1, …, 31, its public key and the stored form as PyNaCl
    /// writes them (`nacl.signing.SigningKey(bytes(range(32)))`).
    const SEED: [u8; 32] = {
        let mut seed = [0u8; 32];
        let mut i = 0;
        while i < 32 {
            seed[i] = i as u8;
            i += 1;
        }
        seed
    };
    const WHPK: &str = "whpk_A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=";
    const WHSK: &str = "whsk_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8DoQe/884Qvh1w3RjnS8CZZ+TWMJulDV8d3IZkElUxuA==";

    #[test]
    fn renders_as_an_independent_implementation_does() {
        let key = SigningKey::from_bytes(&SEED);
        assert_eq!(public(&key), WHPK);
        assert_eq!(secret(&key), WHSK);
        assert_eq!(parse("k", WHSK).unwrap(), key);
        let seed_only = format!("whsk_{}", STANDARD.encode(SEED));
        assert_eq!(parse("k", &seed_only).unwrap(), key);
    }

    #[test]
    fn generated_keys_differ_and_read_back() {
        let a = generate().unwrap();
        let b = generate().unwrap();
        assert_ne!(a, b);
        assert_eq!(parse("k", &secret(&a)).unwrap(), a);
        assert!(secret(&a).len() == 5 + 88 && public(&a).len() == 5 + 44);
    }

    #[test]
    fn refusals_name_the_column_and_never_the_key() {
        assert_eq!(
            parse("--signing-key", "whsec_abc").unwrap_err(),
            "--signing-key must start with \"whsk_\""
        );
        let mut wrong = WHSK.to_string();
        wrong.replace_range(60..64, "AAAA");
        let e = parse("signing_key", &wrong).unwrap_err();
        assert!(
            e.contains("not the public key") && !e.contains("AAEC"),
            "{e}"
        );
    }
}
