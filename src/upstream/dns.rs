//! DNS discovery: host names in `addrs` are resolved when the config is compiled and again every
//! `dns_refresh`, through `dns_server` when set (otherwise the system's resolver). Every address
//! a name has becomes a backend. A name that fails to resolve keeps the last good set, and says
//! so in the log; in-flight requests keep the backend they were given.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;

/// Default `dns_refresh`.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(30);
/// Time allowed for resolving one name.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// One entry of `addrs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// An IP address and port.
    Fixed(SocketAddr, usize),
    /// A host name to resolve, with its port and weight.
    Name(String, u16, usize),
}

/// How an upstream's backends are found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovery {
    /// The entries of `addrs`, in order.
    pub entries: Vec<Entry>,
    /// `dns_server`.
    pub server: Option<SocketAddr>,
    /// `dns_refresh`.
    pub refresh: Duration,
}

impl Discovery {
    /// Whether any entry is a host name (and so is resolved again every `refresh`).
    pub fn is_dynamic(&self) -> bool {
        self.entries.iter().any(|e| matches!(e, Entry::Name(..)))
    }

    /// Resolves every entry; the first name that fails is the error.
    pub async fn resolve(&self) -> Result<Vec<(SocketAddr, usize)>, String> {
        let resolver = match self.server {
            Some(server) => Some(resolver(server)?),
            None => None,
        };
        let mut found = Vec::new();
        for entry in &self.entries {
            match entry {
                Entry::Fixed(addr, weight) => found.push((*addr, *weight)),
                Entry::Name(host, port, weight) => {
                    let lookup = async {
                        match &resolver {
                            Some(resolver) => resolver
                                .lookup_ip(format!("{host}."))
                                .await
                                .map(|ips| ips.iter().collect::<Vec<IpAddr>>())
                                .map_err(|e| e.to_string()),
                            None => tokio::net::lookup_host((host.as_str(), *port))
                                .await
                                .map(|addrs| addrs.map(|a| a.ip()).collect())
                                .map_err(|e| e.to_string()),
                        }
                    };
                    let ips = tokio::time::timeout(RESOLVE_TIMEOUT, lookup)
                        .await
                        .unwrap_or_else(|_| Err(format!("no answer within {RESOLVE_TIMEOUT:?}")))
                        .map_err(|e| format!("cannot resolve \"{host}\": {e}"))?;
                    if ips.is_empty() {
                        return Err(format!("\"{host}\" resolves to no address"));
                    }
                    found.extend(
                        ips.into_iter()
                            .map(|ip| (SocketAddr::new(ip, *port), *weight)),
                    );
                }
            }
        }
        Ok(found)
    }

    /// Resolves from synchronous code (config compilation), on a thread of its own so that it
    /// works inside and outside a tokio runtime.
    pub fn resolve_blocking(&self) -> Result<Vec<(SocketAddr, usize)>, String> {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| format!("cannot start a resolver: {e}"))?
                        .block_on(self.resolve())
                })
                .join()
                .unwrap_or_else(|_| Err("the resolver thread failed".to_string()))
        })
    }
}

/// A resolver asking only `server`, without a cache (each refresh asks again).
fn resolver(server: SocketAddr) -> Result<hickory_resolver::TokioResolver, String> {
    let connection = |mut config: ConnectionConfig| {
        config.port = server.port();
        config
    };
    let name_server = NameServerConfig::new(
        server.ip(),
        true,
        vec![
            connection(ConnectionConfig::udp()),
            connection(ConnectionConfig::tcp()),
        ],
    );
    let mut builder = hickory_resolver::TokioResolver::builder_with_config(
        ResolverConfig::from_name_servers(vec![name_server]),
        TokioRuntimeProvider::default(),
    );
    builder.options_mut().cache_size = 0;
    builder.options_mut().attempts = 1;
    builder
        .build()
        .map_err(|e| format!("cannot use dns_server {server}: {e}"))
}
