//! What building one request costs the scheduler, before it reaches the
//! network: signing with each scheme, and rendering each chat format, for
//! a goal payload and for the largest spike payload the triggers write (50
//! pages and 50 sources of 1,024 characters each). Pure CPU on one core;
//! prints nanoseconds per operation. Run with `cargo bench --bench request`.

#[allow(dead_code)]
mod support;

use std::time::Instant;

use chrono::{TimeDelta, Utc};
use plausible_webhooks::delivery::formats::render;
use plausible_webhooks::delivery::signing::{Keys, sign};
use plausible_webhooks::registry::model::{AsymmetricKey, Format, Scheme, SigningSecret};

const ROUNDS: u32 = 20_000;

fn main() {
    // `cargo test --all-targets` runs benches as tests: do nothing then.
    if !support::benchmarking("request") {
        return;
    }
    let goal =
        serde_json::json!({"type": "goal.completed", "timestamp": "2026-12-01T10:00:00Z", "data": {
        "site": {"id": 1, "domain": "shop.example.com"},
        "goal": {"id": 7, "name": "Signup", "kind": "event"},
        "completions": 12, "visitors": 9,
        "interval": {"from": "2026-12-01T09:59:00Z", "to": "2026-12-01T10:00:00Z"},
        "dashboard_url": "https://plausible.example.com/shop.example.com?period=day"}})
        .to_string();
    let long = "/".to_string() + &"p".repeat(1023);
    let items = |key: &str| -> Vec<serde_json::Value> {
        (0..50)
            .map(|i| serde_json::json!({ key: format!("{long}{i}"), "visitors": 100 - i }))
            .collect()
    };
    let spike =
        serde_json::json!({"type": "traffic.spike", "timestamp": "2026-12-01T10:00:00Z", "data": {
        "site": {"id": 1, "domain": "shop.example.com"}, "visitors": 250, "threshold": 100,
        "window_minutes": 5, "top_pages": items("page"), "top_sources": items("source"),
        "dashboard_url": "https://plausible.example.com/shop.example.com?period=realtime"}})
        .to_string();

    let now = Utc::now();
    let secrets = [
        SigningSecret::new(vec![1; 32], None),
        SigningSecret::new(vec![2; 32], Some(now + TimeDelta::hours(1))),
    ];
    let keys = [
        AsymmetricKey::new(ed25519_dalek::SigningKey::from_bytes(&[3; 32]), None),
        AsymmetricKey::new(
            ed25519_dalek::SigningKey::from_bytes(&[4; 32]),
            Some(now + TimeDelta::hours(1)),
        ),
    ];
    let signers: [(&str, &[Scheme], usize, usize); 4] = [
        ("v1, one secret", &[Scheme::V1], 1, 0),
        ("v1a, one key", &[Scheme::V1a], 0, 1),
        ("v1 + v1a, one key each", &[Scheme::V1, Scheme::V1a], 1, 1),
        (
            "v1 + v1a, rotating (two each)",
            &[Scheme::V1, Scheme::V1a],
            2,
            2,
        ),
    ];

    println!("request building, {ROUNDS} rounds each, ns per operation");
    for (name, payload) in [("goal", &goal), ("largest spike", &spike)] {
        println!("{name} payload: {} bytes", payload.len());
        for (label, schemes, n_secrets, n_keys) in signers {
            let keys = Keys {
                schemes,
                secrets: &secrets[..n_secrets],
                signing_keys: &keys[..n_keys],
            };
            let ns = per_op(|| {
                sign("msg_1", now, payload.as_bytes(), keys).expect("signed");
            });
            println!("  sign {label:<32} {ns:>9.0}");
        }
        for format in Format::ALL {
            let mut size = 0;
            let ns = per_op(|| {
                size = render(format, payload).expect("rendered").len();
            });
            println!(
                "  render {:<30} {ns:>9.0}   ({size} bytes)",
                format.as_str()
            );
        }
    }
}

fn per_op(mut op: impl FnMut()) -> f64 {
    for _ in 0..ROUNDS / 10 {
        op();
    }
    let started = Instant::now();
    for _ in 0..ROUNDS {
        op();
    }
    started.elapsed().as_nanos() as f64 / f64::from(ROUNDS)
}
