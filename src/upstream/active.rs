//! The background service that runs the active health checks of every upstream that has one,
//! each at its own interval, against the runtime current at each tick (so reloads add, change
//! and remove checks). Results go to each backend's [`BackendHealth`](super::health), which
//! survives reloads.

use std::sync::Arc;

use async_trait::async_trait;
use futures::future::join_all;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use super::Pool;
use super::periodic::{First, every_upstream};
use crate::runtime::RuntimeHandle;

/// Runs the active health checks.
pub struct ActiveChecks {
    /// Where the upstreams are found.
    pub runtime: Arc<RuntimeHandle>,
}

#[async_trait]
impl BackgroundService for ActiveChecks {
    async fn start(&self, shutdown: ShutdownWatch) {
        every_upstream(
            &self.runtime,
            shutdown,
            First::AtOnce,
            |pool| pool.health_check().map(|check| check.interval),
            |pool| {
                tokio::spawn(check_round(pool));
            },
        )
        .await;
    }
}

/// Checks every backend of `pool` once, concurrently.
async fn check_round(pool: Arc<Pool>) {
    let Some(check) = pool.health_check() else {
        return;
    };
    let members = pool.members();
    join_all(members.backends().iter().map(|member| async move {
        let (passed, reason) = match check.run(member.addr).await {
            Ok(reason) => (true, reason),
            Err(reason) => (false, reason),
        };
        member.health.record_check(
            passed,
            check.healthy_threshold,
            check.unhealthy_threshold,
            &reason,
        );
    }))
    .await;
}
