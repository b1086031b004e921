//! The response cache: the `cache` plugin type and the policy the proxy applies, through
//! pingora-cache, in its cache phases (`request_cache_filter`, `cache_key_callback`,
//! `response_cache_filter`, `cache_vary_filter`, purge). The entries live in a
//! [`storage::MemoryStorage`] bounded by `max_size`.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `max_size` | `"64MiB"` | memory for entries (bodies and headers); the least useful go first |
//! | `max_object_size` | `"1MiB"` | larger responses are passed on, not cached (at most 64 MiB) |
//! | `ttl` | `"60s"` | freshness of a response that says nothing (no `Cache-Control` max-age, no `Expires`) |
//! | `max_ttl` | `"1d"` | freshness never exceeds this, whatever the response says |
//! | `statuses` | `[200, 203, 204, 300, 301, 308, 404, 410]` | statuses that may be cached |
//! | `key_headers` | `[]` | request headers added to the cache key |
//! | `key_cookies` | `[]` | cookies added to the cache key |
//! | `purge_allow` | `[]` | addresses or CIDRs allowed to send `PURGE` (everyone else gets 403) |
//! | `stale_while_revalidate` | `"0s"` | how long an expired entry may still be served while one request refreshes it |
//! | `stale_if_error` | `"0s"` | how long an expired entry may be served when the upstream fails |
//!
//! Only GET and HEAD are looked up (HEAD is answered from the GET entry). The key is the host,
//! path and query, plus `key_headers` and `key_cookies`. Responses with `Cache-Control:
//! no-store`, `private` or `no-cache`, with `Set-Cookie`, with `Vary: *`, or to requests with
//! `Authorization` (unless the response says `public` or `s-maxage`) are not stored; `s-maxage`,
//! then `max-age`, then `Expires` give the freshness. `Vary` is honoured: each variant is stored
//! apart. Concurrent misses for one key wait on a cache lock, so one request goes upstream.

pub mod storage;

use std::any::Any;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use http::{HeaderName, Method, StatusCode, header};
use pingap_plugins::settings::{ByteSize, ConfigDuration};
use pingap_plugins::{
    BuildEnv, BuildError, Flow, Phase, Phases, Plugin, PluginCtx, PluginError, PluginType,
    RequestHeader, Response, Settings,
};
use pingora::cache::cache_control::{CacheControl, Cacheable, InterpretCacheControl};
use pingora::cache::filters::calculate_expires_header_time;
use pingora::cache::key::HashBinary;
use pingora::cache::lock::{CacheKeyLockImpl, CacheLock};
use pingora::cache::{
    CacheKey, CacheMeta, CachePhase, NoCacheReason, RespCacheable, VarianceBuilder,
};
use pingora::http::ResponseHeader;
use serde::Deserialize;

use crate::headers::TrustedProxies;
use storage::{MAX_ENTRY_SIZE, StorageLease};

/// The `cache` plugin type.
pub const TYPE: PluginType = PluginType {
    name: "cache",
    default_priority: 100,
    summary: "caches responses in memory, honouring Cache-Control, Expires and Vary; PURGE from purge_allow",
    build,
};

/// Default `max_size`.
const DEFAULT_MAX_SIZE: u64 = 64 * 1024 * 1024;
/// Default `max_object_size`.
const DEFAULT_MAX_OBJECT_SIZE: u64 = 1024 * 1024;
/// Default `ttl`.
const DEFAULT_TTL: Duration = Duration::from_secs(60);
/// Default `max_ttl`.
const DEFAULT_MAX_TTL: Duration = Duration::from_secs(24 * 3600);
/// Default `statuses`.
const DEFAULT_STATUSES: [u16; 8] = [200, 203, 204, 300, 301, 308, 404, 410];
/// How long a request waits for another one filling the same entry.
const LOCK_TIMEOUT: Duration = Duration::from_secs(10);

/// The `PURGE` method.
fn purge_method() -> &'static Method {
    static PURGE: OnceLock<Method> = OnceLock::new();
    PURGE.get_or_init(|| Method::from_bytes(b"PURGE").unwrap_or(Method::DELETE))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    max_size: Option<ByteSize>,
    max_object_size: Option<ByteSize>,
    ttl: Option<ConfigDuration>,
    max_ttl: Option<ConfigDuration>,
    statuses: Option<Vec<u16>>,
    #[serde(default)]
    key_headers: Vec<String>,
    #[serde(default)]
    key_cookies: Vec<String>,
    #[serde(default)]
    purge_allow: Vec<String>,
    stale_while_revalidate: Option<ConfigDuration>,
    stale_if_error: Option<ConfigDuration>,
}

/// What a location's cache does.
pub struct CachePolicy {
    storage: Arc<StorageLease>,
    max_object_size: usize,
    ttl: Duration,
    max_ttl: Duration,
    statuses: Vec<u16>,
    key_headers: Vec<HeaderName>,
    key_cookies: Vec<String>,
    purge_allow: TrustedProxies,
    stale_while_revalidate: u32,
    stale_if_error: u32,
}

/// The `cache` plugin: its request phase guards `PURGE`; the proxy does the rest with its
/// [`CachePolicy`].
pub struct CachePlugin {
    policy: Arc<CachePolicy>,
}

impl CachePlugin {
    /// The policy the proxy applies.
    pub fn policy(&self) -> &Arc<CachePolicy> {
        &self.policy
    }
}

fn build(settings: &Settings, context: &BuildEnv) -> Result<Arc<dyn Plugin>, BuildError> {
    let config: Config = pingap_plugins::settings::parse(settings)?;
    let max_size = config.max_size.map_or(DEFAULT_MAX_SIZE, ByteSize::bytes);
    let max_object_size = config
        .max_object_size
        .map_or(DEFAULT_MAX_OBJECT_SIZE, ByteSize::bytes);
    let max_size = usize::try_from(max_size).unwrap_or(usize::MAX);
    let max_object_size = usize::try_from(max_object_size).unwrap_or(usize::MAX);
    if max_object_size > MAX_ENTRY_SIZE {
        return Err(BuildError::at(
            "max_object_size",
            format!("must be at most {MAX_ENTRY_SIZE} bytes (64 MiB)"),
        ));
    }
    if max_object_size > max_size {
        return Err(BuildError::at(
            "max_object_size",
            "must not be larger than max_size",
        ));
    }
    let statuses = config.statuses.unwrap_or_else(|| DEFAULT_STATUSES.to_vec());
    if let Some(bad) = statuses.iter().find(|s| !(100..=599).contains(*s)) {
        return Err(BuildError::at(
            "statuses",
            format!("{bad} is not an HTTP status"),
        ));
    }
    let key_headers = config
        .key_headers
        .iter()
        .map(|name| {
            HeaderName::try_from(name.trim()).map_err(|_| {
                BuildError::at("key_headers", format!("\"{name}\" is not a header name"))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let purge_allow = TrustedProxies::parse(&config.purge_allow).map_err(|errors| {
        let (index, message) = errors.into_iter().next().unwrap_or_default();
        BuildError::at(format!("purge_allow[{index}]"), message)
    })?;
    let seconds = |d: Option<ConfigDuration>| {
        d.map_or(0, |d| u32::try_from(d.get().as_secs()).unwrap_or(u32::MAX))
    };
    Ok(Arc::new(CachePlugin {
        policy: Arc::new(CachePolicy {
            storage: match context
                .previous
                .as_ref()
                .and_then(|previous| previous.plugin().as_any()?.downcast_ref::<CachePlugin>())
            {
                Some(previous) => StorageLease::carry(&previous.policy.storage, max_size),
                None => StorageLease::new(max_size),
            },
            max_object_size,
            ttl: config.ttl.map_or(DEFAULT_TTL, ConfigDuration::get),
            max_ttl: config.max_ttl.map_or(DEFAULT_MAX_TTL, ConfigDuration::get),
            statuses,
            key_headers,
            key_cookies: config.key_cookies,
            purge_allow,
            stale_while_revalidate: seconds(config.stale_while_revalidate),
            stale_if_error: seconds(config.stale_if_error),
        }),
    }))
}

#[async_trait]
impl Plugin for CachePlugin {
    fn phases(&self) -> Phases {
        Phases::of(&[Phase::Request])
    }

    async fn request(
        &self,
        req: &mut RequestHeader,
        ctx: &mut PluginCtx,
    ) -> Result<Flow, PluginError> {
        if req.method != *purge_method() {
            return Ok(Flow::Continue);
        }
        Ok(Flow::admit_if(self.policy.may_purge(ctx.client_ip), || {
            Response::refuse(
                StatusCode::FORBIDDEN,
                "PURGE is not allowed from this address",
            )
        }))
    }

    fn as_any(&self) -> Option<&dyn Any> {
        Some(self)
    }
}

/// The lock concurrent misses wait on, shared by every cache.
fn cache_lock() -> &'static CacheKeyLockImpl {
    static LOCK: OnceLock<CacheLock> = OnceLock::new();
    LOCK.get_or_init(|| CacheLock::new(LOCK_TIMEOUT))
}

impl CachePolicy {
    /// Whether `client` may purge.
    fn may_purge(&self, client: Option<IpAddr>) -> bool {
        client.is_some_and(|ip| self.purge_allow.contains(ip))
    }

    /// Whether the request is a purge (already allowed by the plugin's request phase).
    pub fn is_purge(req: &RequestHeader) -> bool {
        req.method == *purge_method()
    }

    /// Whether requests with this method use the cache.
    pub fn applies_to(req: &RequestHeader) -> bool {
        matches!(req.method, Method::GET | Method::HEAD) || CachePolicy::is_purge(req)
    }

    /// Turns the cache on for this request (`request_cache_filter`).
    pub fn enable(&self, cache: &mut pingora::cache::HttpCache) {
        cache.enable(self.storage.storage(), None, None, Some(cache_lock()), None);
        cache.set_max_file_size_bytes(self.max_object_size);
    }

    /// The cache key of a request to `host`.
    pub fn key(&self, req: &RequestHeader, host: &str) -> CacheKey {
        let mut primary = Vec::with_capacity(64);
        // Length-prefixed parts, so that no two requests frame to the same bytes.
        let mut part = |bytes: &[u8]| {
            primary.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            primary.extend_from_slice(bytes);
        };
        part(host.as_bytes());
        part(
            req.uri
                .path_and_query()
                .map_or(b"/", |pq| pq.as_str().as_bytes()),
        );
        for name in &self.key_headers {
            part(req.headers.get(name).map_or(b"", |v| v.as_bytes()));
        }
        for name in &self.key_cookies {
            part(
                pingap_plugins::request::cookie(req, name)
                    .unwrap_or_default()
                    .as_bytes(),
            );
        }
        CacheKey::new(primary, "")
    }

    /// Whether and for how long `resp` may be stored (`response_cache_filter`).
    pub fn cacheable(&self, req: &RequestHeader, resp: &ResponseHeader) -> RespCacheable {
        let uncacheable = RespCacheable::Uncacheable(NoCacheReason::OriginNotCache);
        if !self.statuses.contains(&resp.status.as_u16())
            || resp.headers.contains_key(header::SET_COOKIE)
            || resp.headers.get_all(header::VARY).iter().any(|v| {
                v.as_bytes()
                    .split(|b| *b == b',')
                    .any(|n| n.trim_ascii() == b"*")
            })
        {
            return uncacheable;
        }
        let control = CacheControl::from_resp_headers(resp);
        if let Some(cc) = &control
            && (cc.is_cacheable() == Cacheable::No || cc.private() || cc.no_cache())
        {
            return uncacheable;
        }
        if req.headers.contains_key(header::AUTHORIZATION)
            && !control
                .as_ref()
                .is_some_and(InterpretCacheControl::allow_caching_authorized_req)
        {
            return uncacheable;
        }
        let now = SystemTime::now();
        let fresh = control
            .as_ref()
            .and_then(InterpretCacheControl::fresh_duration)
            .or_else(|| {
                calculate_expires_header_time(resp)
                    .map(|at| at.duration_since(now).unwrap_or(Duration::ZERO))
            })
            .unwrap_or(self.ttl)
            .min(self.max_ttl);
        if fresh.is_zero() {
            return uncacheable;
        }
        RespCacheable::Cacheable(CacheMeta::new(
            now + fresh,
            now,
            self.stale_while_revalidate,
            self.stale_if_error,
            resp.clone(),
        ))
    }

    /// Whether an expired entry may be served while it is refreshed.
    pub fn serves_stale_while_revalidating(&self) -> bool {
        self.stale_while_revalidate > 0
    }
}

/// The variance of a request for a stored response's `Vary` (`cache_vary_filter`).
pub fn variance(meta: &CacheMeta, req: &RequestHeader) -> Option<HashBinary> {
    let mut builder = VarianceBuilder::new();
    let mut any = false;
    for value in meta.headers().get_all(header::VARY) {
        let Ok(names) = value.to_str() else {
            continue;
        };
        for name in names.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let name = name.to_ascii_lowercase();
            let value = req
                .headers
                .get(name.as_str())
                .map_or_else(Vec::new, |v| v.as_bytes().to_vec());
            builder.add_owned_name_value(name, value);
            any = true;
        }
    }
    if any { builder.finalize() } else { None }
}

/// The `X-Cache-Status` of a request: how the cache served it.
pub fn status(phase: CachePhase, looked_up: bool) -> &'static str {
    match phase {
        CachePhase::Hit => "HIT",
        CachePhase::Stale | CachePhase::StaleUpdating => "STALE",
        CachePhase::Expired => "EXPIRED",
        CachePhase::Revalidated | CachePhase::RevalidatedNoCache(_) => "REVALIDATED",
        _ if looked_up => "MISS",
        _ => "BYPASS",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora::cache::key::CacheHashKey;

    fn policy(settings: &str) -> Arc<CachePolicy> {
        let context = BuildEnv {
            name: format!("policy-test-{settings}"),
            ..BuildEnv::default()
        };
        let plugin = build(&settings.parse().unwrap(), &context).unwrap();
        let cache = plugin
            .as_any()
            .unwrap()
            .downcast_ref::<CachePlugin>()
            .unwrap();
        cache.policy().clone()
    }

    fn get(headers: &[(&str, &str)]) -> RequestHeader {
        let mut req = RequestHeader::build("GET", b"/a?b=1", None).unwrap();
        for (name, value) in headers {
            req.insert_header(name.to_string(), *value).unwrap();
        }
        req
    }

    fn response(status: u16, headers: &[(&str, &str)]) -> ResponseHeader {
        let mut resp = ResponseHeader::build(status, None).unwrap();
        for (name, value) in headers {
            resp.append_header(name.to_string(), *value).unwrap();
        }
        resp
    }

    /// Seconds of freshness granted, or `None` when not cacheable.
    fn fresh(policy: &CachePolicy, req: &RequestHeader, resp: &ResponseHeader) -> Option<u64> {
        match policy.cacheable(req, resp) {
            RespCacheable::Cacheable(meta) => Some(
                meta.fresh_until()
                    .duration_since(meta.created())
                    .unwrap()
                    .as_secs(),
            ),
            RespCacheable::Uncacheable(_) => None,
        }
    }

    #[test]
    fn freshness_comes_from_s_maxage_max_age_expires_or_ttl_capped_by_max_ttl() {
        let policy = policy("ttl = '30s'\nmax_ttl = '1h'");
        let req = get(&[]);
        let cc = |value| response(200, &[("cache-control", value)]);
        assert_eq!(fresh(&policy, &req, &response(200, &[])), Some(30));
        assert_eq!(fresh(&policy, &req, &cc("max-age=100")), Some(100));
        assert_eq!(
            fresh(&policy, &req, &cc("max-age=100, s-maxage=200")),
            Some(200)
        );
        assert_eq!(fresh(&policy, &req, &cc("max-age=86400")), Some(3600));
        let expires = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(600));
        let secs = fresh(&policy, &req, &response(200, &[("expires", &expires)])).unwrap();
        assert!((598..=600).contains(&secs), "{secs}");
        assert_eq!(fresh(&policy, &req, &cc("max-age=0")), None);
    }

    #[test]
    fn what_is_never_stored() {
        let policy = policy("statuses = [200]");
        let req = get(&[]);
        for headers in [
            vec![("cache-control", "no-store")],
            vec![("cache-control", "private, max-age=60")],
            vec![("cache-control", "no-cache")],
            vec![("set-cookie", "a=b")],
            vec![("vary", "Accept, *")],
        ] {
            assert_eq!(
                fresh(&policy, &req, &response(200, &headers)),
                None,
                "{headers:?}"
            );
        }
        assert_eq!(
            fresh(&policy, &req, &response(404, &[])),
            None,
            "not in statuses"
        );
        let authorized = get(&[("authorization", "Bearer x")]);
        assert_eq!(fresh(&policy, &authorized, &response(200, &[])), None);
        let public = response(200, &[("cache-control", "public, max-age=5")]);
        assert_eq!(fresh(&policy, &authorized, &public), Some(5));
    }

    #[test]
    fn keys_include_host_path_query_and_the_configured_headers_and_cookies() {
        let policy = policy("key_headers = ['X-Tenant']\nkey_cookies = ['lang']");
        let key = |host: &str, headers: &[(&str, &str)]| policy.key(&get(headers), host).combined();
        let base = key("a.test", &[]);
        assert_eq!(base, key("a.test", &[("x-other", "1")]));
        assert_ne!(base, key("b.test", &[]));
        assert_ne!(base, key("a.test", &[("x-tenant", "t1")]));
        assert_ne!(base, key("a.test", &[("cookie", "lang=fr")]));
        assert_eq!(base, key("a.test", &[("cookie", "other=1")]));
    }

    #[test]
    fn bad_settings_are_refused_by_key() {
        let error = |settings: &str| {
            let context = BuildEnv::default();
            build(&settings.parse().unwrap(), &context)
                .err()
                .unwrap()
                .key()
                .map(str::to_string)
        };
        assert_eq!(
            error("max_object_size = '100MiB'").as_deref(),
            Some("max_object_size")
        );
        assert_eq!(
            error("max_size = '1MiB'\nmax_object_size = '2MiB'").as_deref(),
            Some("max_object_size")
        );
        assert_eq!(error("statuses = [99]").as_deref(), Some("statuses"));
        assert_eq!(
            error("purge_allow = ['x']").as_deref(),
            Some("purge_allow[0]")
        );
        assert_eq!(
            error("key_headers = ['bad header']").as_deref(),
            Some("key_headers")
        );
    }
}
