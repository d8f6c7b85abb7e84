#![doc = include_str!("../README.md")]
#![cfg_attr(not(test), no_std)]
#![warn(missing_docs)]
// `is_multiple_of` needs Rust 1.87; the workspace promises 1.85.
#![allow(clippy::manual_is_multiple_of)]

pub mod crypto;
pub mod envelope;
pub mod error;
pub mod key_value;
pub mod layout;
pub mod queue_policy;
pub mod reader;
pub mod recovery;
pub mod spool;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use spool::counters::CounterMark;
pub use envelope::{DeliveryState, Envelope, EnvelopeFields, RecipientIter, RecipientState, ENVELOPE_CAPACITY, ENVELOPE_FIELDS_CAPACITY, MAX_RECIPIENTS};
pub use error::SpoolError;
pub use key_value::{KeyValueStore, PageAndKeyCache, KEY_VALUE_CAPACITY};
pub use reader::MessageReader;
pub use recovery::RecoveryReport;
pub use spool::space::{SpaceReport, RESERVATION_STEP, SPARE_SECTORS};
pub use spool::{CommitReport, MessageId, MessageSummary, MessageWriter, Spool, Statistics, CHUNK_CAPACITY};

/// A source of unpredictable bytes (the board's entropy source), used for the per-sector
/// random part of the queue's nonces and the key-value store's random nonces.
pub trait RandomSource {
    /// Fills `buffer` with random bytes.
    fn fill_bytes(&mut self, buffer: &mut [u8]);
}

impl<T: RandomSource + ?Sized> RandomSource for &mut T {
    fn fill_bytes(&mut self, buffer: &mut [u8]) {
        T::fill_bytes(self, buffer)
    }
}
