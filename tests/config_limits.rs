//! Configuration values that could wrap or exhaust the process are refused by `pingap -t` with
//! the file, line and key; and random mutations of a valid configuration never make the loader
//! panic: each is accepted or refused with errors that name the file.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::check_config;
use proptest::prelude::*;

const BASE: &str = r#"[basic]
threads = 1
keepalive_timeout = "60s"

[upstreams.api]
addrs = ["127.0.0.1:9", "127.0.0.1:10 2"]
fail_timeout = "10s"
connection_timeout = "2s"
health_check = "tcp://127.0.0.1:9?interval=5s"
"#;

/// The part of the configuration that is mutated. The upstream stays out of it: a mutated
/// address could become a host name, and resolving it would leave the machine.
const MUTATED: &str = r#"
[locations.api]
upstream = "api"
path = "/api"
rewrite = "/"
plugins = ["limit", "rid"]
headers_set = ["X-Host: $host"]

[servers.main]
addr = "127.0.0.1:0"
locations = ["api"]

[plugins.limit]
type = "rate_limit"
rate = 100
burst = 200

[plugins.rid]
type = "request_id"
"#;

#[test]
fn durations_and_thread_counts_are_bounded() {
    let huge = format!("{BASE}{MUTATED}").replace(
        "fail_timeout = \"10s\"",
        "fail_timeout = \"18446744073709551615s\"",
    );
    let (status, output) = check_config(&huge);
    assert_eq!(status.code(), Some(1), "{output}");
    assert!(
        output.contains("pingap.toml:7: upstreams.api.fail_timeout:")
            && output.contains("longer than the longest accepted, 365 days"),
        "{output}"
    );

    let threads = format!("{BASE}{MUTATED}").replace("threads = 1", "threads = 100000");
    let (status, output) = check_config(&threads);
    assert_eq!(status.code(), Some(1), "{output}");
    assert!(
        output.contains("basic.threads: 100000 is more than the 1024 worker threads accepted"),
        "{output}"
    );

    let (status, output) = check_config(&format!("{BASE}{MUTATED}"));
    assert!(status.success(), "{output}");
}

/// One random edit of a configuration text: replace, insert or delete a run of bytes, or swap
/// a value for a hostile one.
#[derive(Debug, Clone)]
enum Edit {
    Replace(usize, String),
    Insert(usize, String),
    Delete(usize, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    let hostile = prop_oneof![
        Just("18446744073709551615".to_string()),
        Just("-1".to_string()),
        Just("\"\"".to_string()),
        Just("\"99999999999999999999s\"".to_string()),
        Just("[[]]".to_string()),
        Just("\"${NOPE}\"".to_string()),
        Just("\"~(\"".to_string()),
        Just("\"0s\"".to_string()),
        Just("0".to_string()),
        Just("\"*.\"".to_string()),
        "[ -~]{0,12}",
    ];
    prop_oneof![
        (any::<usize>(), hostile.clone()).prop_map(|(at, text)| Edit::Replace(at, text)),
        (any::<usize>(), hostile).prop_map(|(at, text)| Edit::Insert(at, text)),
        (any::<usize>(), 1usize..16).prop_map(|(at, len)| Edit::Delete(at, len)),
    ]
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for edit in edits {
        let at = |n: usize| if bytes.is_empty() { 0 } else { n % bytes.len() };
        match edit {
            Edit::Replace(n, value) => {
                // Replace the value after the n-th `=` (or the byte run there).
                let start = at(*n);
                let eq = bytes[start..]
                    .iter()
                    .position(|&b| b == b'=')
                    .map(|p| start + p + 1);
                if let Some(eq) = eq {
                    let end = bytes[eq..]
                        .iter()
                        .position(|&b| b == b'\n')
                        .map_or(bytes.len(), |p| eq + p);
                    bytes.splice(eq..end, format!(" {value}").into_bytes());
                }
            }
            Edit::Insert(n, value) => {
                let at = at(*n);
                bytes.splice(at..at, value.clone().into_bytes());
            }
            Edit::Delete(n, len) => {
                let start = at(*n);
                let end = (start + len).min(bytes.len());
                bytes.drain(start..end);
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

proptest! {
    // 300 cases by default; PROPTEST_CASES=100000 for a soak.
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(300)
    ))]

    /// The loader and compiler never panic on a mutated configuration, and every error they
    /// report names the file (and, for errors inside it, a line).
    #[test]
    fn mutated_configurations_never_panic(edits in proptest::collection::vec(edit(), 1..4)) {
        let text = format!("{BASE}{}", apply(MUTATED, &edits));
        let name = Path::new("/etc/pingap/pingap.toml");
        let env = |_: &str| None;
        let registry = pingap::runtime::plugin_registry();
        let result = pingap::config::load::load_text(name, &text, &env)
            .and_then(|loaded| pingap::runtime::compile(&loaded, &registry, None).map(|_| ()));
        if let Err(errors) = result {
            prop_assert!(!errors.0.is_empty());
            for error in &errors.0 {
                let shown = error.to_string();
                prop_assert!(
                    shown.starts_with("/etc/pingap/pingap.toml"),
                    "an error without its file: {shown}\n--- config ---\n{text}"
                );
            }
        }
    }
}
