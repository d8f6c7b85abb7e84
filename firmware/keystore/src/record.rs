//! The on-flash key record: its byte layout, encoding, checked parsing, integrity hash and the
//! associated data that binds it to the wrapped key.
//!
//! ```text
//! offset size field
//!      0    4 magic "HMXK"
//!      4    1 format version (1)
//!      5    1 binding: 0 not bound, 1 bound to the chip key (see below)
//!      6    2 chip fingerprint (bound; zero when not bound)
//!      8    4 sequence number (u32 LE; the newest valid record wins)
//!     12    4 PBKDF2 iterations (u32 LE; 1..=MAX_ITERATIONS)
//!     16    4 failed attempts carried over from the previous sector (u32 LE)
//!     20   16 salt
//!     36   24 XChaCha20-Poly1305 nonce
//!     60   32 admin public key (ed25519)
//!     92   32 wrapped data key (ciphertext)
//!    124   16 Poly1305 tag
//!    140   16 passphrase check
//!    156   32 SHA-256 of bytes 0..156 (integrity: torn writes, bit rot)
//!    188      end (programmed padded to the write size)
//! ```
//!
//! Two protections with different jobs:
//! - The **integrity hash** is keyless. It makes a torn or half-erased record invalid, so a
//!   power cut leaves the older record in charge. Anyone can recompute it: it is no defence
//!   against an attacker who writes the flash.
//! - The **AEAD** (key from the passphrase) authenticates what matters against that attacker:
//!   its associated data is `magic | version | iterations | salt | admin public key`, so a
//!   changed admin key, KDF parameter or wrapped key makes unlock fail with the right
//!   passphrase ([`crate::UnlockError::RecordTampered`]). Sequence number and carried failures
//!   are deliberately outside it: they change while the store is locked (the failure counter's
//!   sector moves), when no key is available to re-seal.
//!
//! # The binding byte (offset 5) and the chip fingerprint (6..8)
//!
//! These were the first bytes of three reserved zero bytes, and a record of the first firmware
//! has them zero: it reads as "not bound", with the same associated data as before, so it still
//! opens; that is why the format version stays 1. A bound record (byte 5 = 1, written on a board
//! with a chip key, see [`crate::chip_binding`]) appends `binding | fingerprint` to the associated
//! data, and its wrapping key and passphrase check depend on the chip key: flipping the byte
//! either way makes the unlock fail (another key, other associated data). Firmware from before
//! this byte refuses a bound record as corrupt (a non-zero reserved byte): it sees a
//! factory-fresh device, so do not go back to it once a record is bound.

use crate::kdf::{MAX_ITERATIONS, PASSPHRASE_CHECK_LENGTH, SALT_LENGTH};
use crate::wrap::{NONCE_LENGTH, TAG_LENGTH};
use sha2::{Digest, Sha256};

/// The record's magic bytes.
pub const MAGIC: [u8; 4] = *b"HMXK";
/// The record format version (bound into the associated data).
pub const FORMAT_VERSION: u8 = 1;
/// Length of an encoded record.
pub const RECORD_LENGTH: usize = 188;
/// Bytes reserved at the start of a sector for the record; the attempt log follows.
pub const RECORD_AREA_LENGTH: usize = 256;
/// Length of the associated data of the wrap of a record that is not bound.
pub const ASSOCIATED_DATA_LENGTH: usize = 4 + 1 + 4 + SALT_LENGTH + 32;
/// Length of the associated data of a bound record (`binding | fingerprint` appended).
pub const BOUND_ASSOCIATED_DATA_LENGTH: usize = ASSOCIATED_DATA_LENGTH + 1 + CHIP_FINGERPRINT_LENGTH;
/// Length of the chip fingerprint in a bound record.
pub const CHIP_FINGERPRINT_LENGTH: usize = 2;
/// Byte 5 of a record that is not bound.
pub const BINDING_NOT_BOUND: u8 = 0;
/// Byte 5 of a record bound to the chip key.
pub const BINDING_CHIP: u8 = 1;
/// Length of an admin public key (ed25519).
pub const ADMIN_PUBLIC_KEY_LENGTH: usize = 32;

const BINDING_OFFSET: usize = 5;
const FINGERPRINT_OFFSET: usize = 6;
const SEQUENCE_OFFSET: usize = 8;
const ITERATIONS_OFFSET: usize = 12;
const CARRIED_FAILURES_OFFSET: usize = 16;
const SALT_OFFSET: usize = 20;
const NONCE_OFFSET: usize = SALT_OFFSET + SALT_LENGTH;
const ADMIN_KEY_OFFSET: usize = NONCE_OFFSET + NONCE_LENGTH;
const WRAPPED_KEY_OFFSET: usize = ADMIN_KEY_OFFSET + ADMIN_PUBLIC_KEY_LENGTH;
const TAG_OFFSET: usize = WRAPPED_KEY_OFFSET + 32;
const CHECK_OFFSET: usize = TAG_OFFSET + TAG_LENGTH;
const HASH_OFFSET: usize = CHECK_OFFSET + PASSPHRASE_CHECK_LENGTH;
const _: () = assert!(HASH_OFFSET + 32 == RECORD_LENGTH);
const _: () = assert!(RECORD_LENGTH <= RECORD_AREA_LENGTH);

/// Whether a record's wrapping key depends on the chip key as well as the passphrase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding {
    /// Wrapped under the passphrase alone (a board without a chip key, or a record from
    /// before the binding).
    NotBound,
    /// Wrapped under the passphrase and the chip key; the fingerprint (two bytes of an HMAC
    /// under the chip key) tells "another chip" apart from "wrong passphrase".
    Chip {
        /// See [`crate::chip_binding::chip_fingerprint`].
        fingerprint: [u8; CHIP_FINGERPRINT_LENGTH],
    },
}

/// One key record as stored in a slot sector (no secret in it: the data key is wrapped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    /// Whether the wrapping key depends on the chip key (byte 5, and the fingerprint).
    pub binding: Binding,
    /// Grows with every rewrite; the valid record with the highest number wins.
    pub sequence: u32,
    /// PBKDF2 iterations used for this record's key-encryption key.
    pub iterations: u32,
    /// Failed attempts since the last success that happened before this sector was written.
    pub carried_failures: u32,
    /// The per-device random salt.
    pub salt: [u8; SALT_LENGTH],
    /// The random nonce of the wrap.
    pub nonce: [u8; NONCE_LENGTH],
    /// The enrolled admin public key (authenticated through the associated data).
    pub admin_public_key: [u8; ADMIN_PUBLIC_KEY_LENGTH],
    /// The data key encrypted with the key-encryption key.
    pub wrapped_data_key: [u8; 32],
    /// The Poly1305 tag of the wrap.
    pub tag: [u8; TAG_LENGTH],
    /// Split from the passphrase's PBKDF2 output (see [`crate::kdf`]).
    pub passphrase_check: [u8; PASSPHRASE_CHECK_LENGTH],
}

impl KeyRecord {
    /// The record's bytes, integrity hash included.
    pub fn encode(&self) -> [u8; RECORD_LENGTH] {
        let mut bytes = [0u8; RECORD_LENGTH];
        bytes[..4].copy_from_slice(&MAGIC);
        bytes[4] = FORMAT_VERSION;
        if let Binding::Chip { fingerprint } = self.binding {
            bytes[BINDING_OFFSET] = BINDING_CHIP;
            bytes[FINGERPRINT_OFFSET..SEQUENCE_OFFSET].copy_from_slice(&fingerprint);
        }
        bytes[SEQUENCE_OFFSET..SEQUENCE_OFFSET + 4].copy_from_slice(&self.sequence.to_le_bytes());
        bytes[ITERATIONS_OFFSET..ITERATIONS_OFFSET + 4]
            .copy_from_slice(&self.iterations.to_le_bytes());
        bytes[CARRIED_FAILURES_OFFSET..CARRIED_FAILURES_OFFSET + 4]
            .copy_from_slice(&self.carried_failures.to_le_bytes());
        bytes[SALT_OFFSET..NONCE_OFFSET].copy_from_slice(&self.salt);
        bytes[NONCE_OFFSET..ADMIN_KEY_OFFSET].copy_from_slice(&self.nonce);
        bytes[ADMIN_KEY_OFFSET..WRAPPED_KEY_OFFSET].copy_from_slice(&self.admin_public_key);
        bytes[WRAPPED_KEY_OFFSET..TAG_OFFSET].copy_from_slice(&self.wrapped_data_key);
        bytes[TAG_OFFSET..CHECK_OFFSET].copy_from_slice(&self.tag);
        bytes[CHECK_OFFSET..HASH_OFFSET].copy_from_slice(&self.passphrase_check);
        let hash = Sha256::digest(&bytes[..HASH_OFFSET]);
        bytes[HASH_OFFSET..].copy_from_slice(&hash);
        bytes
    }

    /// Parses untrusted bytes: `None` unless magic, version, binding byte (0 with a zero
    /// fingerprint, or 1), iteration bounds and the integrity hash all check out. Never panics.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let bytes: &[u8; RECORD_LENGTH] = bytes.get(..RECORD_LENGTH)?.try_into().ok()?;
        if bytes[..4] != MAGIC || bytes[4] != FORMAT_VERSION {
            return None;
        }
        let fingerprint = [bytes[FINGERPRINT_OFFSET], bytes[FINGERPRINT_OFFSET + 1]];
        let binding = match bytes[BINDING_OFFSET] {
            BINDING_NOT_BOUND if fingerprint == [0, 0] => Binding::NotBound,
            BINDING_CHIP => Binding::Chip { fingerprint },
            _ => return None,
        };
        let hash = Sha256::digest(&bytes[..HASH_OFFSET]);
        if hash.as_slice() != &bytes[HASH_OFFSET..] {
            return None;
        }
        let word = |offset: usize| {
            u32::from_le_bytes([bytes[offset], bytes[offset + 1], bytes[offset + 2], bytes[offset + 3]])
        };
        let iterations = word(ITERATIONS_OFFSET);
        if iterations == 0 || iterations > MAX_ITERATIONS {
            return None;
        }
        let mut record = Self {
            binding,
            sequence: word(SEQUENCE_OFFSET),
            iterations,
            carried_failures: word(CARRIED_FAILURES_OFFSET),
            salt: [0; SALT_LENGTH],
            nonce: [0; NONCE_LENGTH],
            admin_public_key: [0; ADMIN_PUBLIC_KEY_LENGTH],
            wrapped_data_key: [0; 32],
            tag: [0; TAG_LENGTH],
            passphrase_check: [0; PASSPHRASE_CHECK_LENGTH],
        };
        record.salt.copy_from_slice(&bytes[SALT_OFFSET..NONCE_OFFSET]);
        record.nonce.copy_from_slice(&bytes[NONCE_OFFSET..ADMIN_KEY_OFFSET]);
        record.admin_public_key.copy_from_slice(&bytes[ADMIN_KEY_OFFSET..WRAPPED_KEY_OFFSET]);
        record.wrapped_data_key.copy_from_slice(&bytes[WRAPPED_KEY_OFFSET..TAG_OFFSET]);
        record.tag.copy_from_slice(&bytes[TAG_OFFSET..CHECK_OFFSET]);
        record.passphrase_check.copy_from_slice(&bytes[CHECK_OFFSET..HASH_OFFSET]);
        Some(record)
    }

    /// The wrap's associated data: `magic | version | iterations | salt | admin public key`,
    /// and for a bound record `| binding | fingerprint`.
    pub fn associated_data(&self) -> AssociatedData {
        associated_data(self.iterations, &self.salt, &self.admin_public_key, self.binding)
    }
}

/// The associated data of a wrap (57 bytes, or 60 for a bound record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AssociatedData {
    bytes: [u8; BOUND_ASSOCIATED_DATA_LENGTH],
    length: usize,
}

impl AssociatedData {
    /// The bytes the AEAD authenticates.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.length]
    }
}

/// The associated data for a wrap with these parameters (see [`KeyRecord::associated_data`]).
pub fn associated_data(
    iterations: u32,
    salt: &[u8; SALT_LENGTH],
    admin_public_key: &[u8; ADMIN_PUBLIC_KEY_LENGTH],
    binding: Binding,
) -> AssociatedData {
    let mut data = [0u8; BOUND_ASSOCIATED_DATA_LENGTH];
    data[..4].copy_from_slice(&MAGIC);
    data[4] = FORMAT_VERSION;
    data[5..9].copy_from_slice(&iterations.to_le_bytes());
    data[9..9 + SALT_LENGTH].copy_from_slice(salt);
    data[9 + SALT_LENGTH..ASSOCIATED_DATA_LENGTH].copy_from_slice(admin_public_key);
    let length = match binding {
        Binding::NotBound => ASSOCIATED_DATA_LENGTH,
        Binding::Chip { fingerprint } => {
            data[ASSOCIATED_DATA_LENGTH] = BINDING_CHIP;
            data[ASSOCIATED_DATA_LENGTH + 1..].copy_from_slice(&fingerprint);
            BOUND_ASSOCIATED_DATA_LENGTH
        }
    };
    AssociatedData { bytes: data, length }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> KeyRecord {
        KeyRecord {
            binding: Binding::NotBound,
            sequence: 7,
            iterations: 1000,
            carried_failures: 2,
            salt: [1; 16],
            nonce: [2; 24],
            admin_public_key: [3; 32],
            wrapped_data_key: [4; 32],
            tag: [5; 16],
            passphrase_check: [6; 16],
        }
    }

    #[test]
    fn round_trip() {
        let record = sample();
        assert_eq!(KeyRecord::decode(&record.encode()), Some(record));
    }

    #[test]
    fn every_bit_flip_is_rejected() {
        let bytes = sample().encode();
        for bit in 0..RECORD_LENGTH * 8 {
            let mut damaged = bytes;
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(KeyRecord::decode(&damaged), None, "bit {bit}");
        }
    }

    #[test]
    fn bound_round_trip_and_binding_byte_checked() {
        let mut record = sample();
        record.binding = Binding::Chip { fingerprint: [0xC1, 0x9E] };
        let bytes = record.encode();
        assert_eq!(&bytes[5..8], &[1, 0xC1, 0x9E]);
        assert_eq!(KeyRecord::decode(&bytes), Some(record.clone()));
        // A record of the first firmware: bytes 5..8 zero, read as not bound.
        assert_eq!(&sample().encode()[5..8], &[0, 0, 0]);
        // Binding byte values other than 0 and 1, and a fingerprint on an unbound record, are
        // corrupt (the hash is recomputed, as an attacker would).
        for (offset, value) in [(5, 2u8), (5, 0xFF), (6, 1), (7, 0x80)] {
            let mut forged = sample().encode();
            forged[offset] = value;
            let hash = Sha256::digest(&forged[..HASH_OFFSET]);
            forged[HASH_OFFSET..].copy_from_slice(&hash);
            assert_eq!(KeyRecord::decode(&forged), None, "byte {offset} = {value}");
        }
    }

    #[test]
    fn erased_and_short_input_rejected() {
        assert_eq!(KeyRecord::decode(&[0xFF; RECORD_LENGTH]), None);
        assert_eq!(KeyRecord::decode(&[0x00; RECORD_LENGTH]), None);
        assert_eq!(KeyRecord::decode(&[0xFF; 10]), None);
    }

    #[test]
    fn iteration_bounds_enforced_even_with_valid_hash() {
        let mut record = sample();
        record.iterations = MAX_ITERATIONS + 1;
        assert_eq!(KeyRecord::decode(&record.encode()), None);
        record.iterations = 0;
        assert_eq!(KeyRecord::decode(&record.encode()), None);
    }

    #[test]
    fn associated_data_binds_admin_key_and_parameters() {
        let record = sample();
        let mut other = sample();
        other.admin_public_key[31] ^= 1;
        assert_ne!(record.associated_data(), other.associated_data());
        let mut other = sample();
        other.iterations += 1;
        assert_ne!(record.associated_data(), other.associated_data());
        let mut other = sample();
        other.salt[0] ^= 1;
        assert_ne!(record.associated_data(), other.associated_data());
        let mut other = sample();
        other.sequence += 1;
        other.carried_failures += 1;
        assert_eq!(record.associated_data(), other.associated_data());
        // Not bound: exactly the associated data of the first firmware (57 bytes).
        assert_eq!(record.associated_data().as_bytes().len(), ASSOCIATED_DATA_LENGTH);
        let mut bound = sample();
        bound.binding = Binding::Chip { fingerprint: [1, 2] };
        assert_eq!(&bound.associated_data().as_bytes()[..ASSOCIATED_DATA_LENGTH], record.associated_data().as_bytes());
        assert_eq!(&bound.associated_data().as_bytes()[ASSOCIATED_DATA_LENGTH..], &[1, 1, 2]);
        let mut other_chip = bound.clone();
        other_chip.binding = Binding::Chip { fingerprint: [1, 3] };
        assert_ne!(bound.associated_data(), other_chip.associated_data());
    }
}
