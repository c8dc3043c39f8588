//! Delivery: sending what the triggers (and the web app) put in the outbox.
//!
//! `schedule` drives it: leases due deliveries and records outcomes. Under
//! it: `client` (HTTP over rustls with the SSRF guard), `signing`
//! (Standard Webhooks), `retry` (when to try again) and `ssrf` (which
//! addresses may be reached; the registry also uses it).

pub mod client;
pub mod formats;
pub mod retry;
pub mod schedule;
pub mod signing;
pub mod ssrf;
