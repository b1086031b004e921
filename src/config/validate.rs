//! Stage 2, part one: names and references. Every location a server lists, every upstream and
//! plugin a location names must exist; listen addresses must not clash; a table must have what it
//! cannot work without. Values are parsed (and their errors reported) where they are compiled,
//! in [`crate::runtime::compile`].

use std::collections::HashSet;
use std::net::SocketAddr;

use super::{ConfigError, Loaded};

/// What a check found: errors make the configuration unusable, warnings do not.
#[derive(Debug, Default)]
pub struct Findings {
    /// Problems that reject the configuration.
    pub errors: Vec<ConfigError>,
    /// Things worth telling the operator.
    pub warnings: Vec<String>,
}

/// Checks names and references across tables.
pub fn validate(loaded: &Loaded, findings: &mut Findings) {
    let Loaded { config, origins } = loaded;
    let mut error = |table: &str, key: &str, message: String| {
        findings.errors.push(origins.error(table, key, message));
    };

    if config.servers.is_empty() {
        error(
            "servers",
            "",
            "no [servers.NAME] is defined, so nothing would listen".into(),
        );
    }
    let mut listening: Vec<(&str, SocketAddr)> = Vec::new();
    for (name, server) in &config.servers {
        let table = format!("servers.{name}");
        match parse_listen_addr(&server.addr) {
            Ok(addr) => {
                if let Some((other, _)) = listening.iter().find(|(_, a)| overlaps(*a, addr)) {
                    error(
                        &table,
                        "addr",
                        format!("{addr} is also the address of servers.{other}"),
                    );
                }
                listening.push((name, addr));
            }
            Err(message) => error(&table, "addr", message),
        }
        let mut seen = HashSet::new();
        for (index, location) in server.locations.iter().enumerate() {
            let key = format!("locations[{index}]");
            if !config.locations.contains_key(location) {
                error(&table, &key, format!("no location named \"{location}\""));
            } else if !seen.insert(location) {
                error(&table, &key, format!("\"{location}\" is listed twice"));
            }
        }
        if server.tls_cert.is_some() != server.tls_key.is_some() {
            let missing = if server.tls_cert.is_none() {
                "tls_cert"
            } else {
                "tls_key"
            };
            error(
                &table,
                missing,
                "tls_cert and tls_key must be set together".into(),
            );
        }
    }

    for (name, location) in &config.locations {
        let table = format!("locations.{name}");
        if let Some(upstream) = &location.upstream
            && !config.upstreams.contains_key(upstream)
        {
            error(
                &table,
                "upstream",
                format!("no upstream named \"{upstream}\""),
            );
        }
        let mut seen = HashSet::new();
        for (index, plugin) in location.plugins.iter().enumerate() {
            let key = format!("plugins[{index}]");
            if !config.plugins.contains_key(plugin) {
                error(&table, &key, format!("no plugin named \"{plugin}\""));
            } else if !seen.insert(plugin) {
                error(&table, &key, format!("\"{plugin}\" is listed twice"));
            }
        }
    }

    for (name, upstream) in &config.upstreams {
        if upstream.addrs.is_empty() {
            error(
                &format!("upstreams.{name}"),
                "addrs",
                "an upstream needs at least one address".into(),
            );
        }
    }

    // Sets of the names in use, so each check is a lookup rather than a scan of every table.
    let used_upstreams: HashSet<&str> = config
        .locations
        .values()
        .filter_map(|l| l.upstream.as_deref())
        .collect();
    for name in config.upstreams.keys() {
        if !used_upstreams.contains(name.as_str()) {
            findings
                .warnings
                .push(format!("upstreams.{name} is not used by any location"));
        }
    }
    let served: HashSet<&str> = config
        .servers
        .values()
        .flat_map(|s| s.locations.iter().map(String::as_str))
        .collect();
    for name in config.locations.keys() {
        if !served.contains(name.as_str()) {
            findings
                .warnings
                .push(format!("locations.{name} is not served by any server"));
        }
    }
    let used_plugins: HashSet<&str> = config
        .locations
        .values()
        .flat_map(|l| l.plugins.iter().map(String::as_str))
        .collect();
    for name in config.plugins.keys() {
        if !used_plugins.contains(name.as_str()) {
            findings
                .warnings
                .push(format!("plugins.{name} is not used by any location"));
        }
    }
}

/// Parses a listen address, `ip:port` or `[ipv6]:port`.
pub fn parse_listen_addr(text: &str) -> Result<SocketAddr, String> {
    text.trim().parse().map_err(|_| {
        format!(
            "invalid listen address \"{text}\": write ip:port, e.g. \"0.0.0.0:80\" or \"[::]:443\""
        )
    })
}

/// Whether two listen addresses would claim the same port (port 0 asks for a fresh one each).
fn overlaps(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && a.is_ipv4() == b.is_ipv4()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::load::load_text;

    fn check(text: &str) -> Findings {
        let loaded = load_text(Path::new("/p.toml"), text, &|_| None).unwrap();
        let mut findings = Findings::default();
        validate(&loaded, &mut findings);
        findings
    }

    fn errors(text: &str) -> Vec<String> {
        check(text).errors.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn dangling_references_are_named() {
        let errors = errors(
            "[servers.main]\naddr = '127.0.0.1:8080'\nlocations = ['api', 'ghost']\n\
             [locations.api]\nupstream = 'nowhere'\nplugins = ['missing']\n",
        );
        assert_eq!(
            errors,
            [
                "/p.toml:3: servers.main.locations[1]: no location named \"ghost\"",
                "/p.toml:5: locations.api.upstream: no upstream named \"nowhere\"",
                "/p.toml:6: locations.api.plugins[0]: no plugin named \"missing\"",
            ]
        );
    }

    #[test]
    fn listen_addresses_must_not_clash() {
        let errors = errors(
            "[servers.a]\naddr = '0.0.0.0:8080'\n[servers.b]\naddr = '127.0.0.1:8080'\n\
             [servers.c]\naddr = '[::1]:8080'\n[servers.d]\naddr = 'localhost'\n",
        );
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0].contains("servers.b.addr: 127.0.0.1:8080 is also the address of servers.a")
        );
        assert!(errors[1].contains("servers.d.addr: invalid listen address \"localhost\""));
    }

    #[test]
    fn empty_upstreams_and_half_tls_are_errors() {
        let errors = errors(
            "[servers.a]\naddr = '127.0.0.1:1'\ntls_cert = 'c.pem'\n[upstreams.u]\naddrs = []\n",
        );
        assert!(errors[0].contains("servers.a.tls_key: tls_cert and tls_key must be set together"));
        assert!(errors[1].contains("upstreams.u.addrs: an upstream needs at least one address"));
        let errors = super::tests::errors("[basic]\nname = 'x'\n");
        assert!(errors[0].contains("no [servers.NAME] is defined"));
    }

    #[test]
    fn unused_tables_are_warned_about() {
        let findings = check(
            "[servers.a]\naddr = '127.0.0.1:1'\n[locations.lonely]\n[upstreams.spare]\naddrs = ['127.0.0.1:2']\n\
             [plugins.idle]\ntype = 'request_id'\n",
        );
        assert!(findings.errors.is_empty());
        assert_eq!(
            findings.warnings,
            [
                "upstreams.spare is not used by any location",
                "locations.lonely is not served by any server",
                "plugins.idle is not used by any location",
            ]
        );
    }
}
