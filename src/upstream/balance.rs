//! Choosing a backend: round robin (weighted), least connections, and consistent hashing (ketama)
//! by client address (`ip_hash`) or by a request key (`consistent_hash` with `hash_key`).

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::FutureExt;
use http::HeaderName;
use pingap_plugins::request::{cookie, query_arg};
use pingora::http::RequestHeader;
use pingora::lb::discovery::Static;
use pingora::lb::selection::Consistent;
use pingora::lb::{Backend, Backends, LoadBalancer};

use super::health::{BackendHealth, InFlightGuard};
use crate::config::schema::Algorithm;

/// What `consistent_hash` hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    /// The client address.
    Ip,
    /// Path and query.
    Uri,
    /// The path.
    Path,
    /// A request header.
    Header(HeaderName),
    /// A cookie.
    Cookie(String),
    /// A query parameter.
    Query(String),
}

impl HashKey {
    /// Parses `ip`, `uri`, `path`, `header:NAME`, `cookie:NAME` or `query:NAME`.
    pub fn parse(text: &str) -> Result<HashKey, String> {
        let invalid = || {
            format!(
                "invalid hash_key \"{text}\" (ip, uri, path, header:NAME, cookie:NAME or query:NAME)"
            )
        };
        Ok(match text.trim().split_once(':') {
            None => match text.trim() {
                "ip" => HashKey::Ip,
                "uri" => HashKey::Uri,
                "path" => HashKey::Path,
                _ => return Err(invalid()),
            },
            Some((_, "")) => return Err(invalid()),
            Some(("header", name)) => {
                HashKey::Header(HeaderName::try_from(name.trim()).map_err(|_| invalid())?)
            }
            Some(("cookie", name)) => HashKey::Cookie(name.trim().to_string()),
            Some(("query", name)) => HashKey::Query(name.trim().to_string()),
            Some(_) => return Err(invalid()),
        })
    }

    /// The bytes hashed for a request (empty when the source is missing).
    fn key(&self, req: &RequestHeader, client_ip: Option<IpAddr>) -> Vec<u8> {
        match self {
            HashKey::Ip => client_ip
                .map(|ip| ip.to_string().into_bytes())
                .unwrap_or_default(),
            HashKey::Uri => req
                .uri
                .path_and_query()
                .map_or_else(Vec::new, |pq| pq.as_str().as_bytes().to_vec()),
            HashKey::Path => req.uri.path().as_bytes().to_vec(),
            HashKey::Header(name) => req
                .headers
                .get(name)
                .map_or_else(Vec::new, |v| v.as_bytes().to_vec()),
            HashKey::Cookie(name) => cookie(req, name).unwrap_or_default().as_bytes().to_vec(),
            HashKey::Query(name) => query_arg(req.uri.query().unwrap_or_default(), name)
                .unwrap_or_default()
                .as_bytes()
                .to_vec(),
        }
    }
}

/// The chosen backend; with least connections it counts as in flight until dropped.
pub struct Selected {
    /// The backend.
    pub backend: Backend,
    /// Its health, to record how the attempt went.
    pub health: Option<Arc<BackendHealth>>,
    _slot: Option<SlotGuard>,
    /// Counts the request in the backend's requests in flight while it lives.
    pub in_flight: Option<InFlightGuard>,
}

/// How an upstream chooses.
pub enum Balancer {
    /// Each backend in turn, in proportion to its weight.
    RoundRobin(Rotation),
    /// A ketama ring over the backends, keyed by a request key.
    Consistent {
        /// The ring.
        ring: LoadBalancer<Consistent>,
        /// What is hashed.
        key: HashKey,
        /// Steps taken along the ring looking for an acceptable backend.
        max_steps: usize,
    },
    /// The backend with the fewest requests in flight (relative to its weight).
    LeastConnections(LeastConnections),
}

impl Balancer {
    /// Builds the balancer for `algorithm` over `backends`.
    pub fn build(
        algorithm: Algorithm,
        hash_key: Option<HashKey>,
        backends: BTreeSet<Backend>,
    ) -> Result<Balancer, String> {
        let total_weight: usize = backends.iter().map(|b| b.weight.max(1)).sum();
        // Enough steps to meet every backend of a weighted rotation or a ring at least once in
        // practice; only taken when backends are refused.
        let max_steps = (total_weight * 4).clamp(16, 4096);
        Ok(match (algorithm, hash_key) {
            (Algorithm::RoundRobin | Algorithm::WeightedRoundRobin, None) => {
                Balancer::RoundRobin(Rotation::new(backends))
            }
            (Algorithm::LeastConnections, None) => {
                Balancer::LeastConnections(LeastConnections::new(backends))
            }
            (Algorithm::IpHash, None) => Balancer::Consistent {
                ring: load_balancer(backends)?,
                key: HashKey::Ip,
                max_steps,
            },
            (Algorithm::ConsistentHash, Some(key)) => Balancer::Consistent {
                ring: load_balancer(backends)?,
                key,
                max_steps,
            },
            (Algorithm::ConsistentHash, None) => {
                return Err("consistent_hash needs a hash_key".to_string());
            }
            (_, Some(_)) => return Err("hash_key is only used by consistent_hash".to_string()),
        })
    }

    /// Chooses a backend for a request among those `accept` allows.
    pub fn select(
        &self,
        req: &RequestHeader,
        client_ip: Option<IpAddr>,
        accept: &dyn Fn(&Backend) -> bool,
    ) -> Option<Selected> {
        let plain = |backend: Backend| Selected {
            backend,
            health: None,
            in_flight: None,
            _slot: None,
        };
        match self {
            Balancer::RoundRobin(rotation) => rotation.select(accept).map(plain),
            Balancer::Consistent {
                ring,
                key,
                max_steps,
            } => ring
                .select_with(&key.key(req, client_ip), *max_steps, |b, _| accept(b))
                .map(plain),
            Balancer::LeastConnections(least) => least.select(accept),
        }
    }

    /// Takes `backend` (one of this balancer's) for a request, bypassing the algorithm.
    pub fn take(&self, backend: &Backend) -> Selected {
        match self {
            Balancer::LeastConnections(least) => least.take(backend),
            _ => Selected {
                backend: backend.clone(),
                health: None,
                in_flight: None,
                _slot: None,
            },
        }
    }
}
fn load_balancer<S>(backends: BTreeSet<Backend>) -> Result<LoadBalancer<S>, String>
where
    S: pingora::lb::selection::BackendSelection + 'static,
    S::Iter: pingora::lb::selection::BackendIter,
{
    let balancer = LoadBalancer::from_backends(Backends::new(Static::new(backends)));
    // Static discovery is ready at once; this only builds the selector.
    match balancer.update().now_or_never() {
        Some(Ok(())) => Ok(balancer),
        _ => Err("could not build the backend selector".to_string()),
    }
}

/// Weighted round robin without allocating: the backends' indices in a fixed smooth order (a
/// backend of weight 3 appears three times, spread out), walked by one atomic counter. Pingora's
/// round robin allocates a set on every selection to skip repeats.
pub struct Rotation {
    backends: Vec<Backend>,
    order: Vec<usize>,
    next: AtomicUsize,
}

impl Rotation {
    fn new(backends: BTreeSet<Backend>) -> Rotation {
        let backends: Vec<Backend> = backends.into_iter().collect();
        // nginx's smooth weighted round robin, run for one full cycle.
        let weights: Vec<i64> = backends
            .iter()
            .map(|b| i64::try_from(b.weight.max(1)).unwrap_or(1))
            .collect();
        let total: i64 = weights.iter().sum();
        let mut current = vec![0i64; backends.len()];
        let mut order = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
        for _ in 0..total {
            for (current, weight) in current.iter_mut().zip(&weights) {
                *current += weight;
            }
            let Some(best) = (0..current.len()).max_by_key(|i| (current[*i], usize::MAX - i))
            else {
                break;
            };
            current[best] -= total;
            order.push(best);
        }
        Rotation {
            backends,
            order,
            next: AtomicUsize::new(0),
        }
    }

    fn select(&self, accept: &dyn Fn(&Backend) -> bool) -> Option<Backend> {
        let len = self.order.len();
        if len == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..len)
            .map(|step| &self.backends[self.order[(start + step) % len]])
            .find(|backend| accept(backend))
            .cloned()
    }
}

/// Least connections: in-flight counts per backend, updated with atomics (no lock).
pub struct LeastConnections {
    slots: Arc<[Slot]>,
    /// Where the next scan starts, so that ties rotate.
    next: AtomicUsize,
}

struct Slot {
    backend: Backend,
    weight: usize,
    in_flight: AtomicUsize,
}

struct SlotGuard {
    slots: Arc<[Slot]>,
    index: usize,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.slots[self.index]
            .in_flight
            .fetch_sub(1, Ordering::Relaxed);
    }
}

impl LeastConnections {
    fn new(backends: BTreeSet<Backend>) -> LeastConnections {
        LeastConnections {
            slots: backends
                .into_iter()
                .map(|backend| Slot {
                    weight: backend.weight.max(1),
                    backend,
                    in_flight: AtomicUsize::new(0),
                })
                .collect(),
            next: AtomicUsize::new(0),
        }
    }

    fn select(&self, accept: &dyn Fn(&Backend) -> bool) -> Option<Selected> {
        let count = self.slots.len();
        if count == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % count;
        // Load per unit of weight, compared by cross-multiplying to stay in integers.
        let index = (0..count)
            .map(|offset| (start + offset) % count)
            .filter(|index| accept(&self.slots[*index].backend))
            .min_by(|a, b| {
                let (a, b) = (&self.slots[*a], &self.slots[*b]);
                (a.in_flight.load(Ordering::Relaxed) * b.weight)
                    .cmp(&(b.in_flight.load(Ordering::Relaxed) * a.weight))
            })?;
        Some(self.hold(index))
    }

    fn take(&self, backend: &Backend) -> Selected {
        match self.slots.iter().position(|slot| slot.backend == *backend) {
            Some(index) => self.hold(index),
            None => Selected {
                backend: backend.clone(),
                health: None,
                in_flight: None,
                _slot: None,
            },
        }
    }

    fn hold(&self, index: usize) -> Selected {
        self.slots[index].in_flight.fetch_add(1, Ordering::Relaxed);
        Selected {
            backend: self.slots[index].backend.clone(),
            health: None,
            in_flight: None,
            _slot: Some(SlotGuard {
                slots: self.slots.clone(),
                index,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn backends(count: u16) -> BTreeSet<Backend> {
        (1..=count)
            .map(|port| Backend::new(&format!("127.0.0.1:{port}")).unwrap())
            .collect()
    }

    fn get(uri: &str) -> RequestHeader {
        RequestHeader::build("GET", uri.as_bytes(), None).unwrap()
    }

    fn port(selected: &Selected) -> u16 {
        selected.backend.addr.as_inet().unwrap().port()
    }

    #[test]
    fn round_robin_is_smooth_weighted_and_skips_refused_backends() {
        let mut set = backends(2);
        let heavy = set.pop_first().unwrap();
        set.insert(Backend { weight: 3, ..heavy });
        let balancer = Balancer::build(Algorithm::WeightedRoundRobin, None, set).unwrap();
        let req = get("/");
        let picks: Vec<u16> = (0..400)
            .map(|_| port(&balancer.select(&req, None, &|_| true).unwrap()))
            .collect();
        assert_eq!(picks.iter().filter(|p| **p == 1).count(), 300);
        assert_eq!(&picks[..4], &[1, 1, 2, 1], "spread out, not 1 1 1 2");
        let only_two = |b: &Backend| b.addr.as_inet().unwrap().port() == 2;
        for _ in 0..5 {
            assert_eq!(port(&balancer.select(&req, None, &only_two).unwrap()), 2);
        }
        assert!(balancer.select(&req, None, &|_| false).is_none());
    }

    #[test]
    fn least_connections_prefers_the_least_loaded() {
        let balancer = Balancer::build(Algorithm::LeastConnections, None, backends(3)).unwrap();
        let req = get("/");
        let held: Vec<Selected> = (0..3)
            .map(|_| balancer.select(&req, None, &|_| true).unwrap())
            .collect();
        let mut ports: Vec<u16> = held.iter().map(port).collect();
        ports.sort();
        assert_eq!(ports, [1, 2, 3], "one each while all are busy");
        let busy_two = held
            .into_iter()
            .filter(|s| port(s) == 2)
            .collect::<Vec<_>>();
        // Ports 1 and 3 are free again; 2 still has a request in flight.
        for _ in 0..10 {
            let next = balancer.select(&req, None, &|_| true).unwrap();
            assert_ne!(port(&next), 2);
        }
        drop(busy_two);
    }

    #[test]
    fn consistent_hashing_is_stable_and_moves_few_keys() {
        let key = HashKey::parse("header:x-user").unwrap();
        let owner = |balancer: &Balancer, user: usize| {
            let mut req = get("/");
            req.insert_header("x-user", format!("user-{user}")).unwrap();
            port(&balancer.select(&req, None, &|_| true).unwrap())
        };
        let four =
            Balancer::build(Algorithm::ConsistentHash, Some(key.clone()), backends(4)).unwrap();
        let five = Balancer::build(Algorithm::ConsistentHash, Some(key), backends(5)).unwrap();
        let mut moved = 0;
        let mut spread = HashMap::new();
        for user in 0..10_000 {
            let before = owner(&four, user);
            assert_eq!(before, owner(&four, user), "stable");
            *spread.entry(before).or_insert(0) += 1;
            if owner(&five, user) != before {
                moved += 1;
            }
        }
        assert!(moved <= 3_000, "{moved} of 10000 keys moved");
        assert_eq!(spread.len(), 4);
        assert!(spread.values().all(|n| *n > 1_500), "{spread:?}");
    }

    #[test]
    fn ip_hash_keys_on_the_client() {
        let balancer = Balancer::build(Algorithm::IpHash, None, backends(5)).unwrap();
        let req = get("/");
        let client = Some("203.0.113.7".parse().unwrap());
        let first = port(&balancer.select(&req, client, &|_| true).unwrap());
        for _ in 0..20 {
            assert_eq!(
                port(&balancer.select(&req, client, &|_| true).unwrap()),
                first
            );
        }
    }

    #[test]
    fn hash_keys_parse() {
        assert_eq!(HashKey::parse("uri").unwrap(), HashKey::Uri);
        assert_eq!(
            HashKey::parse("cookie:sid").unwrap(),
            HashKey::Cookie("sid".into())
        );
        assert!(HashKey::parse("header:").is_err());
        assert!(HashKey::parse("body").is_err());
        assert!(Balancer::build(Algorithm::ConsistentHash, None, backends(1)).is_err());
        assert!(Balancer::build(Algorithm::RoundRobin, Some(HashKey::Ip), backends(1)).is_err());
    }
}
