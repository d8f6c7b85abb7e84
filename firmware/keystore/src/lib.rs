#![doc = include_str!("../README.md")]
#![cfg_attr(not(test), no_std)]
#![warn(missing_docs)]

pub mod attempt_log;
pub mod chip_binding;
pub mod error;
pub mod kdf;
pub mod keystore;
pub mod record;
pub mod secret;
pub mod wrap;

pub use attempt_log::{unlock_delay, FIRST_DELAY_SECONDS, FREE_ATTEMPTS, MAX_DELAY_SECONDS};
pub use error::{ChipKeyError, KeystoreError, UnlockError};
pub use homemx_board::{ChipKey, NoChipKey};
pub use homemx_spool::RandomSource;
pub use kdf::{DEFAULT_ITERATIONS, MAX_ITERATIONS};
pub use keystore::{Keystore, KeystoreConfig, KeystoreState};
pub use record::Binding;
pub use secret::{DataKey, SecretBytes};

/// Helpers shared by the unit tests' known-answer vectors.
#[cfg(test)]
pub(crate) mod test_support {
    /// Decodes a hex string of a test vector.
    pub fn hex(text: &str) -> Vec<u8> {
        (0..text.len()).step_by(2).map(|index| u8::from_str_radix(&text[index..index + 2], 16).unwrap()).collect()
    }
}
