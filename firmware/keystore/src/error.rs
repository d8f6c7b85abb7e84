//! Errors of the key store: why an unlock was refused, and why any other operation failed.

use embedded_storage_async::nor_flash::NorFlashErrorKind;
pub use homemx_board::ChipKeyError;

/// Why [`crate::Keystore::unlock`] (or the old-passphrase check of
/// [`crate::Keystore::change_passphrase`]) refused.
///
/// Carries no secret: a wrong passphrase and a tampered record are told apart only after the
/// passphrase was proven right (see [`crate::kdf`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnlockError {
    /// The device is factory-fresh: there is nothing to unlock (enrol with `initialise`).
    NotProvisioned,
    /// The store is already unlocked (`unlock`), or not unlocked (`change_passphrase`).
    WrongState,
    /// Too many failed attempts: try again after this many seconds. The attempt was not made
    /// and not counted.
    TooSoon {
        /// Seconds until the next attempt is accepted.
        wait_seconds: u64,
    },
    /// The passphrase is wrong (counted as a failed attempt).
    WrongPassphrase,
    /// The passphrase is right but the record was changed on flash (admin key, KDF parameters or
    /// wrapped key); nothing is released (counted as a failed attempt).
    RecordTampered,
    /// The record is bound to another chip's key (its chip fingerprint is not this chip's):
    /// the flash was copied from another device, or moved to another board. Nothing on it can
    /// be opened here, with any passphrase. Not counted (no passphrase was tried).
    OtherChip,
    /// The record is bound to a chip key and this board could not derive one: it has none
    /// (`NotAvailable`), or the hardware refused (`Hardware`; on the H5 after a tamper event,
    /// until the next reset). Not counted.
    ChipKey(ChipKeyError),
    /// The flash failed; the store reloads its state from flash before the next operation.
    Flash(NorFlashErrorKind),
}

/// Why a key store operation other than `unlock` failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeystoreError {
    /// The region is not a run of at least two whole erase sectors, or the flash geometry is
    /// unsupported (write size above 32 bytes, read size not dividing 256, sectors below 512 bytes).
    InvalidRegion,
    /// The configured iteration count is outside `1..=MAX_ITERATIONS`.
    InvalidIterations,
    /// `initialise` needs a factory-fresh device (`factory_reset` first).
    NotFactoryFresh,
    /// The device is factory-fresh: `initialise` first.
    NotProvisioned,
    /// The operation needs the store unlocked.
    Locked,
    /// An empty passphrase is refused.
    EmptyPassphrase,
    /// The old passphrase of `change_passphrase` was refused.
    Unlock(UnlockError),
    /// The record's sequence number is exhausted (only reachable with a forged record):
    /// `factory_reset`.
    SequenceExhausted,
    /// A record read back after programming did not match what was written.
    VerifyFailed,
    /// The board has a chip key but could not derive it, so no record can be written (the store
    /// never falls back to an unbound record on such a board).
    ChipKey(ChipKeyError),
    /// The flash failed; the store reloads its state from flash before the next operation.
    Flash(NorFlashErrorKind),
}

impl From<UnlockError> for KeystoreError {
    fn from(error: UnlockError) -> Self {
        match error {
            UnlockError::Flash(kind) => Self::Flash(kind),
            other => Self::Unlock(other),
        }
    }
}
