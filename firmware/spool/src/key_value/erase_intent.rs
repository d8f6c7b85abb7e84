//! Erase intents: how the key-value store survives a power cut in the middle of an erase.
//!
//! Owns the flash as sequential-storage sees it ([`JournalledFlash`]), the intent record and
//! the repair at mount. Called by `key_value` only; calls nothing but the caller's flash.
//!
//! # The gap in sequential-storage 8.0.2
//!
//! The map keeps its sectors ("pages") in a ring. One page is *partial-open* (being written,
//! first word programmed), the next one is the *buffer* (erased), the others are *closed*
//! (first and last word programmed). When the partial-open page is full, the map closes it,
//! opens the buffer as the new partial-open page, copies the live items of the page after it
//! into it (the migration) and erases that page, which becomes the new buffer. A page's state
//! is read from its first and last word only. An interrupted erase leaves arbitrary bits (NOR
//! erases page-wise, some parts pre-program before they erase), so the page it hit can read as
//! any state: partial-open (the map may start from it and answer "absent" for every key),
//! closed (the next store takes it for an interrupted migration, erases the page that holds
//! the only copies, and copies the garbage back), open with garbage inside (the map later
//! writes over it), or "corrupted" (the one case the map repairs, by erasing it again). From
//! the flash alone this cannot be decided: a page whose erase was cut early still holds intact
//! items and markers, and with two pages the ring is symmetric, so which of two such pages
//! holds the copies and which the originals is not written anywhere. sequential-storage's
//! mock flash erases byte by byte from the start, where a cut always reads as "corrupted";
//! real parts do not promise that.
//!
//! # Erase intents
//!
//! So before any page is erased, an *intent* is written that names it, into another page:
//!
//! ```text
//! intent = erased item header (CRC 0, length 24, CRC-16 of the length) | generation u32
//!          | page u32 | HMAC-SHA-256 (truncated to 16 bytes)
//! MAC over "HMXE" | region start, page count, page size, generation, page (u32 each),
//! keyed with HMAC-SHA-256(data key, "homemx key-value erase intent")
//! ```
//!
//! It has the layout of an item that sequential-storage's own removal would have marked
//! erased (data CRC 0), so the map steps over it wherever it reads (fetch, the free-space scan,
//! migration, iteration) and never copies it; the format stays the crate's, and an image with
//! intents still opens with plain sequential-storage. The header constant is checked against
//! sequential-storage's own writer in this module's tests. Generations grow by one per intent.
//!
//! The newest authentic intent (highest generation) names the *disposable* page `D`. The rule
//! that makes everything decidable: **`D` never holds the only copy of a value that a store
//! returned `Ok` for.** At mount, before sequential-storage reads anything, the store finds
//! the newest intent and erases `D` unless it is already fully erased. That is safe by the
//! rule, and it leaves sequential-storage a well-formed ring: the only page that can hold
//! garbage is `D`, because [`JournalledFlash`] forwards an erase only for the page the newest
//! intent names, writing a new intent first when the page is the one after the page the map
//! is writing (a garbage collection); any other erase is refused ([`JournalError::UnexpectedErase`],
//! never seen in the tests), except on an image that has no intent at all (the last paragraph).
//!
//! Where intents are written (the flash adapter sees every program and erase the map makes,
//! and tracks the page it is writing and the end of its last write there, the *frontier*):
//!
//! - **Before a garbage-collection erase.** The map has just migrated the live items of page
//!   `C` into the new partial-open page `Y = C − 1` and asks to erase `C`. The intent naming
//!   `C` goes at `Y`'s frontier (exactly where the map would write its next item), then `C` is
//!   erased. Until the intent is whole, `D` is still `Y` (below), which holds only copies;
//!   from then on `C` holds only items that have copies in `Y`.
//! - **After a store that opened a page without migrating** (a ring not yet full): the new
//!   partial-open page `F` was the buffer, so `D = F` still, and the item just stored sits in
//!   `F`. Before the store returns `Ok`, an intent naming the buffer `F + 1` goes after it.
//!   A cut before that loses only the item whose store did not return.
//! - **The first store on a store that has no intent** (a new flash, or one written before
//!   intents existed) writes one naming the buffer after its item, the same way.
//!
//! Why the rule holds: after each intent, `D` is the buffer or the page just emptied by a
//! migration. The map writes into `D` only when it opens it as the next partial-open page
//! (also when it redoes a migration cut short: it erases `D`, opens it again and migrates):
//! its start marker, copies of the next page's live items (whose originals stay until that
//! page's erase, which needs a new intent), and the item of the store in progress, which
//! returns `Ok` only after the next intent moved `D` on. Nothing else writes into `D`, and
//! only `D` is ever erased (by the map, the mount, or a store that finds the buffer it names
//! not wholly erased).
//!
//! Mount-time repair survives power cuts: its only operation is erasing `D`, and a cut there
//! leaves the same newest intent, so the next mount erases `D` again. A torn intent fails
//! authentication and counts as absent (the previous one still names the right page). A page
//! cut in its erase can keep older authentic intents, but never one newer than the newest:
//! every intent in a page was written before that page's erase was asked for, and that erase
//! writes a newer intent first. Authentication (rather than a checksum) means that neither
//! random bits left by a cut nor bytes written into the flash without the key can name a page
//! with a generation above the newest.
//!
//! Cost: one intent (32 bytes with 4-byte words, 48 with 16-byte ones) per page the map
//! opens, i.e. per garbage collection; the mount reads the region once (the intent scan). The
//! map must not cache where a page's items end (`ArrayPagePointers`): an intent written behind
//! its back would be overwritten, so the store uses the page-state and key caches only and
//! the map reads the headers of the page it writes to find its end.
//!
//! Left as before: a store that would need the intent's room after its last migration (the
//! map is within 32 bytes of full) fails with `NoSpace` where sequential-storage would have
//! fitted it. An image written before intents existed gets its first intent with its first
//! store; if that very store runs a garbage collection that is cut during its migration, the
//! repair sequential-storage then makes (erasing the half-filled page) has no intent to cover
//! it yet, as before this module existed (no other page can hold the intent then).

use core::ops::Range;
use embedded_storage_async::nor_flash::{ErrorType, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::layout::align_up;

type HmacSha256 = Hmac<Sha256>;

/// Generation and page of an intent record (after the item header).
const PAYLOAD_LENGTH: usize = 24;
const MAC_LENGTH: usize = 16;
/// The item header sequential-storage 8 writes for an erased item (data CRC 0) with
/// [`PAYLOAD_LENGTH`] bytes of data: CRC field 0, length 24, CRC-16 of the length.
const ERASED_ITEM_HEADER: [u8; 8] = [0, 0, 0, 0, PAYLOAD_LENGTH as u8, 0, 0xAB, 0xF7];
/// sequential-storage's item header before its padding.
const ITEM_HEADER_LENGTH: usize = 8;
/// The longest intent record (32-byte words): what a scan buffer must hold beyond its step.
pub(crate) const MAX_RECORD_LENGTH: usize = 64;

/// An authentic intent: `page` (index in the region) may be erased, and generation orders
/// intents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Intent {
    pub(crate) generation: u32,
    pub(crate) page: u32,
}

/// What the flash adapter adds to the flash's own errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JournalError<E> {
    /// The flash failed.
    Flash(E),
    /// No room for an intent after the map's last migration: the store is (within an intent
    /// of) full.
    NoRoomForIntent,
    /// sequential-storage asked to erase something other than the disposable page or the page
    /// after the one it is writing (never seen; refused rather than erased without an intent).
    UnexpectedErase,
}

impl<E: NorFlashError> NorFlashError for JournalError<E> {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            Self::Flash(error) => error.kind(),
            Self::NoRoomForIntent | Self::UnexpectedErase => NorFlashErrorKind::Other,
        }
    }
}

/// sequential-storage's word: the larger of the write and the read size.
const fn word<F: NorFlash>() -> usize {
    if F::WRITE_SIZE > F::READ_SIZE {
        F::WRITE_SIZE
    } else {
        F::READ_SIZE
    }
}

/// The flash as sequential-storage's map sees it: every erase is preceded by an intent (see
/// the module doc), and its `recover` repairs an interrupted erase at mount.
pub struct JournalledFlash<F: NorFlash> {
    flash: F,
    region_start: u32,
    pages: u32,
    mac_key: Zeroizing<[u8; 32]>,
    /// The newest authentic intent (from the mount's scan, then the last one written).
    newest: Option<Intent>,
    /// The page the map wrote last in this session (not closed since) and the end of that write.
    frontier: Option<(u32, u32)>,
    recovered: bool,
}

impl<F: NorFlash> JournalledFlash<F> {
    /// The adapter over `region` (whole erase sectors, checked by the caller) of `flash`,
    /// authenticating intents with a key derived from the 32-byte data `key`.
    pub(crate) fn new(flash: F, region: &Range<u32>, key: &[u8; 32]) -> Self {
        let mut derive = <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC takes any key length");
        derive.update(b"homemx key-value erase intent");
        let mut mac_key = Zeroizing::new([0u8; 32]);
        mac_key.copy_from_slice(&derive.finalize().into_bytes());
        Self {
            flash,
            region_start: region.start,
            pages: ((region.end - region.start) as usize / F::ERASE_SIZE) as u32,
            mac_key,
            newest: None,
            frontier: None,
            recovered: false,
        }
    }

    /// Gives the flash back.
    pub(crate) fn into_inner(self) -> F {
        self.flash
    }

    /// Bytes an intent occupies: the item header and the payload, each padded to a word.
    pub(crate) const fn record_length() -> usize {
        align_up(ITEM_HEADER_LENGTH, word::<F>()) + align_up(PAYLOAD_LENGTH, word::<F>())
    }

    fn page_start(&self, page: u32) -> u32 {
        self.region_start + page * F::ERASE_SIZE as u32
    }

    fn page_end(&self, page: u32) -> u32 {
        self.page_start(page) + F::ERASE_SIZE as u32
    }

    fn page_of(&self, address: u32) -> Option<u32> {
        let page = address.checked_sub(self.region_start)? / F::ERASE_SIZE as u32;
        (page < self.pages).then_some(page)
    }

    fn next_page(&self, page: u32) -> u32 {
        (page + 1) % self.pages
    }

    fn mac(&self, generation: u32, page: u32) -> HmacSha256 {
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&self.mac_key[..]).expect("HMAC takes any key length");
        mac.update(b"HMXE");
        for field in [self.region_start, self.pages, F::ERASE_SIZE as u32, generation, page] {
            mac.update(&field.to_le_bytes());
        }
        mac
    }

    /// The intent in `payload` (the [`PAYLOAD_LENGTH`] bytes after an erased item header), if
    /// it is authentic and names a page of the region.
    fn authentic(&self, payload: &[u8]) -> Option<Intent> {
        let generation = u32::from_le_bytes(payload[..4].try_into().ok()?);
        let page = u32::from_le_bytes(payload[4..8].try_into().ok()?);
        self.mac(generation, page).verify_truncated_left(&payload[8..8 + MAC_LENGTH]).ok()?;
        (page < self.pages).then_some(Intent { generation, page })
    }

    /// Finds the newest intent and erases the page it names unless that page is fully
    /// erased; once per instance, before sequential-storage reads the region. `buffer` (at
    /// least [`MAX_RECORD_LENGTH`] and a word more) holds what is read. Safe to cut at any
    /// point: it only reads, and then erases the disposable page.
    pub(crate) async fn recover(&mut self, buffer: &mut [u8]) -> Result<(), JournalError<F::Error>> {
        if self.recovered {
            return Ok(());
        }
        self.newest = self.scan(buffer).await?;
        if let Some(intent) = self.newest {
            if !self.is_erased(intent.page, buffer).await? {
                let (start, end) = (self.page_start(intent.page), self.page_end(intent.page));
                self.flash.erase(start, end).await.map_err(JournalError::Flash)?;
            }
        }
        self.recovered = true;
        Ok(())
    }

    /// The newest authentic intent anywhere in the region: every word-aligned place in every
    /// page's item area where an erased item header of an intent's length starts is checked.
    async fn scan(&mut self, buffer: &mut [u8]) -> Result<Option<Intent>, JournalError<F::Error>> {
        let word = word::<F>();
        let record = Self::record_length();
        let header = align_up(ITEM_HEADER_LENGTH, word);
        let step = (buffer.len() - record) / word * word;
        assert!(step >= word, "scan buffer too small");
        let mut newest: Option<Intent> = None;
        for page in 0..self.pages {
            let (start, end) = (self.page_start(page) + word as u32, self.page_end(page) - word as u32);
            let mut at = start;
            while at as usize + record <= end as usize {
                let length = (step + record).min((end - at) as usize);
                self.flash.read(at, &mut buffer[..length]).await.map_err(JournalError::Flash)?;
                let mut offset = 0;
                while offset < step && offset + record <= length {
                    if buffer[offset..offset + ITEM_HEADER_LENGTH] == ERASED_ITEM_HEADER {
                        let payload = &buffer[offset + header..offset + header + PAYLOAD_LENGTH];
                        if let Some(intent) = self.authentic(payload) {
                            if newest.is_none_or(|known| intent.generation > known.generation) {
                                newest = Some(intent);
                            }
                        }
                    }
                    offset += word;
                }
                at += step as u32;
            }
        }
        Ok(newest)
    }

    async fn is_erased(&mut self, page: u32, buffer: &mut [u8]) -> Result<bool, JournalError<F::Error>> {
        let chunk = buffer.len() / word::<F>() * word::<F>();
        let (mut at, end) = (self.page_start(page), self.page_end(page));
        while at < end {
            let length = chunk.min((end - at) as usize);
            self.flash.read(at, &mut buffer[..length]).await.map_err(JournalError::Flash)?;
            if buffer[..length].iter().any(|&byte| byte != 0xFF) {
                return Ok(false);
            }
            at += length as u32;
        }
        Ok(true)
    }

    /// After a store returned `Ok`: the map wrote its item into the partial-open page and
    /// checked that the page after it is its buffer. If the newest intent does not name that
    /// buffer (the store opened a new page without migrating, or no intent exists yet), one is
    /// written after the item, before the store reports success, and the buffer is erased if
    /// it is not wholly erased (a page left half erased before intents existed reads as a
    /// buffer). Must not be called after a failed operation (the page after the frontier may
    /// then be a migration's source): [`JournalledFlash::after_failure`] is. `buffer` as for
    /// [`JournalledFlash::recover`].
    pub(crate) async fn settle(&mut self, buffer: &mut [u8]) -> Result<(), JournalError<F::Error>> {
        let Some((page, _)) = self.frontier else { return Ok(()) };
        let next = self.next_page(page);
        if self.newest.map(|intent| intent.page) == Some(next) {
            return Ok(());
        }
        match self.append_intent(page, next).await {
            Ok(()) => {}
            // A store without any intent yet whose page is nearly full: the next page it
            // opens (and every garbage collection) writes the first intent.
            Err(JournalError::NoRoomForIntent) if self.newest.is_none() => return Ok(()),
            Err(error) => return Err(error),
        }
        if !self.is_erased(next, buffer).await? {
            let (start, end) = (self.page_start(next), self.page_end(next));
            self.flash.erase(start, end).await.map_err(JournalError::Flash)?;
        }
        Ok(())
    }

    /// After a failed operation: where the map stopped is no longer trusted; after a failed
    /// flash operation (a half-done erase, without a restart) the next operation repairs again
    /// as a mount would. The map's cache is dirty after any failed program or erase, so it
    /// reads the flash again too.
    pub(crate) fn after_failure(&mut self, flash_failed: bool) {
        self.frontier = None;
        if flash_failed {
            self.recovered = false;
        }
    }

    /// Writes an intent naming `named` at the frontier of `page` and makes it the newest.
    async fn append_intent(&mut self, page: u32, named: u32) -> Result<(), JournalError<F::Error>> {
        let Some((frontier_page, at)) = self.frontier else { return Err(JournalError::UnexpectedErase) };
        debug_assert_eq!(frontier_page, page);
        let record = Self::record_length();
        if at as usize + record > (self.page_end(page) as usize) - word::<F>() {
            return Err(JournalError::NoRoomForIntent);
        }
        // Never wraps: a sector wears out after some 10^5 erases, and there is one intent per
        // sector opened.
        let generation = self.newest.map_or(1, |intent| intent.generation.wrapping_add(1));
        let header = align_up(ITEM_HEADER_LENGTH, word::<F>());
        // sequential-storage pads a header with 0xFF and data with 0x00; an aligned buffer as
        // it uses (some flash drivers need one).
        let mut bytes = AlignedRecord([0u8; MAX_RECORD_LENGTH]);
        bytes.0[..header].fill(0xFF);
        bytes.0[..ITEM_HEADER_LENGTH].copy_from_slice(&ERASED_ITEM_HEADER);
        bytes.0[header..header + 4].copy_from_slice(&generation.to_le_bytes());
        bytes.0[header + 4..header + 8].copy_from_slice(&named.to_le_bytes());
        let tag = self.mac(generation, named).finalize().into_bytes();
        bytes.0[header + 8..header + 8 + MAC_LENGTH].copy_from_slice(&tag[..MAC_LENGTH]);
        self.write(at, &bytes.0[..record]).await?;
        self.newest = Some(Intent { generation, page: named });
        Ok(())
    }

    /// Follows the map's programs: a start marker opens a page, an end marker closes it, an
    /// item (or an intent) moves the frontier to its end.
    fn track(&mut self, offset: u32, length: usize) {
        let Some(page) = self.page_of(offset) else { return };
        if offset == self.page_end(page) - word::<F>() as u32 {
            if self.frontier.is_some_and(|(open, _)| open == page) {
                self.frontier = None;
            }
        } else {
            self.frontier = Some((page, offset + length as u32));
        }
    }
}

#[repr(align(32))]
struct AlignedRecord([u8; MAX_RECORD_LENGTH]);

impl<F: NorFlash> ErrorType for JournalledFlash<F> {
    type Error = JournalError<F::Error>;
}

impl<F: NorFlash> ReadNorFlash for JournalledFlash<F> {
    const READ_SIZE: usize = F::READ_SIZE;

    async fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
        self.flash.read(offset, bytes).await.map_err(JournalError::Flash)
    }

    fn capacity(&self) -> usize {
        self.flash.capacity()
    }
}

impl<F: NorFlash> NorFlash for JournalledFlash<F> {
    const WRITE_SIZE: usize = F::WRITE_SIZE;
    const ERASE_SIZE: usize = F::ERASE_SIZE;

    /// Erases one page: at once if the newest intent names it; after writing an intent that
    /// names it at the frontier if it is the page after the one the map is writing (a garbage
    /// collection, or the very first intent of an image that has none: then without an intent
    /// if it is neither, see the module doc); refused otherwise.
    async fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
        let page = self.page_of(from).filter(|&page| from == self.page_start(page) && to == self.page_end(page));
        let Some(page) = page else { return Err(JournalError::UnexpectedErase) };
        if self.newest.map(|intent| intent.page) != Some(page) {
            match self.frontier {
                Some((open, _)) if self.next_page(open) == page => self.append_intent(open, page).await?,
                _ if self.newest.is_none() => {}
                _ => return Err(JournalError::UnexpectedErase),
            }
        }
        if self.frontier.is_some_and(|(open, _)| open == page) {
            self.frontier = None;
        }
        self.flash.erase(from, to).await.map_err(JournalError::Flash)
    }

    async fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
        if let Err(error) = self.flash.write(offset, bytes).await {
            self.frontier = None;
            return Err(JournalError::Flash(error));
        }
        self.track(offset, bytes.len());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use crate::testing::{block_on, SimulatedFlash};
    use sequential_storage::cache::Cache;
    use sequential_storage::map::{MapConfig, MapStorage};

    /// The header constant is what sequential-storage itself writes for an item of 24 data
    /// bytes (a `u64` key and 16 bytes), apart from the data CRC that makes it "erased".
    #[test]
    fn the_intent_header_is_sequential_storages_own() {
        let flash = SimulatedFlash::<4, 4096>::new(8192);
        let mut map = MapStorage::<u64, _, _>::new(flash.clone(), MapConfig::new(0..8192), Cache::new_uncached());
        let mut buffer = [0u8; 64];
        block_on(map.store_item(&mut buffer, &7u64, &&[0x5Au8; 16][..])).unwrap();
        let image = flash.snapshot();
        // The first item starts after the page's start marker word.
        assert_eq!(image[4 + 4..4 + 8], ERASED_ITEM_HEADER[4..8], "length and its CRC-16");
        assert_ne!(image[4..8], [0, 0, 0, 0], "a stored item has a data CRC; 0 marks it erased");
    }

    #[test]
    fn record_lengths_follow_the_word() {
        assert_eq!(JournalledFlash::<SimulatedFlash<4, 4096>>::record_length(), 32);
        assert_eq!(JournalledFlash::<SimulatedFlash<16, 4096>>::record_length(), 48);
        assert_eq!(JournalledFlash::<SimulatedFlash<32, 4096>>::record_length(), MAX_RECORD_LENGTH);
    }
}
