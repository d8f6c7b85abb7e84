//! `SeenRing`: which fetched messages are already committed to the spool, kept in a key-value
//! store whose values hold at most 256 octets (the firmware's), so that fetching is loss- and
//! duplicate-free across power cuts: a message is retrieved only if it is not seen; it becomes
//! seen after the spool committed it and before DELE; a seen message that is still listed (the
//! QUIT that would have made the DELE final never got its `+OK`) is deleted again, not fetched.
//!
//! What is stored, and who writes it:
//! - per committed UIDL a *seen record*: its key is the caller's key for the UIDL (the firmware
//!   hashes it: `key_for("pop3-seen", uidl)`), its value the UIDL's octets. A UIDL is seen when
//!   its record holds exactly it ([`record_holds`]); two UIDLs whose keys collide make one of
//!   them look unseen: at worst a duplicate, never a loss.
//! - the *ring*: the seen records' keys, oldest first, at most [`SEEN_CAPACITY`] (one listing's
//!   worth, [`LISTING_MAX`]). It bounds the records (a key inserted into a full ring evicts the
//!   oldest, whose record the caller removes) and lets the caller remove the records a complete
//!   listing no longer shows ([`SeenRing::prune`]). It is stored in [`SEEN_PAGES`] records,
//!   *pages*: page `i` is keys `32 i .. 32 i + 32` as little-endian `u64`s (at most 256
//!   octets). Page 0 is byte for byte the firmware's former 32-key ring record, so a store
//!   written before the ring had pages reads as it was.
//!
//! The order that keeps a power cut harmless: commit the message, store its seen record, then
//! insert its key: remove the evicted record, if any, and store the pages
//! [`SeenRing::take_dirty_pages`] names, in ascending order. Prune: remove the pruned records,
//! then store the dirty pages. Cut in between, the store holds a record the ring does not name
//! (the firmware's pending record re-inserts it at the next unlock), or a key without a record
//! (harmless: evicted or pruned again later); cut between two page writes, the pages may name
//! a key twice (loading keeps the first) and lack the key being inserted, but never lack a key
//! the ring kept (see the `torn_page_writes_keep_every_kept_key` test).

use heapless::Vec;

use crate::listing::LISTING_MAX;

/// Keys the ring holds: one listing's worth, so the messages one run commits never evict each
/// other before their DELE is final.
pub const SEEN_CAPACITY: usize = LISTING_MAX;
/// Keys per stored page.
pub const SEEN_PAGE_KEYS: usize = 32;
/// Octets of a full page: the key-value store's largest value.
pub const SEEN_PAGE_MAX: usize = SEEN_PAGE_KEYS * 8;
/// Pages the ring is stored in.
pub const SEEN_PAGES: usize = SEEN_CAPACITY.div_ceil(SEEN_PAGE_KEYS);

const _: () = assert!(SEEN_PAGES <= u8::BITS as usize, "the dirty pages are a bit mask");

/// What [`SeenRing::insert`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inserted {
    /// The key was added.
    Added,
    /// The key was already there (its place is kept).
    AlreadyPresent,
    /// The ring was full: this oldest key was dropped to make room, and its record must be
    /// removed (if that message is still on the server it may be fetched again: a duplicate,
    /// never a loss).
    EvictedOldest(u64),
}

/// Whether a seen record's stored value says `uidl` is seen (the value is the UIDL's octets).
pub fn record_holds(stored: &[u8], uidl: &str) -> bool {
    stored == uidl.as_bytes()
}

/// The seen records' keys, oldest first, and which stored pages no longer match them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SeenRing {
    keys: Vec<u64, SEEN_CAPACITY, u8>,
    /// Bit `i`: page `i` changed since loading (or since [`Self::take_dirty_pages`]).
    dirty: u8,
}

impl SeenRing {
    /// An empty ring.
    pub const fn new() -> SeenRing {
        SeenRing { keys: Vec::new(), dirty: 0 }
    }

    /// Appends the keys of a stored page; call for page 0, 1, … in order (an absent page is
    /// empty). Whole little-endian `u64`s only (a trailing partial one is ignored); a key seen
    /// before is skipped, so a page cut off while being rewritten loads cleanly. Marks nothing
    /// dirty.
    pub fn load_page(&mut self, bytes: &[u8]) {
        let dirty = self.dirty;
        for chunk in bytes.chunks_exact(8) {
            let mut key = [0u8; 8];
            key.copy_from_slice(chunk);
            self.insert(u64::from_le_bytes(key));
        }
        self.dirty = dirty;
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the ring is empty.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The keys, oldest first.
    pub fn keys(&self) -> &[u64] {
        &self.keys
    }

    /// Whether `key` is in the ring.
    pub fn contains(&self, key: u64) -> bool {
        self.keys.contains(&key)
    }

    /// Adds `key` as the newest (after its record was stored); a full ring drops its oldest.
    pub fn insert(&mut self, key: u64) -> Inserted {
        if self.contains(key) {
            return Inserted::AlreadyPresent;
        }
        let outcome = if self.keys.is_full() {
            let oldest = self.keys.remove(0);
            self.mark_from(0, SEEN_CAPACITY);
            Inserted::EvictedOldest(oldest)
        } else {
            Inserted::Added
        };
        self.mark_from(self.keys.len(), self.keys.len() + 1);
        // There is room now: `push` cannot fail.
        let _ = self.keys.push(key);
        outcome
    }

    /// Keeps only the keys `listed` holds (the keys of a complete listing's UIDLs; with an
    /// incomplete one a message merely not listed would be forgotten and fetched again).
    /// Returns the removed keys, oldest first: remove their records.
    pub fn prune(&mut self, listed: &[u64]) -> Vec<u64, SEEN_CAPACITY, u8> {
        let length = self.keys.len();
        let mut removed = Vec::new();
        let mut first_removed = None;
        let mut index = 0;
        self.keys.retain(|key| {
            let keep = listed.contains(key);
            if !keep {
                first_removed.get_or_insert(index);
                // At most every key: `push` cannot fail.
                let _ = removed.push(*key);
            }
            index += 1;
            keep
        });
        if let Some(first) = first_removed {
            self.mark_from(first, length);
        }
        removed
    }

    /// The page numbers to store, ascending, and forgets them (call when storing them).
    pub fn take_dirty_pages(&mut self) -> impl Iterator<Item = usize> + use<> {
        let dirty = core::mem::take(&mut self.dirty);
        (0..SEEN_PAGES).filter(move |page| dirty & 1 << page != 0)
    }

    /// Page `index` as stored: its keys as little-endian `u64`s (empty past the last key).
    pub fn encode_page<'o>(&self, index: usize, out: &'o mut [u8; SEEN_PAGE_MAX]) -> &'o [u8] {
        let keys = self.keys.iter().skip(index.saturating_mul(SEEN_PAGE_KEYS)).take(SEEN_PAGE_KEYS);
        let mut length = 0;
        for (slot, key) in out.chunks_exact_mut(8).zip(keys) {
            slot.copy_from_slice(&key.to_le_bytes());
            length += 8;
        }
        &out[..length]
    }

    /// Marks the pages holding positions `from .. until` (the ones whose content changed).
    fn mark_from(&mut self, from: usize, until: usize) {
        if until == 0 {
            return;
        }
        for page in from / SEEN_PAGE_KEYS..=(until - 1) / SEEN_PAGE_KEYS {
            self.dirty |= 1 << page;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring_of(keys: core::ops::Range<u64>) -> SeenRing {
        let mut ring = SeenRing::new();
        for key in keys {
            assert_eq!(ring.insert(key), Inserted::Added);
        }
        ring
    }

    fn dirty(ring: &mut SeenRing) -> std::vec::Vec<usize> {
        ring.take_dirty_pages().collect()
    }

    fn pages(ring: &SeenRing) -> std::vec::Vec<std::vec::Vec<u8>> {
        (0..SEEN_PAGES).map(|page| ring.encode_page(page, &mut [0; SEEN_PAGE_MAX]).to_vec()).collect()
    }

    fn load(pages: &[std::vec::Vec<u8>]) -> SeenRing {
        let mut ring = SeenRing::new();
        for page in pages {
            ring.load_page(page);
        }
        ring
    }

    #[test]
    fn capacity_is_one_listing_and_pages_fit_a_record() {
        assert_eq!(SEEN_CAPACITY, 64);
        assert_eq!(SEEN_CAPACITY, crate::LISTING_MAX);
        assert_eq!((SEEN_PAGES, SEEN_PAGE_MAX), (2, 256));
    }

    #[test]
    fn insert_dedupes_and_evicts_the_oldest() {
        let mut ring = ring_of(0..SEEN_CAPACITY as u64);
        assert_eq!(ring.insert(5), Inserted::AlreadyPresent);
        assert_eq!(ring.keys()[5], 5, "a repeated key keeps its place");
        assert_eq!(ring.insert(100), Inserted::EvictedOldest(0));
        assert_eq!(ring.insert(101), Inserted::EvictedOldest(1));
        assert_eq!(ring.len(), SEEN_CAPACITY);
        assert!(!ring.contains(0) && !ring.contains(1) && ring.contains(2) && ring.contains(101));
        assert_eq!(ring.keys().first(), Some(&2));
        assert_eq!(ring.keys().last(), Some(&101));
    }

    #[test]
    fn prune_keeps_the_listed_in_order_and_names_the_removed() {
        let mut ring = ring_of(1..7);
        assert_eq!(ring.prune(&[6, 2, 4, 99]), [1, 3, 5]);
        assert_eq!(ring.keys(), [2, 4, 6]);
        assert_eq!(ring.prune(&[2, 4, 6]), []);
        assert_eq!(ring.prune(&[]), [2, 4, 6]);
        assert!(ring.is_empty());
    }

    /// Page 0 holds what the firmware's former 32-key ring record held: the same bytes load
    /// as the same keys in the same order, with or without a page 1.
    #[test]
    fn page_zero_is_the_former_ring_record() {
        let mut former = std::vec::Vec::new();
        for key in [0x0123_4567_89AB_CDEFu64, 7, u64::MAX] {
            former.extend_from_slice(&key.to_le_bytes());
        }
        assert_eq!(former[..8], [0xEF, 0xCD, 0xAB, 0x89, 0x67, 0x45, 0x23, 0x01]);
        let ring = load(&[former.clone()]);
        assert_eq!(ring.keys(), [0x0123_4567_89AB_CDEF, 7, u64::MAX]);
        assert_eq!(load(&[former.clone(), std::vec::Vec::new()]), ring);
        assert_eq!(pages(&ring), [former, std::vec::Vec::new()]);
        // A full former ring: 32 keys, 256 octets, all of page 0.
        let full = ring_of(0..32);
        assert_eq!(pages(&full)[0].len(), 256);
        assert!(pages(&full)[1].is_empty());
    }

    #[test]
    fn load_ignores_a_partial_key_and_repeats() {
        let mut bytes = std::vec::Vec::new();
        for key in [1u64, 2, 1] {
            bytes.extend_from_slice(&key.to_le_bytes());
        }
        bytes.extend_from_slice(&[9, 9, 9]);
        let mut ring = load(&[bytes, 2u64.to_le_bytes().to_vec()]);
        assert_eq!(ring.keys(), [1, 2]);
        assert_eq!(dirty(&mut ring), [] as [usize; 0], "loading marks nothing");
        assert!(load(&[std::vec::Vec::new()]).is_empty());
    }

    #[test]
    fn only_changed_pages_are_dirty() {
        let mut ring = SeenRing::new();
        ring.insert(1);
        assert_eq!(dirty(&mut ring), [0]);
        assert_eq!(dirty(&mut ring), [] as [usize; 0]);
        let mut ring = ring_of(0..32);
        dirty(&mut ring);
        ring.insert(32);
        assert_eq!(dirty(&mut ring), [1], "the 33rd key starts page 1");
        ring.insert(0);
        assert_eq!(dirty(&mut ring), [] as [usize; 0], "already present");
        ring.prune(&(0..32).collect::<std::vec::Vec<_>>());
        assert_eq!(dirty(&mut ring), [1], "a key of page 1 removed: page 0 unchanged");
        ring.insert(32);
        dirty(&mut ring);
        ring.prune(&(1..33).collect::<std::vec::Vec<_>>());
        assert_eq!(dirty(&mut ring), [0, 1], "a key of page 0 removed: every later key moves");
        let mut ring = ring_of(0..5);
        dirty(&mut ring);
        ring.prune(&[]);
        assert_eq!(dirty(&mut ring), [0], "emptied: page 0 is stored empty, page 1 was never written");
        let mut ring = ring_of(0..SEEN_CAPACITY as u64);
        dirty(&mut ring);
        ring.insert(1_000);
        assert_eq!(dirty(&mut ring), [0, 1], "an eviction moves every key");
    }

    /// Which pages a change dirtied is exactly which pages' bytes changed.
    #[test]
    fn dirty_pages_are_the_changed_pages() {
        let mut ring = ring_of(0..40);
        dirty(&mut ring);
        for step in 0..200u64 {
            let before = pages(&ring);
            match step % 5 {
                0 => {
                    let listed: std::vec::Vec<u64> =
                        ring.keys().iter().copied().filter(|key| key % 7 != step % 7).collect();
                    ring.prune(&listed);
                }
                _ => {
                    ring.insert(step * 3 % 90);
                }
            }
            let after = pages(&ring);
            let changed: std::vec::Vec<usize> = (0..SEEN_PAGES).filter(|&page| before[page] != after[page]).collect();
            assert_eq!(dirty(&mut ring), changed, "step {step}");
        }
    }

    #[test]
    fn record_holds_exactly_its_uidl() {
        assert!(record_holds(b"whqtswO00WBw418f9t5JxYwZ", "whqtswO00WBw418f9t5JxYwZ"));
        assert!(!record_holds(b"whqtswO00WBw418f9t5JxYwZ", "whqtswO00WBw418f9t5JxYw"));
        assert!(!record_holds(b"abc", "ABC"));
        assert!(!record_holds(b"", "a"));
    }

    proptest::proptest! {
        /// Against a model (a bounded FIFO set), through store and load: the ring holds what the
        /// model holds, evicts what the model evicts, prunes what the model prunes; the pages
        /// load back as the ring.
        #[test]
        fn behaves_like_a_bounded_fifo_through_the_store(operations in proptest::collection::vec((0u8..10, 0u64..150), 0..300)) {
            let mut ring = SeenRing::new();
            let mut model: std::vec::Vec<u64> = std::vec::Vec::new();
            let mut stored: std::vec::Vec<std::vec::Vec<u8>> = std::vec![std::vec::Vec::new(); SEEN_PAGES];
            for (kind, key) in operations {
                if kind < 9 {
                    let expected = if model.contains(&key) {
                        Inserted::AlreadyPresent
                    } else if model.len() == SEEN_CAPACITY {
                        model.push(key);
                        Inserted::EvictedOldest(model.remove(0))
                    } else {
                        model.push(key);
                        Inserted::Added
                    };
                    proptest::prop_assert_eq!(ring.insert(key), expected);
                } else {
                    let listed: std::vec::Vec<u64> = model.iter().copied().filter(|k| k % 3 != key % 3).collect();
                    let gone: std::vec::Vec<u64> = model.iter().copied().filter(|k| k % 3 == key % 3).collect();
                    proptest::prop_assert_eq!(ring.prune(&listed).to_vec(), gone);
                    model = listed;
                }
                for page in ring.take_dirty_pages() {
                    stored[page] = ring.encode_page(page, &mut [0; SEEN_PAGE_MAX]).to_vec();
                }
                proptest::prop_assert_eq!(ring.keys(), &model[..]);
                let loaded = load(&stored);
                proptest::prop_assert_eq!(loaded.keys(), &model[..]);
            }
        }

        /// A power cut between two page writes (pages written in ascending order): what loads
        /// holds every key the ring kept, except perhaps the one being inserted, and nothing
        /// that was not in the ring before or after.
        #[test]
        fn torn_page_writes_keep_every_kept_key(
            start in proptest::collection::vec(0u64..200, 0..80),
            operation in (0u8..2, 0u64..200),
        ) {
            let mut ring = SeenRing::new();
            for key in start {
                ring.insert(key);
            }
            dirty(&mut ring);
            let before = pages(&ring);
            let old_keys = ring.keys().to_vec();
            let inserted = match operation {
                (0, key) => {
                    ring.insert(key);
                    Some(key)
                }
                (_, key) => {
                    let listed: std::vec::Vec<u64> = old_keys.iter().copied().filter(|k| (k ^ key) % 4 != 0).collect();
                    ring.prune(&listed);
                    None
                }
            };
            let after = pages(&ring);
            let writes: std::vec::Vec<usize> = ring.take_dirty_pages().collect();
            for cut in 0..=writes.len() {
                let mut torn = before.clone();
                for &page in &writes[..cut] {
                    torn[page] = after[page].clone();
                }
                let loaded = load(&torn);
                for key in ring.keys() {
                    proptest::prop_assert!(loaded.contains(*key) || Some(*key) == inserted, "cut {} lost {}", cut, key);
                }
                for key in loaded.keys() {
                    proptest::prop_assert!(old_keys.contains(key) || ring.contains(*key), "cut {} invented {}", cut, key);
                }
            }
        }

        #[test]
        fn load_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..700)) {
            let mut ring = SeenRing::new();
            ring.load_page(&bytes);
            proptest::prop_assert!(ring.len() <= SEEN_CAPACITY);
        }
    }
}
