//! Documentation that must stay in step with the code.

use std::collections::BTreeSet;
use std::path::Path;

fn rust_sources(dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(std::fs::read_to_string(&path).unwrap());
        }
    }
}

/// Metric names recorded or described in src/: the first string literal
/// after a `gauge!(`, `counter!(` or `histogram!(` macro call.
fn metrics_in_code() -> BTreeSet<String> {
    let mut sources = Vec::new();
    rust_sources(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut sources,
    );
    let mut names = BTreeSet::new();
    for source in sources {
        for macro_name in ["gauge!(", "counter!(", "histogram!("] {
            for (at, _) in source.match_indices(macro_name) {
                let rest = &source[at + macro_name.len()..];
                let rest = rest.trim_start();
                if let Some(literal) = rest.strip_prefix('"')
                    && let Some(end) = literal.find('"')
                {
                    names.insert(literal[..end].to_string());
                }
            }
        }
    }
    names
}

#[test]
fn every_metric_is_documented_and_every_documented_metric_exists() {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/metrics.md")).unwrap();
    let documented: BTreeSet<String> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .map(str::to_string)
        .collect();
    let in_code = metrics_in_code();
    assert!(!in_code.is_empty());
    assert_eq!(in_code, documented, "docs/metrics.md and the code disagree");
}
