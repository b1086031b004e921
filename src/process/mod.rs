//! The process around Pingora's `Server`: listeners bound up front, one proxy service per
//! server, signal handling and reload, graceful drain, and systemd's readiness notifications.

mod acme_tasks;
mod admin_service;
mod certificate_tasks;
mod drain;
mod linger;
pub mod listeners;
mod metrics_endpoint;
mod signals;
mod systemd;
mod upgrade;
mod upstream_tasks;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use pingap_plugins::Registry;
use pingora::apps::HttpServerOptions;
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::{L4BufferSettings, ListenerConfig};
use pingora::proxy::http_proxy;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::{RunArgs, Server};
use pingora::services::background::background_service;
use pingora::services::listening::Service;

use crate::admin::AdminState;
use crate::config::Source;
use crate::control::{Candidate, Controller, Started};
use crate::proxy::InFlight;
use crate::proxy::Proxy;
use crate::runtime::{Compiled, ListenerPlan, ProcessPlan, RuntimeHandle};
use metrics_endpoint::MetricsEndpoint;
use upstream_tasks::{ActiveChecks, DnsRefresh};

/// Where a daemon writes its pid when `basic.pid_file` is not set.
pub const DEFAULT_PID_FILE: &str = "/tmp/pingap.pid";

/// How the process was asked to run.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunFlags {
    /// Detach and run in the background (`-d`).
    pub daemon: bool,
    /// Take the listeners over from a running pingap (`-u`).
    pub upgrade: bool,
    /// Apply changes of the configuration's files as they are saved (`--watch`).
    pub watch: bool,
}

/// Why the process could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener could not be bound.
    #[error("server \"{server}\" cannot listen on {addr}: {source}")]
    Listen {
        /// The server.
        server: String,
        /// Its address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
}

/// Starts serving `candidate` (read from `source`) and runs until shut down.
///
/// Returns once Pingora has stopped, with what was buffered written out; a graceful shutdown
/// ends the process from the drain service instead (see [`drain`]).
pub fn run(
    source: Source,
    registry: Registry,
    candidate: Candidate,
    flags: RunFlags,
) -> Result<(), StartError> {
    let Candidate {
        snapshot,
        config,
        compiled,
    } = candidate;
    let Compiled {
        runtime,
        plan,
        warnings,
    } = compiled;
    let signals = signals::register().map_err(StartError::Signals)?;
    let runtime = Arc::new(RuntimeHandle::new(runtime));
    let in_flight = Arc::new(InFlight::default());

    let opt = Opt {
        upgrade: flags.upgrade,
        daemon: flags.daemon,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, server_conf(&plan, flags));
    // In an upgrade this receives the listeners of the old process.
    server.bootstrap();

    let mut listeners = plan.listeners.clone();
    // In an upgrade pingap started itself, a listener asked for with port 0 keeps the port the
    // old process got for it.
    let inherited = flags
        .upgrade
        .then(upgrade::inherited_addrs)
        .unwrap_or_default();
    for listener in &mut listeners {
        listener.addr = upgrade::keep_port(&inherited, &listener.server, listener.addr);
    }
    for listener in &mut listeners {
        // In an upgrade the old process's sockets are adopted; one pingap started itself says
        // which it has, and a listener it does not have is bound here.
        let adopted = flags.upgrade
            && (inherited.is_empty() || inherited.iter().any(|(_, addr)| *addr == listener.addr));
        let bound = if adopted {
            None
        } else {
            let socket = listeners::bind(listener.addr).map_err(|source| StartError::Listen {
                server: listener.server.clone(),
                addr: listener.addr,
                source,
            })?;
            listener.addr = socket.local_addr().map_err(|source| StartError::Listen {
                server: listener.server.clone(),
                addr: listener.addr,
                source,
            })?;
            Some(socket)
        };
        let addr = listener.addr.to_string();
        let proxy = Proxy::new(
            listener.server.clone(),
            listener.tls.is_some(),
            runtime.clone(),
            in_flight.clone(),
        );
        let mut http = http_proxy(&server.configuration, proxy);
        http.server_options = Some(server_options(listener, &plan, &runtime));
        let app = linger::Lingering::new(http, &listener.server);
        let mut service = Service::new(format!("server {}", listener.server), app);
        service.threads = listener.threads;
        // At the limit, new connections wait in the listen backlog (vendor/pingora-core).
        service.set_max_connections(listener.max_connections);
        let endpoint = |addr: String, tls: bool| {
            ListenerConfig::tcp(addr)
                .l4_buffer(L4BufferSettings::default().read(read_buffer(tls)))
                .send_timeout(plan.send_timeout)
                .handshake_timeout(plan.client_header_timeout)
        };
        match &listener.tls {
            Some(resolver) => {
                // The client-certificate callback reads what mutual TLS verified
                // (`$ssl_client_*`); the verifier follows the server's `client_ca` of the moment.
                let mut settings = TlsSettings::with_callbacks(Box::new(
                    crate::tls::client_auth::ClientCertCallback,
                ))
                .map_err(|e| StartError::Listen {
                    server: listener.server.clone(),
                    addr: listener.addr,
                    source: std::io::Error::other(e.to_string()),
                })?;
                settings.set_cert_resolver(resolver.clone());
                settings.set_client_cert_verifier(Arc::new(crate::tls::ListenerClientAuth::new(
                    resolver.server(),
                    resolver.store().clone(),
                )));
                // HTTP/2 when enabled, HTTP/1.1, and ACME's tls-alpn-01 validation (answered
                // by the resolver, then closed).
                let mut protocols = Vec::new();
                if listener.enable_h2 {
                    protocols.push(b"h2".to_vec());
                }
                protocols.push(b"http/1.1".to_vec());
                protocols.push(crate::tls::resolver::ACME_TLS_ALPN.to_vec());
                settings.set_alpn_protocols(protocols);
                service.add_listener(endpoint(addr.clone(), true).tls(settings));
            }
            None => service.add_listener(endpoint(addr.clone(), false)),
        }
        match bound {
            Some(socket) => server.add_service(listeners::PreBound::new(service, addr, socket)),
            None => server.add_service(listeners::PreBound::adopting(service)),
        };
        let scheme = if listener.tls.is_some() {
            "https"
        } else {
            "http"
        };
        tracing::info!(server = %listener.server, addr = %listener.addr, "listening on {scheme}://{}", listener.addr);
    }

    let mut metrics_addr = None;
    if let Some(metrics) = &plan.metrics {
        let socket = if flags.upgrade {
            None
        } else {
            Some(
                listeners::bind(metrics.addr).map_err(|source| StartError::Listen {
                    server: "[metrics]".to_string(),
                    addr: metrics.addr,
                    source,
                })?,
            )
        };
        let addr = match &socket {
            Some(socket) => socket.local_addr().unwrap_or(metrics.addr),
            None => upgrade::keep_port(&inherited, upgrade::METRICS, metrics.addr),
        };
        let app = MetricsEndpoint {
            runtime: runtime.clone(),
            in_flight: in_flight.clone(),
            path: metrics.path.clone(),
        };
        let mut service = Service::new("metrics".to_string(), app);
        service.add_tcp(&addr.to_string());
        match socket {
            Some(socket) => {
                server.add_service(listeners::PreBound::new(service, addr.to_string(), socket))
            }
            None => server.add_service(listeners::PreBound::adopting(service)),
        };
        tracing::info!(%addr, "metrics on http://{addr}{}", metrics.path);
        metrics_addr = Some(addr);
    }
    crate::observe::metrics::metrics().installed(1);

    let live = runtime.clone();
    let mut bound: Vec<(String, SocketAddr)> = listeners
        .iter()
        .map(|l| (l.server.clone(), l.addr))
        .collect();
    bound.extend(metrics_addr.map(|addr| (upgrade::METRICS.to_string(), addr)));
    let controller = Controller::new(
        source,
        registry,
        runtime.clone(),
        Started {
            snapshot,
            config,
            warnings,
            lifecycle: plan.lifecycle.clone(),
            listeners: listeners.clone(),
            upgrade_sock: plan.upgrade_sock.clone(),
            trigger: if flags.upgrade { "upgrade" } else { "start" },
        },
    );

    if let Some(admin) = &plan.admin {
        let addr = admin_service::add(
            &mut server,
            admin,
            AdminState::new(admin, controller.clone(), in_flight.clone(), plan.threads),
            flags.upgrade.then_some(inherited.as_slice()),
        )?;
        bound.push((upgrade::ADMIN.to_string(), addr));
    }

    let signals_in_flight = in_flight.clone();
    server.add_service(background_service(
        "drain",
        drain::Drain {
            in_flight,
            timeout: plan.graceful_shutdown_timeout,
            pid_file: flags
                .daemon
                .then(|| server.configuration.pid_file.clone().into()),
            runtime: runtime.clone(),
        },
    ));

    server.add_service(background_service(
        "health checks",
        ActiveChecks {
            runtime: runtime.clone(),
        },
    ));

    server.add_service(background_service(
        "certificates",
        certificate_tasks::CertificateMaintenance {
            store: runtime.load().certificates.store.clone(),
        },
    ));

    server.add_service(background_service(
        "dns refresh",
        DnsRefresh {
            runtime: runtime.clone(),
        },
    ));

    server.add_service(background_service(
        "acme",
        acme_tasks::AcmeRenewals {
            runtime: runtime.clone(),
            source: controller.source().clone(),
            first_look_after: if flags.upgrade {
                acme_tasks::UPGRADE_OVERLAP
            } else {
                Duration::ZERO
            },
        },
    ));
    let (upgrades, upgrade_requested) = tokio::sync::mpsc::unbounded_channel();
    controller.set_upgrade_hook(upgrade::hook(bound, upgrades));
    controller.start(flags.watch);
    let signals = signals::SignalWatch::new(
        signals,
        controller,
        upgrade_requested,
        signals_in_flight,
        plan.shutdown_delay,
    );
    tracing::info!(
        name = %plan.name,
        pid = std::process::id(),
        "pingap {} started",
        env!("CARGO_PKG_VERSION")
    );
    server.run(RunArgs {
        shutdown_signal: Box::new(signals),
    });
    crate::observe::flush(live.load().access_log_sinks());
    Ok(())
}

/// How the HTTP layer of a listener treats its clients (the options are Pingora's, some added by
/// vendor/pingora-core).
fn server_options(
    listener: &ListenerPlan,
    plan: &ProcessPlan,
    runtime: &RuntimeHandle,
) -> HttpServerOptions {
    let mut options = HttpServerOptions::default();
    options.h2c = listener.h2c;
    // The whole head of each request within `basic.client_header_timeout` (the first one
    // counted from the accept, so a silent or trickling connection is closed).
    options.header_read_timeout = Some(plan.client_header_timeout);
    // Pipelined HTTP/1.1 requests answered in order (Pingora closes the connection after the
    // first response and drops the others by default).
    options.h1_pipelining = true;
    // An HTTP/2 connection with no request open is idle: closed like an idle HTTP/1.1 one.
    options.h2_idle_timeout = Some(Duration::from_secs(runtime.load().keepalive_timeout_secs));
    options
}

/// Read buffering of client connections. Pingora gives every connection a 64 KiB read buffer,
/// held for as long as the connection lives: with keep-alive that was 64 KiB per idle client.
/// Plain HTTP reads headers and bodies into buffers of its own, so it goes unbuffered (no loss
/// in req/s, measured); TLS keeps one record's worth (16 KiB) to avoid tiny reads.
fn read_buffer(tls: bool) -> usize {
    if tls { 16 * 1024 } else { 0 }
}

/// Pingora's settings for this process.
fn server_conf(plan: &ProcessPlan, flags: RunFlags) -> ServerConf {
    let mut conf = ServerConf {
        daemon: flags.daemon,
        threads: plan.threads,
        work_stealing: plan.work_stealing,
        upgrade_sock: plan.upgrade_sock.display().to_string(),
        user: plan.user.clone(),
        group: plan.group.clone(),
        upstream_keepalive_pool_size: plan.upstream_keepalive_pool_size,
        // The drain service ends the process once requests are done; Pingora's own wait is
        // only the backstop.
        grace_period_seconds: Some(plan.graceful_shutdown_timeout.as_secs() + 1),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    conf.pid_file = plan
        .pid_file
        .as_ref()
        .map_or_else(|| DEFAULT_PID_FILE.to_string(), |p| p.display().to_string());
    conf.error_log = plan.error_log.as_ref().map(|p| p.display().to_string());
    conf
}
