//! The HTTP client that delivers webhooks: hyper over rustls (HTTP/1.1 and
//! HTTP/2), pooled, with connect and total timeouts, no redirects followed,
//! a capped read of the response body, and the SSRF policy applied to every
//! address it connects to.
//!
//! Host names are resolved by `GuardedResolver`, which drops every address
//! the policy refuses and hands the connector only the checked ones, so a
//! name that resolves differently the second time (DNS rebinding) cannot
//! reach an address that was not checked. IP-literal hosts, which the
//! connector does not resolve, are checked before the request is made.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{
    CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, InvalidHeaderValue, USER_AGENT,
};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::TokioExecutor;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use super::signing::SignedHeaders;
use crate::config::DeliveryConfig;
use crate::egress::{Blocked, Policy};
use crate::registry::headers;

/// At most this much of a response body is kept (and read).
pub const SNIPPET_BYTES: usize = 16 * 1024;

const USER_AGENT_VALUE: &str = concat!("plausible-webhooks/", env!("CARGO_PKG_VERSION"));

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot read the CA file {path} (delivery.ca_files): {source}")]
    CaFile {
        path: String,
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    #[error("cannot set up TLS: {0}")]
    Tls(#[source] rustls::Error),
}

/// The receiver's answer to one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// The start of the body (at most [`SNIPPET_BYTES`]), lossily decoded.
    pub snippet: String,
    /// `Retry-After`, as sent.
    pub retry_after: Option<String>,
    /// `X-RateLimit-Reset-After` (Discord's), as sent.
    pub reset_after: Option<String>,
    pub duration: Duration,
}

/// Why an attempt got no response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptError {
    pub kind: ErrorKind,
    pub message: String,
    pub duration: Duration,
}

/// The kinds of failure without a response (the scheduler records them as
/// the store's `ErrorKind` of the same name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The SSRF policy refused every address.
    Blocked,
    /// The name did not resolve.
    Dns,
    /// No connection (refused, reset, TLS handshake failed, ...).
    Connect,
    /// No complete response within the total timeout.
    Timeout,
    /// The connection broke or the response was not valid HTTP.
    Protocol,
}

type Connector = hyper_rustls::HttpsConnector<HttpConnector<GuardedResolver>>;

/// The delivery client; cheap to clone, one connection pool.
#[derive(Clone)]
pub struct DeliveryClient {
    client: Client<Connector, Full<Bytes>>,
    policy: Arc<Policy>,
    total_timeout: Duration,
}

impl DeliveryClient {
    pub fn new(config: &DeliveryConfig) -> Result<DeliveryClient, ClientError> {
        let policy = Arc::new(Policy::from_config(config));
        let mut http = HttpConnector::new_with_resolver(GuardedResolver {
            policy: policy.clone(),
        });
        http.enforce_http(false);
        http.set_connect_timeout(Some(Duration::from_secs(config.connect_timeout_secs)));
        http.set_nodelay(true);
        http.set_keepalive(Some(Duration::from_secs(60)));

        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if config.use_system_roots {
            let native = rustls_native_certs::load_native_certs();
            for error in &native.errors {
                tracing::warn!(error = %error, "cannot load a system CA certificate");
            }
            let (added, ignored) = roots.add_parsable_certificates(native.certs);
            tracing::info!(added, ignored, "system CA certificates loaded");
        }
        for path in &config.ca_files {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|source| ClientError::CaFile {
                    path: path.display().to_string(),
                    source,
                })?;
            for cert in certs {
                roots.add(cert).map_err(ClientError::Tls)?;
            }
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(ClientError::Tls)?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(config.max_in_flight.max(1))
            .build(https);
        Ok(DeliveryClient {
            client,
            policy,
            total_timeout: Duration::from_secs(config.request_timeout_secs),
        })
    }

    /// POSTs a signed body with the webhook's own headers (`custom`). Any
    /// HTTP status is a `Response`; the caller decides what counts as
    /// success.
    pub async fn post(
        &self,
        url: &url::Url,
        headers: &SignedHeaders,
        custom: &[(HeaderName, HeaderValue)],
        body: Bytes,
    ) -> Result<Response, AttemptError> {
        let started = Instant::now();
        let fail = |kind: ErrorKind, message: String| AttemptError {
            kind,
            message,
            duration: started.elapsed(),
        };
        if let Some(host) = url.host_str()
            && !self.policy.host_allowed(host)
            && let Err(blocked) = self.policy.check_host_literal(host)
        {
            return Err(fail(ErrorKind::Blocked, blocked.to_string()));
        }
        let mut request = hyper::Request::post(url.as_str())
            .body(Full::new(body))
            .map_err(|e| {
                fail(
                    ErrorKind::Protocol,
                    format!("cannot build the request: {e}"),
                )
            })?;
        request_headers(request.headers_mut(), headers, custom).map_err(|e| {
            fail(
                ErrorKind::Protocol,
                format!("cannot build the request: {e}"),
            )
        })?;

        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| classify(&e))?;
            let status = response.status().as_u16();
            let header = |name| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            };
            let retry_after = (
                header(hyper::header::RETRY_AFTER.as_str()),
                header("x-ratelimit-reset-after"),
            );
            let mut body = response.into_body();
            let mut kept: Vec<u8> = Vec::new();
            // Read until the cap; the rest is never read (the connection is
            // then dropped rather than reused).
            while kept.len() < SNIPPET_BYTES {
                match body.frame().await {
                    None => break,
                    Some(Ok(frame)) => {
                        if let Some(data) = frame.data_ref() {
                            let room = SNIPPET_BYTES - kept.len();
                            kept.extend_from_slice(&data[..data.len().min(room)]);
                        }
                    }
                    Some(Err(e)) => {
                        return Err((
                            ErrorKind::Protocol,
                            format!("reading the response body: {e}"),
                        ));
                    }
                }
            }
            Ok((status, kept, retry_after))
        };
        match tokio::time::timeout(self.total_timeout, exchange).await {
            Err(_) => Err(fail(
                ErrorKind::Timeout,
                format!("no complete response within {:?}", self.total_timeout),
            )),
            Ok(Err((kind, message))) => Err(fail(kind, message)),
            Ok(Ok((status, kept, (retry_after, reset_after)))) => Ok(Response {
                status,
                snippet: String::from_utf8_lossy(&kept).replace('\0', "\u{fffd}"),
                retry_after,
                reset_after,
                duration: started.elapsed(),
            }),
        }
    }
}

/// A request's headers: the webhook's own first, then the daemon's, which
/// replace any of the same name. The registry refuses reserved names
/// already (`registry::headers`); one that got here anyway is dropped, by
/// name only: values are never logged.
fn request_headers(
    map: &mut HeaderMap,
    signed: &SignedHeaders,
    custom: &[(HeaderName, HeaderValue)],
) -> Result<(), InvalidHeaderValue> {
    for (name, value) in custom {
        if headers::reserved(name.as_str()) {
            tracing::warn!(header = %name, "not sending a reserved header");
            continue;
        }
        map.append(name.clone(), value.clone());
    }
    map.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    map.insert(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
    map.insert("webhook-id", HeaderValue::from_str(&signed.id)?);
    map.insert(
        "webhook-timestamp",
        HeaderValue::from_str(&signed.timestamp)?,
    );
    map.insert(
        "webhook-signature",
        HeaderValue::from_str(&signed.signature)?,
    );
    Ok(())
}

/// Sorts a client error into a kind, with the whole chain as the message.
fn classify(error: &hyper_util::client::legacy::Error) -> (ErrorKind, String) {
    let mut message = error.to_string();
    let mut kind = if error.is_connect() {
        ErrorKind::Connect
    } else {
        ErrorKind::Protocol
    };
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(error);
    while let Some(e) = source {
        message.push_str(": ");
        message.push_str(&e.to_string());
        if e.downcast_ref::<Blocked>().is_some() || e.downcast_ref::<BlockedName>().is_some() {
            kind = ErrorKind::Blocked;
        } else if e.downcast_ref::<NotResolved>().is_some() {
            kind = ErrorKind::Dns;
        }
        source = e.source();
    }
    (kind, message)
}

/// A name that resolved only to addresses the policy refuses. The message
/// is stored in the attempt, which site owners read: it names the kinds of
/// address, never the internal addresses themselves (logged at debug).
#[derive(Debug, thiserror::Error)]
#[error(
    "{host} resolves only to non-public addresses ({kinds}); webhooks may only target public addresses"
)]
struct BlockedName {
    host: String,
    kinds: String,
}

#[derive(Debug, thiserror::Error)]
#[error("{host} did not resolve: {source}")]
struct NotResolved {
    host: String,
    #[source]
    source: io::Error,
}

/// Resolves names with the system resolver and keeps only the addresses
/// the SSRF policy allows.
#[derive(Clone)]
struct GuardedResolver {
    policy: Arc<Policy>,
}

impl tower_service::Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let policy = self.policy.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|source| NotResolved {
                    host: host.clone(),
                    source,
                })?
                .collect();
            if policy.host_allowed(&host) {
                return Ok(addrs.into_iter());
            }
            let mut allowed = Vec::new();
            let mut kinds: Vec<&'static str> = Vec::new();
            for addr in addrs {
                match policy.check(addr.ip()) {
                    Ok(()) => allowed.push(addr),
                    Err(blocked) => {
                        tracing::debug!(host = %host, address = %blocked.address, kind = blocked.kind, "refused address");
                        if !kinds.contains(&blocked.kind) {
                            kinds.push(blocked.kind);
                        }
                    }
                }
            }
            if allowed.is_empty() {
                return Err(Box::new(BlockedName {
                    host,
                    kinds: kinds.join(", "),
                }) as Self::Error);
            }
            Ok(allowed.into_iter())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_headers_are_sent_but_never_replace_the_daemons() {
        let signed = SignedHeaders {
            id: "msg_1".into(),
            timestamp: "1".into(),
            signature: "v1,x".into(),
        };
        let custom = [
            (
                HeaderName::from_static("authorization"),
                HeaderValue::from_static("Bearer k"),
            ),
            (
                HeaderName::from_static("webhook-signature"),
                HeaderValue::from_static("forged"),
            ),
            (
                HeaderName::from_static("content-type"),
                HeaderValue::from_static("text/plain"),
            ),
        ];
        let mut map = HeaderMap::new();
        request_headers(&mut map, &signed, &custom).unwrap();
        assert_eq!(map["authorization"], "Bearer k");
        let signatures: Vec<_> = map.get_all("webhook-signature").iter().collect();
        assert_eq!(signatures, vec!["v1,x"]);
        let types: Vec<_> = map.get_all(CONTENT_TYPE).iter().collect();
        assert_eq!(types, vec!["application/json"]);
    }
}
