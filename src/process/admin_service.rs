//! The `[admin]` listener: the admin API ([`crate::admin`]) as a Pingora service on its own
//! socket, bound before the process starts (a busy port is a start error), handed over in a
//! graceful upgrade like every other listener, HTTPS when `[admin]` has a certificate.

use std::net::SocketAddr;

use pingora::listeners::tls::TlsSettings;
use pingora::server::Server;
use pingora::services::listening::Service;

use super::{StartError, listeners, upgrade};
use crate::admin::AdminState;
use crate::admin::bridge::AdminApp;
use crate::runtime::AdminPlan;

/// Adds the admin API to `server`; returns the address it listens on. `inherited` is given in an
/// upgrade: the listeners the old process hands over.
pub fn add(
    server: &mut Server,
    plan: &AdminPlan,
    state: AdminState,
    inherited: Option<&[(String, SocketAddr)]>,
) -> Result<SocketAddr, StartError> {
    let listen_error = |source: std::io::Error| StartError::Listen {
        server: upgrade::ADMIN.to_string(),
        addr: plan.addr,
        source,
    };
    let (socket, addr) = match inherited {
        None => {
            let socket = listeners::bind(plan.addr).map_err(listen_error)?;
            let addr = socket.local_addr().map_err(listen_error)?;
            (Some(socket), addr)
        }
        Some(inherited) => (
            None,
            upgrade::keep_port(inherited, upgrade::ADMIN, plan.addr),
        ),
    };
    if !state.auth.has_credentials() {
        tracing::warn!(
            "the admin API has no users or tokens: nobody can sign in; add [admin] users (pingap hash-password)"
        );
    }
    let tls = plan.tls.is_some();
    let app = AdminApp::new(
        crate::admin::router(state.clone()),
        tls,
        state.in_flight.clone(),
    );
    let mut service = Service::new("admin".to_string(), app);
    match &plan.tls {
        Some(certified) => {
            let mut settings = TlsSettings::intermediate("", "")
                .map_err(|e| listen_error(std::io::Error::other(e.to_string())))?;
            settings.set_cert_resolver(std::sync::Arc::new(rustls::sign::SingleCertAndKey::from(
                certified.clone(),
            )));
            service.add_tls_with_settings(&addr.to_string(), None, settings);
        }
        None => service.add_tcp(&addr.to_string()),
    }
    match socket {
        Some(socket) => {
            server.add_service(listeners::PreBound::new(service, addr.to_string(), socket))
        }
        None => server.add_service(listeners::PreBound::adopting(service)),
    };
    let scheme = if tls { "https" } else { "http" };
    tracing::info!(%addr, "admin API on {scheme}://{addr}");
    Ok(addr)
}
