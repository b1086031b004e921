//! Ports for servers that a test starts later, or starts again, on a port named in advance.

#![allow(dead_code)]

use std::hash::{BuildHasher, Hasher};
use std::net::TcpListener;

/// A loopback TCP port that is free now and lies below the kernel's ephemeral port range
/// (`net.ipv4.ip_local_port_range`), for a server started later or restarted on a port named in
/// advance (pebble's directory while pingap sees it down; etcd after a kill). Until the server
/// binds it nothing holds it, and a port of the ephemeral range may meanwhile become the local
/// end of any process's outgoing connection — pebble then failed with "bind: address already in
/// use" on its directory port while the other tests ran. Below that range only an explicit bind
/// can take it.
pub fn reserved_port() -> u16 {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    let first = 10_000.min(ephemeral_low / 2);
    let span = u64::from(ephemeral_low - first);
    // A random start, so that tests reserving at the same time rarely try the same ports.
    let start = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    for step in 0..span {
        let port = first + ((start.wrapping_add(step)) % span) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port between {first} and {ephemeral_low}");
}
