//! Matching a request (host and path) to a location, fast, in a documented order.
//!
//! **Order.** Candidates are ranked by, in turn:
//! 1. `priority` (default 0; higher first), so a priority above 0 goes before every location
//!    without one and a priority below 0 after them;
//! 2. the host: exact > `*.wildcard` > `~regex` > no `host`;
//! 3. the path: `=exact` > `~regex` > prefix, longer prefixes first;
//! 4. the order of the server's `locations` list.
//!
//! The first candidate that matches wins. A location with several host patterns is ranked by its
//! most specific one.
//!
//! **Index.** Every exact host of the server gets a pre-sorted candidate list, with the wildcard,
//! regex and host-less locations that also match it merged in at compile time, so a request for a
//! known host costs one hash lookup and a scan of that host's own locations. Requests for other
//! hosts scan the (pre-sorted) non-exact locations.

pub mod host;
pub mod path;
pub mod rewrite;

use std::cmp::Reverse;
use std::collections::HashMap;

use host::{HostClass, HostPattern};
use path::PathPattern;

/// What a location matches, and what the router returns for it.
#[derive(Debug, Clone)]
pub struct RouteSpec<T> {
    /// Host patterns; empty means any host.
    pub hosts: Vec<HostPattern>,
    /// The path pattern; `None` is the prefix `/`.
    pub path: Option<PathPattern>,
    /// Explicit priority (0 when not set).
    pub priority: i32,
    /// The location.
    pub target: T,
}

/// A matched location.
#[derive(Debug)]
pub struct Match<'r, T> {
    /// The location.
    pub target: &'r T,
    /// How many bytes of the path the pattern matched (the prefix for prefix patterns).
    pub matched_len: usize,
}

struct Route<T> {
    hosts: Vec<HostPattern>,
    path: PathPattern,
    priority: i32,
    target: T,
}

impl<T> Route<T> {
    /// The class of the most specific of this route's host patterns accepted by `accept`, or
    /// `Any` for a route without hosts; `None` when no pattern is accepted.
    fn host_class(&self, accept: impl Fn(&HostPattern) -> bool) -> Option<HostClass> {
        if self.hosts.is_empty() {
            return Some(HostClass::Any);
        }
        self.hosts
            .iter()
            .filter(|pattern| accept(pattern))
            .map(HostPattern::class)
            .min()
    }

    fn rank(&self, host_class: HostClass, order: usize) -> RankKey {
        (
            Reverse(self.priority),
            host_class,
            self.path.class(),
            Reverse(self.path.prefix_len()),
            order,
        )
    }
}

type RankKey = (
    Reverse<i32>,
    HostClass,
    path::PathClass,
    Reverse<usize>,
    usize,
);

#[derive(Clone, Copy)]
struct Candidate {
    route: u32,
    /// Whether the route's host patterns must be checked (not needed in the list of an exact host,
    /// which holds only routes found to match it when the index was built).
    check_host: bool,
}

/// The routing table of one server.
pub struct Router<T> {
    routes: Vec<Route<T>>,
    by_host: HashMap<Box<str>, Box<[Candidate]>>,
    other_hosts: Box<[Candidate]>,
}

impl<T> Router<T> {
    /// Builds the table; `specs` are in the server's `locations` order.
    pub fn new(specs: Vec<RouteSpec<T>>) -> Router<T> {
        let routes: Vec<Route<T>> = specs
            .into_iter()
            .map(|spec| Route {
                hosts: spec.hosts,
                path: spec
                    .path
                    .unwrap_or_else(|| PathPattern::Prefix("/".to_string())),
                priority: spec.priority,
                target: spec.target,
            })
            .collect();

        let mut exact_hosts: Vec<&str> = Vec::new();
        for pattern in routes.iter().flat_map(|route| &route.hosts) {
            if let HostPattern::Exact(host) = pattern
                && !exact_hosts.contains(&host.as_str())
            {
                exact_hosts.push(host);
            }
        }
        let by_host = exact_hosts
            .into_iter()
            .map(|host| {
                let list = ranked(&routes, |route| {
                    route
                        .host_class(|pattern| pattern.matches(host))
                        .map(|class| (class, false))
                });
                (Box::<str>::from(host), list)
            })
            .collect();
        let other_hosts = ranked(&routes, |route| {
            route
                .host_class(|pattern| pattern.class() != HostClass::Exact)
                .map(|class| (class, class != HostClass::Any))
        });
        Router {
            routes,
            by_host,
            other_hosts,
        }
    }

    /// Finds the location for a request; `host` must be lower-cased without port
    /// (see [`host::normalize_host`]).
    pub fn route(&self, host: &str, path: &str) -> Option<Match<'_, T>> {
        let candidates = self.by_host.get(host).unwrap_or(&self.other_hosts);
        for candidate in candidates.iter() {
            let route = &self.routes[candidate.route as usize];
            if candidate.check_host && !route.hosts.iter().any(|pattern| pattern.matches(host)) {
                continue;
            }
            if let Some(matched_len) = route.path.matches(path) {
                return Some(Match {
                    target: &route.target,
                    matched_len,
                });
            }
        }
        None
    }

    /// The locations, in the server's `locations` order.
    pub fn targets(&self) -> impl Iterator<Item = &T> {
        self.routes.iter().map(|r| &r.target)
    }
}

/// The routes selected by `select` (which gives the host class to rank with and whether the host
/// must be checked at request time), in rank order.
fn ranked<T>(
    routes: &[Route<T>],
    select: impl Fn(&Route<T>) -> Option<(HostClass, bool)>,
) -> Box<[Candidate]> {
    let mut list: Vec<(RankKey, Candidate)> = routes
        .iter()
        .enumerate()
        .filter_map(|(order, route)| {
            let (class, check_host) = select(route)?;
            let candidate = Candidate {
                route: u32::try_from(order).ok()?,
                check_host,
            };
            Some((route.rank(class, order), candidate))
        })
        .collect();
    list.sort_by_key(|(key, _)| *key);
    list.into_iter().map(|(_, candidate)| candidate).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(
        name: &'static str,
        hosts: &[&str],
        path: Option<&str>,
        priority: i32,
    ) -> RouteSpec<&'static str> {
        RouteSpec {
            hosts: hosts
                .iter()
                .map(|h| HostPattern::parse(h).unwrap())
                .collect(),
            path: path.map(|p| PathPattern::parse(p).unwrap()),
            priority,
            target: name,
        }
    }

    fn route(router: &Router<&'static str>, host: &str, path: &str) -> Option<&'static str> {
        router.route(host, path).map(|m| *m.target)
    }

    #[test]
    fn paths_rank_exact_then_regex_then_longest_prefix() {
        let router = Router::new(vec![
            spec("root", &[], None, 0),
            spec("api", &[], Some("/api"), 0),
            spec("api_v1", &[], Some("/api/v1"), 0),
            spec("users", &[], Some(r"~^/api/v1/users/\d+$"), 0),
            spec("health", &[], Some("=/api/v1/health"), 0),
        ]);
        assert_eq!(route(&router, "x", "/"), Some("root"));
        assert_eq!(route(&router, "x", "/api/x"), Some("api"));
        assert_eq!(route(&router, "x", "/api/v1/x"), Some("api_v1"));
        assert_eq!(route(&router, "x", "/api/v1/users/7"), Some("users"));
        assert_eq!(route(&router, "x", "/api/v1/health"), Some("health"));
        assert_eq!(route(&router, "x", "/api/v1/health/x"), Some("api_v1"));
    }

    #[test]
    fn hosts_rank_exact_then_wildcard_then_regex_then_any() {
        let router = Router::new(vec![
            spec("any", &[], Some("/"), 0),
            spec("regex", &[r"~^api-\d+\."], Some("/"), 0),
            spec("wildcard", &["*.example.com"], Some("/"), 0),
            spec("exact", &["api.example.com"], Some("/"), 0),
        ]);
        assert_eq!(route(&router, "api.example.com", "/"), Some("exact"));
        assert_eq!(route(&router, "www.example.com", "/"), Some("wildcard"));
        assert_eq!(route(&router, "api-1.example.com", "/"), Some("wildcard"));
        assert_eq!(route(&router, "api-1.example.org", "/"), Some("regex"));
        assert_eq!(route(&router, "example.com", "/"), Some("any"));
    }

    #[test]
    fn host_comes_before_path() {
        let router = Router::new(vec![
            spec("health_anywhere", &[], Some("=/health"), 0),
            spec("app", &["app.example.com"], Some("/"), 0),
        ]);
        assert_eq!(route(&router, "app.example.com", "/health"), Some("app"));
        assert_eq!(
            route(&router, "other.example.com", "/health"),
            Some("health_anywhere")
        );
        assert_eq!(route(&router, "other.example.com", "/x"), None);
    }

    #[test]
    fn priority_overrides_and_ties_keep_config_order() {
        let router = Router::new(vec![
            spec("app", &["app.example.com"], Some("/"), 0),
            spec("health_first", &[], Some("=/health"), 10),
            spec("last_resort", &["app.example.com"], Some("/x"), -1),
            spec("first", &[], Some("/same"), 0),
            spec("second", &[], Some("/same"), 0),
        ]);
        assert_eq!(
            route(&router, "app.example.com", "/health"),
            Some("health_first")
        );
        assert_eq!(route(&router, "app.example.com", "/x"), Some("app"));
        assert_eq!(route(&router, "other", "/same"), Some("first"));
    }

    #[test]
    fn locations_with_several_hosts_match_each() {
        let router = Router::new(vec![
            spec("multi", &["a.example.com", "*.b.example.com"], Some("/"), 0),
            spec("fallback", &[], Some("/"), 0),
        ]);
        assert_eq!(route(&router, "a.example.com", "/"), Some("multi"));
        assert_eq!(route(&router, "x.b.example.com", "/"), Some("multi"));
        assert_eq!(route(&router, "b.example.com", "/"), Some("fallback"));
        assert_eq!(router.route("a.example.com", "/y").unwrap().matched_len, 1);
    }
}
