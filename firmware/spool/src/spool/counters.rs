//! The persisted high-water mark of the queue's counters: sector sequences and message ids
//! that never repeat, and a rolled-back flash image detected as tampering.
//!
//! Mount recomputes the next sector sequence and message id from the sectors on flash, so
//! after the newest sectors were erased (a drained queue reclaims them) they would be handed
//! out again: a message id the backup-MX bookkeeping still remembers could name another
//! message. A [`CounterMark`], kept by the caller in the encrypted key-value store, closes
//! that: it says how far the counters may have gone (limits *reserved ahead*) and which old
//! sectors are gone for good (the *floor*).
//!
//! - **Reserved ahead.** The spool never uses a sequence or id at or above the limits of the
//!   mark the caller confirmed persisted ([`Spool::counter_mark_persisted`]); it asks for a
//!   new mark ([`Spool::counter_mark_due`]) while plenty is left (a whole region's worth of
//!   sequences, a whole table's worth of ids), so the caller persists it when idle (after a
//!   delivery), never on the way to `250`. Only if that falls behind does a begin or a sector
//!   opening fail with [`SpoolError::CountersExhausted`] (persist, then retry). After a reset
//!   the counters restart at the limits, above anything used before.
//! - **Floor.** Every sector whose sequence is below the floor has been erased. The floor is
//!   computed from the sectors in use (or whose erase failed) *after* erasing, so a power cut
//!   can only leave it lower than it could be, never too high.
//! - **Rollback.** [`Spool::guard_counters`] (after every mount) refuses with
//!   [`SpoolError::RolledBack`] when a sector below the floor is back (an old flash image, or
//!   old sectors, were written back), or when the flash holds a sequence or a message id at
//!   or above the mark's limits (the mark is older than the spool: the key-value store was
//!   rolled back). Neither happens without someone rewriting the flash. Rolling back the
//!   spool *and* the key-value store together to one consistent older image stays
//!   undetectable without a monotonic counter off the flash.
//!
//! Encoding (12 bytes, little-endian): sequence limit u32 | message limit u32 | floor u32.

use crate::error::SpoolError;
use crate::spool::{SectorState, Spool};
use crate::RandomSource;
use embedded_storage_async::nor_flash::NorFlash;

/// How far the spool's counters may have gone, and which sectors are gone for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CounterMark {
    /// Every sector sequence used so far is below this.
    pub sequence_limit: u32,
    /// Every message id used so far is below this.
    pub message_limit: u32,
    /// Every sector with a lower sequence has been erased.
    pub sequence_floor: u32,
}

impl CounterMark {
    /// Bytes of [`CounterMark::encode`].
    pub const ENCODED_SIZE: usize = 12;

    /// The stored form.
    pub fn encode(&self) -> [u8; Self::ENCODED_SIZE] {
        let mut bytes = [0u8; Self::ENCODED_SIZE];
        bytes[..4].copy_from_slice(&self.sequence_limit.to_le_bytes());
        bytes[4..8].copy_from_slice(&self.message_limit.to_le_bytes());
        bytes[8..].copy_from_slice(&self.sequence_floor.to_le_bytes());
        bytes
    }

    /// Decodes the stored form; `None` if the length is wrong.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != Self::ENCODED_SIZE {
            return None;
        }
        let word = |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
        Some(Self { sequence_limit: word(0), message_limit: word(4), sequence_floor: word(8) })
    }
}

impl<F: NorFlash, R: RandomSource, const SECTORS: usize, const MESSAGES: usize>
    Spool<F, R, SECTORS, MESSAGES>
{
    /// After [`Spool::mount`]: checks the flash against the persisted `mark` (`None` the
    /// first time: the counters as found are taken), moves the counters up to its limits and
    /// from then on never goes beyond what the caller confirmed persisted. Persist
    /// [`Spool::counter_mark_due`] right after. [`SpoolError::RolledBack`] if the flash was
    /// rolled back (see the module doc): the spool must not be used then.
    pub fn guard_counters(&mut self, mark: Option<CounterMark>) -> Result<(), SpoolError<F::Error>> {
        let Some(mark) = mark else {
            self.counter_guard = Some(CounterMark {
                sequence_limit: self.next_sequence,
                message_limit: self.next_message,
                sequence_floor: self.sequence_floor(),
            });
            return Ok(());
        };
        let sequences = (0..self.sector_count)
            .filter(|&index| self.states[index] == SectorState::InUse)
            .map(|index| self.sequences[index]);
        let mut rolled_back = false;
        for sequence in sequences {
            rolled_back |= sequence < mark.sequence_floor || sequence >= mark.sequence_limit;
        }
        rolled_back |= self.next_sequence > mark.sequence_limit || self.next_message > mark.message_limit;
        if rolled_back {
            self.counter_guard = None;
            self.mounted = false;
            return Err(SpoolError::RolledBack);
        }
        self.next_sequence = self.next_sequence.max(mark.sequence_limit);
        self.next_message = self.next_message.max(mark.message_limit);
        self.counter_guard = Some(mark);
        Ok(())
    }

    /// The mark to persist now, if the confirmed one should move (less than a region's worth
    /// of sequences or a table's worth of ids left, or the floor rose); `None` when nothing
    /// is due or the counters are not guarded. Store it, then call
    /// [`Spool::counter_mark_persisted`].
    pub fn counter_mark_due(&self) -> Option<CounterMark> {
        let guard = self.counter_guard?;
        let sectors = self.sector_count as u32;
        let messages = MESSAGES as u32;
        let ahead = |next: u32, limit: u32, room: u32| {
            if limit.saturating_sub(next) < room {
                next.saturating_add(2 * room)
            } else {
                limit
            }
        };
        let due = CounterMark {
            sequence_limit: ahead(self.next_sequence, guard.sequence_limit, sectors),
            message_limit: ahead(self.next_message, guard.message_limit, messages),
            sequence_floor: self.sequence_floor().max(guard.sequence_floor),
        };
        (due != guard).then_some(due)
    }

    /// The sequence the next opened sector gets (for monitoring and tests).
    pub fn next_sequence(&self) -> u32 {
        self.next_sequence
    }

    /// The id the next message gets (for monitoring and tests).
    pub fn next_message_id(&self) -> crate::MessageId {
        crate::MessageId(self.next_message)
    }

    /// Confirms that `mark` (from [`Spool::counter_mark_due`]) is persisted.
    pub fn counter_mark_persisted(&mut self, mark: CounterMark) {
        if self.counter_guard.is_some() {
            self.counter_guard = Some(mark);
        }
    }

    /// The lowest sequence still on flash: of a sector in use or one whose erase did not
    /// complete (its old content may still be there); the next sequence if there is none.
    fn sequence_floor(&self) -> u32 {
        (0..self.sector_count)
            .filter(|&index| matches!(self.states[index], SectorState::InUse | SectorState::Garbage))
            .map(|index| self.sequences[index])
            .filter(|&sequence| sequence != crate::layout::NO_SEQUENCE)
            .min()
            .unwrap_or(self.next_sequence)
    }

    /// Whether a new sector sequence may be used ([`SpoolError::CountersExhausted`] if not).
    pub(crate) fn sequence_available(&self) -> Result<(), SpoolError<F::Error>> {
        match self.counter_guard {
            Some(guard) if self.next_sequence >= guard.sequence_limit => Err(SpoolError::CountersExhausted),
            _ => Ok(()),
        }
    }

    /// Whether a new message id may be used ([`SpoolError::CountersExhausted`] if not).
    pub(crate) fn message_id_available(&self) -> Result<(), SpoolError<F::Error>> {
        match self.counter_guard {
            Some(guard) if self.next_message >= guard.message_limit => Err(SpoolError::CountersExhausted),
            _ => Ok(()),
        }
    }
}
