//! The encrypted key-value store for configuration, credentials, POP3 UIDLs and counters.
//!
//! Underneath is sequential-storage's `map` (power-safe, wear-levelled, garbage-collected
//! by the crate); every value is sealed with XChaCha20-Poly1305 before it is handed over:
//!
//! ```text
//! stored value = flags u8 (0 present, 1 removed) | nonce 24 | ciphertext | tag 16
//! associated data = "HMXK" | region start u32 | key u64 | flags
//! ```
//!
//! **Nonces are random** (24 bytes from the caller's [`RandomSource`], so collisions are
//! out of reach): sequential-storage decides where an item lands and moves items when it
//! collects garbage, so a nonce or associated data derived from the place, as the queue
//! uses, is impossible here. For the same reason a value is bound to its key and region but
//! not to its place: an attacker who rewrites the flash offline could bring back an older
//! value of the same key (a rollback); no format can prevent that without a monotonic
//! counter outside the flash. Removal is a sealed "removed" marker, because
//! sequential-storage's own removal needs a flash that allows programming a word twice.
//!
//! Keys are `u64`; [`KeyValueStore::key_for`] derives one from a namespace and a name
//! (e.g. `key_for("uidl", uidl)`), so long names such as UIDLs need no more room.
//!
//! **Power cuts.** sequential-storage is built to survive a cut program, but a cut erase only
//! when the erase happens to leave the page reading "corrupted"; an erase cut elsewhere could
//! make every key read as absent, or make the next store erase the page with the only copies.
//! sequential-storage sees the flash through [`erase_intent::JournalledFlash`], which writes
//! an authenticated *erase intent* (an item the map skips) naming each page before it is
//! erased, and the store's first operation (or [`KeyValueStore::mount`]) erases the page the
//! newest intent names before sequential-storage reads anything: the argument is in
//! [`erase_intent`]. The on-flash format is sequential-storage's own: an image with intents
//! opens with plain sequential-storage, and one without gets its first intent with its first
//! store.

use crate::error::SpoolError;
use crate::RandomSource;
use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};
use core::ops::Range;
use embedded_storage_async::nor_flash::NorFlash;
use sequential_storage::cache::key_pointers::ArrayKeyPointers;
use sequential_storage::cache::page_states::ArrayPageStates;
use sequential_storage::cache::{Cache, CacheImpl, Uncached};
use sequential_storage::map::{MapConfig, MapConfigError, MapStorage};
use sha2::{Digest, Sha256};

pub mod erase_intent;

use erase_intent::{JournalError, JournalledFlash};

/// Largest value the store holds.
pub const KEY_VALUE_CAPACITY: usize = 256;
const SEALED_OVERHEAD: usize = 1 + 24 + 16;
const SEALED_CAPACITY: usize = KEY_VALUE_CAPACITY + SEALED_OVERHEAD;
/// Key, sealed value and room for word alignment up to 32-byte words.
const DATA_BUFFER_CAPACITY: usize = 8 + SEALED_CAPACITY + 32;
const PRESENT: u8 = 0;
const REMOVED: u8 = 1;

/// No cache: every fetch scans the items written since the last garbage collection.
pub type Uncached64 = Cache<Uncached, Uncached, Uncached, u64>;

/// sequential-storage's RAM cache for a region of `PAGES` sectors: each page's state and where
/// the newest item of the `KEYS` most recently used keys is. Without it every fetch reads and
/// checks every item written since the last garbage collection, so the cost of a fetch grows
/// with the store's history (on the QEMU board an unlock and a DynDNS check grew by about
/// 140,000 instructions each time they ran). Not where a page's items end
/// (`ArrayPagePointers`): the erase intents are written there behind the map's back (see
/// [`erase_intent`]), so a store reads the item headers of the page it writes to find its end
/// (headers only, not the items' data). About `PAGES` + `KEYS` × 16 bytes.
pub type PageAndKeyCache<const PAGES: usize, const KEYS: usize> =
    Cache<ArrayPageStates<PAGES>, Uncached, ArrayKeyPointers<u64, KEYS>, u64>;

/// An encrypted key-value store over its own region of a NOR flash, with the map's cache `C`
/// (none by default; see [`PageAndKeyCache`]).
pub struct KeyValueStore<F: NorFlash, R: RandomSource, C: CacheImpl<u64> = Uncached64> {
    map: MapStorage<u64, JournalledFlash<F>, C>,
    aead: XChaCha20Poly1305,
    random: R,
    region_start: u32,
    sealed: [u8; SEALED_CAPACITY],
    data: [u8; DATA_BUFFER_CAPACITY],
}

fn journal_error<E>(error: JournalError<E>) -> SpoolError<E> {
    match error {
        JournalError::Flash(error) => SpoolError::Flash(error),
        JournalError::NoRoomForIntent => SpoolError::NoSpace,
        JournalError::UnexpectedErase => SpoolError::Storage,
    }
}

fn storage_error<E>(error: sequential_storage::Error<JournalError<E>>) -> SpoolError<E> {
    match error {
        sequential_storage::Error::Storage { value, .. } => journal_error(value),
        sequential_storage::Error::FullStorage => SpoolError::NoSpace,
        sequential_storage::Error::Corrupted { .. } => SpoolError::Corrupt,
        _ => SpoolError::Storage,
    }
}

impl<F: NorFlash, R: RandomSource> KeyValueStore<F, R> {
    /// A store over `region` (whole erase sectors, at least two, of any size from
    /// [`crate::layout::MINIMUM_SECTOR_SIZE`] on) with the 32-byte data `key`, without a
    /// cache. [`SpoolError::InvalidRegion`] or [`SpoolError::UnsupportedGeometry`] otherwise.
    pub fn new(flash: F, region: Range<u32>, key: &[u8; 32], random: R) -> Result<Self, SpoolError<F::Error>> {
        Self::with_cache(flash, region, key, random, Cache::new_uncached())
    }
}

impl<F: NorFlash, R: RandomSource, const PAGES: usize, const KEYS: usize> KeyValueStore<F, R, PageAndKeyCache<PAGES, KEYS>> {
    /// A store over `region`, which must be exactly `PAGES` erase sectors, with a fresh
    /// [`PageAndKeyCache`].
    pub fn cached(flash: F, region: Range<u32>, key: &[u8; 32], random: R) -> Result<Self, SpoolError<F::Error>> {
        if region.len() != PAGES * F::ERASE_SIZE {
            return Err(SpoolError::InvalidRegion);
        }
        let cache = Cache::new(ArrayPageStates::new(), Uncached, ArrayKeyPointers::new());
        Self::with_cache(flash, region, key, random, cache)
    }
}

impl<F: NorFlash, R: RandomSource, C: CacheImpl<u64>> KeyValueStore<F, R, C> {
    /// A store over `region` (whole erase sectors, at least two) with the 32-byte data `key`
    /// and `cache`, which must be new (it is kept for every later call, as sequential-storage
    /// requires).
    fn with_cache(flash: F, region: Range<u32>, key: &[u8; 32], random: R, cache: C) -> Result<Self, SpoolError<F::Error>> {
        if !crate::layout::geometry_is_supported::<F>() {
            return Err(SpoolError::UnsupportedGeometry);
        }
        if region.end <= region.start || region.end as usize > flash.capacity() {
            return Err(SpoolError::InvalidRegion);
        }
        let region_start = region.start;
        let journalled = JournalledFlash::new(flash, &region, key);
        let config = MapConfig::try_new(region).map_err(|error| match error {
            MapConfigError::PagesTooSmall | MapConfigError::WordSizeTooLarge => SpoolError::UnsupportedGeometry,
            _ => SpoolError::InvalidRegion,
        })?;
        Ok(Self {
            map: MapStorage::new(journalled, config, cache),
            aead: XChaCha20Poly1305::new(key.into()),
            random,
            region_start,
            sealed: [0; SEALED_CAPACITY],
            data: [0; DATA_BUFFER_CAPACITY],
        })
    }

    /// A key for `name` in `namespace` (first 8 bytes of SHA-256 over both).
    pub fn key_for(namespace: &str, name: &[u8]) -> u64 {
        let mut hash = Sha256::new();
        hash.update((namespace.len() as u32).to_le_bytes());
        hash.update(namespace.as_bytes());
        hash.update(name);
        let digest = hash.finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        u64::from_le_bytes(first)
    }

    fn associated_data(&self, key: u64, flags: u8) -> [u8; 17] {
        let mut data = [0u8; 17];
        data[..4].copy_from_slice(b"HMXK");
        data[4..8].copy_from_slice(&self.region_start.to_le_bytes());
        data[8..16].copy_from_slice(&key.to_le_bytes());
        data[16] = flags;
        data
    }

    async fn store_sealed(&mut self, key: u64, flags: u8, value: &[u8]) -> Result<(), SpoolError<F::Error>> {
        if value.len() > KEY_VALUE_CAPACITY {
            return Err(SpoolError::BufferTooSmall);
        }
        self.mount().await?;
        let mut nonce = [0u8; 24];
        self.random.fill_bytes(&mut nonce);
        let end = 25 + value.len();
        self.sealed[0] = flags;
        self.sealed[1..25].copy_from_slice(&nonce);
        self.sealed[25..end].copy_from_slice(value);
        let associated = self.associated_data(key, flags);
        let tag = self
            .aead
            .encrypt_in_place_detached(XNonce::from_slice(&nonce), &associated, &mut self.sealed[25..end])
            .map_err(|_| SpoolError::Corrupt)?;
        self.sealed[end..end + 16].copy_from_slice(&tag);
        let sealed: &[u8] = &self.sealed[..end + 16];
        let result = self.map.store_item(&mut self.data, &key, &sealed).await;
        zeroize::Zeroize::zeroize(&mut self.sealed[..]);
        if let Err(error) = result {
            return Err(self.failed(error));
        }
        // Before the store counts as done: an intent naming the buffer if the map just opened
        // a page without one (see `erase_intent`).
        self.map.flash().settle(&mut self.data).await.map_err(journal_error)
    }

    /// After a failed map operation (see [`JournalledFlash::after_failure`]).
    fn failed(&mut self, error: sequential_storage::Error<JournalError<F::Error>>) -> SpoolError<F::Error> {
        let flash_failed = matches!(error, sequential_storage::Error::Storage { value: JournalError::Flash(_), .. });
        self.map.flash().after_failure(flash_failed);
        storage_error(error)
    }

    /// Repairs an erase that a power cut interrupted (see [`erase_intent`]); the first
    /// operation does it by itself, so calling it is optional (e.g. to mount at start rather
    /// than at the first fetch). Runs once per `KeyValueStore` (and again after a failed flash
    /// operation); reads the whole region, and erases at most one sector.
    pub async fn mount(&mut self) -> Result<(), SpoolError<F::Error>> {
        self.map.flash().recover(&mut self.data).await.map_err(journal_error)
    }

    /// Stores `value` (at most [`KEY_VALUE_CAPACITY`] bytes) under `key`.
    pub async fn store(&mut self, key: u64, value: &[u8]) -> Result<(), SpoolError<F::Error>> {
        self.store_sealed(key, PRESENT, value).await
    }

    /// Removes `key` (stores a sealed "removed" marker).
    pub async fn remove(&mut self, key: u64) -> Result<(), SpoolError<F::Error>> {
        self.store_sealed(key, REMOVED, &[]).await
    }

    /// Fetches the value of `key` into `out`; returns its length, `None` if absent or
    /// removed, [`SpoolError::Corrupt`] if the stored value fails authentication.
    pub async fn fetch(&mut self, key: u64, out: &mut [u8]) -> Result<Option<usize>, SpoolError<F::Error>> {
        self.mount().await?;
        let stored = match self.map.fetch_item::<&[u8]>(&mut self.data, &key).await {
            Ok(stored) => stored,
            Err(error) => return Err(self.failed(error)),
        };
        let Some(stored) = stored else { return Ok(None) };
        if stored.len() < SEALED_OVERHEAD || stored.len() > SEALED_CAPACITY {
            return Err(SpoolError::Corrupt);
        }
        let length = stored.len() - SEALED_OVERHEAD;
        let total = stored.len();
        self.sealed[..total].copy_from_slice(stored);
        let flags = self.sealed[0];
        let associated = self.associated_data(key, flags);
        let mut nonce = [0u8; 24];
        nonce.copy_from_slice(&self.sealed[1..25]);
        let tag = Tag::clone_from_slice(&self.sealed[25 + length..total]);
        let opened = self.aead.decrypt_in_place_detached(
            XNonce::from_slice(&nonce),
            &associated,
            &mut self.sealed[25..25 + length],
            &tag,
        );
        if opened.is_err() || flags > REMOVED {
            return Err(SpoolError::Corrupt);
        }
        if flags == REMOVED {
            return Ok(None);
        }
        if out.len() < length {
            zeroize::Zeroize::zeroize(&mut self.sealed[..]);
            return Err(SpoolError::BufferTooSmall);
        }
        out[..length].copy_from_slice(&self.sealed[25..25 + length]);
        zeroize::Zeroize::zeroize(&mut self.sealed[..]);
        Ok(Some(length))
    }

    /// Reads a counter (0 if never set).
    pub async fn fetch_counter(&mut self, key: u64) -> Result<u64, SpoolError<F::Error>> {
        let mut bytes = [0u8; 8];
        match self.fetch(key, &mut bytes).await? {
            Some(8) => Ok(u64::from_le_bytes(bytes)),
            Some(_) => Err(SpoolError::Corrupt),
            None => Ok(0),
        }
    }

    /// Adds `amount` to a counter and stores it; returns the new value.
    pub async fn add_to_counter(&mut self, key: u64, amount: u64) -> Result<u64, SpoolError<F::Error>> {
        let value = self.fetch_counter(key).await?.saturating_add(amount);
        self.store(key, &value.to_le_bytes()).await?;
        Ok(value)
    }

    /// Gives the flash back.
    pub fn release(self) -> F {
        self.map.destroy().0.into_inner()
    }
}
