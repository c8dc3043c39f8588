//! Who may see the status page and use the admin API.
//!
//! With `http.admin_token` set, a request needs `Authorization: Bearer
//! TOKEN`, or (pages only) the session cookie that the login form sets: an
//! HMAC of the token, so the cookie never holds the token itself, HttpOnly
//! and SameSite=Strict. Without a token the pages answer only when the
//! server listens on a loopback address (`run` refuses any other) and the
//! request names a loopback host (so that a web page whose name was
//! rebound to 127.0.0.1 cannot read them through a visitor's browser), and
//! the API not at all.

use axum::http::{HeaderMap, header};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The session cookie's name.
pub(super) const COOKIE: &str = "plausible_webhooks_admin";

#[derive(Clone)]
pub(super) struct Auth {
    token: Option<String>,
    loopback: bool,
}

/// What a request may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Access {
    Granted,
    /// No credentials, or wrong ones.
    Refused,
    /// No token is configured (the API needs one).
    NoToken,
}

impl Auth {
    pub(super) fn new(token: &str, loopback: bool) -> Auth {
        Auth {
            token: (!token.is_empty()).then(|| token.to_string()),
            loopback,
        }
    }

    pub(super) fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// A page: the bearer token or the session cookie; on loopback with no
    /// token configured, anyone who can connect and names a loopback host.
    pub(super) fn page(&self, headers: &HeaderMap) -> Access {
        match &self.token {
            None if self.loopback && loopback_host(headers) => Access::Granted,
            None => Access::NoToken,
            Some(token) => {
                if bearer_matches(headers, token) || cookie_matches(headers, token) {
                    Access::Granted
                } else {
                    Access::Refused
                }
            }
        }
    }

    /// The API: the bearer token, always.
    pub(super) fn api(&self, headers: &HeaderMap) -> Access {
        match &self.token {
            None => Access::NoToken,
            Some(token) if bearer_matches(headers, token) => Access::Granted,
            Some(_) => Access::Refused,
        }
    }

    /// Whether `given` (the login form's) is the token.
    pub(super) fn login_matches(&self, given: &str) -> bool {
        self.token
            .as_deref()
            .is_some_and(|token| equal(given.as_bytes(), token.as_bytes()))
    }

    /// The `Set-Cookie` value of a session.
    pub(super) fn session_cookie(&self) -> Option<String> {
        let token = self.token.as_deref()?;
        Some(format!(
            "{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age=43200",
            session_value(token)
        ))
    }
}

/// The `Set-Cookie` value that ends a session.
pub(super) fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// Whether the `Host` header, if any, names this machine's loopback
/// (`localhost`, `127.0.0.1`, `[::1]`, with any port).
fn loopback_host(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST) else {
        return true;
    };
    let Ok(host) = host.to_str() else {
        return false;
    };
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn bearer_matches(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| {
            let (scheme, value) = v.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then_some(value.trim())
        })
        .any(|given| equal(given.as_bytes(), token.as_bytes()))
}

fn cookie_matches(headers: &HeaderMap, token: &str) -> bool {
    let expected = session_value(token);
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .any(|(name, value)| name == COOKIE && equal(value.as_bytes(), expected.as_bytes()))
}

/// The session cookie's value: HMAC-SHA256 of a fixed label under the
/// token, hex. Changing the token ends every session.
fn session_value(token: &str) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(token.as_bytes()) else {
        return String::new();
    };
    mac.update(b"plausible-webhooks status page session v1");
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Compares in time that depends on the lengths only.
fn equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(name: header::HeaderName, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn a_token_is_needed_when_one_is_set() {
        let auth = Auth::new("s3cret", true);
        assert_eq!(auth.page(&HeaderMap::new()), Access::Refused);
        assert_eq!(
            auth.api(&headers(header::AUTHORIZATION, "Bearer s3cret")),
            Access::Granted
        );
        assert_eq!(
            auth.api(&headers(header::AUTHORIZATION, "Bearer s3cre")),
            Access::Refused
        );
        let cookie = auth.session_cookie().unwrap();
        let pair = cookie.split(';').next().unwrap();
        assert!(!pair.contains("s3cret"));
        assert_eq!(auth.page(&headers(header::COOKIE, pair)), Access::Granted);
        // The cookie opens pages, never the API.
        assert_eq!(auth.api(&headers(header::COOKIE, pair)), Access::Refused);
        assert!(auth.login_matches("s3cret"));
        assert!(!auth.login_matches(""));
    }

    #[test]
    fn without_a_token_only_loopback_pages_answer() {
        assert_eq!(Auth::new("", true).page(&HeaderMap::new()), Access::Granted);
        assert_eq!(
            Auth::new("", false).page(&HeaderMap::new()),
            Access::NoToken
        );
        assert_eq!(Auth::new("", true).api(&HeaderMap::new()), Access::NoToken);
        assert!(!Auth::new("", true).login_matches(""));
    }

    #[test]
    fn without_a_token_a_page_needs_a_loopback_host() {
        let auth = Auth::new("", true);
        let with_host = |host: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::HOST, host.parse().unwrap());
            auth.page(&headers)
        };
        for host in [
            "127.0.0.1:9464",
            "localhost:9464",
            "LOCALHOST",
            "[::1]:9464",
            "127.0.0.2",
        ] {
            assert_eq!(with_host(host), Access::Granted, "{host}");
        }
        for host in [
            "evil.example:9464",
            "evil.example",
            "10.0.0.1:9464",
            "[::2]:1",
        ] {
            assert_eq!(with_host(host), Access::NoToken, "{host}");
        }
    }
}
