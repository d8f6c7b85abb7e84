//! Binding the data key to the chip: the key that wraps the data key is made of the
//! passphrase's key **and** a secret only this chip can compute (the board's
//! [`homemx_board::ChipKey`]: on the STM32H573, AES under the SAES's DHUK), so a copy of the key
//! store's flash is useless on any other chip, even with the passphrase.
//!
//! ```text
//! chip secret S   = board.derive(CHIP_KEY_LABEL)                          (32 bytes, never stored)
//! passphrase key  = HMAC(PBKDF2(passphrase, salt), "…key-encryption key") (crate::kdf, unchanged)
//! passphrase check= HMAC(PBKDF2(passphrase, salt), "…passphrase check")[..16]
//! wrapping key    = HMAC-SHA256(S, "homemx-keystore v1 chip-bound key-encryption key" | passphrase key)
//! stored check    = HMAC-SHA256(S, "homemx-keystore v1 chip-bound passphrase check" | passphrase check)[..16]
//! fingerprint     = HMAC-SHA256(S, "homemx-keystore v1 chip fingerprint")[..2]   (record bytes 6..8)
//! ```
//!
//! Neither secret alone gives the wrapping key: HMAC is a PRF in its key (S) and, as HKDF's
//! extract step relies on, a good extractor of its message (the passphrase key). The stored
//! check depends on S too, so whoever holds a copy of the flash but not the chip cannot even
//! test passphrase guesses offline: the PBKDF2 brute force the README warns of needs the chip.
//! The fingerprint (16 bits of a PRF of a 256-bit secret: it gives nothing away) lets the
//! store say "this record belongs to another chip" instead of "wrong passphrase"; one chip in
//! 65,536 shares another's fingerprint and then hears "wrong passphrase", never more.
//!
//! # Policy (what [`crate::Keystore`] does with it)
//!
//! - On a board with a chip key every record the store writes is bound (enrolment, passphrase
//!   change, admin key rotation, moving the record when its attempt log is full keep it bound).
//!   If the chip refuses to derive, nothing is written: the store never falls back to an
//!   unbound record there.
//! - A bound record never opens without the same chip key: another chip's fingerprint gives
//!   [`crate::UnlockError::OtherChip`] (before any passphrase is tried, not counted), a board
//!   without a chip key [`crate::UnlockError::ChipKey`].
//! - A record that is **not bound** still opens on a board with a chip key, and is bound by
//!   that first successful unlock (one rewrite). Such a record was written by the firmware
//!   before the binding existed, on this device; refusing it would leave the owner a factory
//!   reset and the loss of the spool as the only way forward. Accepting it gives an attacker
//!   nothing: an unbound record that opens to the device's data key can only come from this
//!   device's own past (the rollback the README already admits), and forging one needs the
//!   data key. The price, stated plainly: a copy of the flash taken *before* that first unlock
//!   stays readable with the passphrase on any chip.
//!
//! Owns: the derivations above. Calls: the board's chip key (through the caller's `&mut C`).

use crate::kdf::PASSPHRASE_CHECK_LENGTH;
use crate::record::CHIP_FINGERPRINT_LENGTH;
use crate::secret::{KeyEncryptionKey, SecretBytes, KEY_LENGTH};
use hmac::{Hmac, Mac};
use homemx_board::{ChipKey, ChipKeyError};
use sha2::Sha256;
use zeroize::Zeroize;

/// The label the key store asks the chip key for (two different 16-byte halves: the H5
/// encrypts each half as one AES block, so equal halves would give equal output halves).
pub const CHIP_KEY_LABEL: [u8; 32] = *b"homemx keystore v1 / chip key 01";

const BOUND_KEY_LABEL: &[u8] = b"homemx-keystore v1 chip-bound key-encryption key";
const BOUND_CHECK_LABEL: &[u8] = b"homemx-keystore v1 chip-bound passphrase check";
const FINGERPRINT_LABEL: &[u8] = b"homemx-keystore v1 chip fingerprint";

/// The chip's secret for the key store, derived into the caller's holder (wiped when it
/// drops); on an error the holder is wiped.
pub(crate) fn derive_chip_secret<C: ChipKey>(chip_key: &mut C, secret: &mut SecretBytes<KEY_LENGTH>) -> Result<(), ChipKeyError> {
    let result = match chip_key.is_available() {
        true => chip_key.derive(&CHIP_KEY_LABEL, secret.expose_mut()),
        false => Err(ChipKeyError::NotAvailable),
    };
    if result.is_err() {
        secret.wipe();
    }
    result
}

/// The wrapping key of a bound record, from the chip secret and the passphrase's key.
pub(crate) fn bind_key_encryption_key(chip_secret: &SecretBytes<KEY_LENGTH>, passphrase_key: &KeyEncryptionKey, output: &mut KeyEncryptionKey) {
    keyed_hash(chip_secret.expose(), BOUND_KEY_LABEL, passphrase_key.bytes(), output.bytes_mut());
}

/// The passphrase check stored in a bound record.
pub(crate) fn bind_passphrase_check(
    chip_secret: &SecretBytes<KEY_LENGTH>,
    passphrase_check: &[u8; PASSPHRASE_CHECK_LENGTH],
) -> [u8; PASSPHRASE_CHECK_LENGTH] {
    let mut digest = SecretBytes::<KEY_LENGTH>::zeroed();
    keyed_hash(chip_secret.expose(), BOUND_CHECK_LABEL, passphrase_check, digest.expose_mut());
    let mut check = [0u8; PASSPHRASE_CHECK_LENGTH];
    check.copy_from_slice(&digest.expose()[..PASSPHRASE_CHECK_LENGTH]);
    check
}

/// The chip fingerprint stored in a bound record (public: it is no secret, and the attacker tests
/// forge records with it).
pub fn chip_fingerprint(chip_secret: &SecretBytes<KEY_LENGTH>) -> [u8; CHIP_FINGERPRINT_LENGTH] {
    let mut digest = SecretBytes::<KEY_LENGTH>::zeroed();
    keyed_hash(chip_secret.expose(), FINGERPRINT_LABEL, &[], digest.expose_mut());
    let mut fingerprint = [0u8; CHIP_FINGERPRINT_LENGTH];
    fingerprint.copy_from_slice(&digest.expose()[..CHIP_FINGERPRINT_LENGTH]);
    fingerprint
}

/// `output = HMAC-SHA256(key, label | message)`; the MAC's output array is wiped after the copy.
fn keyed_hash(key: &[u8; KEY_LENGTH], label: &[u8], message: &[u8], output: &mut [u8; KEY_LENGTH]) {
    // HMAC accepts keys of any length: this never fails.
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(key) else {
        unreachable!("HMAC takes keys of any length")
    };
    mac.update(label);
    mac.update(message);
    let mut digest = mac.finalize().into_bytes();
    output.copy_from_slice(&digest);
    digest.as_mut_slice().zeroize();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::hex;

    fn chip_secret() -> SecretBytes<KEY_LENGTH> {
        let mut secret = SecretBytes::zeroed();
        secret.expose_mut().copy_from_slice(&core::array::from_fn::<u8, 32, _>(|index| 0x40 + index as u8));
        secret
    }

    /// Against Python's hmac/hashlib: chip = bytes(range(0x40, 0x60)), key = bytes(range(0x80,
    /// 0xa0)), check = bytes(range(16)); hmac.new(chip, label + key, sha256) and so on.
    #[test]
    fn derivations_match_an_independent_implementation() {
        let chip = chip_secret();
        let passphrase_key = KeyEncryptionKey::from_bytes(core::array::from_fn(|index| 0x80 + index as u8));
        let mut bound = KeyEncryptionKey::zeroed();
        bind_key_encryption_key(&chip, &passphrase_key, &mut bound);
        assert_eq!(bound.bytes().to_vec(), hex("798f14f69e56fa1023e150e3b95eb42b4d336f03264a36daecc70091475f10db"));
        let check: [u8; 16] = core::array::from_fn(|index| index as u8);
        assert_eq!(bind_passphrase_check(&chip, &check).to_vec(), hex("444b2eb40436298b3914de7c04ab0325"));
        assert_eq!(chip_fingerprint(&chip).to_vec(), hex("2abf"));
    }

    #[test]
    fn label_halves_differ() {
        assert_ne!(CHIP_KEY_LABEL[..16], CHIP_KEY_LABEL[16..]);
    }

    #[test]
    fn no_chip_key_is_refused_and_leaves_nothing() {
        let mut secret = chip_secret();
        assert_eq!(derive_chip_secret(&mut homemx_board::NoChipKey, &mut secret), Err(ChipKeyError::NotAvailable));
        assert_eq!(secret.expose(), &[0u8; 32]);
    }
}
