//! An in-memory pingora-cache [`Storage`] on TinyUFO: bounded by `max_size` (entries are weighed
//! by their body and header size, in KiB), evicting by TinyLFU admission and S3-FIFO. A response
//! is admitted when it is complete; nothing is served from a partial write (concurrent misses
//! wait on the cache lock instead).
//!
//! pingora-cache wants `&'static` storage. Each `cache` plugin name gets one small leaked shell
//! for the life of the process; its contents are swapped, and the old ones freed, when the
//! plugin is rebuilt with another `max_size`.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

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

impl MemoryStorage {
    /// The storage of the `cache` plugin `name`, holding at most `max_size` bytes.
    pub fn for_plugin(name: &str, max_size: usize) -> &'static MemoryStorage {
        static BY_NAME: OnceLock<Mutex<HashMap<String, &'static MemoryStorage>>> = OnceLock::new();
        let mut by_name = match BY_NAME.get_or_init(Default::default).lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let storage = *by_name.entry(name.to_string()).or_insert_with(|| {
            Box::leak(Box::new(MemoryStorage {
                entries: ArcSwap::from_pointee(new_entries(max_size)),
                max_size: Mutex::new(max_size),
            }))
        });
        storage.resize(max_size);
        storage
    }

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
        let storage = MemoryStorage::for_plugin("storage-test-1", 1 << 20);
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
        let storage = MemoryStorage::for_plugin("storage-test-2", 256 * 1024);
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

    #[test]
    fn the_same_name_is_the_same_storage_and_a_new_size_empties_it() {
        let first = MemoryStorage::for_plugin("storage-test-3", 1 << 20);
        let again = MemoryStorage::for_plugin("storage-test-3", 1 << 20);
        assert!(std::ptr::eq(first, again));
        let before = first.entries.load_full();
        MemoryStorage::for_plugin("storage-test-3", 2 << 20);
        assert!(!Arc::ptr_eq(&before, &first.entries.load_full()));
    }
}
