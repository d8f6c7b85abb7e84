//! `SeenUidls`: the bounded set of unique-ids whose messages are already committed to the
//! spool, and its versioned, checksummed encoding for the key-value store.
//!
//! With it fetching is loss- and duplicate-free: a message is retrieved only if its UIDL is
//! not in the set; its UIDL goes in (and the set is persisted) after the spool committed it
//! and before DELE; a UIDL in the set whose message is still listed (the QUIT that would have
//! made the DELE final never got its `+OK`) is deleted again, not fetched again.
//!
//! Encoding (version 1): `"SU"`, version `1`, count (u8), then per entry its length (u8) and
//! octets, then the CRC-32 (IEEE) of everything before it, little-endian. At most
//! [`SEEN_ENCODED_MAX`] octets.

use crate::listing::{is_valid_uidl, UIDL_MAX};

/// Entries the set holds; when full, inserting evicts the oldest.
pub const SEEN_CAPACITY: usize = 128;
/// The longest encoding: header, every entry at full length, checksum.
pub const SEEN_ENCODED_MAX: usize = 4 + SEEN_CAPACITY * (1 + UIDL_MAX) + 4;

const MAGIC: &[u8; 2] = b"SU";
const VERSION: u8 = 1;

/// What [`SeenUidls::insert`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inserted {
    /// The UIDL was added.
    Added,
    /// The UIDL was already present.
    AlreadyPresent,
    /// The set was full: the oldest entry was dropped to make room (if that message is still
    /// on the server it may be fetched again: a duplicate, never a loss).
    EvictedOldest,
}

/// The UIDL is not 1 to 70 octets in 0x21..=0x7E (RFC 1939 7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidUidl;

/// Why stored bytes were not a set. Start with an empty set then (at worst messages the
/// server still holds are fetched again).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Shorter than the header and entries say.
    Truncated,
    /// Not a `SeenUidls` encoding.
    BadMagic,
    /// A version this firmware does not know.
    UnsupportedVersion(u8),
    /// More entries than fit, an invalid UIDL or a duplicate.
    Corrupt,
    /// The checksum does not match.
    ChecksumMismatch,
    /// Octets after the checksum.
    TrailingBytes,
}

/// The set of committed UIDLs, oldest first.
#[derive(Clone)]
pub struct SeenUidls {
    entries: [[u8; UIDL_MAX]; SEEN_CAPACITY],
    lengths: [u8; SEEN_CAPACITY],
    count: usize,
    /// During a streamed prune: which entries the listing named.
    marks: u128,
}

impl Default for SeenUidls {
    fn default() -> Self {
        Self::new()
    }
}

impl core::fmt::Debug for SeenUidls {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        formatter.debug_list().entries(self.iter()).finish()
    }
}

/// CRC-32 (IEEE 802.3, reflected, as in zip and Ethernet).
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { crc >> 1 ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

impl SeenUidls {
    /// An empty set.
    pub const fn new() -> SeenUidls {
        SeenUidls { entries: [[0; UIDL_MAX]; SEEN_CAPACITY], lengths: [0; SEEN_CAPACITY], count: 0, marks: 0 }
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Whether the next new UIDL evicts the oldest.
    pub fn is_full(&self) -> bool {
        self.count == SEEN_CAPACITY
    }

    /// Removes every entry.
    pub fn clear(&mut self) {
        self.entries = [[0; UIDL_MAX]; SEEN_CAPACITY];
        self.lengths = [0; SEEN_CAPACITY];
        self.count = 0;
        self.marks = 0;
    }

    fn entry(&self, index: usize) -> &[u8] {
        &self.entries[index][..usize::from(self.lengths[index])]
    }

    fn position(&self, uidl: &[u8]) -> Option<usize> {
        (0..self.count).find(|&index| self.entry(index) == uidl)
    }

    /// The entries, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        (0..self.count).map(|index| core::str::from_utf8(self.entry(index)).unwrap_or(""))
    }

    /// Whether `uidl` is in the set (exact, case-sensitive comparison: unique-ids are).
    pub fn contains(&self, uidl: &str) -> bool {
        self.position(uidl.as_bytes()).is_some()
    }

    /// Adds `uidl` (call after the spool committed its message, then persist the set, then
    /// DELE the message).
    pub fn insert(&mut self, uidl: &str) -> Result<Inserted, InvalidUidl> {
        let uidl = uidl.as_bytes();
        if !is_valid_uidl(uidl) {
            return Err(InvalidUidl);
        }
        if self.position(uidl).is_some() {
            return Ok(Inserted::AlreadyPresent);
        }
        let outcome = if self.count == SEEN_CAPACITY {
            self.remove(0);
            Inserted::EvictedOldest
        } else {
            Inserted::Added
        };
        let index = self.count;
        self.entries[index] = [0; UIDL_MAX];
        self.entries[index][..uidl.len()].copy_from_slice(uidl);
        self.lengths[index] = uidl.len() as u8;
        self.count += 1;
        Ok(outcome)
    }

    /// Removes `uidl`; returns whether it was present.
    pub fn remove_uidl(&mut self, uidl: &str) -> bool {
        match self.position(uidl.as_bytes()) {
            Some(index) => {
                self.remove(index);
                true
            }
            None => false,
        }
    }

    fn remove(&mut self, index: usize) {
        if index >= self.count {
            return;
        }
        self.entries.copy_within(index + 1..self.count, index);
        self.lengths.copy_within(index + 1..self.count, index);
        // Keep the marks of a streamed prune aligned with the entries.
        let below = self.marks & ((1u128 << index) - 1);
        let above = if index + 1 < 128 { self.marks >> (index + 1) << index } else { 0 };
        self.marks = below | above;
        self.count -= 1;
        self.entries[self.count] = [0; UIDL_MAX];
        self.lengths[self.count] = 0;
    }

    /// Keeps only the entries `listed` names; returns how many were removed. Use only with a
    /// complete listing ([`crate::ListingSummary::complete`]): an entry whose message is on
    /// the server but was not listed would be dropped and the message fetched again.
    pub fn prune<'u, I: IntoIterator<Item = &'u str>>(&mut self, listed: I) -> usize {
        self.prune_start();
        for uidl in listed {
            self.prune_keep(uidl);
        }
        self.prune_finish()
    }

    /// Starts a streamed prune (for callers that do not keep the listing): call
    /// [`Self::prune_keep`] for every listed UIDL, then [`Self::prune_finish`].
    pub fn prune_start(&mut self) {
        self.marks = 0;
    }

    /// During a streamed prune: `uidl` is on the server.
    pub fn prune_keep(&mut self, uidl: &str) {
        if let Some(index) = self.position(uidl.as_bytes()) {
            self.marks |= 1u128 << index;
        }
    }

    /// Ends a streamed prune: removes every entry not kept; returns how many.
    pub fn prune_finish(&mut self) -> usize {
        let mut removed = 0;
        let mut index = 0;
        while index < self.count {
            if self.marks & (1u128 << index) == 0 {
                self.remove(index);
                removed += 1;
            } else {
                index += 1;
            }
        }
        self.marks = 0;
        removed
    }

    /// Octets [`Self::encode`] writes for the current entries.
    pub fn encoded_len(&self) -> usize {
        4 + (0..self.count).map(|index| 1 + usize::from(self.lengths[index])).sum::<usize>() + 4
    }

    /// Writes the encoding into `out`; returns its length, or 0 when `out` is shorter than
    /// [`Self::encoded_len`] (a buffer of [`SEEN_ENCODED_MAX`] always fits).
    pub fn encode(&self, out: &mut [u8]) -> usize {
        let length = self.encoded_len();
        let Some(out) = out.get_mut(..length) else { return 0 };
        out[..2].copy_from_slice(MAGIC);
        out[2] = VERSION;
        out[3] = self.count as u8;
        let mut at = 4;
        for index in 0..self.count {
            let entry = self.entry(index);
            out[at] = entry.len() as u8;
            out[at + 1..at + 1 + entry.len()].copy_from_slice(entry);
            at += 1 + entry.len();
        }
        let checksum = crc32(&out[..at]);
        out[at..at + 4].copy_from_slice(&checksum.to_le_bytes());
        length
    }

    /// Reads an encoding written by [`Self::encode`]; any other input is an error, never a
    /// panic.
    pub fn decode(bytes: &[u8]) -> Result<SeenUidls, DecodeError> {
        let mut set = SeenUidls::new();
        set.load(bytes)?;
        Ok(set)
    }

    /// Like [`Self::decode`], but in place (no 9 KB value on the stack). On error the set is
    /// left empty.
    pub fn load(&mut self, bytes: &[u8]) -> Result<(), DecodeError> {
        self.clear();
        let result = self.load_entries(bytes);
        if result.is_err() {
            self.clear();
        }
        result
    }

    fn load_entries(&mut self, bytes: &[u8]) -> Result<(), DecodeError> {
        let header = bytes.get(..4).ok_or(DecodeError::Truncated)?;
        if &header[..2] != MAGIC {
            return Err(DecodeError::BadMagic);
        }
        if header[2] != VERSION {
            return Err(DecodeError::UnsupportedVersion(header[2]));
        }
        let count = usize::from(header[3]);
        if count > SEEN_CAPACITY {
            return Err(DecodeError::Corrupt);
        }
        let mut at = 4;
        for _ in 0..count {
            let length = usize::from(*bytes.get(at).ok_or(DecodeError::Truncated)?);
            let uidl = bytes.get(at + 1..at + 1 + length).ok_or(DecodeError::Truncated)?;
            at += 1 + length;
            let uidl = core::str::from_utf8(uidl).map_err(|_| DecodeError::Corrupt)?;
            if self.insert(uidl) != Ok(Inserted::Added) {
                return Err(DecodeError::Corrupt);
            }
        }
        let stored = bytes.get(at..at + 4).ok_or(DecodeError::Truncated)?;
        let stored = u32::from_le_bytes([stored[0], stored[1], stored[2], stored[3]]);
        if stored != crc32(&bytes[..at]) {
            return Err(DecodeError::ChecksumMismatch);
        }
        if bytes.len() > at + 4 {
            return Err(DecodeError::TrailingBytes);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn insert_contains_remove() {
        let mut set = SeenUidls::new();
        assert_eq!(set.insert("a1"), Ok(Inserted::Added));
        assert_eq!(set.insert("a1"), Ok(Inserted::AlreadyPresent));
        assert_eq!(set.insert(""), Err(InvalidUidl));
        assert_eq!(set.insert("has space"), Err(InvalidUidl));
        assert_eq!(set.insert(&"x".repeat(71)), Err(InvalidUidl));
        assert!(set.contains("a1"));
        assert!(!set.contains("A1"));
        assert!(set.remove_uidl("a1"));
        assert!(!set.remove_uidl("a1"));
        assert!(set.is_empty());
    }

    #[test]
    fn full_set_evicts_the_oldest() {
        let mut set = SeenUidls::new();
        for index in 0..SEEN_CAPACITY {
            assert_eq!(set.insert(&format!("u{index}")), Ok(Inserted::Added));
        }
        assert!(set.is_full());
        assert_eq!(set.insert("new"), Ok(Inserted::EvictedOldest));
        assert!(!set.contains("u0") && set.contains("u1") && set.contains("new"));
        assert_eq!(set.len(), SEEN_CAPACITY);
        assert_eq!(set.iter().next(), Some("u1"));
        assert_eq!(set.iter().last(), Some("new"));
    }

    #[test]
    fn prune_keeps_only_listed() {
        let mut set = SeenUidls::new();
        for uidl in ["a", "b", "c", "d"] {
            set.insert(uidl).unwrap();
        }
        assert_eq!(set.prune(["d", "b", "zzz"]), 2);
        assert_eq!(set.iter().collect::<Vec<_>>(), ["b", "d"]);
        assert_eq!(set.prune([]), 2);
        assert!(set.is_empty());
    }

    #[test]
    fn streamed_prune_survives_removal_in_between() {
        let mut set = SeenUidls::new();
        for uidl in ["a", "b", "c", "d"] {
            set.insert(uidl).unwrap();
        }
        set.prune_start();
        set.prune_keep("c");
        set.prune_keep("d");
        set.remove_uidl("a");
        assert_eq!(set.prune_finish(), 1);
        assert_eq!(set.iter().collect::<Vec<_>>(), ["c", "d"]);
    }

    #[test]
    fn encode_decode_round_trip() {
        let mut set = SeenUidls::new();
        let mut buffer = [0u8; SEEN_ENCODED_MAX];
        let length = set.encode(&mut buffer);
        assert_eq!(length, 8);
        assert!(SeenUidls::decode(&buffer[..length]).unwrap().is_empty());
        for index in 0..SEEN_CAPACITY {
            set.insert(&format!("{index:0>70}")).unwrap();
        }
        let length = set.encode(&mut buffer);
        assert_eq!(length, SEEN_ENCODED_MAX);
        let decoded = SeenUidls::decode(&buffer[..length]).unwrap();
        assert_eq!(decoded.iter().collect::<Vec<_>>(), set.iter().collect::<Vec<_>>());
        assert_eq!(set.encode(&mut buffer[..length - 1]), 0);
    }

    #[test]
    fn decode_rejects_damage() {
        let mut set = SeenUidls::new();
        set.insert("abc").unwrap();
        set.insert("def").unwrap();
        let mut buffer = [0u8; 64];
        let length = set.encode(&mut buffer);
        let good = &buffer[..length];
        assert_eq!(SeenUidls::decode(&good[..length - 1]).err(), Some(DecodeError::Truncated));
        assert_eq!(SeenUidls::decode(&[]).err(), Some(DecodeError::Truncated));
        let mut extended = good.to_vec();
        extended.push(0);
        assert_eq!(SeenUidls::decode(&extended).err(), Some(DecodeError::TrailingBytes));
        let mut flipped = good.to_vec();
        flipped[6] ^= 1;
        assert_eq!(SeenUidls::decode(&flipped).err(), Some(DecodeError::ChecksumMismatch));
        let mut version = good.to_vec();
        version[2] = 9;
        assert_eq!(SeenUidls::decode(&version).err(), Some(DecodeError::UnsupportedVersion(9)));
        assert_eq!(SeenUidls::decode(b"XX\x01\x00").err(), Some(DecodeError::BadMagic));
        // A duplicate entry with a valid checksum is still refused.
        let mut duplicate = vec![b'S', b'U', 1, 2, 1, b'a', 1, b'a'];
        let checksum = crc32(&duplicate);
        duplicate.extend_from_slice(&checksum.to_le_bytes());
        assert_eq!(SeenUidls::decode(&duplicate).err(), Some(DecodeError::Corrupt));
        let mut loaded = set.clone();
        assert!(loaded.load(&flipped).is_err());
        assert!(loaded.is_empty());
    }
}
