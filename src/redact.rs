//! What the daemon shows of values that carry credentials: the one place
//! that decides it, for logs, attempts' errors, the CLI, metrics labels and
//! the status page alike.
//!
//! A chat service's incoming-webhook URL is itself the credential (anyone
//! who has it can post), so only its scheme and host are shown, with a
//! short fingerprint that tells two hooks apart. Other URLs keep their path
//! but lose their query string and fragment, which often hold tokens.
//! Header values are never shown.

use sha2::{Digest, Sha256};

/// Hosts whose webhook URLs are credentials whatever the webhook's format.
const CHAT_HOSTS: [&str; 4] = [
    "hooks.slack.com",
    "discord.com",
    "discordapp.com",
    "ptb.discord.com",
];

/// What a header value is shown as.
pub const HIDDEN: &str = "[redacted]";

/// `raw` as it may be shown. `url_is_secret` is the webhook format's say
/// (`Format::url_is_secret`); a chat service's host is hidden either way.
pub fn url(raw: &str, url_is_secret: bool) -> String {
    let Ok(parsed) = url::Url::parse(raw) else {
        return format!("[invalid URL {}]", fingerprint(raw));
    };
    let host = parsed.host_str().unwrap_or("");
    let authority = match parsed.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    };
    let origin = format!("{}://{authority}", parsed.scheme());
    if url_is_secret || is_chat_host(host) {
        return format!("{origin}/… [{}]", fingerprint(raw));
    }
    if parsed.query().is_none() && parsed.fragment().is_none() {
        return format!("{origin}{}", parsed.path());
    }
    format!("{origin}{}?… [{}]", parsed.path(), fingerprint(raw))
}

/// `text` (an error from a library, say) with the URL `raw` in it shown as
/// [`url`] shows it; when the URL is a secret, its path and query are
/// hidden wherever they appear too, so that no part of the credential
/// survives.
pub fn in_text(text: &str, raw: &str, url_is_secret: bool) -> String {
    let shown = url(raw, url_is_secret);
    let mut out = text.replace(raw, &shown);
    let Ok(parsed) = url::Url::parse(raw) else {
        return out;
    };
    out = out.replace(parsed.as_str(), &shown);
    let secret = url_is_secret || parsed.host_str().is_some_and(is_chat_host);
    let mut hidden: Vec<&str> = Vec::new();
    if secret && parsed.path().len() > 1 {
        hidden.push(parsed.path());
    }
    if let Some(query) = parsed.query().filter(|q| !q.is_empty()) {
        hidden.push(query);
    }
    for part in hidden {
        out = out.replace(part, "…");
    }
    out
}

/// A stored webhook's URL as it may be shown, by its stored `format`: a
/// chat hook's, or that of a format this build does not know (a bad row),
/// is hidden but for its scheme and host.
pub fn webhook_url(raw: &str, format: &str) -> String {
    let secret = crate::registry::model::Format::parse(format)
        .is_none_or(crate::registry::model::Format::url_is_secret);
    url(raw, secret)
}

/// Whether `host` is a chat service's webhook host.
pub fn is_chat_host(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    CHAT_HOSTS.contains(&host.as_str())
}

/// Eight hex digits of the value's SHA-256: enough to tell values apart,
/// nothing to recover one from.
pub fn fingerprint(value: &str) -> String {
    let digest = Sha256::digest(value.as_bytes());
    digest[..4].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chat_hook_shows_only_scheme_host_and_fingerprint() {
        let slack = "https://hooks.slack.com/services/T000/B000/XXXXSECRET";
        let shown = url(slack, false);
        assert!(shown.starts_with("https://hooks.slack.com/… ["), "{shown}");
        assert!(!shown.contains("T000") && !shown.contains("SECRET"));
        let discord = "https://discord.com/api/webhooks/123/tokenSECRET";
        assert!(!url(discord, true).contains("token"));
        assert_ne!(url(slack, true), url(discord, true));
        // Any host, when the format says the URL is the secret.
        let other = url("https://chat.example.com/hook/abc", true);
        assert!(!other.contains("abc"), "{other}");
    }

    #[test]
    fn a_url_in_a_message_is_shown_as_url_shows_it() {
        let slack = "https://hooks.slack.com/services/T000/B000/XXXXSECRET";
        let message = format!(
            "error trying to connect to {slack}: refused; path /services/T000/B000/XXXXSECRET"
        );
        let shown = in_text(&message, slack, true);
        assert!(
            !shown.contains("SECRET") && !shown.contains("T000"),
            "{shown}"
        );
        assert!(shown.contains("https://hooks.slack.com/… ["), "{shown}");
        let plain = "https://example.com/hooks/plausible?token=SECRET";
        let shown = in_text(&format!("at {plain}"), plain, false);
        assert!(
            shown.contains("https://example.com/hooks/plausible?… ["),
            "{shown}"
        );
        assert!(!shown.contains("SECRET"), "{shown}");
        assert_eq!(in_text("refused", slack, true), "refused");
    }

    #[test]
    fn a_stored_webhook_is_shown_by_its_format() {
        let raw = "https://chat.example.com/hook/abc";
        assert_eq!(webhook_url(raw, "standard"), raw);
        assert!(!webhook_url(raw, "slack").contains("abc"));
        assert!(
            !webhook_url(raw, "teams").contains("abc"),
            "an unknown format hides it"
        );
    }

    #[test]
    fn other_urls_keep_their_path_but_not_their_query() {
        assert_eq!(
            url("https://example.com:8443/hooks/plausible", false),
            "https://example.com:8443/hooks/plausible"
        );
        let shown = url("https://example.com/h?token=SECRET#x", false);
        assert!(shown.starts_with("https://example.com/h?… ["), "{shown}");
        assert!(!shown.contains("SECRET"));
        assert!(!url("not a url SECRET", false).contains("SECRET"));
    }
}
