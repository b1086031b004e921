// Copyright 2026 Cloudflare, Inc.
//
// Licensed under the Apache License, Version 2.0 (the "License");
// you may not use this file except in compliance with the License.
// You may obtain a copy of the License at
//
// http://www.apache.org/licenses/LICENSE-2.0
//
// Unless required by applicable law or agreed to in writing, software
// distributed under the License is distributed on an "AS IS" BASIS,
// WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
// See the License for the specific language governing permissions and
// limitations under the License.

//! The abstraction and implementation interface for service application logic

pub mod http_app;

use crate::server::ShutdownWatch;
use async_trait::async_trait;
use bytes::BytesMut;
use log::{debug, error};
use std::any::Any;
use std::sync::Arc;
use std::time::Duration;
use std::task::Poll; // pingap patch
use std::time::Instant; // pingap patch

use crate::protocols::http::v1::server::poll_first_bytes; // pingap patch
use crate::protocols::http::v2::server;
use crate::protocols::http::{ReusableHttpStream, ServerSession};
use crate::protocols::Digest;
use crate::protocols::Stream;
use crate::protocols::ALPN;

// https://datatracker.ietf.org/doc/html/rfc9113#section-3.4
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

#[async_trait]
/// This trait defines the interface of a transport layer (TCP or TLS) application.
pub trait ServerApp {
    /// Whenever a new connection is established, this function will be called with the established
    /// [`Stream`] object provided.
    ///
    /// The application can do whatever it wants with the `session`.
    ///
    /// After processing the `session`, if the `session`'s connection is reusable, This function
    /// can return it to the service by returning `Some(session)`. The returned `session` will be
    /// fed to another [`Self::process_new()`] for another round of processing.
    /// If not reusable, `None` should be returned.
    ///
    /// The `shutdown` argument will change from `false` to `true` when the server receives a
    /// signal to shutdown. This argument allows the application to react accordingly.
    async fn process_new(
        self: &Arc<Self>,
        mut session: Stream,
        // TODO: make this ShutdownWatch so that all task can await on this event
        shutdown: &ShutdownWatch,
    ) -> Option<Stream>;

    /// This callback will be called once after the service stops listening to its endpoints.
    async fn cleanup(&self) {}
}
#[non_exhaustive]
#[derive(Clone, Debug, Default)]
/// HTTP Server options that control how the server handles some transport types.
pub struct HttpServerOptions {
    /// Allow HTTP/2 for plaintext.
    pub h2c: bool,

    /// Allow proxying CONNECT requests when handling HTTP traffic.
    ///
    /// When disabled, CONNECT requests are rejected with 405 by proxy services.
    pub allow_connect_method_proxying: bool,

    #[doc(hidden)]
    pub force_custom: bool,

    /// Maximum number of requests that this connection will handle. This is
    /// equivalent to [Nginx's keepalive requests](https://nginx.org/en/docs/http/ngx_http_upstream_module.html#keepalive_requests)
    /// which says:
    ///
    /// > Closing connections periodically is necessary to free per-connection
    /// > memory allocations. Therefore, using too high maximum number of
    /// > requests could result in excessive memory usage and not recommended.
    ///
    /// Unlike nginx, the default behavior here is _no limit_.
    pub keepalive_request_limit: Option<u32>,

    /// If set, close a downstream HTTP/2 connection that has been idle
    /// for this duration.
    ///
    /// Default: `None`
    pub h2_idle_timeout: Option<Duration>,

    /// If set, the time a client has for the whole head (request line and headers) of each
    /// HTTP/1.x request, like nginx's `client_header_timeout`. For the first request of a
    /// connection it counts from the accept, so it also bounds the h2c preface check and the
    /// HTTP/2 connection preface of a new connection; for later requests it counts from their
    /// first byte (the wait for them is the keepalive timeout). Past it the connection is
    /// closed (a proxy service answers an incomplete head with 408 first). See
    /// [`HttpSession::set_header_read_timeout`](crate::protocols::http::v1::server::HttpSession::set_header_read_timeout).
    ///
    /// Default: `None` (each read is bounded by the keepalive timeout only, so a client that
    /// sends a byte now and then keeps the connection forever)
    // pingap patch
    pub header_read_timeout: Option<Duration>,

    /// Answer HTTP/1.1 requests that a client pipelines (sends before the previous response)
    /// in order on the same connection, instead of closing the connection after the first
    /// response and dropping them. See
    /// [`HttpSession::set_pipelining_enabled`](crate::protocols::http::v1::server::HttpSession::set_pipelining_enabled).
    ///
    /// Default: `false`
    // pingap patch
    pub h1_pipelining: bool,
}

/// Settings persisted across HTTP/1.x keepalive requests on the same downstream connection.
///
/// In addition to framework-managed keepalive parameters, this struct can carry an optional
/// user-defined context via [`set_user_context`](Self::set_user_context). The proxy layer
/// populates this through `ProxyHttp::persist_connection_context`
/// and delivers it to the next request through `ProxyHttp::on_connection_reuse`.
///
/// Also carries pipelined-prefix bytes when the caller has opted into HTTP/1.1
/// pipelining on the previous session. See
/// [`Self::set_pipelined_prefix`] and the
/// [`HttpSession::set_pipelining_enabled`](crate::protocols::http::v1::server::HttpSession::set_pipelining_enabled)
/// docs for the RFC 9112 §9.3.2 semantics.
#[derive(Debug)]
pub struct HttpPersistentSettings {
    keepalive_timeout: Option<u64>,
    keepalive_reuses_remaining: Option<u32>,
    /// User-defined context to carry to the next request on this connection.
    user_context: Option<Box<dyn Any + Send + Sync>>,
    /// Bytes read past the end of the previous request's body, to be parsed
    /// as the next pipelined request on the reused connection.
    pipelined_prefix: Option<BytesMut>,
    /// Whether HTTP/1.1 pipelining was enabled on the previous session;
    /// propagates to the next session so the proxy-level opt-in sticks
    /// across keepalive reuses without the adopter having to re-enable
    /// it on every request.
    pipelining_enabled: bool,
}

impl HttpPersistentSettings {
    pub fn for_session(session: &ServerSession) -> Self {
        HttpPersistentSettings {
            keepalive_timeout: session.get_keepalive(),
            keepalive_reuses_remaining: session.get_keepalive_reuses_remaining(),
            user_context: None,
            pipelined_prefix: None,
            pipelining_enabled: session.pipelining_enabled(),
        }
    }

    /// Set a user-defined context to be carried to the next request on this connection.
    pub fn set_user_context(&mut self, ctx: Box<dyn Any + Send + Sync>) {
        self.user_context = Some(ctx);
    }

    /// Take the user-defined context, if any.
    pub fn take_user_context(&mut self) -> Option<Box<dyn Any + Send + Sync>> {
        self.user_context.take()
    }

    /// Set pipelined-prefix bytes to be fed to the next session on this
    /// connection. Called by the proxy layer when HTTP/1.1 pipelining is
    /// enabled on the current session and overread bytes were present at
    /// reuse time.
    pub fn set_pipelined_prefix(&mut self, prefix: BytesMut) {
        self.pipelined_prefix = Some(prefix);
    }

    // pingap patch
    /// Whether bytes of a pipelined next request were read with the previous one.
    fn has_pipelined_prefix(&self) -> bool {
        self.pipelined_prefix
            .as_ref()
            .is_some_and(|prefix| !prefix.is_empty())
    }

    pub fn apply_to_session(self, session: &mut ServerSession) {
        let Self {
            keepalive_timeout,
            mut keepalive_reuses_remaining,
            user_context,
            pipelined_prefix,
            pipelining_enabled,
        } = self;

        // Reduce the number of times the connection for this session can be
        // reused by one. A session with reuse count of zero won't be reused
        if let Some(reuses) = keepalive_reuses_remaining.as_mut() {
            *reuses = reuses.saturating_sub(1);
        }

        session.set_keepalive(keepalive_timeout);
        session.set_keepalive_reuses_remaining(keepalive_reuses_remaining);

        // Carry user context into the session for the proxy layer to consume
        session.set_connection_user_context(user_context);

        // Replay pipelining opt-in so it stays on across keepalive reuses.
        session.set_pipelining_enabled(pipelining_enabled);

        // Feed any pipelined prefix bytes to the new session's request parser
        // so they are treated as the start of the next request.
        // pingap patch: an empty prefix is no prefix (see `has_pipelined_prefix`)
        if let Some(prefix) = pipelined_prefix.filter(|prefix| !prefix.is_empty()) {
            session.set_pipelined_prefix(prefix);
        }
    }
}

#[derive(Debug)]
pub struct ReusedHttpStream {
    stream: Stream,
    persistent_settings: Option<HttpPersistentSettings>,
}

impl ReusedHttpStream {
    pub fn new(stream: Stream, persistent_settings: Option<HttpPersistentSettings>) -> Self {
        ReusedHttpStream {
            stream,
            persistent_settings,
        }
    }

    /// Build a reusable HTTP stream from a finished session, preserving any
    /// pipelined prefix bytes in the persistent settings for the next request.
    pub fn from_reusable_stream(
        reusable: ReusableHttpStream,
        mut persistent_settings: HttpPersistentSettings,
    ) -> Self {
        let (stream, pipelined_prefix) = reusable.into_parts();
        if let Some(prefix) = pipelined_prefix {
            persistent_settings.set_pipelined_prefix(prefix);
        }
        Self::new(stream, Some(persistent_settings))
    }

    pub fn consume(self) -> (Stream, Option<HttpPersistentSettings>) {
        (self.stream, self.persistent_settings)
    }
}

/// This trait defines the interface of an HTTP application.
#[async_trait]
pub trait HttpServerApp {
    /// Similar to the [`ServerApp`], this function is called whenever a new HTTP session is established.
    ///
    /// After successful processing, [`ServerSession::finish()`] can be
    /// called to return an optionally reusable connection back to the service.
    /// The caller needs to make sure that the connection is in a reusable state
    /// i.e., no error or incomplete read or write headers or bodies. Otherwise
    /// a `None` should be returned.
    async fn process_new_http(
        self: &Arc<Self>,
        mut session: ServerSession,
        // TODO: make this ShutdownWatch so that all task can await on this event
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream>;

    /// Provide options on how HTTP/2 connection should be established. This function will be called
    /// every time a new HTTP/2 **connection** needs to be established.
    ///
    /// A `None` means to use the built-in default options. See [`server::H2Options`] for more details.
    fn h2_options(&self) -> Option<server::H2Options> {
        None
    }

    /// Provide HTTP server options used to override default behavior. This function will be called
    /// every time a new connection is processed.
    ///
    /// A `None` means no server options will be applied.
    fn server_options(&self) -> Option<&HttpServerOptions> {
        None
    }

    async fn http_cleanup(&self) {}

    // pingap patch
    /// Resolves when a kept-alive HTTP/1 connection that waits for its next request is to be
    /// closed because the server is shutting down (the wait is in
    /// [`ServerApp::process_new`]'s keep-alive loop, not in `process_new_http`). The default
    /// never resolves: such a connection waits for its keepalive timeout, as it did in the
    /// `read_request` of an app that does not watch for shutdown itself.
    fn idle_connection_shutdown(&self) -> impl std::future::Future<Output = ()> + Send + '_ {
        std::future::pending()
    }

    #[doc(hidden)]
    async fn process_custom_session(
        self: Arc<Self>,
        _stream: Stream,
        _shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        None
    }
}

#[async_trait]
impl<T> ServerApp for T
where
    T: HttpServerApp + Send + Sync + 'static,
{
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        // pingap patch: the first request head (and before it the h2c and HTTP/2 prefaces) is
        // due `header_read_timeout` after the accept, when the connection was established.
        let header_read_timeout = self.server_options().and_then(|o| o.header_read_timeout);
        let accepted = established_instant(&stream);
        let head_deadline = header_read_timeout.map(|t| accepted + t);
        let mut h2c = self.server_options().as_ref().map_or(false, |o| o.h2c);
        let custom = self
            .server_options()
            .as_ref()
            .map_or(false, |o| o.force_custom);

        // h2c is for cleartext connections; on TLS, ALPN handles protocol negotiation.
        // Otherwise, h2c stays true on TLS streams, forcing HTTP/1.1 clients into HTTP/2
        if stream.get_ssl_digest().is_some() {
            h2c = false;
        }
        // try to read h2 preface
        else if h2c && !custom {
            let mut buf = [0u8; H2_PREFACE.len()];
            // pingap patch: bounded by the header read timeout (the peek waits for 24 bytes)
            let peek = stream.try_peek(&mut buf);
            let peeked = match head_deadline {
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    match pingora_timeout::timeout(left, peek).await {
                        Ok(peeked) => peeked,
                        Err(_) => {
                            debug!("no h2c preface or HTTP/1 request within the header timeout");
                            return None;
                        }
                    }
                }
                None => peek.await,
            };
            let peeked = peeked
                .map_err(|e| {
                    // this error is normal when h1 reuse and close the connection
                    debug!("Read error while peeking h2c preface {e}");
                    e
                })
                .ok()?;
            // not all streams support peeking
            if peeked {
                // turn off h2c (use h1) if h2 preface doesn't exist
                h2c = buf == H2_PREFACE;
            }
        }
        if h2c || matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
            // pingap patch: the HTTP/2 connection is served by a future of its own (boxed):
            // inline, its state (the h2 handshake and connection) was part of this future's,
            // which every HTTP/1 connection holds for its whole life.
            Box::pin(serve_h2(self, stream, head_deadline, shutdown)).await;
        } else if custom || matches!(stream.selected_alpn_proto(), Some(ALPN::Custom(_))) {
            return self.clone().process_custom_session(stream, shutdown).await;
        } else {
            // No ALPN or ALPN::H1 and h2c was not configured, fallback to HTTP/1.1
            let mut session = ServerSession::new_http1(stream);
            // pingap patch: header read timeout from the accept, and pipelining
            let pipelining = self.server_options().is_some_and(|o| o.h1_pipelining);
            if let ServerSession::H1(h1) = &mut session {
                h1.set_header_read_timeout(header_read_timeout, Some(accepted));
                h1.set_pipelining_enabled(pipelining);
            }
            if *shutdown.borrow() {
                // stop downstream from reusing if this service is shutting down soon
                session.set_keepalive(None);
            } else {
                // default 60s
                session.set_keepalive(Some(60));
            }
            session.set_keepalive_reuses_remaining(
                self.server_options()
                    .and_then(|opts| opts.keepalive_request_limit),
            );

            let mut result = self.process_new_http(session, shutdown).await;
            while let Some((mut stream, persistent_settings)) = result.map(|r| r.consume()) {
                // pingap patch: the wait for the next request happens here, before its
                // session and `process_new_http`'s future exist, so that an idle keep-alive
                // connection holds neither (see `next_request_bytes`). Pipelined bytes already
                // read are the start of the next request; there is nothing to wait for then.
                let first_bytes = match &persistent_settings {
                    Some(settings) if !settings.has_pipelined_prefix() => Some(
                        next_request_bytes(
                            &mut stream,
                            settings.keepalive_timeout,
                            self.idle_connection_shutdown(),
                        )
                        .await?,
                    ),
                    // without the settings the session's read applies its own timeouts
                    _ => None,
                };
                let mut session = ServerSession::new_http1(stream);
                // pingap patch: header read timeout from the request's first byte, and
                // pipelining (also carried over by the persistent settings)
                if let ServerSession::H1(h1) = &mut session {
                    h1.set_header_read_timeout(header_read_timeout, None);
                    h1.set_pipelining_enabled(pipelining);
                }
                if let Some(persistent_settings) = persistent_settings {
                    persistent_settings.apply_to_session(&mut session);
                }
                if let (Some(first_bytes), ServerSession::H1(h1)) = (first_bytes, &mut session) {
                    h1.set_pipelined_prefix(first_bytes);
                }

                result = self.process_new_http(session, shutdown).await;
            }
        }
        None
    }

    async fn cleanup(&self) {
        self.http_cleanup().await;
    }
}

// pingap patch: see the call in `process_new`.
/// Waits on a kept-alive HTTP/1 connection for the first bytes of its next request and reads
/// them (see [`poll_first_bytes`]: no buffer is allocated until they arrive). The wait lasts at
/// most the keepalive timeout (in seconds; `Some(0)`: no limit) and ends when `shutdown`
/// resolves ([`HttpServerApp::idle_connection_shutdown`]); bytes already there win over it.
/// `None` when the connection is to be closed instead: the client closed it or it failed, the
/// keepalive timeout passed, or the server is shutting down; the session's own read of the
/// request head treated each of these the same way.
///
/// Waiting here rather than in the session's `read_request` keeps the wait out of
/// `process_new_http`'s future and the session, which exist only while a request is served.
async fn next_request_bytes(
    stream: &mut Stream,
    keepalive_secs: Option<u64>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Option<BytesMut> {
    let mut bytes = BytesMut::new();
    // Under load the next request is often here already: no timer, no shutdown waiter then.
    let ready = std::future::poll_fn(|cx| {
        Poll::Ready(match poll_first_bytes(stream, cx, &mut bytes) {
            Poll::Ready(read) => Some(read),
            Poll::Pending => None,
        })
    })
    .await;
    let read = match ready {
        Some(read) => read,
        None => {
            let wait = async {
                tokio::select! {
                    biased;
                    read = std::future::poll_fn(|cx| poll_first_bytes(stream, cx, &mut bytes)) => Some(read),
                    _ = shutdown => None,
                }
            };
            match keepalive_secs {
                Some(secs) if secs > 0 => {
                    pingora_timeout::timeout(Duration::from_secs(secs), wait)
                        .await
                        .ok()??
                }
                _ => wait.await?,
            }
        }
    };
    match read {
        Ok(n) if n > 0 => Some(bytes),
        Ok(_) => {
            debug!("client closed a kept-alive connection");
            None
        }
        Err(e) => {
            debug!("read error on a kept-alive connection: {e}");
            None
        }
    }
}

// pingap patch: see the call in `process_new`.
/// Serves an HTTP/2 connection (h2c or ALPN `h2`) until it ends.
async fn serve_h2<T>(
    app: &Arc<T>,
    stream: Stream,
    head_deadline: Option<Instant>,
    shutdown: &ShutdownWatch,
) where
    T: HttpServerApp + Send + Sync + 'static,
{
    // create a shared connection digest
    let digest = Arc::new(Digest {
        ssl_digest: stream.get_ssl_digest(),
        // TODO: log h2 handshake time
        timing_digest: stream.get_timing_digest(),
        proxy_digest: stream.get_proxy_digest(),
        socket_digest: stream.get_socket_digest(),
    });

    let h2_options = app.h2_options();
    // pingap patch: the connection preface is due within the header read timeout
    let handshake = server::handshake(stream, h2_options);
    let handshake = match head_deadline {
        Some(deadline) => {
            let left = deadline.saturating_duration_since(Instant::now());
            match pingora_timeout::timeout(left, handshake).await {
                Ok(handshake) => handshake,
                Err(_) => {
                    debug!("no HTTP/2 connection preface within the header timeout");
                    return;
                }
            }
        }
        None => handshake.await,
    };
    let h2_conn = match handshake {
        Err(e) => {
            error!("H2 handshake error {e}");
            return;
        }
        Ok(c) => c,
    };

    // The accept-loop body — including the graceful-shutdown state
    // machine — lives in `server::accept_downstream_sessions` so that
    // the same code path is exercised by tests in `protocols::http::v2`.
    let app = app.clone();
    let shutdown_for_session = shutdown.clone();
    let h2_idle_timeout = app.server_options().and_then(|o| o.h2_idle_timeout);
    server::accept_downstream_sessions(
        h2_conn,
        digest,
        shutdown.clone(),
        h2_idle_timeout,
        |h2_stream, guard| {
            let app = app.clone();
            let shutdown = shutdown_for_session.clone();
            // pingap patch: a stream runs on its connection's thread (the current runtime), not
            // on a random one: without work stealing, each thread has a scheduler of its own, and
            // a stream elsewhere would cross threads for every frame it sends or receives.
            tokio::spawn(async move {
                // hold `guard` for the session's lifetime so the accept
                // loop's idle timeout sees this connection as busy.
                let _guard = guard;
                // Note, `PersistentSettings` not currently relevant for h2
                app.process_new_http(ServerSession::new_http2(h2_stream), &shutdown)
                    .await;
            });
        },
    )
    .await;
}

// pingap patch
/// When `stream` was established (accepted, for a downstream connection), as an [`Instant`]:
/// now, when its timing digest does not say.
fn established_instant(stream: &Stream) -> Instant {
    let now = Instant::now();
    stream
        .get_timing_digest()
        .first()
        .and_then(|digest| digest.as_ref())
        .and_then(|digest| digest.established_ts.elapsed().ok())
        .and_then(|age| now.checked_sub(age))
        .unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_test::io::Builder;

    #[test]
    fn test_persistent_settings_user_context_roundtrip() {
        // Create a mock H1 session
        let mock_io = Builder::new().build();
        let mut session = ServerSession::new_http1(Box::new(mock_io));
        session.set_keepalive(Some(60));

        // Snapshot settings (no user context yet)
        let mut settings = HttpPersistentSettings::for_session(&session);
        assert!(settings.take_user_context().is_none());

        // Set user context
        settings.set_user_context(Box::new(123u64));

        // Apply to a fresh session -- user context should transfer
        let mock_io2 = Builder::new().build();
        let mut session2 = ServerSession::new_http1(Box::new(mock_io2));
        settings.apply_to_session(&mut session2);

        // The user context should now be on the session
        let ctx = session2.take_connection_user_context();
        assert!(ctx.is_some());
        let val = ctx.unwrap().downcast::<u64>().unwrap();
        assert_eq!(*val, 123u64);

        // Keepalive should also have been applied
        assert_eq!(session2.get_keepalive(), Some(60));
    }

    #[test]
    fn test_persistent_settings_no_user_context_by_default() {
        let mock_io = Builder::new().build();
        let mut session = ServerSession::new_http1(Box::new(mock_io));
        session.set_keepalive(Some(30));

        let settings = HttpPersistentSettings::for_session(&session);

        let mock_io2 = Builder::new().build();
        let mut session2 = ServerSession::new_http1(Box::new(mock_io2));
        settings.apply_to_session(&mut session2);

        // No user context should be present
        assert!(session2.take_connection_user_context().is_none());
        // Keepalive should still work
        assert_eq!(session2.get_keepalive(), Some(30));
    }
}
