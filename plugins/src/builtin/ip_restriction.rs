//! `ip_restriction`: allows or denies clients by address.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `allow` | `[]` | IPs and CIDRs (v4 and v6); when set, only these clients pass |
//! | `deny` | `[]` | IPs and CIDRs refused (checked first) |
//!
//! The client is the TCP peer, or behind `basic.trusted_proxies` the first untrusted hop of
//! `X-Forwarded-For`. Refused clients get 403.

use std::net::IpAddr;
use std::sync::Arc;

use async_trait::async_trait;
use ipnet::IpNet;
use pingora_http::RequestHeader;

use crate::access_list::{self, AccessList, Pattern};
use crate::{
    BuildEnv, BuildError, Flow, Phase, Phases, Plugin, PluginCtx, PluginError, PluginType, Settings,
};

pub(crate) const TYPE: PluginType = PluginType {
    name: "ip_restriction",
    default_priority: 8000,
    summary: "allows or denies clients by IP address or CIDR",
    build,
};

struct IpRestriction {
    list: AccessList<Vec<IpNet>>,
}

impl Pattern for IpNet {
    type Subject = IpAddr;

    fn parse(entry: &str) -> Result<Self, String> {
        let entry = entry.trim();
        entry
            .parse::<IpNet>()
            .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
            .map_err(|_| format!("\"{entry}\" is not an IP address or CIDR"))
    }

    fn matches(&self, client: &IpAddr) -> bool {
        self.contains(client)
    }
}

fn build(settings: &Settings, _: &BuildEnv) -> Result<Arc<dyn Plugin>, BuildError> {
    Ok(Arc::new(IpRestriction {
        list: AccessList::from_settings(settings)?,
    }))
}

impl IpRestriction {
    fn admits(&self, client: Option<IpAddr>) -> bool {
        self.list.admits(client.map(canonical).as_ref())
    }
}

/// IPv4-mapped IPv6 addresses as plain IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[async_trait]
impl Plugin for IpRestriction {
    fn phases(&self) -> Phases {
        Phases::of(&[Phase::Request])
    }

    async fn request(
        &self,
        _req: &mut RequestHeader,
        ctx: &mut PluginCtx,
    ) -> Result<Flow, PluginError> {
        Ok(access_list::decide(
            self.admits(ctx.client_ip),
            "access from this address is not allowed",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builtin::testing::build_error;

    fn rule(settings: &str) -> IpRestriction {
        IpRestriction {
            list: AccessList::from_settings(&settings.parse().unwrap()).unwrap(),
        }
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn deny_wins_then_allow_limits() {
        let rule =
            rule("allow = ['10.0.0.0/8', '2001:db8::/32', '192.0.2.7']\ndeny = ['10.6.6.0/24']");
        assert!(rule.admits(ip("10.1.2.3")));
        assert!(rule.admits(ip("::ffff:10.1.2.3")), "mapped v4");
        assert!(rule.admits(ip("2001:db8::1")));
        assert!(rule.admits(ip("192.0.2.7")));
        assert!(!rule.admits(ip("10.6.6.6")));
        assert!(!rule.admits(ip("192.0.2.8")));
        assert!(!rule.admits(None));
        let deny_only = self::rule("deny = ['203.0.113.0/24']");
        assert!(deny_only.admits(ip("198.51.100.1")));
        assert!(!deny_only.admits(ip("203.0.113.9")));
        assert!(deny_only.admits(None));
    }

    #[test]
    fn rejects_bad_settings() {
        let err = |s: &str| build_error(build, s);
        assert_eq!(err("allow = ['10.0.0.0/33']").key(), Some("allow[0]"));
        assert_eq!(err("deny = ['x']").key(), Some("deny[0]"));
        assert_eq!(err("").key(), Some("allow"));
    }
}
