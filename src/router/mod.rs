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
pub mod host_parse;
pub mod path;
pub mod path_normalize;
pub mod request_target;

pub use pingap_plugins::{conditions, path_rewrite};

use std::cmp::Reverse;
use std::collections::HashMap;

use conditions::{Conditions, Failed, Unmet};
use host::{HostClass, HostPattern};
use path::PathPattern;
use pingora::http::RequestHeader;

/// What a location matches, and what the router returns for it.
#[derive(Debug, Clone)]
pub struct RouteSpec<T> {
    /// Host patterns; empty means any host.
    pub hosts: Vec<HostPattern>,
    /// The path pattern; `None` is the prefix `/`.
    pub path: Option<PathPattern>,
    /// Method, header and query conditions.
    pub conditions: Conditions,
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
    route: &'r Route<T>,
}

impl<T> Match<'_, T> {
    /// The values of the named groups of the location's host and path regexes, in the order of
    /// [`capture_names`]; `None` for a group that did not take part in the match.
    pub fn captures(&self, host: &str, path: &str) -> Vec<Option<String>> {
        self.route.captures(host, path)
    }
}

/// Why a location did not take a request, cheap to return while routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reject {
    Host,
    Path,
    Condition(Failed),
}

/// Why a location did not take a request, in words (for [`Router::explain`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Miss {
    /// The host matches none of its host patterns.
    Host(String),
    /// The path does not match its path pattern.
    Path(String),
    /// A method, header or query condition failed.
    Condition(Unmet),
}

impl std::fmt::Display for Miss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Miss::Host(wanted) => write!(f, "host does not match {wanted}"),
            Miss::Path(pattern) => write!(f, "path does not match {pattern}"),
            Miss::Condition(unmet) => write!(f, "{unmet}"),
        }
    }
}

/// One location considered for a request, by [`Router::explain`].
#[derive(Debug)]
pub struct Attempt<'r, T> {
    /// The location.
    pub target: &'r T,
    /// Whether it was a candidate (false: its host patterns cannot match this host).
    pub tried: bool,
    /// The matched length, or why it did not match.
    pub outcome: Result<usize, Miss>,
}

#[derive(Debug)]
struct Route<T> {
    hosts: Vec<HostPattern>,
    path: PathPattern,
    conditions: Conditions,
    priority: i32,
    /// The named groups of its regexes, in [`capture_names`] order (computed once).
    capture_names: Box<[String]>,
    target: T,
}

/// The named groups of `hosts` and `path` regexes, in the order captures are returned: host
/// regexes first, then the path regex; a name in several is listed once.
pub fn capture_names(hosts: &[HostPattern], path: Option<&PathPattern>) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let regexes = hosts
        .iter()
        .filter_map(HostPattern::regex)
        .chain(path.and_then(PathPattern::regex));
    for regex in regexes {
        for name in regex.capture_names().flatten() {
            if !names.iter().any(|n| n == name) {
                names.push(name.to_string());
            }
        }
    }
    names
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

    /// Whether the route takes the request; the host is checked only when `check_host`.
    fn check(&self, check_host: bool, host: &str, req: &RequestHeader) -> Result<usize, Reject> {
        if check_host && !self.hosts.is_empty() && !self.hosts.iter().any(|p| p.matches(host)) {
            return Err(Reject::Host);
        }
        let matched_len = self.path.matches(req.uri.path()).ok_or(Reject::Path)?;
        self.conditions.check(req).map_err(Reject::Condition)?;
        Ok(matched_len)
    }

    fn describe(&self, reject: Reject, req: &RequestHeader) -> Miss {
        match reject {
            Reject::Host => Miss::Host(self.host_list()),
            Reject::Path => Miss::Path(self.path.text()),
            Reject::Condition(failed) => Miss::Condition(self.conditions.describe(failed, req)),
        }
    }

    fn host_list(&self) -> String {
        self.hosts
            .iter()
            .map(HostPattern::text)
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn captures(&self, host: &str, path: &str) -> Vec<Option<String>> {
        let names = &self.capture_names;
        let mut values = vec![None; names.len()];
        let mut fill = |regex: &regex::Regex, text: &str| {
            if let Some(found) = regex.captures(text) {
                for (slot, name) in names.iter().enumerate() {
                    if let Some(value) = found.name(name) {
                        values[slot] = Some(value.as_str().to_string());
                    }
                }
            }
        };
        if let Some(regex) = self
            .hosts
            .iter()
            .filter(|p| p.matches(host))
            .find_map(HostPattern::regex)
        {
            fill(regex, host);
        }
        if let Some(regex) = self.path.regex() {
            fill(regex, path);
        }
        values
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
            .map(|spec| {
                let path = spec
                    .path
                    .unwrap_or_else(|| PathPattern::Prefix("/".to_string()));
                Route {
                    capture_names: capture_names(&spec.hosts, Some(&path)).into(),
                    hosts: spec.hosts,
                    path,
                    conditions: spec.conditions,
                    priority: spec.priority,
                    target: spec.target,
                }
            })
            .collect();

        // The routes naming each exact host, and those that may match hosts they do not name
        // (wildcard, regex, no host): an exact host's list is made of these two only, so the
        // index costs the size of the table rather than hosts × routes.
        let mut by_exact: HashMap<&str, Vec<usize>> = HashMap::new();
        let mut inexact = Vec::new();
        for (index, route) in routes.iter().enumerate() {
            if route.hosts.is_empty() {
                inexact.push(index);
            }
            let mut any_inexact = false;
            for pattern in &route.hosts {
                match pattern {
                    HostPattern::Exact(host) => {
                        let list = by_exact.entry(host.as_str()).or_default();
                        if list.last() != Some(&index) {
                            list.push(index);
                        }
                    }
                    _ => any_inexact = true,
                }
            }
            if any_inexact {
                inexact.push(index);
            }
        }
        let by_host = by_exact
            .into_iter()
            .map(|(host, named)| {
                let mut indexes = named;
                indexes.extend_from_slice(&inexact);
                indexes.sort_unstable();
                indexes.dedup();
                let list = ranked(&routes, indexes, |route| {
                    route
                        .host_class(|pattern| pattern.matches(host))
                        .map(|class| (class, false))
                });
                (Box::<str>::from(host), list)
            })
            .collect();
        let other_hosts = ranked(&routes, 0..routes.len(), |route| {
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

    fn candidates(&self, host: &str) -> &[Candidate] {
        self.by_host.get(host).unwrap_or(&self.other_hosts)
    }

    /// Finds the location for a request; `host` must be lower-cased without port
    /// (see [`host_parse::parse_host`]).
    pub fn route(&self, host: &str, req: &RequestHeader) -> Option<Match<'_, T>> {
        self.candidates(host).iter().find_map(|candidate| {
            let route = &self.routes[candidate.route as usize];
            let matched_len = route.check(candidate.check_host, host, req).ok()?;
            Some(Match {
                target: &route.target,
                matched_len,
                route,
            })
        })
    }

    /// Every location of the server that could concern this request: those tried, in order, up
    /// to the one that matched (if any), each with why it did not match; then those that were no
    /// candidate because their host does not match. Locations after the match are left out.
    pub fn explain(&self, host: &str, req: &RequestHeader) -> Vec<Attempt<'_, T>> {
        let candidates = self.candidates(host);
        let mut attempts = Vec::new();
        for candidate in candidates {
            let route = &self.routes[candidate.route as usize];
            let outcome = route
                .check(candidate.check_host, host, req)
                .map_err(|reject| route.describe(reject, req));
            let matched = outcome.is_ok();
            attempts.push(Attempt {
                target: &route.target,
                tried: true,
                outcome,
            });
            if matched {
                break;
            }
        }
        for (index, route) in self.routes.iter().enumerate() {
            if !candidates.iter().any(|c| c.route as usize == index) {
                attempts.push(Attempt {
                    target: &route.target,
                    tried: false,
                    outcome: Err(Miss::Host(route.host_list())),
                });
            }
        }
        attempts
    }

    /// Pairs `(shadowed, by)` of locations (indexes in the server's `locations` order) where
    /// `shadowed` can never match because `by` has the same hosts, a path covering its path, no
    /// conditions, and is always tried first.
    pub fn shadowed(&self) -> Vec<(usize, usize)> {
        // Only routes with the same hosts shadow each other, and those rank by the same host
        // class: each group is walked in rank order, looking up the paths that would cover each
        // route among the condition-less routes seen before it, so the cost grows with the size
        // of the table (and the length of its paths), not its square.
        let mut groups: HashMap<Vec<String>, Vec<usize>> = HashMap::new();
        for (index, route) in self.routes.iter().enumerate() {
            let mut hosts: Vec<String> = route.hosts.iter().map(HostPattern::text).collect();
            hosts.sort();
            hosts.dedup();
            groups.entry(hosts).or_default().push(index);
        }
        let mut pairs = Vec::new();
        for mut members in groups.into_values() {
            let Some(&first) = members.first() else {
                continue;
            };
            let class = self.routes[first]
                .host_class(|_| true)
                .unwrap_or(HostClass::Any);
            members.sort_by_key(|&index| self.routes[index].rank(class, index));
            // The lowest index of the condition-less routes seen so far, by path.
            let mut prefixes: HashMap<&str, usize> = HashMap::new();
            let mut exacts: HashMap<&str, usize> = HashMap::new();
            let mut regexes: HashMap<&str, usize> = HashMap::new();
            for index in members {
                let route = &self.routes[index];
                let by = match &route.path {
                    PathPattern::Prefix(path) | PathPattern::Exact(path) => {
                        let mut by = path
                            .char_indices()
                            .map(|(at, _)| at)
                            .chain([path.len()])
                            .filter_map(|end| prefixes.get(&path[..end]).copied())
                            .min();
                        if matches!(route.path, PathPattern::Exact(_))
                            && let Some(&exact) = exacts.get(path.as_str())
                        {
                            by = Some(by.map_or(exact, |by| by.min(exact)));
                        }
                        by
                    }
                    PathPattern::Regex(regex) => [prefixes.get("/"), regexes.get(regex.as_str())]
                        .into_iter()
                        .flatten()
                        .copied()
                        .min(),
                };
                if let Some(by) = by {
                    pairs.push((index, by));
                }
                if route.conditions.is_empty() {
                    let seen = match &route.path {
                        PathPattern::Prefix(path) => prefixes.entry(path.as_str()),
                        PathPattern::Exact(path) => exacts.entry(path.as_str()),
                        PathPattern::Regex(regex) => regexes.entry(regex.as_str()),
                    };
                    let lowest = seen.or_insert(index);
                    *lowest = (*lowest).min(index);
                }
            }
        }
        pairs.sort_unstable();
        pairs
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
    among: impl IntoIterator<Item = usize>,
    select: impl Fn(&Route<T>) -> Option<(HostClass, bool)>,
) -> Box<[Candidate]> {
    let mut list: Vec<(RankKey, Candidate)> = among
        .into_iter()
        .filter_map(|order| {
            let route = routes.get(order)?;
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
            conditions: Conditions::default(),
            priority,
            target: name,
        }
    }

    fn get(path: &str) -> RequestHeader {
        RequestHeader::build("GET", path.as_bytes(), None).unwrap()
    }

    fn route(router: &Router<&'static str>, host: &str, path: &str) -> Option<&'static str> {
        router.route(host, &get(path)).map(|m| *m.target)
    }

    fn with_conditions(
        mut spec: RouteSpec<&'static str>,
        methods: &[&str],
        headers: &[&str],
    ) -> RouteSpec<&'static str> {
        let owned = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        spec.conditions = Conditions::parse(&owned(methods), &owned(headers), &[]).unwrap();
        spec
    }

    #[test]
    fn conditions_are_checked_after_path_and_failures_fall_through() {
        let router = Router::new(vec![
            with_conditions(spec("canary", &[], Some("/"), 0), &[], &["X-Env: canary"]),
            with_conditions(spec("writes", &[], Some("/"), 0), &["POST", "PUT"], &[]),
            spec("reads", &[], Some("/"), 0),
        ]);
        assert_eq!(route(&router, "h", "/"), Some("reads"));
        let mut canary = get("/");
        canary.insert_header("x-env", "canary").unwrap();
        assert_eq!(
            router.route("h", &canary).map(|m| *m.target),
            Some("canary")
        );
        let post = RequestHeader::build("POST", b"/", None).unwrap();
        assert_eq!(router.route("h", &post).map(|m| *m.target), Some("writes"));
    }

    #[test]
    fn captures_come_from_host_and_path_regexes() {
        let router = Router::new(vec![spec(
            "tenant",
            &[r"~^(?<tenant>[a-z]+)\.example\.com$"],
            Some(r"~^/users/(?<id>\d+)"),
            0,
        )]);
        let matched = router
            .route("acme.example.com", &get("/users/42/x"))
            .unwrap();
        assert_eq!(
            matched.captures("acme.example.com", "/users/42/x"),
            [Some("acme".to_string()), Some("42".to_string())]
        );
        let hosts = [HostPattern::parse(r"~^(?<tenant>[a-z]+)\.").unwrap()];
        let path = PathPattern::parse(r"~/(?<id>\d+)/(?<tenant>x)").unwrap();
        assert_eq!(capture_names(&hosts, Some(&path)), ["tenant", "id"]);
    }

    #[test]
    fn explain_says_why_each_location_did_not_match() {
        let router = Router::new(vec![
            spec("other_host", &["other.example.com"], Some("/"), 0),
            with_conditions(spec("posts_only", &[], Some("/api"), 0), &["POST"], &[]),
            spec("health", &[], Some("=/health"), 0),
            spec("api", &[], Some("/api"), 0),
            spec("after", &[], Some("/"), 0),
        ]);
        let attempts = router.explain("app.example.com", &get("/api/x"));
        let summary: Vec<(&str, String)> = attempts
            .iter()
            .map(|a| {
                (
                    *a.target,
                    a.outcome
                        .as_ref()
                        .map_or_else(ToString::to_string, |n| format!("matched {n}")),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("health", "path does not match =/health".to_string()),
                ("posts_only", "method GET is not one of POST".to_string()),
                ("api", "matched 4".to_string()),
                (
                    "other_host",
                    "host does not match other.example.com".to_string()
                ),
            ]
        );
    }

    #[test]
    fn finds_shadowed_locations() {
        let router = Router::new(vec![
            spec("everything", &["a.example.com"], Some("/"), 10),
            spec("dead", &["a.example.com"], Some("/api"), 0),
            spec("other_hosts", &["b.example.com"], Some("/api"), 0),
            spec("first", &[], Some("/x"), 0),
            spec("duplicate", &[], Some("/x"), 0),
            spec("longer", &[], Some("/x/y"), 0),
            with_conditions(spec("conditional", &[], Some("/c"), 5), &["GET"], &[]),
            spec("behind_conditional", &[], Some("/c"), 0),
        ]);
        assert_eq!(router.shadowed(), [(1, 0), (4, 3)]);
    }

    /// Each exact host's candidate routes, as indexes.
    type ScannedIndex = HashMap<Box<str>, Vec<u32>>;

    /// The index and shadow detection by scanning every route for every host and every route,
    /// as they were first written: the fast ones must agree with them.
    fn by_scan(router: &Router<&'static str>) -> (ScannedIndex, Vec<(usize, usize)>) {
        let routes = &router.routes;
        let by_host = router
            .by_host
            .keys()
            .map(|host| {
                let list = ranked(routes, 0..routes.len(), |route| {
                    route
                        .host_class(|pattern| pattern.matches(host))
                        .map(|class| (class, false))
                });
                (host.clone(), list.iter().map(|c| c.route).collect())
            })
            .collect();
        let host_set = |route: &Route<&str>| {
            let mut hosts: Vec<String> = route.hosts.iter().map(HostPattern::text).collect();
            hosts.sort();
            hosts.dedup();
            hosts
        };
        let mut pairs = Vec::new();
        for (index, route) in routes.iter().enumerate() {
            let class = route.host_class(|_| true).unwrap_or(HostClass::Any);
            let shadow = routes.iter().enumerate().find(|(other_index, other)| {
                *other_index != index
                    && other.conditions.is_empty()
                    && host_set(other) == host_set(route)
                    && route.path.covered_by(&other.path)
                    && other.rank(class, *other_index) < route.rank(class, index)
            });
            if let Some((by, _)) = shadow {
                pairs.push((index, by));
            }
        }
        (by_host, pairs)
    }

    #[test]
    fn the_index_and_shadows_agree_with_a_full_scan() {
        const HOSTS: [&str; 6] = [
            "a.example.com",
            "b.example.com",
            "x.b.example.com",
            "*.b.example.com",
            r"~^[ab]\.example\.com$",
            "A.example.com",
        ];
        const PATHS: [&str; 10] = [
            "/", "/a", "/a/b", "/ab", "=/a", "=/a/b", "=/", r"~^/a", r"~^/b", "/b",
        ];
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = |below: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            usize::try_from(seed % below as u64).unwrap()
        };
        let mut found = 0;
        for _ in 0..300 {
            let count = 1 + next(24);
            let specs = (0..count)
                .map(|_| {
                    let hosts: Vec<&str> = (0..next(3)).map(|_| HOSTS[next(HOSTS.len())]).collect();
                    let path = (next(8) > 0).then(|| PATHS[next(PATHS.len())]);
                    let priority = [0, 0, 0, 1, -1][next(5)];
                    let spec = spec("r", &hosts, path, priority);
                    if next(6) == 0 {
                        with_conditions(spec, &["GET"], &[])
                    } else {
                        spec
                    }
                })
                .collect();
            let router = Router::new(specs);
            let (by_host, shadowed) = by_scan(&router);
            for (host, list) in &router.by_host {
                let fast: Vec<u32> = list.iter().map(|c| c.route).collect();
                assert_eq!(fast, by_host[host], "{host}");
            }
            assert_eq!(router.shadowed(), shadowed);
            found += shadowed.len();
        }
        assert!(
            found > 300,
            "only {found} shadowed locations: the cases are too easy"
        );
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
        assert_eq!(
            router
                .route("a.example.com", &get("/y"))
                .unwrap()
                .matched_len,
            1
        );
    }
}
