//! Per-request state shared by the proxy and the plugins of one request.

use std::any::Any;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use pingora_http::RequestHeader;

use crate::vars::{ClientCert, Vars};

type Slot = Option<Box<dyn Any + Send + Sync>>;

/// What a plugin knows about the request besides its header, and where it keeps per-request state
/// between phases.
///
/// The proxy fills the public fields before the request phase. Each plugin of a chain has one
/// private state slot ([`PluginCtx::set_state`], [`PluginCtx::state`]); nothing is allocated for a request
/// whose plugins keep no state.
#[derive(Default)]
pub struct PluginCtx {
    /// The client: the TCP peer, or, when the peer is a trusted proxy, the first untrusted hop of
    /// `X-Forwarded-For`.
    pub client_ip: Option<IpAddr>,
    /// The request host, lower-cased, without port.
    pub host: String,
    /// The TCP peer of the downstream connection.
    pub remote_addr: Option<SocketAddr>,
    /// The local address the request arrived on.
    pub server_addr: Option<SocketAddr>,
    /// Whether the downstream connection is TLS.
    pub tls: bool,
    /// The client certificate the server verified (mutual TLS), if any.
    pub client_cert: Option<Arc<ClientCert>>,
    /// The name of the matched location.
    pub location: Arc<str>,
    /// The request id, once a plugin has assigned one (`$request_id`).
    pub request_id: Option<String>,
    /// The status of the response, known from the response-header phase on (0 before).
    pub status: u16,
    slots: Vec<Slot>,
    /// Index in the chain of the plugin being run.
    current: usize,
    /// How many plugins have run their request phase (or been skipped for it) so far.
    ran: usize,
}

impl PluginCtx {
    /// A context for a request that matched `location`.
    pub fn new(location: Arc<str>) -> Self {
        PluginCtx {
            location,
            ..PluginCtx::default()
        }
    }

    /// The variables of this request for templates (without location captures).
    pub fn variables<'a>(&'a self, req: &'a RequestHeader, request_uri: &'a str) -> Vars<'a> {
        Vars {
            req,
            request_uri,
            host: &self.host,
            tls: self.tls,
            client_ip: self.client_ip,
            remote_addr: self.remote_addr,
            server_addr: self.server_addr,
            request_id: self.request_id.as_deref(),
            location: &self.location,
            captures: &[],
            client_cert: self.client_cert.as_deref(),
        }
    }

    /// Stores the running plugin's state for this request, replacing any earlier value.
    pub fn set_state<T: Any + Send + Sync>(&mut self, value: T) {
        let index = self.current;
        if self.slots.len() <= index {
            self.slots.resize_with(index + 1, || None);
        }
        self.slots[index] = Some(Box::new(value));
    }

    /// The running plugin's state, if it stored one of type `T`.
    pub fn state<T: Any>(&self) -> Option<&T> {
        self.slots.get(self.current)?.as_ref()?.downcast_ref()
    }

    /// The running plugin's state, mutably.
    pub fn state_mut<T: Any>(&mut self) -> Option<&mut T> {
        self.slots.get_mut(self.current)?.as_mut()?.downcast_mut()
    }

    /// Removes and returns the running plugin's state.
    pub fn take_state<T: Any>(&mut self) -> Option<T> {
        let slot = self.slots.get_mut(self.current)?;
        match slot.take()?.downcast::<T>() {
            Ok(value) => Some(*value),
            Err(other) => {
                *slot = Some(other);
                None
            }
        }
    }

    pub(crate) fn enter(&mut self, index: usize) {
        self.current = index;
    }

    pub(crate) fn ran(&self) -> usize {
        self.ran
    }

    pub(crate) fn set_ran(&mut self, ran: usize) {
        self.ran = ran;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_plugin_sees_only_its_own_slot() {
        let mut ctx = PluginCtx::default();
        ctx.enter(2);
        ctx.set_state(7u32);
        ctx.enter(0);
        assert_eq!(ctx.state::<u32>(), None);
        ctx.set_state("zero");
        ctx.enter(2);
        assert_eq!(ctx.state::<u32>(), Some(&7));
        *ctx.state_mut::<u32>().unwrap() += 1;
        assert_eq!(
            ctx.take_state::<String>(),
            None,
            "wrong type leaves the value"
        );
        assert_eq!(ctx.take_state::<u32>(), Some(8));
        assert_eq!(ctx.state::<u32>(), None);
    }
}
