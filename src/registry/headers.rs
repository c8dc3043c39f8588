//! A webhook's own headers (`webhooks.headers`): what may be set, as the
//! database's `plausible_webhooks_headers_valid` (V12) refuses it too. A
//! test on a real server proves the two agree, name by name.

use hyper::header::{HeaderName, HeaderValue};
use serde_json::Value;

/// The most headers a webhook may set.
pub const MAX_HEADERS: usize = 20;
/// The longest header name.
pub const MAX_NAME: usize = 100;
/// The longest header value.
pub const MAX_VALUE: usize = 4096;

/// Names the daemon sets itself or that HTTP keeps for the connection, in
/// lower case; every name starting with `webhook-` is reserved too.
pub const RESERVED: [&str; 12] = [
    "content-type",
    "content-length",
    "host",
    "user-agent",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "expect",
];

/// Whether a webhook's headers may not name `name`.
pub fn reserved(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.starts_with("webhook-") || RESERVED.contains(&lower.as_str())
}

/// The headers of a `headers` object, or why they cannot be sent. Values
/// are never part of an error: they are often credentials.
pub fn parse(value: &Value) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
    let Value::Object(map) = value else {
        return Err("headers must be a JSON object of header names and string values".into());
    };
    if map.len() > MAX_HEADERS {
        return Err(format!(
            "headers has {} entries; at most {MAX_HEADERS} are allowed",
            map.len()
        ));
    }
    map.iter()
        .map(|(name, value)| header(name, value))
        .collect()
}

fn header(name: &str, value: &Value) -> Result<(HeaderName, HeaderValue), String> {
    let shown: String = name.chars().take(MAX_NAME).collect();
    if name.is_empty() || name.len() > MAX_NAME || !name.bytes().all(is_token) {
        return Err(format!(
            "headers: {shown:?} is not a valid header name (letters, digits and !#$%&'*+-.^_`|~, at most {MAX_NAME})"
        ));
    }
    if reserved(name) {
        return Err(format!(
            "headers: {name} is set by the daemon and cannot be overridden"
        ));
    }
    let Value::String(text) = value else {
        return Err(format!("headers: the value of {name} must be a string"));
    };
    if text.len() > MAX_VALUE
        || !text
            .bytes()
            .all(|b| b == b'\t' || (0x20..=0x7e).contains(&b))
    {
        return Err(format!(
            "headers: the value of {name} must be at most {MAX_VALUE} visible ASCII characters, spaces or tabs"
        ));
    }
    let name = HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
        .map_err(|_| format!("headers: {shown:?} is not a valid header name"))?;
    let mut value = HeaderValue::from_str(text)
        .map_err(|_| format!("headers: the value of {name} is not a valid header value"))?;
    value.set_sensitive(true);
    Ok((name, value))
}

/// RFC 9110's `tchar`.
fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn accepts_ordinary_headers_and_marks_them_sensitive() {
        let headers = parse(&json!({"Authorization": "Bearer abc", "X-Api-Key": "k\tv"})).unwrap();
        assert_eq!(headers.len(), 2);
        assert!(headers.iter().all(|(_, v)| v.is_sensitive()));
        assert!(headers.iter().any(|(n, _)| n == "authorization"));
    }

    #[test]
    fn refuses_reserved_bad_and_too_many() {
        for bad in [
            json!({"Webhook-Signature": "x"}),
            json!({"content-type": "text/plain"}),
            json!({"Host": "evil"}),
            json!({"bad name": "x"}),
            json!({"": "x"}),
            json!({"x": 1}),
            json!({"x": "a\r\nb: c"}),
            json!({"x": "é"}),
            json!(["x"]),
            json!(null),
        ] {
            assert!(parse(&bad).is_err(), "{bad}");
        }
        let many: serde_json::Map<String, Value> =
            (0..21).map(|i| (format!("x-{i}"), json!("v"))).collect();
        assert!(
            parse(&Value::Object(many))
                .unwrap_err()
                .contains("at most 20")
        );
    }

    #[test]
    fn an_error_never_shows_a_value() {
        let e = parse(&json!({"x": "secret\n"})).unwrap_err();
        assert!(!e.contains("secret"), "{e}");
    }
}
