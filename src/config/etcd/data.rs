//! Data kept beside the configuration in etcd, under keys whose first segment starts with `_`
//! (which are not configuration, so reads, writes and watches of the configuration leave them
//! alone): values read and written whole, and locks held with a lease, so a lock whose holder
//! died is released when its lease runs out.
//!
//! ACME keeps its accounts and certificates under `PREFIX/_acme/` this way, and orders under a
//! lock so that only one of the instances sharing the prefix orders a certificate.

use std::time::Duration;

use etcd_client::{Compare, CompareOp, GetOptions, PutOptions, Txn, TxnOp};

use super::{EtcdError, EtcdSource, classify};

/// Holds a lock taken with [`EtcdSource::try_lock`]; dropping it releases the lock.
pub struct EtcdLock {
    lease: i64,
    keep_alive: tokio::task::AbortHandle,
    source: EtcdSource,
}

impl std::fmt::Debug for EtcdLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EtcdLock(lease {:x})", self.lease)
    }
}

impl EtcdLock {
    /// Puts `PREFIX/relative` bound to the lock's lease: it disappears with the lock.
    pub fn put_leased(&self, relative: &str, value: Vec<u8>) -> Result<(), EtcdError> {
        let key = self.source.data_key(relative)?;
        let lease = self.lease;
        self.source.run(move |store| async move {
            let mut client = store.client.clone();
            client
                .put(key, value, Some(PutOptions::new().with_lease(lease)))
                .await
                .map_err(|e| classify(&store.options, e))?;
            Ok(())
        })
    }
}

impl Drop for EtcdLock {
    fn drop(&mut self) {
        self.keep_alive.abort();
        let mut client = self.source.inner.store.client.clone();
        let lease = self.lease;
        // Revoking deletes the lock key; if etcd cannot be reached the lease runs out instead.
        self.source.inner.handle.spawn(async move {
            let _ = client.lease_revoke(lease).await;
        });
    }
}

impl EtcdSource {
    /// `PREFIX/relative`, for a key whose first segment starts with `_`.
    fn data_key(&self, relative: &str) -> Result<String, EtcdError> {
        let full = self.inner.store.full_key(relative);
        if relative.starts_with('_') && !relative.contains("//") {
            Ok(full)
        } else {
            Err(EtcdError::Invalid {
                key: full,
                message: "data beside the configuration lives under keys starting with _"
                    .to_string(),
            })
        }
    }

    /// The value of `PREFIX/relative`, if it is set (`relative` starts with `_`).
    pub fn data_get(&self, relative: &str) -> Result<Option<Vec<u8>>, EtcdError> {
        let key = self.data_key(relative)?;
        self.run(move |store| async move {
            let mut client = store.client.clone();
            let response = client
                .get(key, None)
                .await
                .map_err(|e| classify(&store.options, e))?;
            Ok(response.kvs().first().map(|kv| kv.value().to_vec()))
        })
    }

    /// Sets `PREFIX/relative` (`relative` starts with `_`).
    pub fn data_put(&self, relative: &str, value: Vec<u8>) -> Result<(), EtcdError> {
        let key = self.data_key(relative)?;
        self.run(move |store| async move {
            let mut client = store.client.clone();
            client
                .put(key, value, None)
                .await
                .map_err(|e| classify(&store.options, e))?;
            Ok(())
        })
    }

    /// Every key under `PREFIX/relative_prefix` with its value, the keys relative to that
    /// prefix, in key order.
    pub fn data_list(&self, relative_prefix: &str) -> Result<Vec<(String, Vec<u8>)>, EtcdError> {
        let start = self.data_key(relative_prefix)?;
        self.run(move |store| async move {
            let mut client = store.client.clone();
            let response = client
                .get(start.clone(), Some(GetOptions::new().with_prefix()))
                .await
                .map_err(|e| classify(&store.options, e))?;
            Ok(response
                .kvs()
                .iter()
                .filter_map(|kv| {
                    let relative = kv.key().strip_prefix(start.as_bytes())?;
                    Some((
                        String::from_utf8_lossy(relative).into_owned(),
                        kv.value().to_vec(),
                    ))
                })
                .collect())
        })
    }

    /// Takes the lock `PREFIX/relative` if nobody holds it: the key is created with `holder` as
    /// its value, bound to a lease of `ttl` that is kept alive until the returned guard is
    /// dropped (or the process dies, after which the lease runs out). `None` when another holder
    /// has it.
    pub fn try_lock(
        &self,
        relative: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<EtcdLock>, EtcdError> {
        let key = self.data_key(relative)?;
        let holder = holder.to_string();
        let ttl_secs = i64::try_from(ttl.as_secs().max(2)).unwrap_or(60);
        let lease = self.run(move |store| async move {
            let mut client = store.client.clone();
            let lease = client
                .lease_grant(ttl_secs, None)
                .await
                .map_err(|e| classify(&store.options, e))?
                .id();
            let taken = client
                .txn(
                    Txn::new()
                        .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
                        .and_then([TxnOp::put(
                            key,
                            holder,
                            Some(PutOptions::new().with_lease(lease)),
                        )]),
                )
                .await
                .map_err(|e| classify(&store.options, e))?
                .succeeded();
            if taken {
                Ok(Some(lease))
            } else {
                let _ = client.lease_revoke(lease).await;
                Ok(None)
            }
        })?;
        let Some(lease) = lease else {
            return Ok(None);
        };
        let mut client = self.inner.store.client.clone();
        let period = Duration::from_secs(u64::try_from(ttl_secs).unwrap_or(60) / 3)
            .max(Duration::from_secs(1));
        let keep_alive = self.inner.handle.spawn(async move {
            let Ok((mut keeper, mut responses)) = client.lease_keep_alive(lease).await else {
                return;
            };
            loop {
                if keeper.keep_alive().await.is_err() {
                    return;
                }
                match responses.message().await {
                    Ok(Some(response)) if response.ttl() > 0 => {}
                    _ => return,
                }
                tokio::time::sleep(period).await;
            }
        });
        Ok(Some(EtcdLock {
            lease,
            keep_alive: keep_alive.abort_handle(),
            source: self.clone(),
        }))
    }
}
