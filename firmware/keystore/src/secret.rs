//! Secret holders: [`SecretBytes`], the one wiped-on-drop buffer the firmware keeps every
//! secret in (a password read from the vault, a receive buffer that held a passphrase), and
//! on it the [`DataKey`] and the key-encryption key the key store keeps while unlocked; plus a
//! best-effort stack scrub after key derivation.
//!
//! Every type here wipes itself on drop (volatile writes through `zeroize`), so also on every
//! early return and when a future holding one is dropped; none is `Clone` or `Copy`, and its
//! `Debug` shows no byte. Keep each secret in one place and lend it out by reference: moving
//! one copies its bytes and leaves the old ones behind, unwiped. The key store keeps the keys
//! in place and hands out `&DataKey`; the reset-time RAM wipe is the backstop.

use core::fmt;
use zeroize::Zeroize;

/// Length of the data key and of the key-encryption key.
pub const KEY_LENGTH: usize = 32;

/// `N` secret bytes, wiped when dropped (volatile writes) or by [`SecretBytes::wipe`].
///
/// Fill it in place (`expose_mut`), lend it out (`expose`), never move it once filled.
pub struct SecretBytes<const N: usize> {
    bytes: [u8; N],
}

impl<const N: usize> SecretBytes<N> {
    /// All zeros, to be filled in place.
    pub const fn zeroed() -> Self {
        Self { bytes: [0; N] }
    }

    /// The secret, for the one place that uses it. Do not copy it anywhere that is not wiped.
    pub fn expose(&self) -> &[u8; N] {
        &self.bytes
    }

    /// The secret, to fill in place (a read from the vault, a decryption).
    pub fn expose_mut(&mut self) -> &mut [u8; N] {
        &mut self.bytes
    }

    /// Zeroes the bytes now (volatile writes: the compiler cannot drop them as dead stores).
    pub fn wipe(&mut self) {
        self.bytes.zeroize();
    }
}

impl<const N: usize> Default for SecretBytes<N> {
    fn default() -> Self {
        Self::zeroed()
    }
}

impl<const N: usize> Drop for SecretBytes<N> {
    fn drop(&mut self) {
        self.wipe();
    }
}

impl<const N: usize> fmt::Debug for SecretBytes<N> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "SecretBytes<{N}>(..)")
    }
}

/// The 32-byte data key that encrypts everything on flash (give it to the spool).
///
/// Lives in the [`crate::Keystore`], which lends it out from [`crate::Keystore::unlock`] and
/// [`crate::Keystore::initialise`] and wipes it on `lock`. Not `Clone`; `Debug` prints
/// `DataKey(..)`.
pub struct DataKey {
    bytes: SecretBytes<KEY_LENGTH>,
}

impl DataKey {
    /// A key from raw bytes (unit tests).
    #[cfg(test)]
    pub(crate) fn from_bytes(bytes: [u8; KEY_LENGTH]) -> Self {
        let mut key = Self::zeroed();
        key.bytes_mut().copy_from_slice(&bytes);
        key
    }

    /// A zeroed key to be filled in place (crate-internal).
    pub(crate) const fn zeroed() -> Self {
        Self { bytes: SecretBytes::zeroed() }
    }

    /// Mutable access for in-place generation and decryption (crate-internal).
    pub(crate) fn bytes_mut(&mut self) -> &mut [u8; KEY_LENGTH] {
        self.bytes.expose_mut()
    }

    /// Zeroes the key now (crate-internal: lock, failed unwrap).
    pub(crate) fn wipe(&mut self) {
        self.bytes.wipe();
    }

    /// The key bytes, to hand to the spool (`Spool::new(…, data_key.expose_secret(), …)`).
    /// Do not copy them anywhere that is not wiped.
    pub fn expose_secret(&self) -> &[u8; KEY_LENGTH] {
        self.bytes.expose()
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("DataKey(..)")
    }
}

/// The key-encryption key derived from the passphrase, kept in the key store while unlocked
/// so that `rotate_admin_key` can re-wrap without asking for the passphrase again. Derived in
/// place; wiped on lock and on drop.
pub(crate) struct KeyEncryptionKey {
    bytes: SecretBytes<KEY_LENGTH>,
}

impl KeyEncryptionKey {
    /// A key from raw bytes (unit tests).
    #[cfg(test)]
    pub(crate) fn from_bytes(bytes: [u8; KEY_LENGTH]) -> Self {
        let mut key = Self::zeroed();
        key.bytes_mut().copy_from_slice(&bytes);
        key
    }

    pub(crate) const fn zeroed() -> Self {
        Self { bytes: SecretBytes::zeroed() }
    }

    pub(crate) fn bytes(&self) -> &[u8; KEY_LENGTH] {
        self.bytes.expose()
    }

    pub(crate) fn bytes_mut(&mut self) -> &mut [u8; KEY_LENGTH] {
        self.bytes.expose_mut()
    }

    pub(crate) fn wipe(&mut self) {
        self.bytes.wipe();
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

    /// Reads the bytes a value left behind after it was dropped in place.
    fn bytes_after_drop<T, const N: usize>(value: T) -> [u8; N] {
        assert_eq!(core::mem::size_of::<T>(), N);
        let mut slot = core::mem::MaybeUninit::new(value);
        // SAFETY: the slot holds an initialised `T`, dropped exactly once here and never used
        // as a `T` again; its N bytes stay allocated and initialised (all of `T` is `u8`s).
        unsafe {
            core::ptr::drop_in_place(slot.as_mut_ptr());
            core::ptr::read(slot.as_ptr().cast::<[u8; N]>())
        }
    }

    #[test]
    fn secret_bytes_are_zero_after_drop_and_after_wipe() {
        let mut secret = SecretBytes::<24>::zeroed();
        secret.expose_mut().copy_from_slice(b"hunter2-hunter2-hunter2!");
        assert_eq!(bytes_after_drop::<_, 24>(secret), [0u8; 24]);
        let mut secret = SecretBytes::<8>::zeroed();
        secret.expose_mut().fill(0xA5);
        secret.wipe();
        assert_eq!(secret.expose(), &[0u8; 8]);
        assert_eq!(format!("{secret:?}"), "SecretBytes<8>(..)");
    }

    #[test]
    fn keys_are_zero_after_drop() {
        assert_eq!(bytes_after_drop::<_, 32>(DataKey::from_bytes([0x5A; 32])), [0u8; 32]);
        assert_eq!(bytes_after_drop::<_, 32>(KeyEncryptionKey::from_bytes([0x3C; 32])), [0u8; 32]);
    }

    #[test]
    fn constant_time_equal_works() {
        assert!(constant_time_equal(b"abc", b"abc"));
        assert!(!constant_time_equal(b"abc", b"abd"));
        assert!(!constant_time_equal(b"abc", b"ab"));
    }
}
