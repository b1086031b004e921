//! An in-memory pingora-cache [`Storage`] on TinyUFO: bounded by `max_size` (entries are weighed
//! by their body and header size, in KiB), evicting by TinyLFU admission and S3-FIFO. A response
//! is admitted when it is complete; nothing is served from a partial write (concurrent misses
//! wait on the cache lock instead).
//!
//! pingora-cache wants `&'static` storage, so the storage itself is a small leaked shell whose
//! contents can be swapped. A `cache` plugin holds a [`StorageLease`] on one shell: a reload that
//! rebuilds the plugin takes over its lease (`crate::runtime::carry`), keeping the entries unless
//! `max_size` changed; when no configuration holds the lease any more (the plugin was removed or
//! renamed) the entries are freed and the shell goes back to a free list for the next cache.

use std::any::Any;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use pingora::cache::key::{CacheHashKey, CacheKey, CompactCacheKey};
use pingora::cache::storage::{
    HandleHit, HandleMiss, HitHandler, MissFinishType, MissHandler, PurgeOutcome, PurgeTarget,
    PurgeType,
};
use pingora::cache::trace::SpanHandle;
use pingora::cache::{CacheMeta, Storage};
use pingora::{Error, ErrorType, Result};
use tinyufo::TinyUfo;

/// Entries are weighed in units of this many bytes (TinyUFO weights are 16 bits).
const WEIGHT_UNIT: usize = 1024;
/// The heaviest entry TinyUFO can weigh: 64 MiB.
pub const MAX_ENTRY_SIZE: usize = u16::MAX as usize * WEIGHT_UNIT;
/// Expected average entry size, to size TinyUFO's frequency estimator.
const EXPECTED_ENTRY_SIZE: usize = 16 * 1024;

/// A stored response.
struct Entry {
    /// The serialized [`CacheMeta`] (internal part, header part).
    meta: (Vec<u8>, Vec<u8>),
    body: Bytes,
}

type Entries = TinyUfo<u128, Arc<Entry>>;

/// The storage of one `cache` plugin.
pub struct MemoryStorage {
    entries: ArcSwap<Entries>,
    max_size: Mutex<usize>,
}

/// The use of one storage shell by a cache, for as long as a configuration holds it.
pub struct StorageLease {
    storage: &'static MemoryStorage,
}

/// Shells no cache uses, kept for the next one. A process global because the shells are leaked
/// for pingora-cache's `&'static` storage: without the list, every removed or renamed cache
/// would leak a shell.
static FREE_SHELLS: Mutex<Vec<&'static MemoryStorage>> = Mutex::new(Vec::new());

impl StorageLease {
    /// A lease on an empty storage holding at most `max_size` bytes.
    pub fn new(max_size: usize) -> Arc<StorageLease> {
        let free = FREE_SHELLS.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let storage = match free {
            Some(shell) => {
                shell.resize(max_size);
                shell
            }
            None => Box::leak(Box::new(MemoryStorage {
                entries: ArcSwap::from_pointee(new_entries(max_size)),
                max_size: Mutex::new(max_size),
            })),
        };
        Arc::new(StorageLease { storage })
    }

    /// Takes over `lease` (a reload rebuilt its cache) with a limit of `max_size` bytes: the
    /// entries stay when the limit is the same.
    pub fn carry(lease: &Arc<StorageLease>, max_size: usize) -> Arc<StorageLease> {
        lease.storage.resize(max_size);
        lease.clone()
    }

    /// The storage, for pingora-cache.
    pub fn storage(&self) -> &'static MemoryStorage {
        self.storage
    }
}

impl Drop for StorageLease {
    fn drop(&mut self) {
        // No request uses the storage any more (each holds its configuration, and so the lease,
        // until it ends): free the entries and keep the shell.
        self.storage.resize(0);
        FREE_SHELLS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(self.storage);
    }
}

impl MemoryStorage {
    /// Starts over empty with another size limit, if it changed.
    fn resize(&self, max_size: usize) {
        let Ok(mut current) = self.max_size.lock() else {
            return;
        };
        if *current != max_size {
            *current = max_size;
            self.entries.store(Arc::new(new_entries(max_size)));
        }
    }

    fn remove(&self, key: &CompactCacheKey) -> bool {
        self.entries
            .load()
            .remove(&hash(key.combined_bin()))
            .is_some()
    }
}

fn new_entries(max_size: usize) -> Entries {
    TinyUfo::new(
        (max_size / WEIGHT_UNIT).max(1),
        (max_size / EXPECTED_ENTRY_SIZE).max(16),
    )
}

fn hash(bin: [u8; 16]) -> u128 {
    u128::from_le_bytes(bin)
}

fn weight(entry: &Entry) -> u16 {
    let size = entry.body.len() + entry.meta.0.len() + entry.meta.1.len();
    u16::try_from(size.div_ceil(WEIGHT_UNIT)).unwrap_or(u16::MAX)
}

#[async_trait]
impl Storage for MemoryStorage {
    async fn lookup(
        &'static self,
        key: &CacheKey,
        _trace: &SpanHandle,
    ) -> Result<Option<(CacheMeta, HitHandler)>> {
        let Some(entry) = self.entries.load().get(&hash(key.combined_bin())) else {
            return Ok(None);
        };
        let meta = CacheMeta::deserialize(&entry.meta.0, &entry.meta.1)?;
        let hit = Hit {
            body: entry.body.clone(),
            done: false,
            range: (0, entry.body.len()),
        };
        Ok(Some((meta, Box::new(hit))))
    }

    async fn get_miss_handler(
        &'static self,
        key: &CacheKey,
        meta: &CacheMeta,
        _trace: &SpanHandle,
    ) -> Result<MissHandler> {
        Ok(Box::new(Miss {
            storage: self,
            key: hash(key.combined_bin()),
            meta: meta.serialize()?,
            body: BytesMut::new(),
        }))
    }

    async fn purge(
        &'static self,
        target: PurgeTarget<'_>,
        _purge_type: PurgeType,
        _trace: &SpanHandle,
    ) -> Result<PurgeOutcome> {
        Ok(if self.remove(target.key()) {
            PurgeOutcome::Purged(None)
        } else {
            PurgeOutcome::NotFound
        })
    }

    async fn update_meta(
        &'static self,
        key: &CacheKey,
        meta: &CacheMeta,
        _trace: &SpanHandle,
    ) -> Result<bool> {
        let entries = self.entries.load();
        let hash = hash(key.combined_bin());
        let Some(old) = entries.get(&hash) else {
            return Ok(false);
        };
        let entry = Entry {
            meta: meta.serialize()?,
            body: old.body.clone(),
        };
        let weight = weight(&entry);
        entries.force_put(hash, Arc::new(entry), weight);
        Ok(true)
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync + 'static) {
        self
    }
}

/// Serves a stored body, whole or a range of it.
struct Hit {
    body: Bytes,
    done: bool,
    range: (usize, usize),
}

#[async_trait]
impl HandleHit for Hit {
    async fn read_body(&mut self) -> Result<Option<Bytes>> {
        if self.done {
            return Ok(None);
        }
        self.done = true;
        Ok(Some(self.body.slice(self.range.0..self.range.1)))
    }

    async fn finish(
        self: Box<Self>,
        _storage: &'static (dyn Storage + Sync),
        _key: &CacheKey,
        _trace: &SpanHandle,
    ) -> Result<()> {
        Ok(())
    }

    fn can_seek(&self) -> bool {
        true
    }

    fn seek(&mut self, start: usize, end: Option<usize>) -> Result<()> {
        let end = end.unwrap_or(self.body.len());
        if start > end || end > self.body.len() {
            return Error::e_explain(ErrorType::InternalError, "seek out of the stored body");
        }
        self.range = (start, end);
        self.done = false;
        Ok(())
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync) {
        self
    }

    fn as_any_mut(&mut self) -> &mut (dyn Any + Send + Sync) {
        self
    }
}

/// Collects a response's body; stores the entry when it is complete.
struct Miss {
    storage: &'static MemoryStorage,
    key: u128,
    meta: (Vec<u8>, Vec<u8>),
    body: BytesMut,
}

#[async_trait]
impl HandleMiss for Miss {
    async fn write_body(&mut self, data: Bytes, _eof: bool) -> Result<()> {
        if self.body.len() + data.len() > MAX_ENTRY_SIZE {
            return Error::e_explain(ErrorType::InternalError, "response too large to cache");
        }
        self.body.extend_from_slice(&data);
        Ok(())
    }

    async fn finish(self: Box<Self>) -> Result<MissFinishType> {
        let Miss {
            storage,
            key,
            meta,
            body,
        } = *self;
        let entry = Entry {
            meta,
            body: body.freeze(),
        };
        let size = entry.body.len();
        let weight = weight(&entry);
        storage.entries.load().put(key, Arc::new(entry), weight);
        Ok(MissFinishType::Created(size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora::cache::trace::Span;
    use pingora::http::ResponseHeader;
    use std::time::{Duration, SystemTime};

    fn meta() -> CacheMeta {
        let now = SystemTime::now();
        let header = ResponseHeader::build(200, None).unwrap();
        CacheMeta::new(now + Duration::from_secs(60), now, 0, 0, header)
    }

    async fn store(storage: &'static MemoryStorage, key: &CacheKey, body: &[u8]) {
        let mut miss = storage
            .get_miss_handler(key, &meta(), &Span::inactive().handle())
            .await
            .unwrap();
        miss.write_body(Bytes::copy_from_slice(body), true)
            .await
            .unwrap();
        miss.finish().await.unwrap();
    }

    async fn read(storage: &'static MemoryStorage, key: &CacheKey) -> Option<Bytes> {
        let (_, mut hit) = storage
            .lookup(key, &Span::inactive().handle())
            .await
            .unwrap()?;
        hit.read_body().await.unwrap()
    }

    #[tokio::test]
    async fn stores_serves_seeks_and_purges() {
        let lease = StorageLease::new(1 << 20);
        let storage = lease.storage();
        let key = CacheKey::new("GET example.com/a", "");
        assert!(read(storage, &key).await.is_none());
        store(storage, &key, b"hello world").await;
        assert_eq!(read(storage, &key).await.unwrap(), "hello world");

        let (_, mut hit) = storage
            .lookup(&key, &Span::inactive().handle())
            .await
            .unwrap()
            .unwrap();
        hit.seek(6, None).unwrap();
        assert_eq!(hit.read_body().await.unwrap().unwrap(), "world");

        let compact = key.to_compact();
        let purged = storage
            .purge(
                PurgeTarget::Active(&compact),
                PurgeType::Invalidation,
                &Span::inactive().handle(),
            )
            .await
            .unwrap();
        assert!(matches!(purged, PurgeOutcome::Purged(None)));
        assert!(read(storage, &key).await.is_none());
    }

    #[tokio::test]
    async fn memory_stays_within_max_size() {
        let lease = StorageLease::new(256 * 1024);
        let storage = lease.storage();
        let body = vec![b'x'; 32 * 1024];
        for i in 0..64 {
            store(storage, &CacheKey::new(format!("k{i}"), ""), &body).await;
        }
        let mut kept = 0;
        for i in 0..64 {
            if read(storage, &CacheKey::new(format!("k{i}"), ""))
                .await
                .is_some()
            {
                kept += 1;
            }
        }
        // 256 KiB hold at most 7 entries of 32 KiB and their headers.
        assert!((1..=8).contains(&kept), "{kept} entries kept");
    }

    #[tokio::test]
    async fn a_carried_lease_keeps_its_entries_until_resized_or_dropped() {
        let lease = StorageLease::new(1 << 20);
        let storage = lease.storage();
        let key = CacheKey::new("GET example.com/carried", "");
        store(storage, &key, b"kept").await;

        let carried = StorageLease::carry(&lease, 1 << 20);
        drop(lease);
        assert!(std::ptr::eq(carried.storage(), storage));
        assert_eq!(read(storage, &key).await.unwrap(), "kept");

        let resized = StorageLease::carry(&carried, 2 << 20);
        assert!(
            read(storage, &key).await.is_none(),
            "a new size starts empty"
        );
        store(storage, &key, b"again").await;
        drop(carried);
        drop(resized);
        assert!(
            read(storage, &key).await.is_none(),
            "the last lease frees the entries"
        );
    }
}
