//! Upstream pools: the backends of an `[upstreams.NAME]` table, how one is chosen (see
//! [`balance`]), and how pingap connects to it.

pub mod balance;

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use balance::{Balancer, HashKey, Selected};
use pingora::http::RequestHeader;
use pingora::lb::Backend;
use pingora::upstreams::peer::HttpPeer;

use crate::config::schema::{Protocol, Upstream};

/// Default time allowed to connect to a backend.
pub const DEFAULT_CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time allowed between two reads from a backend.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Default time allowed between two writes to a backend.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default time an idle pooled connection is kept.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Heaviest weight a backend may have.
const MAX_WEIGHT: usize = 1000;

/// A compiled upstream.
pub struct Pool {
    name: Arc<str>,
    balancer: Balancer,
    backend_list: Vec<String>,
    tls: bool,
    sni: String,
    protocol: Protocol,
    connection_timeout: Duration,
    read_timeout: Duration,
    write_timeout: Duration,
    idle_timeout: Duration,
}

/// A config error inside one upstream table: the key and the reason.
pub type KeyError = (String, String);

impl Pool {
    /// Builds the pool for `[upstreams.NAME]`, resolving host names once.
    pub fn compile(name: &str, spec: &Upstream) -> Result<Pool, Vec<KeyError>> {
        let mut errors = Vec::new();
        let mut backends = BTreeSet::new();
        for (index, addr) in spec.addrs.iter().enumerate() {
            match parse_backend(addr) {
                Ok(found) => backends.extend(found),
                Err(e) => errors.push((format!("addrs[{index}]"), e)),
            }
        }
        let hash_key = match spec.hash_key.as_deref().map(HashKey::parse).transpose() {
            Ok(key) => key,
            Err(e) => {
                errors.push(("hash_key".to_string(), e));
                None
            }
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        let backend_list = backends
            .iter()
            .map(|b| match b.weight {
                1 => b.addr.to_string(),
                weight => format!("{} (weight {weight})", b.addr),
            })
            .collect();
        let algorithm = spec.algorithm.unwrap_or_default();
        let balancer = Balancer::build(algorithm, hash_key, backends)
            .map_err(|e| vec![("hash_key".to_string(), e)])?;
        let sni = spec.sni.clone().unwrap_or_default();
        Ok(Pool {
            name: Arc::from(name),
            balancer,
            backend_list,
            tls: spec.tls.unwrap_or(!sni.is_empty()),
            sni,
            protocol: spec.protocol.unwrap_or_default(),
            connection_timeout: spec
                .connection_timeout
                .map_or(DEFAULT_CONNECTION_TIMEOUT, |d| d.get()),
            read_timeout: spec.read_timeout.map_or(DEFAULT_READ_TIMEOUT, |d| d.get()),
            write_timeout: spec
                .write_timeout
                .map_or(DEFAULT_WRITE_TIMEOUT, |d| d.get()),
            idle_timeout: spec.idle_timeout.map_or(DEFAULT_IDLE_TIMEOUT, |d| d.get()),
        })
    }

    /// The upstream's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How many backends it has.
    pub fn backend_count(&self) -> usize {
        self.backend_list.len()
    }

    /// The backends' addresses, with their weight when it is not 1.
    pub fn backends(&self) -> &[String] {
        &self.backend_list
    }

    /// Chooses a backend for a request from `client_ip`.
    pub fn select(&self, req: &RequestHeader, client_ip: Option<IpAddr>) -> Option<Selected> {
        self.balancer
            .select(req, client_ip, self.backend_count().max(1))
    }

    /// How to connect to `backend`.
    pub fn peer(&self, backend: &Backend) -> HttpPeer {
        let mut peer = HttpPeer::new(backend.addr.clone(), self.tls, self.sni.clone());
        peer.options.connection_timeout = Some(self.connection_timeout);
        peer.options.read_timeout = Some(self.read_timeout);
        peer.options.write_timeout = Some(self.write_timeout);
        peer.options.idle_timeout = Some(self.idle_timeout);
        match self.protocol {
            Protocol::Http1 => peer.options.set_http_version(1, 1),
            Protocol::H2 => peer.options.set_http_version(2, 2),
            Protocol::Auto => peer.options.set_http_version(2, 1),
        }
        peer
    }
}

/// Parses `"host:port"` or `"host:port weight"`; a host name may resolve to several backends.
fn parse_backend(text: &str) -> Result<Vec<Backend>, String> {
    let mut parts = text.split_whitespace();
    let addr = parts
        .next()
        .ok_or_else(|| "an address is empty".to_string())?;
    let weight = match parts.next() {
        None => 1,
        Some(weight) => match weight.parse::<usize>() {
            Ok(w) if (1..=MAX_WEIGHT).contains(&w) => w,
            _ => {
                return Err(format!(
                    "weight \"{weight}\" must be a number from 1 to {MAX_WEIGHT}"
                ));
            }
        },
    };
    if parts.next().is_some() {
        return Err(format!(
            "\"{text}\" is not \"host:port\" or \"host:port weight\""
        ));
    }
    let resolved: Vec<SocketAddr> = match addr.parse::<SocketAddr>() {
        Ok(addr) => vec![addr],
        Err(_) => addr
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve \"{addr}\": {e} (write host:port)"))?
            .collect(),
    };
    if resolved.is_empty() {
        return Err(format!("\"{addr}\" resolves to no address"));
    }
    Ok(resolved
        .into_iter()
        .map(|addr| Backend {
            addr: pingora::protocols::l4::socket::SocketAddr::Inet(addr),
            weight,
            ext: Default::default(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get() -> RequestHeader {
        RequestHeader::build("GET", b"/", None).unwrap()
    }

    fn upstream(addrs: &[&str]) -> Upstream {
        Upstream {
            addrs: addrs.iter().map(|s| s.to_string()).collect(),
            ..Upstream::default()
        }
    }

    #[test]
    fn round_robin_visits_every_backend_evenly() {
        let pool = Pool::compile(
            "api",
            &upstream(&["127.0.0.1:8001", "127.0.0.1:8002", "127.0.0.1:8003"]),
        )
        .unwrap();
        let mut counts = std::collections::HashMap::new();
        for _ in 0..300 {
            *counts
                .entry(pool.select(&get(), None).unwrap().backend.addr.to_string())
                .or_insert(0) += 1;
        }
        assert_eq!(counts.len(), 3);
        assert!(counts.values().all(|&n| n == 100), "{counts:?}");
    }

    #[test]
    fn weights_and_host_names() {
        let pool = Pool::compile("w", &upstream(&["127.0.0.1:1 3", "localhost:2"])).unwrap();
        assert!(pool.backend_count() >= 2);
        let mut heavy = 0;
        for _ in 0..400 {
            if pool.select(&get(), None).unwrap().backend.addr.to_string() == "127.0.0.1:1" {
                heavy += 1;
            }
        }
        assert!(heavy > 200, "weight 3 of total >= 4: {heavy}");
    }

    #[test]
    fn bad_backends_are_named() {
        let errors = Pool::compile(
            "bad",
            &upstream(&["127.0.0.1:1 0", "no-port", "127.0.0.1:1 2 3"]),
        )
        .err()
        .unwrap();
        let keys: Vec<_> = errors.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["addrs[0]", "addrs[1]", "addrs[2]"]);
        assert!(errors[0].1.contains("must be a number from 1"));
        assert!(errors[1].1.contains("cannot resolve \"no-port\""));
    }

    #[test]
    fn peers_carry_timeouts_and_tls() {
        let mut spec = upstream(&["127.0.0.1:443"]);
        spec.sni = Some("api.example.com".into());
        spec.read_timeout = Some(crate::config::values::ConfigDuration(
            Duration::from_millis(250),
        ));
        let pool = Pool::compile("tls", &spec).unwrap();
        let peer = pool.peer(&pool.select(&get(), None).unwrap().backend);
        assert_eq!(peer.sni, "api.example.com");
        assert!(peer.is_tls());
        assert_eq!(peer.options.read_timeout, Some(Duration::from_millis(250)));
        assert_eq!(
            peer.options.connection_timeout,
            Some(DEFAULT_CONNECTION_TIMEOUT)
        );
    }
}
