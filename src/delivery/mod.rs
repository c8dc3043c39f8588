//! Delivery: sending what the triggers put in the outbox.
//!
//! So far: the SSRF policy (`ssrf`), which the registry uses to refuse
//! webhook URLs whose host is a non-public IP literal, and Standard Webhooks
//! signing (`signing`), and the retry policy (`retry`).

pub mod client;
pub mod retry;
pub mod schedule;
pub mod signing;
pub mod ssrf;
