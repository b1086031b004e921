//! `rate_limit`: a token bucket per key; requests over the limit get 429.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `rate` | — | sustained rate: a number of requests per second, or `"N/s"`, `"N/m"`, `"N/h"` |
//! | `burst` | one second of `rate`, at least 1 | requests allowed at once (the bucket size) |
//! | `key` | `"$remote_addr"` | what is counted: `$remote_addr`, `$http_NAME`, `$cookie_NAME`, `$arg_NAME`, `$location`, or a constant for one global bucket |
//! | `max_keys` | `100000` | keys tracked at once; see below |
//!
//! Allowed responses carry `RateLimit-Limit` (the burst), `RateLimit-Remaining` and
//! `RateLimit-Reset` (seconds until the bucket is full again); a 429 also carries `Retry-After`
//! (seconds until one request is allowed).
//!
//! **Memory** is bounded: at most `max_keys` buckets of about 48 bytes each (about 5 MB by
//! default), in 64 independently locked shards. When a shard is full, buckets that have refilled
//! completely are dropped first (they are equivalent to no bucket), then the ones idle longest;
//! a dropped key starts again with a full bucket. Counters are per process.

use std::collections::HashMap;
use std::fmt;
use std::hash::RandomState;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use http::{HeaderName, HeaderValue, StatusCode, header};
use pingora_http::{RequestHeader, ResponseHeader};
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use crate::key::KeySource;
use crate::{
    BuildEnv, BuildError, Flow, Phase, Phases, Plugin, PluginCtx, PluginError, PluginType,
    Response, Settings,
};

pub(crate) const TYPE: PluginType = PluginType {
    name: "rate_limit",
    default_priority: 4000,
    summary: "limits the request rate per key with a token bucket (429 over the limit)",
    build,
};

const SHARDS: usize = 64;
const DEFAULT_MAX_KEYS: usize = 100_000;

const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
const RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    rate: Rate,
    burst: Option<u32>,
    #[serde(default = "crate::key::default_key")]
    key: String,
    #[serde(default = "default_max_keys")]
    max_keys: usize,
}

fn default_max_keys() -> usize {
    DEFAULT_MAX_KEYS
}

/// Requests per second.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Rate(f64);

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RateVisitor;
        impl Visitor<'_> for RateVisitor {
            type Value = Rate;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number of requests per second, or \"N/s\", \"N/m\" or \"N/h\"")
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Rate, E> {
                self.visit_f64(n as f64)
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Rate, E> {
                self.visit_f64(n as f64)
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<Rate, E> {
                if n.is_finite() && n > 0.0 {
                    Ok(Rate(n))
                } else {
                    Err(E::custom("the rate must be more than 0"))
                }
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Rate, E> {
                let invalid = || {
                    E::custom(format!(
                        "invalid rate \"{text}\" (write e.g. 100, \"100/s\", \"600/m\")"
                    ))
                };
                let (count, unit) = text.split_once('/').ok_or_else(invalid)?;
                let count: f64 = count.trim().parse().map_err(|_| invalid())?;
                let seconds = match unit.trim() {
                    "s" | "sec" | "second" => 1.0,
                    "m" | "min" | "minute" => 60.0,
                    "h" | "hour" => 3600.0,
                    _ => return Err(invalid()),
                };
                self.visit_f64(count / seconds)
            }
        }
        deserializer.deserialize_any(RateVisitor)
    }
}

struct RateLimit {
    key: KeySource,
    hasher: RandomState,
    buckets: Buckets,
    limit: HeaderValue,
}

fn build(settings: &Settings, _: &BuildEnv) -> Result<Arc<dyn Plugin>, BuildError> {
    let config: Config = crate::settings::parse(settings)?;
    let key = KeySource::parse(&config.key).map_err(|e| BuildError::at("key", e))?;
    let burst = match config.burst {
        Some(0) => return Err(BuildError::at("burst", "must be at least 1")),
        Some(burst) => f64::from(burst),
        None => config.rate.0.ceil().max(1.0),
    };
    if config.max_keys < SHARDS {
        return Err(BuildError::at(
            "max_keys",
            format!("must be at least {SHARDS}"),
        ));
    }
    Ok(Arc::new(RateLimit {
        key,
        hasher: RandomState::new(),
        buckets: Buckets::new(config.rate.0, burst, config.max_keys),
        limit: HeaderValue::from(burst as u64),
    }))
}

/// What a request was told, kept for its response headers.
#[derive(Debug, Clone, Copy)]
struct Verdict {
    allowed: bool,
    remaining: u64,
    /// Seconds until the bucket is full.
    reset: u64,
    /// Seconds until one request is allowed (0 when allowed).
    retry_after: u64,
}

impl RateLimit {
    fn headers(&self, verdict: Verdict) -> [(HeaderName, HeaderValue); 3] {
        [
            (RATELIMIT_LIMIT, self.limit.clone()),
            (RATELIMIT_REMAINING, HeaderValue::from(verdict.remaining)),
            (RATELIMIT_RESET, HeaderValue::from(verdict.reset)),
        ]
    }
}

#[async_trait]
impl Plugin for RateLimit {
    fn phases(&self) -> Phases {
        Phases::of(&[Phase::Request, Phase::ResponseHeaders])
    }

    async fn request(
        &self,
        req: &mut RequestHeader,
        ctx: &mut PluginCtx,
    ) -> Result<Flow, PluginError> {
        let key = self.key.hash(&self.hasher, req, ctx);
        let verdict = self.buckets.take(key, Instant::now());
        ctx.set_state(verdict);
        if verdict.allowed {
            return Ok(Flow::Continue);
        }
        let mut response = Response::refuse(StatusCode::TOO_MANY_REQUESTS, "too many requests")
            .header(header::RETRY_AFTER, HeaderValue::from(verdict.retry_after));
        response.headers.extend(self.headers(verdict));
        Ok(Flow::Respond(response))
    }

    fn response_headers(
        &self,
        resp: &mut ResponseHeader,
        ctx: &mut PluginCtx,
    ) -> Result<(), PluginError> {
        if let Some(verdict) = ctx.state::<Verdict>().copied() {
            for (name, value) in self.headers(verdict) {
                let _ = resp.insert_header(name, value);
            }
        }
        Ok(())
    }
}

/// Token buckets by key hash, in shards with a bounded number of keys each.
struct Buckets {
    rate: f64,
    burst: f64,
    shard_capacity: usize,
    epoch: Instant,
    shards: Box<[Mutex<HashMap<u64, Bucket>>]>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    /// Nanoseconds since the epoch when `tokens` was computed (integer, so that elapsed times
    /// are exact).
    updated: u64,
}

impl Buckets {
    fn new(rate: f64, burst: f64, max_keys: usize) -> Buckets {
        let shard_capacity = max_keys.div_ceil(SHARDS);
        Buckets {
            rate,
            burst,
            shard_capacity,
            epoch: Instant::now(),
            shards: (0..SHARDS)
                .map(|_| Mutex::new(HashMap::with_capacity(shard_capacity.min(1024))))
                .collect(),
        }
    }

    /// Takes one token for `key` at `now`.
    fn take(&self, key: u64, now: Instant) -> Verdict {
        let now = self.nanos(now);
        let shard = &self.shards[(key % SHARDS as u64) as usize];
        let mut shard = match shard.lock() {
            Ok(shard) => shard,
            Err(poisoned) => poisoned.into_inner(),
        };
        if !shard.contains_key(&key) && shard.len() >= self.shard_capacity {
            self.evict(&mut shard, now);
        }
        let bucket = shard.entry(key).or_insert(Bucket {
            tokens: self.burst,
            updated: now,
        });
        bucket.tokens = self.refilled(bucket, now);
        bucket.updated = now;
        let allowed = bucket.tokens >= 1.0;
        if allowed {
            bucket.tokens -= 1.0;
        }
        Verdict {
            allowed,
            remaining: bucket.tokens.floor() as u64,
            reset: ((self.burst - bucket.tokens) / self.rate).ceil() as u64,
            retry_after: if allowed {
                0
            } else {
                ((1.0 - bucket.tokens) / self.rate).ceil().max(1.0) as u64
            },
        }
    }

    fn nanos(&self, instant: Instant) -> u64 {
        u64::try_from(instant.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// The bucket's tokens at `now`.
    fn refilled(&self, bucket: &Bucket, now: u64) -> f64 {
        let elapsed = now.saturating_sub(bucket.updated) as f64 / 1e9;
        (bucket.tokens + elapsed * self.rate).min(self.burst)
    }

    /// Makes room in a full shard.
    fn evict(&self, shard: &mut HashMap<u64, Bucket>, now: u64) {
        shard.retain(|_, bucket| self.refilled(bucket, now) < self.burst);
        if shard.len() >= self.shard_capacity
            && let Some(oldest) = shard
                .iter()
                .min_by_key(|(_, bucket)| bucket.updated)
                .map(|(key, _)| *key)
        {
            shard.remove(&oldest);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unwrap().len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::builtin::testing::{build_error, built};

    fn plugin(settings: &str) -> Arc<dyn Plugin> {
        built(build, settings)
    }

    #[test]
    fn buckets_allow_a_burst_then_the_rate() {
        let buckets = Buckets::new(2.0, 3.0, 1000);
        let start = Instant::now();
        let verdicts: Vec<bool> = (0..4).map(|_| buckets.take(7, start).allowed).collect();
        assert_eq!(verdicts, [true, true, true, false]);
        let denied = buckets.take(7, start);
        assert_eq!(
            (denied.remaining, denied.retry_after, denied.reset),
            (0, 1, 2)
        );
        // Half a second later one token (rate 2/s) is back.
        let later = start + Duration::from_millis(500);
        assert!(buckets.take(7, later).allowed);
        assert!(!buckets.take(7, later).allowed);
        // Other keys have their own bucket.
        assert!(buckets.take(8, later).allowed);
        // Much later the bucket is full again, but never more than the burst.
        let much_later = start + Duration::from_secs(60);
        let verdict = buckets.take(7, much_later);
        assert!(verdict.allowed);
        assert_eq!(verdict.remaining, 2);
    }

    #[test]
    fn memory_stays_within_max_keys() {
        let buckets = Buckets::new(1.0, 5.0, 640);
        let now = Instant::now();
        for key in 0..100_000u64 {
            buckets.take(key, now);
        }
        assert!(buckets.len() <= 640, "{}", buckets.len());
        // A full shard forgets refilled buckets, not the ones in use.
        let buckets = Buckets::new(1.0, 1.0, 2 * SHARDS); // two keys per shard
        let (busy, idle, new) = (0, SHARDS as u64, 2 * SHARDS as u64); // all in shard 0
        buckets.take(busy, now);
        buckets.take(idle, now);
        let later = now + Duration::from_secs(5);
        assert!(
            buckets.take(busy, later).allowed,
            "refilled, and now empty again"
        );
        buckets.take(new, later); // the shard is full: the refilled `idle` bucket goes
        assert!(
            !buckets.take(busy, later).allowed,
            "`busy` kept its empty bucket"
        );
        assert_eq!(buckets.len(), 2);
    }

    #[test]
    fn rates_parse_in_every_unit() {
        let rate = |text: &str| {
            crate::settings::parse::<Config>(&format!("rate = {text}").parse().unwrap())
                .map(|c| c.rate.0)
        };
        assert_eq!(rate("100").unwrap(), 100.0);
        assert_eq!(rate("0.5").unwrap(), 0.5);
        assert_eq!(rate("'600/m'").unwrap(), 10.0);
        assert_eq!(rate("'3600/h'").unwrap(), 1.0);
        assert!(rate("'10/fortnight'").is_err());
        assert!(rate("0").is_err());
    }

    #[tokio::test]
    async fn answers_429_with_headers_once_the_burst_is_spent() {
        let plugin = plugin("rate = '1/m'\nburst = 2\nkey = '$http_x_user'");
        let mut ctx = PluginCtx::default();
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.insert_header("x-user", "alice").unwrap();
        for _ in 0..2 {
            assert!(matches!(
                plugin.request(&mut req, &mut ctx).await.unwrap(),
                Flow::Continue
            ));
        }
        let mut resp = ResponseHeader::build(200, None).unwrap();
        plugin.response_headers(&mut resp, &mut ctx).unwrap();
        assert_eq!(resp.headers["ratelimit-limit"], "2");
        assert_eq!(resp.headers["ratelimit-remaining"], "0");
        let Flow::Respond(response) = plugin.request(&mut req, &mut ctx).await.unwrap() else {
            panic!("the third request is refused");
        };
        assert_eq!(response.status, 429);
        let header = |name: &str| {
            response
                .headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.to_str().unwrap().to_string())
        };
        assert_eq!(header("retry-after").as_deref(), Some("60"));
        assert_eq!(header("ratelimit-remaining").as_deref(), Some("0"));
        // Bob has his own bucket.
        req.insert_header("x-user", "bob").unwrap();
        assert!(matches!(
            plugin.request(&mut req, &mut ctx).await.unwrap(),
            Flow::Continue
        ));
    }

    #[test]
    fn rejects_bad_settings() {
        let err = |s: &str| build_error(build, s);
        assert_eq!(err("burst = 3").key(), None, "rate is required");
        assert_eq!(err("rate = 1\nburst = 0").key(), Some("burst"));
        assert_eq!(err("rate = 1\nkey = '$host'").key(), Some("key"));
        assert_eq!(err("rate = 1\nmax_keys = 1").key(), Some("max_keys"));
    }
}
