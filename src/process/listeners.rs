//! Listening sockets, bound before Pingora starts.
//!
//! Pingora binds listeners inside its service tasks, retries an address in use for 30 seconds,
//! then panics the task while the process keeps running without the listener. Binding here
//! instead makes a bad address fail the start at once with a clear error, and makes port 0 work
//! (the bound port is known and logged). Pingora adopts a socket that is already in its fd table
//! under the same address string, the mechanism it also uses for graceful upgrades; the
//! [`PreBound`] wrapper puts the socket there when the service starts.

use std::net::{SocketAddr, TcpListener};
use std::os::fd::{IntoRawFd, RawFd};

use async_trait::async_trait;
use pingora::server::{ListenFds, ShutdownWatch};
use pingora::services::Service;
use socket2::{Domain, Socket, Type};

/// Pending connections the kernel queues per listener (Pingora's own value).
const BACKLOG: i32 = 65535;

/// Binds `addr` the way Pingora would (`SO_REUSEADDR`, IPv6 listeners IPv6-only), non-blocking.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// A service whose listening sockets were bound in advance.
pub struct PreBound<S> {
    inner: S,
    fds: Vec<(String, RawFd)>,
}

impl<S> PreBound<S> {
    /// Wraps `inner`, which listens on `addr`, with the socket bound for it.
    pub fn new(inner: S, addr: String, listener: TcpListener) -> Self {
        PreBound {
            inner,
            fds: vec![(addr, listener.into_raw_fd())],
        }
    }

    /// Wraps `inner` without sockets (they come from the fd table, e.g. in an upgrade).
    pub fn adopting(inner: S) -> Self {
        PreBound {
            inner,
            fds: Vec::new(),
        }
    }
}

#[async_trait]
impl<S: Service> Service for PreBound<S> {
    async fn start_service(
        &mut self,
        fds: Option<ListenFds>,
        shutdown: ShutdownWatch,
        listeners_per_fd: usize,
    ) {
        if let Some(table) = fds.as_ref() {
            let mut table = table.lock();
            for (addr, fd) in self.fds.drain(..) {
                table.add(addr, fd);
            }
        }
        self.inner
            .start_service(fds, shutdown, listeners_per_fd)
            .await
    }

    fn name(&self) -> &str {
        self.inner.name()
    }

    fn threads(&self) -> Option<usize> {
        self.inner.threads()
    }

    fn listen_addresses(&self) -> Option<Vec<String>> {
        self.inner.listen_addresses()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_ephemeral_ports_and_reports_conflicts() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        assert_ne!(addr.port(), 0);
        let err = bind(addr).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
    }
}
