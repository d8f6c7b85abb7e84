//! The error type of the spool's operations.

/// Why a spool operation failed. `E` is the flash driver's error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpoolError<E> {
    /// The flash driver failed (the spool should be mounted again before further use).
    Flash(E),
    /// Not enough erased space (the SMTP server answers 452 4.3.1).
    NoSpace,
    /// The table of messages held in RAM is full.
    MessageTableFull,
    /// No queued message has this id.
    UnknownMessage,
    /// A record failed authentication or is missing: the data is corrupt or was tampered with.
    Corrupt,
    /// The encoded envelope is longer than [`crate::ENVELOPE_CAPACITY`] (4 KiB).
    EnvelopeTooLarge,
    /// More recipients than [`crate::MAX_RECIPIENTS`], or a recipient index out of range.
    TooManyRecipients,
    /// The region is not made of whole erase sectors, lies beyond the flash, or is too small
    /// or too large: the queue needs at least three sectors and enough of them to take one
    /// message with the largest envelope (four of 4 KiB), and at most `SECTORS`; the
    /// key-value store at least two.
    InvalidRegion,
    /// The flash's geometry does not fit the layout: erase sectors below
    /// [`crate::layout::MINIMUM_SECTOR_SIZE`] (2 KiB), a write size above 32 bytes, or read,
    /// write and erase sizes that do not divide one another.
    UnsupportedGeometry,
    /// A caller's buffer is smaller than needed.
    BufferTooSmall,
    /// The writer was already committed or aborted, or belongs to another spool.
    WriterFinished,
    /// The message would exceed the 4 GiB length limit of the format.
    MessageTooLarge,
    /// A key-value store operation failed inside sequential-storage.
    Storage,
    /// The counters reached the limits of the persisted [`crate::CounterMark`]: persist
    /// [`crate::Spool::counter_mark_due`], confirm it, and try again.
    CountersExhausted,
    /// The flash was rolled back (an erased sector is back, or the flash is ahead of the
    /// persisted [`crate::CounterMark`]): tampering; the spool must not be used.
    RolledBack,
}

impl<E> From<E> for SpoolError<E> {
    fn from(error: E) -> Self {
        Self::Flash(error)
    }
}
