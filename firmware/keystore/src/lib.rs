#![doc = include_str!("../README.md")]
#![cfg_attr(not(test), no_std)]
#![warn(missing_docs)]

pub mod attempt_log;
pub mod error;
pub mod kdf;
pub mod keystore;
pub mod record;
pub mod secret;
pub mod wrap;

pub use attempt_log::{unlock_delay, FIRST_DELAY_SECONDS, FREE_ATTEMPTS, MAX_DELAY_SECONDS};
pub use error::{KeystoreError, UnlockError};
pub use homemx_spool::RandomSource;
pub use kdf::{DEFAULT_ITERATIONS, MAX_ITERATIONS};
pub use keystore::{Keystore, KeystoreConfig, KeystoreState};
pub use secret::DataKey;
