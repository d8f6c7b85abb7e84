//! The on-flash format of the message queue: sector headers, record headers, sizes.
//!
//! A queue region is a run of whole erase sectors. Each sector in use starts with a sector
//! header, followed by records packed one after another, each padded to the flash's write
//! size with `0xFF`; the rest of the sector is erased (`0xFF`).
//!
//! ```text
//! sector header (40 bytes + padding)
//!   magic "HMXQ" | version 2 | 3 reserved (0) | sequence u32 LE | random 12 bytes | tag 16
//! record (12-byte header + ciphertext + tag 16 + 0xFF padding)
//!   kind u8 | !kind u8 | payload length u16 LE | message id u32 LE | index u32 LE
//! payloads (plaintext)
//!   envelope (index = part 0..=3): part of the encoded envelope, see [`crate::envelope`]
//!   chunk    (index = chunk number): message data, 1..=1024 bytes
//!   commit   (index 0): total length u32 | chunk count u32 | envelope part count u32
//!   state    (index 0): delivered u128 | failed u128 | next retry u64 | attempts u32
//!   delete   (index 0): empty
//! ```
//!
//! A message's envelope records (all of its parts, in order) come before its first chunk.
//! Sectors whose header carries another version (e.g. a version-1 spool) fail the header
//! check like foreign or unformatted content: mount reports them unreadable and
//! [`crate::Spool::maintain`] erases them.
//!
//! All integers are little-endian. Headers are in clear (the scanner needs the lengths) but
//! are part of the associated data of the record's AEAD, see [`crate::crypto`].

/// Bytes of a record header.
pub const RECORD_HEADER_SIZE: usize = 12;
/// Bytes of an AEAD tag.
pub const TAG_SIZE: usize = 16;
/// Bytes of a record's fixed overhead (header and tag, before padding).
pub const RECORD_OVERHEAD: usize = RECORD_HEADER_SIZE + TAG_SIZE;
/// Largest payload of any record (message data chunk, envelope part).
pub const RECORD_PAYLOAD_CAPACITY: usize = 1024;
/// Largest padded record (for write sizes up to 32).
pub const RECORD_BUFFER_CAPACITY: usize = 1088;
/// Bytes of a sector header before padding.
pub const SECTOR_HEADER_SIZE: usize = 40;
/// The sector header's magic.
pub const SECTOR_MAGIC: [u8; 4] = *b"HMXQ";
/// Format version written in sector headers.
pub const FORMAT_VERSION: u8 = 2;
/// Smallest payload a chunk is split down to at the end of a sector.
pub const MINIMUM_SPLIT_PAYLOAD: usize = 64;
/// Largest write size supported.
pub const MAXIMUM_WRITE_SIZE: usize = 32;
/// Smallest erase sector either store takes: a sector must hold its header and the largest
/// record (1024 + 28 bytes, padded) with room to spare. Nothing else in the layout depends on
/// the sector size: offsets inside a sector are `u32` (in records, nonces and associated
/// data), so every larger size works; 4, 8, 16, 64 and 128 KiB are tested.
pub const MINIMUM_SECTOR_SIZE: usize = 2048;
/// Marks "no sector" in sequence fields.
pub const NO_SEQUENCE: u32 = u32::MAX;

/// What a record holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RecordKind {
    /// A part of the envelope; part 0 is the first record of a message.
    Envelope = 1,
    /// A piece of message data; `index` is the chunk number.
    Chunk = 2,
    /// The commit point: total length, chunk count and envelope part count.
    Commit = 3,
    /// Delivery state of the recipients; the newest wins.
    State = 4,
    /// The message is deleted (a tombstone).
    Delete = 5,
}

impl RecordKind {
    /// Decodes a kind byte.
    pub fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            1 => Some(Self::Envelope),
            2 => Some(Self::Chunk),
            3 => Some(Self::Commit),
            4 => Some(Self::State),
            5 => Some(Self::Delete),
            _ => None,
        }
    }
}

/// A decoded record header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    /// What the record holds.
    pub kind: RecordKind,
    /// Payload (plaintext = ciphertext) length.
    pub length: u16,
    /// The message the record belongs to.
    pub message: u32,
    /// Chunk number for chunks, part number for envelopes, 0 otherwise.
    pub index: u32,
}

impl RecordHeader {
    /// Encodes the header.
    pub fn encode(&self) -> [u8; RECORD_HEADER_SIZE] {
        let mut bytes = [0u8; RECORD_HEADER_SIZE];
        bytes[0] = self.kind as u8;
        bytes[1] = !(self.kind as u8);
        bytes[2..4].copy_from_slice(&self.length.to_le_bytes());
        bytes[4..8].copy_from_slice(&self.message.to_le_bytes());
        bytes[8..12].copy_from_slice(&self.index.to_le_bytes());
        bytes
    }

    /// Decodes and sanity-checks a header (the AEAD check comes later).
    pub fn decode(bytes: &[u8; RECORD_HEADER_SIZE]) -> Option<Self> {
        let kind = RecordKind::from_byte(bytes[0])?;
        if bytes[1] != !bytes[0] {
            return None;
        }
        let length = u16::from_le_bytes([bytes[2], bytes[3]]);
        if usize::from(length) > RECORD_PAYLOAD_CAPACITY {
            return None;
        }
        Some(Self {
            kind,
            length,
            message: u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]),
            index: u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]),
        })
    }
}

/// Rounds `value` up to a multiple of `alignment` (a power of two or any positive number).
pub const fn align_up(value: usize, alignment: usize) -> usize {
    value.div_ceil(alignment) * alignment
}

/// Bytes a record with `payload` bytes occupies on a flash with `write_size` words.
pub const fn record_extent(payload: usize, write_size: usize) -> usize {
    align_up(RECORD_OVERHEAD + payload, write_size)
}

/// Bytes the envelope records of an encoded envelope of `length` bytes occupy (parts of
/// [`RECORD_PAYLOAD_CAPACITY`] bytes).
pub const fn envelope_extent(length: usize, write_size: usize) -> usize {
    let full = length / RECORD_PAYLOAD_CAPACITY;
    let rest = length % RECORD_PAYLOAD_CAPACITY;
    let last = if rest > 0 { record_extent(rest, write_size) } else { 0 };
    full * record_extent(RECORD_PAYLOAD_CAPACITY, write_size) + last
}

/// Whether the flash's geometry fits the layout of both stores: erase sectors of at least
/// [`MINIMUM_SECTOR_SIZE`], words of 1 to [`MAXIMUM_WRITE_SIZE`] bytes, and read, write and
/// erase sizes that divide one another.
pub const fn geometry_is_supported<F: embedded_storage_async::nor_flash::NorFlash>() -> bool {
    F::READ_SIZE >= 1
        && F::WRITE_SIZE >= 1
        && F::WRITE_SIZE <= MAXIMUM_WRITE_SIZE
        && F::WRITE_SIZE % F::READ_SIZE == 0
        && F::ERASE_SIZE >= MINIMUM_SECTOR_SIZE
        && F::ERASE_SIZE % F::WRITE_SIZE == 0
}

/// Bytes the sector header occupies on a flash with `write_size` words.
pub const fn sector_header_extent(write_size: usize) -> usize {
    align_up(SECTOR_HEADER_SIZE, write_size)
}

/// Payload of a commit record: length, chunk count, envelope part count.
pub const COMMIT_PAYLOAD_SIZE: usize = 12;
/// Payload of a state record: two 128-recipient bitmaps, retry time, attempts.
pub const STATE_PAYLOAD_SIZE: usize = 44;
