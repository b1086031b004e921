//! Serving the admin API's axum router from a Pingora service: each request read by Pingora is
//! handed to the router as an `http::Request`, and its response is written back as it is
//! produced, so Server-Sent Events stream. Running inside Pingora gives the admin listener what
//! every other listener has: it is bound before the process starts, handed over in a graceful
//! upgrade, served with TLS by Pingora, and closed at shutdown.

use std::net::IpAddr;
use std::sync::Arc;

use async_trait::async_trait;
use axum::Router;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use http::StatusCode;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ReusedHttpStream};
use pingora::http::ResponseHeader;
use pingora::protocols::http::ServerSession;
use pingora::server::ShutdownWatch;
use tower::ServiceExt;

use crate::proxy::InFlight;

/// The largest request body the admin API reads (a whole configuration fits many times).
pub const MAX_BODY: usize = 8 * 1024 * 1024;

/// What the handlers learn about the connection a request came on (a request extension).
#[derive(Debug, Clone)]
pub struct Connection {
    /// The client's address.
    pub client: Option<IpAddr>,
    /// Whether the connection is TLS.
    pub tls: bool,
    /// Whether the process is shutting down.
    pub shutdown: ShutdownWatch,
}

impl Connection {
    /// Whether the process is draining (shutting down, or handing over to a new process).
    pub fn draining(&self) -> bool {
        *self.shutdown.borrow()
    }
}

/// The admin API as a Pingora HTTP app.
pub struct AdminApp {
    router: Router,
    tls: bool,
    in_flight: Arc<InFlight>,
}

impl AdminApp {
    /// Serves `router`; `tls` says whether the listener is HTTPS. While the data listeners still
    /// have requests in flight (`in_flight`) at shutdown, the admin API keeps serving the
    /// connections it has (its readiness answers 503).
    pub fn new(router: Router, tls: bool, in_flight: Arc<InFlight>) -> AdminApp {
        AdminApp {
            router,
            tls,
            in_flight,
        }
    }
}

/// How often the end of the drain is checked.
const DRAIN_POLL: std::time::Duration = std::time::Duration::from_millis(20);

#[async_trait]
impl HttpServerApp for AdminApp {
    async fn process_new_http(
        self: &Arc<Self>,
        mut session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        match session.read_request().await {
            Ok(true) => {}
            Ok(false) => return None,
            Err(e) => {
                tracing::debug!("admin: cannot read a request: {e}");
                return None;
            }
        }
        session.set_keepalive(if *shutdown.borrow() { None } else { Some(60) });
        let request = match read_request(&mut session, self.tls, shutdown).await {
            Ok(request) => request,
            Err(status) => {
                let _ = session.respond_error(status.as_u16()).await;
                return None;
            }
        };
        let response = match self.router.clone().oneshot(request).await {
            Ok(response) => response,
            Err(infallible) => match infallible {},
        };
        if write_response(&mut session, response, shutdown)
            .await
            .is_err()
        {
            return None;
        }
        let settings = HttpPersistentSettings::for_session(&session);
        match session.finish().await {
            Ok(stream) => stream.map(|s| ReusedHttpStream::from_reusable_stream(s, settings)),
            Err(_) => None,
        }
    }

    /// Called when the listener has stopped accepting: the connections it has are served until
    /// the data listeners' requests are done (the process ends then).
    async fn http_cleanup(&self) {
        while self.in_flight.count() > 0 {
            tokio::time::sleep(DRAIN_POLL).await;
        }
    }
}

/// The request as axum takes it, with its body read (bounded by [`MAX_BODY`]).
async fn read_request(
    session: &mut ServerSession,
    tls: bool,
    shutdown: &ShutdownWatch,
) -> Result<http::Request<axum::body::Body>, StatusCode> {
    let mut body = BytesMut::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_BODY {
                    return Err(StatusCode::PAYLOAD_TOO_LARGE);
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(_) => return Err(StatusCode::BAD_REQUEST),
        }
    }
    let head = session.req_header();
    let mut builder = http::Request::builder()
        .method(head.method.clone())
        .uri(head.uri.clone())
        .version(head.version);
    if let Some(headers) = builder.headers_mut() {
        for (name, value) in head.headers.iter() {
            headers.append(name.clone(), value.clone());
        }
    }
    let connection = Connection {
        client: session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip()),
        tls,
        shutdown: shutdown.clone(),
    };
    builder
        .extension(connection)
        .body(axum::body::Body::from(body.freeze()))
        .map_err(|_| StatusCode::BAD_REQUEST)
}

/// Writes `response`, streaming its body; a stream still open at shutdown is ended.
async fn write_response(
    session: &mut ServerSession,
    response: http::Response<axum::body::Body>,
    shutdown: &ShutdownWatch,
) -> Result<(), ()> {
    use axum::body::HttpBody as _;
    let (parts, body) = response.into_parts();
    let mut header =
        ResponseHeader::build(parts.status, Some(parts.headers.len() + 1)).map_err(|_| ())?;
    for (name, value) in &parts.headers {
        header
            .append_header(name.clone(), value.clone())
            .map_err(|_| ())?;
    }
    let exact = body.size_hint().exact();
    match exact {
        Some(length) => header
            .insert_header(http::header::CONTENT_LENGTH, length)
            .map_err(|_| ())?,
        None if session.is_http2() => {}
        None => header
            .insert_header(http::header::TRANSFER_ENCODING, "chunked")
            .map_err(|_| ())?,
    }
    session
        .write_response_header(Box::new(header))
        .await
        .map_err(|_| ())?;
    if exact == Some(0) {
        return session.finish_body().await.map_err(|_| ());
    }
    let mut shutdown = shutdown.clone();
    let mut stream = body.into_data_stream();
    loop {
        let chunk: Option<Bytes> = tokio::select! {
            chunk = stream.next() => match chunk {
                Some(Ok(chunk)) => Some(chunk),
                Some(Err(_)) => return Err(()),
                None => None,
            },
            // A stream (Server-Sent Events) ends when the process shuts down.
            _ = shutdown.changed(), if exact.is_none() => return Err(()),
        };
        match chunk {
            Some(chunk) if chunk.is_empty() => {}
            Some(chunk) => session
                .write_response_body(chunk, false)
                .await
                .map_err(|_| ())?,
            None => break,
        }
    }
    session.finish_body().await.map_err(|_| ())
}
