//! One round of active health checks of an upstream: every backend checked once, concurrently.
//! The results go to each backend's [`BackendHealth`](super::health), which survives reloads;
//! the process runs a round every `interval` (`crate::process`'s upstream tasks).

use std::sync::Arc;

use futures::future::join_all;

use super::Pool;

/// Checks every backend of `pool` once, concurrently.
pub async fn check_backends(pool: Arc<Pool>) {
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
