//! plausible-webhooks: webhook notifications for Plausible Analytics.
//!
//! See ARCHITECTURE.md for the map of this crate.

pub mod analytics;
pub mod changes;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod delivery;
pub mod egress;
pub mod http;
pub mod migrate;
pub mod redact;
pub mod registry;
pub mod retention;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod triggers;
