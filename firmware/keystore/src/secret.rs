//! Secret holders: the released [`DataKey`], the key-encryption key kept while unlocked, and a
//! best-effort stack scrub after key derivation.
//!
//! Every type here wipes itself on drop (volatile writes through `zeroize`), has no `Clone`,
//! and its `Debug` shows no byte. The firmware must still drop what it built from the data key
//! (the spool's cipher wipes its own copy) and relies on the reset-time RAM wipe for the rest.

use core::fmt;
use zeroize::Zeroize;

/// Length of the data key and of the key-encryption key.
pub const KEY_LENGTH: usize = 32;

/// The 32-byte data key that encrypts everything on flash (give it to the spool).
///
/// Released only by [`crate::Keystore::unlock`] and [`crate::Keystore::initialise`]. Wiped when
/// dropped; not `Clone`; `Debug` prints `DataKey(..)`.
pub struct DataKey {
    bytes: [u8; KEY_LENGTH],
}

impl DataKey {
    /// A key from raw bytes (unit tests).
    #[cfg(test)]
    pub(crate) fn from_bytes(bytes: [u8; KEY_LENGTH]) -> Self {
        Self { bytes }
    }

    /// A zeroed key to be filled in place (crate-internal).
    pub(crate) fn zeroed() -> Self {
        Self { bytes: [0; KEY_LENGTH] }
    }

    /// Mutable access for in-place generation and decryption (crate-internal).
    pub(crate) fn bytes_mut(&mut self) -> &mut [u8; KEY_LENGTH] {
        &mut self.bytes
    }

    /// The key bytes, to hand to the spool (`Spool::new(…, data_key.expose_secret(), …)`).
    /// Do not copy them anywhere that is not wiped.
    pub fn expose_secret(&self) -> &[u8; KEY_LENGTH] {
        &self.bytes
    }
}

impl Drop for DataKey {
    fn drop(&mut self) {
        self.bytes.zeroize();
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("DataKey(..)")
    }
}

/// The key-encryption key derived from the passphrase, kept while unlocked so that
/// `rotate_admin_key` can re-wrap without asking for the passphrase again. Wiped on drop.
pub(crate) struct KeyEncryptionKey {
    bytes: [u8; KEY_LENGTH],
}

impl KeyEncryptionKey {
    pub(crate) fn from_bytes(bytes: [u8; KEY_LENGTH]) -> Self {
        Self { bytes }
    }

    pub(crate) fn bytes(&self) -> &[u8; KEY_LENGTH] {
        &self.bytes
    }
}

impl Drop for KeyEncryptionKey {
    fn drop(&mut self) {
        self.bytes.zeroize();
    }
}

impl fmt::Debug for KeyEncryptionKey {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("KeyEncryptionKey(..)")
    }
}

/// Bytes of stack overwritten after each key derivation (best-effort scrub of the HMAC states
/// that `pbkdf2`/`hmac` leave in their stack frames).
pub const STACK_SCRUB_LENGTH: usize = 2048;

/// Overwrites [`STACK_SCRUB_LENGTH`] bytes of stack below the caller's frame with zeros.
///
/// `pbkdf2`/`hmac`/`sha2` keep passphrase-derived HMAC states in their own stack frames and do
/// not wipe them; those frames lie below the caller's, where this function's buffer lands.
/// Best effort (the compiler decides frame layout); the reset-time RAM wipe is the backstop.
#[inline(never)]
pub(crate) fn scrub_stack() {
    let mut area = [0u8; STACK_SCRUB_LENGTH];
    area.zeroize();
    core::hint::black_box(&mut area);
}

/// Compares two byte strings in time independent of where they differ.
pub(crate) fn constant_time_equal(left: &[u8], right: &[u8]) -> bool {
    if left.len() != right.len() {
        return false;
    }
    let difference = left
        .iter()
        .zip(right)
        .fold(0u8, |accumulated, (a, b)| accumulated | (a ^ b));
    core::hint::black_box(difference) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_no_bytes() {
        let key = DataKey::from_bytes([0xAB; 32]);
        let shown = format!("{key:?}");
        assert_eq!(shown, "DataKey(..)");
        assert!(!shown.to_lowercase().contains("ab"));
    }

    #[test]
    fn constant_time_equal_works() {
        assert!(constant_time_equal(b"abc", b"abc"));
        assert!(!constant_time_equal(b"abc", b"abd"));
        assert!(!constant_time_equal(b"abc", b"ab"));
    }
}
