//! Delivery: sending what the triggers put in the outbox.
//!
//! So far only the SSRF policy (`ssrf`) exists; the registry uses it to
//! refuse webhook URLs whose host is a non-public IP literal.

pub mod ssrf;
