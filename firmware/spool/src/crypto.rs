//! Record encryption: XChaCha20-Poly1305 with nonces from place and a per-sector random value.
//!
//! Every sector header and record is sealed with XChaCha20-Poly1305 under the data key.
//!
//! **Nonce scheme.** The 24-byte nonce of a record is
//! `sector random (12) | sector sequence (4) | offset in sector (4) | 0 (4)`. The 12 random
//! bytes are drawn from the caller's [`crate::RandomSource`] each time a sector is opened for
//! writing (right after it was erased), and stored in its header; the sequence number grows
//! with every sector opened. Within one life of a sector (erase to erase) every offset is
//! programmed at most once: NOR cannot program a word twice, and after a power cut the spool
//! never writes into a sector past a point that is not wholly erased (see
//! [`crate::recovery`]). A nonce therefore repeats only if the same 12 random bytes and the
//! same sequence number were drawn for two lives of sectors: with a good random source, a
//! 2^-96 chance; with a broken one (constant output) the sequence number still keeps nonces
//! apart, except after the rare case of a sector header torn by a power cut, whose sequence
//! number may be drawn again. Nothing is kept in RAM across resets, so power cuts cannot
//! make a counter go backwards. The sector header itself uses offset 0; records start after
//! it.
//!
//! **Associated data** binds each record to its place and kind: the region's start address,
//! the sector's index in the region, the sector's sequence number, the record's offset and
//! its whole header (kind, length, message id, chunk index). A record copied to another
//! place, another sector life, another message or another chunk position fails to open.

use crate::layout::{RECORD_HEADER_SIZE, SECTOR_HEADER_SIZE, SECTOR_MAGIC, FORMAT_VERSION, TAG_SIZE};
use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};

/// What a record's nonce and associated data need to know about its sector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SectorContext {
    /// The sector's index inside the region.
    pub index: u32,
    /// The sector's sequence number (its place in the log).
    pub sequence: u32,
    /// The random value drawn when the sector was opened.
    pub random: [u8; 12],
}

/// The AEAD under the data key, bound to one region (the key is wiped when dropped).
pub struct RecordCipher {
    aead: XChaCha20Poly1305,
    region_start: u32,
}

const RECORD_DOMAIN: [u8; 4] = *b"HMXR";
const SECTOR_DOMAIN: [u8; 4] = *b"HMXS";

impl RecordCipher {
    /// A cipher for the region starting at `region_start` under `key`.
    pub fn new(key: &[u8; 32], region_start: u32) -> Self {
        Self {
            aead: XChaCha20Poly1305::new(key.into()),
            region_start,
        }
    }

    fn nonce(context: &SectorContext, offset: u32) -> XNonce {
        let mut nonce = [0u8; 24];
        nonce[..12].copy_from_slice(&context.random);
        nonce[12..16].copy_from_slice(&context.sequence.to_le_bytes());
        nonce[16..20].copy_from_slice(&offset.to_le_bytes());
        nonce.into()
    }

    fn record_associated_data(
        &self,
        context: &SectorContext,
        offset: u32,
        header: &[u8; RECORD_HEADER_SIZE],
    ) -> [u8; 32] {
        let mut data = [0u8; 32];
        data[..4].copy_from_slice(&RECORD_DOMAIN);
        data[4..8].copy_from_slice(&self.region_start.to_le_bytes());
        data[8..12].copy_from_slice(&context.index.to_le_bytes());
        data[12..16].copy_from_slice(&context.sequence.to_le_bytes());
        data[16..20].copy_from_slice(&offset.to_le_bytes());
        data[20..32].copy_from_slice(header);
        data
    }

    fn sector_associated_data(&self, index: u32, header: &[u8]) -> [u8; 36] {
        let mut data = [0u8; 36];
        data[..4].copy_from_slice(&SECTOR_DOMAIN);
        data[4..8].copy_from_slice(&self.region_start.to_le_bytes());
        data[8..12].copy_from_slice(&index.to_le_bytes());
        data[12..36].copy_from_slice(&header[..24]);
        data
    }

    /// Builds and seals the header of a sector about to be opened.
    pub fn seal_sector_header(&self, context: &SectorContext) -> [u8; SECTOR_HEADER_SIZE] {
        let mut header = [0u8; SECTOR_HEADER_SIZE];
        header[..4].copy_from_slice(&SECTOR_MAGIC);
        header[4] = FORMAT_VERSION;
        header[8..12].copy_from_slice(&context.sequence.to_le_bytes());
        header[12..24].copy_from_slice(&context.random);
        let associated = self.sector_associated_data(context.index, &header);
        let tag = self
            .aead
            .encrypt_in_place_detached(&Self::nonce(context, 0), &associated, &mut [])
            .unwrap_or_default();
        header[24..40].copy_from_slice(&tag);
        header
    }

    /// Checks a sector header read from sector `index`; `None` if it is not authentic.
    pub fn open_sector_header(&self, index: u32, header: &[u8; SECTOR_HEADER_SIZE]) -> Option<SectorContext> {
        if header[..4] != SECTOR_MAGIC || header[4] != FORMAT_VERSION || header[5..8] != [0; 3] {
            return None;
        }
        let mut random = [0u8; 12];
        random.copy_from_slice(&header[12..24]);
        let context = SectorContext {
            index,
            sequence: u32::from_le_bytes([header[8], header[9], header[10], header[11]]),
            random,
        };
        let associated = self.sector_associated_data(index, header);
        let tag = Tag::clone_from_slice(&header[24..40]);
        self.aead
            .decrypt_in_place_detached(&Self::nonce(&context, 0), &associated, &mut [], &tag)
            .ok()
            .map(|()| context)
    }

    /// Encrypts `payload` in place for a record at `offset` of the sector; returns the tag.
    pub fn seal_record(
        &self,
        context: &SectorContext,
        offset: u32,
        header: &[u8; RECORD_HEADER_SIZE],
        payload: &mut [u8],
    ) -> [u8; TAG_SIZE] {
        let associated = self.record_associated_data(context, offset, header);
        let tag = self
            .aead
            .encrypt_in_place_detached(&Self::nonce(context, offset), &associated, payload)
            .unwrap_or_default();
        tag.into()
    }

    /// Checks and decrypts a record in place; `false` if it is not authentic.
    pub fn open_record(
        &self,
        context: &SectorContext,
        offset: u32,
        header: &[u8; RECORD_HEADER_SIZE],
        payload: &mut [u8],
        tag: &[u8; TAG_SIZE],
    ) -> bool {
        let associated = self.record_associated_data(context, offset, header);
        self.aead
            .decrypt_in_place_detached(
                &Self::nonce(context, offset),
                &associated,
                payload,
                Tag::from_slice(tag),
            )
            .is_ok()
    }
}
