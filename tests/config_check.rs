//! `pingap -t`: valid configurations pass with a summary; each kind of mistake fails with an
//! error naming the file, line, key and reason, and every error of a file is reported at once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::{check_config, command, run_to_exit};

const UPSTREAM: &str = "[upstreams.api]\naddrs = ['127.0.0.1:9']\n";
const SERVER: &str = "[servers.main]\naddr = '127.0.0.1:0'\nlocations = ['api']\n";
const LOCATION: &str = "[locations.api]\nupstream = 'api'\npath = '/'\n";

fn valid() -> String {
    format!("{UPSTREAM}{SERVER}{LOCATION}")
}

/// Runs `-t` on `config`, expecting failure, and returns the output.
fn rejected(config: &str) -> String {
    let (status, output) = check_config(config);
    assert_eq!(status.code(), Some(1), "expected exit 1:\n{output}");
    output
}

#[test]
fn the_example_configuration_passes() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/example.toml");
    let mut command = command();
    command.arg("-t").arg("-c").arg(&example);
    let (status, output) = run_to_exit(command);
    assert!(status.success(), "{output}");
    assert!(
        output.contains("configuration OK: ")
            && output.contains("2 servers, 1 location, 1 upstream (3 backends), 3 plugins"),
        "{output}"
    );
}

#[test]
fn the_plugin_examples_pass() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/plugins.toml");
    let mut command = command();
    command.arg("-t").arg("-c").arg(&examples);
    let (status, output) = run_to_exit(command);
    assert!(status.success(), "{output}");
    let registry = pingap::runtime::plugin_registry();
    let text = std::fs::read_to_string(&examples).unwrap();
    for plugin_type in registry.types() {
        assert!(
            text.contains(&format!("type = \"{}\"", plugin_type.name)),
            "configs/plugins.toml has no example of {}",
            plugin_type.name
        );
    }
}

#[test]
fn a_valid_configuration_prints_ok_and_a_summary() {
    let (status, output) = check_config(&valid());
    assert!(status.success(), "{output}");
    assert!(
        output.contains("1 server, 1 location, 1 upstream (1 backend), 0 plugins"),
        "{output}"
    );
}

#[test]
fn unknown_keys_are_named_with_file_and_line() {
    let output = rejected(&format!(
        "{UPSTREAM}{SERVER}[locations.api]\nupstream = 'api'\nrewrit = '/'\n"
    ));
    assert!(
        output.contains("pingap.toml:8: locations.api.rewrit: unknown field `rewrit`"),
        "{output}"
    );
}

#[test]
fn dangling_references_are_named() {
    let output = rejected(
        "[servers.main]\naddr = '127.0.0.1:0'\nlocations = ['api', 'ghost']\n\
         [locations.api]\nupstream = 'nowhere'\nplugins = ['missing']\n",
    );
    assert!(
        output.contains(":3: servers.main.locations[1]: no location named \"ghost\""),
        "{output}"
    );
    assert!(
        output.contains(":5: locations.api.upstream: no upstream named \"nowhere\""),
        "{output}"
    );
    assert!(
        output.contains(":6: locations.api.plugins[0]: no plugin named \"missing\""),
        "{output}"
    );
    assert!(output.contains("3 errors in the configuration"), "{output}");
}

#[test]
fn duplicate_listen_addresses_are_rejected() {
    let output = rejected(&format!(
        "{}[servers.other]\naddr = '0.0.0.0:8080'\n[servers.again]\naddr = '127.0.0.1:8080'\n",
        valid()
    ));
    assert!(
        output.contains("servers.again.addr: 127.0.0.1:8080 is also the address of servers.other"),
        "{output}"
    );
}

#[test]
fn bad_regexes_durations_and_empty_upstreams_are_rejected() {
    let output = rejected(&format!(
        "{SERVER}[upstreams.api]\naddrs = []\nread_timeout = '5 fortnights'\n\
         [locations.api]\nupstream = 'api'\npath = '~^/users/(\\d+'\n"
    ));
    assert!(
        output.contains("upstreams.api.read_timeout: invalid duration \"5 fortnights\""),
        "{output}"
    );

    let output = rejected(&format!(
        "{SERVER}[upstreams.api]\naddrs = []\n[locations.api]\nupstream = 'api'\npath = '~^/users/(\\d+'\n\
         rewrite = '^/(x /y'\n"
    ));
    assert!(
        output.contains("upstreams.api.addrs: an upstream needs at least one address"),
        "{output}"
    );
    assert!(
        output.contains("locations.api.path: invalid regex"),
        "{output}"
    );
    assert!(
        output.contains("locations.api.rewrite: invalid regex"),
        "{output}"
    );
}

#[test]
fn unknown_plugin_types_and_bad_plugin_keys_are_rejected() {
    let output = rejected(&format!(
        "{UPSTREAM}{SERVER}[locations.api]\nupstream = 'api'\nplugins = ['a', 'b']\n\
         [plugins.a]\ntype = 'teleport'\n[plugins.b]\ntype = 'request_id'\nheadr = 'X-Id'\n"
    ));
    assert!(
        output.contains("plugins.a.type: unknown plugin type `teleport`"),
        "{output}"
    );
    assert!(
        output.contains("plugins.b.headr: unknown field `headr`"),
        "{output}"
    );
}

#[test]
fn environment_variables_are_interpolated_and_missing_ones_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pingap.toml");
    std::fs::write(
        &path,
        format!("{SERVER}{LOCATION}[upstreams.api]\naddrs = ['${{BACKEND_ADDR}}']\n"),
    )
    .unwrap();
    let mut with_var = command();
    with_var
        .arg("-t")
        .arg("-c")
        .arg(&path)
        .env("BACKEND_ADDR", "127.0.0.1:9000");
    let (status, output) = run_to_exit(with_var);
    assert!(status.success(), "{output}");

    let mut without = command();
    without
        .arg("-t")
        .arg("-c")
        .arg(&path)
        .env_remove("BACKEND_ADDR");
    let (status, output) = run_to_exit(without);
    assert_eq!(status.code(), Some(1));
    assert!(
        output.contains("upstreams.api.addrs[0]: environment variable BACKEND_ADDR is not set"),
        "{output}"
    );
}

#[test]
fn a_directory_merges_its_files_and_names_both_files_of_a_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("10-upstreams.toml"), UPSTREAM).unwrap();
    std::fs::write(
        dir.path().join("20-servers.toml"),
        format!("{SERVER}{LOCATION}"),
    )
    .unwrap();
    let mut check = command();
    check.arg("-t").arg("-c").arg(dir.path());
    let (status, output) = run_to_exit(check);
    assert!(status.success(), "{output}");

    std::fs::write(dir.path().join("30-more.toml"), UPSTREAM).unwrap();
    let mut check = command();
    check.arg("-t").arg("-c").arg(dir.path());
    let (status, output) = run_to_exit(check);
    assert_eq!(status.code(), Some(1));
    assert!(
        output.contains("upstreams.api: defined twice: in "),
        "{output}"
    );
    assert!(output.contains("10-upstreams.toml:1 and in "), "{output}");
    assert!(output.contains("30-more.toml:1"), "{output}");
}

#[test]
fn syntax_errors_and_missing_files_are_reported() {
    let output = rejected("[servers.main]\naddr = \"127.0.0.1:0\n");
    assert!(output.contains("pingap.toml:2: invalid TOML"), "{output}");

    let mut missing = command();
    missing.arg("-t").arg("-c").arg("/nonexistent/pingap.toml");
    let (status, output) = run_to_exit(missing);
    assert_eq!(status.code(), Some(1));
    assert!(
        output.contains("/nonexistent/pingap.toml: cannot read"),
        "{output}"
    );
}

#[test]
fn the_embedded_default_passes_and_version_prints() {
    let mut check = command();
    check.arg("-t");
    let (status, output) = run_to_exit(check);
    assert!(status.success(), "{output}");
    assert!(
        output.contains("the embedded default configuration"),
        "{output}"
    );

    let mut version = command();
    version.arg("--version");
    let (status, output) = run_to_exit(version);
    assert!(status.success());
    assert_eq!(
        output.trim(),
        format!("pingap {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn bad_upstream_health_retry_and_discovery_settings_are_named() {
    let output = rejected(&format!(
        "{SERVER}{LOCATION}[upstreams.api]\naddrs = ['127.0.0.1:9', 'unresolvable.invalid:80']\n\
         health_check = 'http://api/healthz?interval=1s'\nhealth_check_interval = '2s'\n\
         healthy_threshold = 0\ncircuit_breaker_open_for = '5s'\npassive_fail_status = [700]\n\
         dns_server = 'dns.example'\nca_file = 'missing-ca.pem'\n"
    ));
    for expected in [
        "upstreams.api.health_check_interval: is also given as ?interval= in health_check",
        "upstreams.api.healthy_threshold: \"0\" is not a whole number above 0",
        "upstreams.api.circuit_breaker_open_for: has no effect without circuit_breaker_failures",
        "upstreams.api.passive_fail_status[0]: 700 is not an HTTP status",
        "upstreams.api.dns_server: \"dns.example\" is not an IP address",
        "upstreams.api.ca_file: cannot read",
    ] {
        assert!(output.contains(expected), "{expected}\n{output}");
    }

    let output = rejected(&format!(
        "{SERVER}{LOCATION}[upstreams.api]\naddrs = ['unresolvable.invalid:80']\n"
    ));
    assert!(
        output.contains("upstreams.api.addrs: cannot resolve \"unresolvable.invalid\""),
        "{output}"
    );
}
