//! Delivery: sending what the triggers (and the web app) put in the outbox.
//!
//! `schedule` drives it: leases due deliveries and records outcomes. Under
//! it: `client` (HTTP over rustls with the SSRF guard of `crate::egress`),
//! `signing` (Standard Webhooks) and `retry` (when to try again). `feed` is
//! how a change source other than LISTEN hands the scheduler new work.

pub mod client;
pub mod feed;
pub mod formats;
pub mod retry;
pub mod schedule;
pub mod signing;
