//! A WebSocket echo backend: accepts upgrades on an ephemeral loopback port, echoes every text
//! and binary message, and records the headers of each handshake request.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::handshake::server::{
    Callback, ErrorResponse, Request, Response,
};

/// A running WebSocket echo server; stops when dropped.
pub struct WsBackend {
    /// Where it listens.
    pub addr: SocketAddr,
    handshakes: Arc<Mutex<Vec<http::HeaderMap>>>,
    stop: watch::Sender<bool>,
}

impl WsBackend {
    /// Starts one on the current tokio runtime.
    pub async fn start() -> WsBackend {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let handshakes = Arc::new(Mutex::new(Vec::new()));
        let (stop, mut stopped) = watch::channel(false);
        let seen = handshakes.clone();
        tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => stream,
                        Err(_) => continue,
                    },
                    _ = stopped.changed() => return,
                };
                let record = Recorder(seen.clone());
                tokio::spawn(async move {
                    let Ok(mut socket) = tokio_tungstenite::accept_hdr_async(stream, record).await
                    else {
                        return;
                    };
                    // A close frame is answered by tungstenite itself; reading on sends the
                    // answer and ends the loop once the closing handshake is done.
                    while let Some(Ok(message)) = socket.next().await {
                        if (message.is_text() || message.is_binary())
                            && socket.send(message).await.is_err()
                        {
                            return;
                        }
                    }
                });
            }
        });
        WsBackend {
            addr,
            handshakes,
            stop,
        }
    }

    /// The headers of every handshake so far.
    pub fn handshakes(&self) -> Vec<http::HeaderMap> {
        self.handshakes.lock().unwrap().clone()
    }
}

/// Keeps the headers of a handshake request.
struct Recorder(Arc<Mutex<Vec<http::HeaderMap>>>);

impl Callback for Recorder {
    fn on_request(self, request: &Request, response: Response) -> Result<Response, ErrorResponse> {
        self.0.lock().unwrap().push(request.headers().clone());
        Ok(response)
    }
}

impl Drop for WsBackend {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}
