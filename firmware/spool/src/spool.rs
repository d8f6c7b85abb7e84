//! The message queue: its state in RAM and the write path (begin, append, commit, abort,
//! delivery state, delete).
//!
//! The queue is a log of records (see [`crate::layout`]) written into one sector at a time,
//! the *head*. Sectors are opened in round-robin order over the region (wear spreading:
//! every free sector takes its turn) and get a growing sequence number, which orders the
//! log. Messages being received at the same time interleave their records in the log.
//!
//! RAM: the spool holds two sector tables (`u32` sequence + 1-byte state per sector), one
//! `MessageEntry` per message slot, and one record buffer; a [`MessageWriter`] holds one
//! chunk buffer. A message of any length needs no more RAM than that: data is encrypted and
//! programmed chunk by chunk as it arrives; an envelope of up to 4 KiB is encoded part by
//! part straight into the record buffer. `size_of::<Spool<..>>()` is about
//! `5 × SECTORS + 96 × MESSAGES + 1.2 KiB`, a writer about 1.1 KiB, a reader 36 bytes.


pub mod counters;
pub mod space;

use crate::crypto::{RecordCipher, SectorContext};
use crate::envelope::{DeliveryState, Envelope, RecipientState, ENVELOPE_CAPACITY, ENVELOPE_PART_CAPACITY, MAX_RECIPIENTS};
use crate::error::SpoolError;
use crate::layout::{
    envelope_extent, record_extent, sector_header_extent, RecordHeader, RecordKind, COMMIT_PAYLOAD_SIZE,
    MINIMUM_SPLIT_PAYLOAD, NO_SEQUENCE, RECORD_BUFFER_CAPACITY, RECORD_HEADER_SIZE,
    RECORD_OVERHEAD, RECORD_PAYLOAD_CAPACITY,
};
use crate::RandomSource;
use core::mem::MaybeUninit;
use core::ops::Range;
use core::ptr::addr_of_mut;
use embedded_storage_async::nor_flash::NorFlash;

/// Bytes of message data one chunk record carries (the writer's buffer size).
pub const CHUNK_CAPACITY: usize = RECORD_PAYLOAD_CAPACITY;

/// A queued message's identity (unique while any of its records is on flash).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageId(pub u32);

/// Flash work done by the spool since it was created (diff two snapshots for one operation).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Statistics {
    /// Bytes programmed.
    pub bytes_programmed: u64,
    /// Program (write) operations.
    pub program_operations: u64,
    /// Sectors erased.
    pub sectors_erased: u64,
    /// Bytes read.
    pub bytes_read: u64,
    /// Read operations.
    pub read_operations: u64,
}

impl Statistics {
    /// The work done between `earlier` and `self`.
    pub fn since(&self, earlier: &Statistics) -> Statistics {
        Statistics {
            bytes_programmed: self.bytes_programmed - earlier.bytes_programmed,
            program_operations: self.program_operations - earlier.program_operations,
            sectors_erased: self.sectors_erased - earlier.sectors_erased,
            bytes_read: self.bytes_read - earlier.bytes_read,
            read_operations: self.read_operations - earlier.read_operations,
        }
    }
}

/// What one sector of the region holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SectorState {
    /// Wholly erased, ready to be opened.
    Erased,
    /// Has an authentic header; part of the log.
    InUse,
    /// Unreadable or half-erased: must be erased before use.
    Garbage,
}

/// Where a message slot stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EntryStatus {
    /// Slot unused.
    Free,
    /// Being received (or, during mount, not yet seen committed).
    Receiving,
    /// Committed and intact.
    Queued,
    /// Committed but a record is missing or failed authentication.
    Damaged,
    /// Deleted; the slot keeps the tombstone's sector alive while the envelope's sector is.
    Deleted,
    /// Never committed (aborted, or found incomplete at mount) but its envelope record is
    /// still on flash: keeps no sector live, yet holds its slot until the envelope's sector
    /// is erased, because a mount would give that envelope a slot again (see [`crate::recovery`]).
    Abandoned,
}

/// One message slot in RAM.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MessageEntry {
    pub(crate) id: u32,
    pub(crate) status: EntryStatus,
    pub(crate) intact: bool,
    pub(crate) recipient_count: u8,
    /// Envelope records seen (at mount) or written; a committed message has all of them.
    pub(crate) envelope_parts: u8,
    /// Where envelope part 0 (the message's first record) is: its byte position in the
    /// region (sector index × sector size + offset in the sector: [`envelope_position`]) and
    /// its sector's sequence.
    pub(crate) envelope_position: u32,
    pub(crate) envelope_sequence: u32,
    /// Sequence of the sector holding the commit record (the end of the message's span).
    pub(crate) last_sequence: u32,
    /// Sequence of the sector holding the newest state record, or the tombstone.
    pub(crate) marker_sequence: u32,
    pub(crate) length: u32,
    pub(crate) chunk_count: u32,
    /// Flash bytes still reserved for a message being received.
    pub(crate) reserved: u32,
    /// When the message was accepted (Unix seconds, 0 = unknown), from the envelope; held in
    /// 32 bits (until 2106: [`seconds_held`]), 8 bytes less per slot.
    pub(crate) queued_at: u32,
    /// The [`DeliveryState`]'s fields, held apart ([`MessageEntry::delivery`]): as a struct
    /// it carries 4 bytes of padding into every slot.
    pub(crate) delivered: u128,
    pub(crate) failed: u128,
    /// [`DeliveryState::next_retry`] in 32 bits ([`seconds_held`]: the caller's clock counts
    /// seconds, uptime or Unix).
    pub(crate) next_retry: u32,
    pub(crate) attempts: u32,
}

/// A time in seconds as the RAM index holds it: 32 bits (136 years of uptime, Unix time until
/// 2106); a later time is held as the latest one (the queue policy takes a retry time too far
/// ahead as due). The records on flash keep all 64 bits.
pub(crate) fn seconds_held(seconds: u64) -> u32 {
    u32::try_from(seconds).unwrap_or(u32::MAX)
}

// The RAM index: 80 bytes per message slot, on the 32-bit target and on x86-64 hosts alike
// (two 128-bit delivery bitmaps, the queued-at and retry times in 32 bits; 64 bytes in format
// version 1, 88 with 64-bit times).
const _: () = assert!(core::mem::size_of::<MessageEntry>() <= 80);

/// The byte position in the region of offset `offset` in sector `sector` (sectors of
/// `sector_size` bytes), as [`MessageEntry::envelope_position`] holds it. The region's
/// addresses are `u32` (as the flash's), so every position fits.
pub(crate) const fn envelope_position(sector: u32, offset: u32, sector_size: usize) -> u32 {
    sector * sector_size as u32 + offset
}

impl MessageEntry {
    pub(crate) const EMPTY: Self = Self {
        id: 0,
        status: EntryStatus::Free,
        intact: true,
        recipient_count: 0,
        envelope_parts: 0,
        envelope_position: 0,
        envelope_sequence: NO_SEQUENCE,
        last_sequence: NO_SEQUENCE,
        marker_sequence: NO_SEQUENCE,
        length: 0,
        chunk_count: 0,
        reserved: 0,
        queued_at: 0,
        delivered: 0,
        failed: 0,
        next_retry: 0,
        attempts: 0,
    };

    /// The message's delivery state.
    pub(crate) fn delivery(&self) -> DeliveryState {
        DeliveryState { delivered: self.delivered, failed: self.failed, next_retry: u64::from(self.next_retry), attempts: self.attempts }
    }

    pub(crate) fn set_delivery(&mut self, state: DeliveryState) {
        let DeliveryState { delivered, failed, next_retry, attempts } = state;
        (self.delivered, self.failed, self.next_retry, self.attempts) = (delivered, failed, seconds_held(next_retry), attempts);
    }

    /// Sector index and offset in it of envelope part 0 (sectors of `sector_size` bytes).
    pub(crate) fn envelope_at(&self, sector_size: usize) -> (usize, u32) {
        let sector_size = sector_size as u32;
        ((self.envelope_position / sector_size) as usize, self.envelope_position % sector_size)
    }

    pub(crate) fn is_committed(&self) -> bool {
        matches!(self.status, EntryStatus::Queued | EntryStatus::Damaged)
    }
}

/// The open sector records are appended to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Head {
    pub(crate) context: SectorContext,
    pub(crate) offset: u32,
}

/// Where a record went.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Placement {
    pub(crate) taken: usize,
    pub(crate) sector: u32,
    pub(crate) sequence: u32,
    pub(crate) offset: u32,
}

/// A queued message as listed from RAM (no flash access).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageSummary {
    /// The message.
    pub id: MessageId,
    /// Bytes of message data.
    pub length: u32,
    /// Number of recipients in the envelope.
    pub recipient_count: usize,
    /// When the message was accepted (Unix seconds, from [`Envelope::queued_at`]); 0 if
    /// unknown.
    pub queued_at: u64,
    /// Per-recipient outcome, retry time and attempts.
    pub delivery: DeliveryState,
    /// A record of it is missing or failed authentication: never deliver it as good.
    pub damaged: bool,
}

/// A message being received; owned by the receiving task, fed to [`Spool::append`].
pub struct MessageWriter {
    id: u32,
    buffer: [u8; CHUNK_CAPACITY],
    filled: usize,
    next_chunk: u32,
    length: u32,
    statistics_at_begin: Statistics,
}

impl MessageWriter {
    /// The id the message will have once committed.
    pub fn id(&self) -> MessageId {
        MessageId(self.id)
    }

    /// Bytes appended so far.
    pub fn length(&self) -> u32 {
        self.length
    }
}

impl Drop for MessageWriter {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.buffer[..]);
    }
}

/// Flash work of one committed message, measured from its begin to its commit (including
/// whatever other writers did to the spool in between).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitReport {
    /// The committed message.
    pub id: MessageId,
    /// Bytes of message data.
    pub length: u32,
    /// Flash work between begin and commit.
    pub work: Statistics,
}

/// The encrypted, power-safe mail queue over a region of a NOR flash.
///
/// `SECTORS` bounds the region's sector count, `MESSAGES` the messages held at once: queued,
/// being received, deleted with their tombstone still needed, or abandoned (aborted or cut
/// off) with their envelope still on flash. Every message whose envelope record is on flash
/// holds a slot, so a mount always finds room for all of them (see [`crate::recovery`]).
pub struct Spool<F: NorFlash, R: RandomSource, const SECTORS: usize, const MESSAGES: usize> {
    pub(crate) flash: F,
    pub(crate) random: R,
    pub(crate) cipher: RecordCipher,
    pub(crate) region_start: u32,
    pub(crate) sector_count: usize,
    pub(crate) sequences: [u32; SECTORS],
    pub(crate) states: [SectorState; SECTORS],
    pub(crate) entries: [MessageEntry; MESSAGES],
    pub(crate) head: Option<Head>,
    pub(crate) next_sequence: u32,
    pub(crate) next_message: u32,
    pub(crate) allocation_cursor: usize,
    pub(crate) statistics: Statistics,
    pub(crate) buffer: [u8; RECORD_BUFFER_CAPACITY],
    pub(crate) mounted: bool,
    /// The persisted counter mark confirmed by the caller; `None`: counters not guarded.
    pub(crate) counter_guard: Option<counters::CounterMark>,
}

/// Writes `count` copies of `value` from `first` on, one element at a time.
///
/// # Safety
/// `first..first + count` must be valid for writes; what it held is overwritten, not dropped.
unsafe fn fill<T: Copy>(first: *mut T, count: usize, value: T) {
    for index in 0..count {
        // SAFETY: in bounds, by the caller's contract.
        unsafe { first.add(index).write(value) };
    }
}

pub(crate) async fn program<F: NorFlash>(
    flash: &mut F,
    statistics: &mut Statistics,
    address: u32,
    bytes: &[u8],
) -> Result<(), F::Error> {
    flash.write(address, bytes).await?;
    statistics.bytes_programmed += bytes.len() as u64;
    statistics.program_operations += 1;
    Ok(())
}

pub(crate) async fn read<F: NorFlash>(
    flash: &mut F,
    statistics: &mut Statistics,
    address: u32,
    bytes: &mut [u8],
) -> Result<(), F::Error> {
    flash.read(address, bytes).await?;
    statistics.bytes_read += bytes.len() as u64;
    statistics.read_operations += 1;
    Ok(())
}

impl<F: NorFlash, R: RandomSource, const SECTORS: usize, const MESSAGES: usize>
    Spool<F, R, SECTORS, MESSAGES>
{
    /// A spool over `region` (byte addresses of `flash`, whole erase sectors of any size from
    /// [`crate::layout::MINIMUM_SECTOR_SIZE`] on) with the 32-byte data `key`. Does no I/O:
    /// call [`Spool::mount`] before anything else. [`SpoolError::UnsupportedGeometry`] for a
    /// flash the layout does not fit, [`SpoolError::InvalidRegion`] for a region that is not
    /// whole sectors of it, has more than `SECTORS`, or too few to take one message with the
    /// largest envelope (three, or four of 4 KiB).
    pub fn new(flash: F, region: Range<u32>, key: &[u8; 32], random: R) -> Result<Self, SpoolError<F::Error>> {
        let mut place = MaybeUninit::uninit();
        Self::new_in(&mut place, flash, region, key, random)?;
        // SAFETY: `new_in` succeeded, so it initialised every field of `place`.
        Ok(unsafe { place.assume_init() })
    }

    /// [`Spool::new`], built straight into `place` (which it overwrites without dropping):
    /// field by field and its arrays element by element, so that no spool-sized value, nor
    /// one of its arrays, passes through the stack (a spool is tens of KB; built by value it
    /// took several copies of itself in the caller's frame). `place` is left uninitialised on
    /// an error.
    pub fn new_in<'a>(
        place: &'a mut MaybeUninit<Self>,
        flash: F,
        region: Range<u32>,
        key: &[u8; 32],
        random: R,
    ) -> Result<&'a mut Self, SpoolError<F::Error>> {
        if !crate::layout::geometry_is_supported::<F>() {
            return Err(SpoolError::UnsupportedGeometry);
        }
        let erase = F::ERASE_SIZE as u32;
        let valid = region.start % erase == 0
            && region.end % erase == 0
            && region.end > region.start
            && (region.end as usize) <= flash.capacity();
        let sector_count = if valid { ((region.end - region.start) / erase) as usize } else { 0 };
        if !valid || sector_count < 3 || sector_count > SECTORS || MESSAGES == 0 || !Self::region_takes_a_message(sector_count) {
            return Err(SpoolError::InvalidRegion);
        }
        let spool = place.as_mut_ptr();
        // SAFETY: every field of `*spool` is written exactly once below, through a pointer to
        // that field (arrays through pointers to their elements, all in bounds), before the
        // whole is taken as initialised; nothing is read or dropped from `place`.
        unsafe {
            addr_of_mut!((*spool).flash).write(flash);
            addr_of_mut!((*spool).random).write(random);
            addr_of_mut!((*spool).cipher).write(RecordCipher::new(key, region.start));
            addr_of_mut!((*spool).region_start).write(region.start);
            addr_of_mut!((*spool).sector_count).write(sector_count);
            fill(addr_of_mut!((*spool).sequences).cast::<u32>(), SECTORS, NO_SEQUENCE);
            fill(addr_of_mut!((*spool).states).cast::<SectorState>(), SECTORS, SectorState::Garbage);
            fill(addr_of_mut!((*spool).entries).cast::<MessageEntry>(), MESSAGES, MessageEntry::EMPTY);
            addr_of_mut!((*spool).head).write(None);
            addr_of_mut!((*spool).next_sequence).write(0);
            addr_of_mut!((*spool).next_message).write(1);
            addr_of_mut!((*spool).allocation_cursor).write(0);
            addr_of_mut!((*spool).statistics).write(Statistics::default());
            addr_of_mut!((*spool).buffer).cast::<u8>().write_bytes(0xFF, RECORD_BUFFER_CAPACITY);
            addr_of_mut!((*spool).mounted).write(false);
            addr_of_mut!((*spool).counter_guard).write(None);
            Ok(place.assume_init_mut())
        }
    }

    /// Flash work done so far.
    pub fn statistics(&self) -> Statistics {
        self.statistics
    }

    /// Gives the flash back (e.g. to simulate a reboot in tests).
    pub fn release(self) -> F {
        self.flash
    }

    pub(crate) fn sector_address(&self, index: usize) -> u32 {
        self.region_start + (index * F::ERASE_SIZE) as u32
    }

    pub(crate) fn find_entry(&self, id: u32) -> Option<usize> {
        self.entries
            .iter()
            .position(|entry| entry.status != EntryStatus::Free && entry.id == id)
    }

    fn committed_entry(&self, id: MessageId) -> Result<usize, SpoolError<F::Error>> {
        match self.find_entry(id.0) {
            Some(slot) if self.entries[slot].is_committed() => Ok(slot),
            _ => Err(SpoolError::UnknownMessage),
        }
    }

    /// Opens the next erased sector (round robin) as the head.
    async fn open_sector(&mut self) -> Result<(), SpoolError<F::Error>> {
        let count = self.sector_count;
        let index = (0..count)
            .map(|step| (self.allocation_cursor + step) % count)
            .find(|&index| self.states[index] == SectorState::Erased)
            .ok_or(SpoolError::NoSpace)?;
        if self.next_sequence >= NO_SEQUENCE - 1 {
            return Err(SpoolError::NoSpace);
        }
        self.sequence_available()?;
        let mut random = [0u8; 12];
        self.random.fill_bytes(&mut random);
        let context = SectorContext {
            index: index as u32,
            sequence: self.next_sequence,
            random,
        };
        let header = self.cipher.seal_sector_header(&context);
        let extent = sector_header_extent(F::WRITE_SIZE);
        self.buffer[..extent].fill(0xFF);
        self.buffer[..header.len()].copy_from_slice(&header);
        // From here on the sector is no longer known to be erased.
        self.states[index] = SectorState::Garbage;
        self.next_sequence += 1;
        self.allocation_cursor = (index + 1) % count;
        let address = self.sector_address(index);
        program(&mut self.flash, &mut self.statistics, address, &self.buffer[..extent]).await?;
        self.states[index] = SectorState::InUse;
        self.sequences[index] = context.sequence;
        self.head = Some(Head {
            context,
            offset: extent as u32,
        });
        Ok(())
    }

    /// Appends one record to the log. Chunks may be split at a sector's end: returns how
    /// much of `payload` was written and where.
    pub(crate) async fn write_record(
        &mut self,
        kind: RecordKind,
        message: u32,
        index: u32,
        payload: &[u8],
    ) -> Result<Placement, SpoolError<F::Error>> {
        self.write_record_with(kind, message, index, payload.len(), |out| out.copy_from_slice(&payload[..out.len()]))
            .await
    }

    /// [`Spool::write_record`] for a payload of `length` bytes that `fill` writes into the
    /// record buffer (given the first `taken` bytes' room), so no copy of it is needed.
    async fn write_record_with(
        &mut self,
        kind: RecordKind,
        message: u32,
        index: u32,
        length: usize,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<Placement, SpoolError<F::Error>> {
        let erase = F::ERASE_SIZE;
        loop {
            if self.head.is_none() {
                self.open_sector().await?;
            }
            let Some(head) = self.head else { continue };
            let remaining = erase - head.offset as usize;
            let take = if record_extent(length, F::WRITE_SIZE) <= remaining {
                length
            } else if kind == RecordKind::Chunk
                && remaining >= record_extent(MINIMUM_SPLIT_PAYLOAD, F::WRITE_SIZE)
            {
                remaining - RECORD_OVERHEAD
            } else {
                self.head = None;
                continue;
            };
            let extent = record_extent(take, F::WRITE_SIZE);
            let header = RecordHeader {
                kind,
                length: take as u16,
                message,
                index,
            }
            .encode();
            self.buffer[..extent].fill(0xFF);
            self.buffer[..RECORD_HEADER_SIZE].copy_from_slice(&header);
            let payload_area = RECORD_HEADER_SIZE..RECORD_HEADER_SIZE + take;
            fill(&mut self.buffer[payload_area.clone()]);
            let tag = self.cipher.seal_record(
                &head.context,
                head.offset,
                &header,
                &mut self.buffer[payload_area.clone()],
            );
            self.buffer[payload_area.end..payload_area.end + tag.len()].copy_from_slice(&tag);
            let address = self.sector_address(head.context.index as usize) + head.offset;
            // A failed program leaves an unknown word: never write into this sector again.
            self.head = None;
            program(&mut self.flash, &mut self.statistics, address, &self.buffer[..extent]).await?;
            let next = head.offset + extent as u32;
            if (next as usize) < erase {
                self.head = Some(Head {
                    context: head.context,
                    offset: next,
                });
            }
            return Ok(Placement {
                taken: take,
                sector: head.context.index,
                sequence: head.context.sequence,
                offset: head.offset,
            });
        }
    }

    /// Takes `extent` flash bytes from the reservation of message slot `slot`; when the
    /// reservation is used up, reserves more from the free space (at least
    /// [`space::RESERVATION_STEP`] if there is that much), then makes sure the bytes
    /// can be programmed now (reclaiming dead sectors if the erased space is short).
    async fn take_space(&mut self, slot: usize, extent: usize) -> Result<(), SpoolError<F::Error>> {
        let reserved = self.entries[slot].reserved as usize;
        if reserved < extent {
            let missing = (extent - reserved) as u64;
            let free = self.free_bytes();
            if free < missing {
                return Err(SpoolError::NoSpace);
            }
            let grown = free.min(u64::from(space::RESERVATION_STEP)).max(missing);
            self.entries[slot].reserved = (reserved as u64 + grown).min(u64::from(u32::MAX)) as u32;
        }
        self.entries[slot].reserved -= extent as u32;
        self.make_room(extent as u64).await
    }

    /// Starts receiving a message: reserves flash for `expected_length` bytes of data (the
    /// SMTP SIZE value, or 0 when none was declared: then space is reserved as the data
    /// arrives, see [`space`]) and writes the envelope. Fails with
    /// [`SpoolError::NoSpace`] when that much cannot be accepted (answer 452 4.3.1).
    pub async fn begin_message(
        &mut self,
        envelope: &Envelope<'_>,
        expected_length: u32,
    ) -> Result<MessageWriter, SpoolError<F::Error>> {
        let encoded_length = envelope.encoded_length();
        if encoded_length > ENVELOPE_CAPACITY || envelope.recipients().len() > MAX_RECIPIENTS {
            return Err(SpoolError::EnvelopeTooLarge);
        }
        let slot = self.free_slot().await?;
        let needed = self.worst_case_bytes(expected_length, encoded_length);
        if self.free_bytes() < needed {
            return Err(SpoolError::NoSpace);
        }
        self.close_dead_head_if_worth_it();
        // The envelope's records (each may close a sector) must fit the erased space.
        self.make_room(2 * envelope_extent(encoded_length, F::WRITE_SIZE) as u64).await?;
        if self.next_message == u32::MAX {
            return Err(SpoolError::MessageTableFull);
        }
        self.message_id_available()?;
        let id = self.next_message;
        self.next_message += 1;
        let statistics_at_begin = self.statistics;
        // Part 0 makes the message exist on flash (it takes a slot at every mount).
        let first = ENVELOPE_PART_CAPACITY.min(encoded_length);
        let placement = match self
            .write_record_with(RecordKind::Envelope, id, 0, first, |out| {
                envelope.encode_range(0, out);
            })
            .await
        {
            Ok(placement) => placement,
            // These come from opening a sector before anything is programmed.
            Err(error @ (SpoolError::NoSpace | SpoolError::CountersExhausted)) => return Err(error),
            Err(error) => {
                self.pin_failed_envelope(slot, id);
                return Err(error);
            }
        };
        let parts = envelope.part_count();
        let written = envelope_extent(encoded_length, F::WRITE_SIZE) as u64;
        self.entries[slot] = MessageEntry {
            id,
            status: EntryStatus::Receiving,
            recipient_count: envelope.recipients().len() as u8,
            envelope_parts: parts as u8,
            envelope_position: envelope_position(placement.sector, placement.offset, F::ERASE_SIZE),
            envelope_sequence: placement.sequence,
            last_sequence: placement.sequence,
            reserved: needed.saturating_sub(written).min(u32::MAX as u64) as u32,
            queued_at: seconds_held(envelope.queued_at()),
            ..MessageEntry::EMPTY
        };
        // The other parts: a failure leaves the message uncommitted, its slot held by part 0.
        for part in 1..parts {
            let skip = part * ENVELOPE_PART_CAPACITY;
            let length = ENVELOPE_PART_CAPACITY.min(encoded_length - skip);
            let written = self
                .write_record_with(RecordKind::Envelope, id, part as u32, length, |out| {
                    envelope.encode_range(skip, out);
                })
                .await;
            if let Err(error) = written {
                let entry = &mut self.entries[slot];
                entry.status = EntryStatus::Abandoned;
                entry.reserved = 0;
                return Err(error);
            }
        }
        Ok(MessageWriter {
            id,
            buffer: [0; CHUNK_CAPACITY],
            filled: 0,
            next_chunk: 0,
            length: 0,
            statistics_at_begin,
        })
    }

    /// A free message slot. If none is free but some are held only by deleted or abandoned
    /// messages, reclaims first ([`Spool::maintain`], which may close the head sector to
    /// release them); [`SpoolError::MessageTableFull`] if that frees nothing.
    async fn free_slot(&mut self) -> Result<usize, SpoolError<F::Error>> {
        let free = |spool: &Self| spool.entries.iter().position(|entry| entry.status == EntryStatus::Free);
        if let Some(slot) = free(self) {
            return Ok(slot);
        }
        let releasable = self
            .entries
            .iter()
            .any(|entry| matches!(entry.status, EntryStatus::Deleted | EntryStatus::Abandoned));
        if releasable {
            self.maintain().await?;
        }
        free(self).ok_or(SpoolError::MessageTableFull)
    }

    /// After a failed envelope write the record may be on flash (whole or torn) in the
    /// newest sector: the slot stays held as abandoned until that sector is erased.
    fn pin_failed_envelope(&mut self, slot: usize, id: u32) {
        let newest = (0..self.sector_count)
            .filter(|&index| self.states[index] == SectorState::InUse)
            .max_by_key(|&index| self.sequences[index]);
        self.entries[slot] = match newest {
            Some(index) => MessageEntry {
                id,
                status: EntryStatus::Abandoned,
                envelope_position: envelope_position(index as u32, 0, F::ERASE_SIZE),
                envelope_sequence: self.sequences[index],
                ..MessageEntry::EMPTY
            },
            None => MessageEntry::EMPTY,
        };
    }

    fn writer_slot(&self, writer: &MessageWriter) -> Result<usize, SpoolError<F::Error>> {
        match self.find_entry(writer.id) {
            Some(slot) if self.entries[slot].status == EntryStatus::Receiving => Ok(slot),
            _ => Err(SpoolError::WriterFinished),
        }
    }

    /// Writes the writer's buffered data as chunk records (split at a sector's end).
    async fn flush_chunk(&mut self, slot: usize, writer: &mut MessageWriter) -> Result<(), SpoolError<F::Error>> {
        while writer.filled > 0 {
            let worst = record_extent(writer.filled, F::WRITE_SIZE) + RECORD_OVERHEAD + F::WRITE_SIZE;
            self.take_space(slot, worst).await?;
            let written = self
                .write_record(RecordKind::Chunk, writer.id, writer.next_chunk, &writer.buffer[..writer.filled])
                .await?
                .taken;
            writer.next_chunk += 1;
            writer.buffer.copy_within(written..writer.filled, 0);
            writer.filled -= written;
            // Give back what the worst case over-reserved.
            let used = record_extent(written, F::WRITE_SIZE);
            self.entries[slot].reserved = self.entries[slot].reserved.saturating_add((worst - used) as u32);
        }
        Ok(())
    }

    /// Appends message data as it arrives; full chunks are encrypted and programmed at once.
    /// On [`SpoolError::NoSpace`] the message cannot be completed: abort it.
    pub async fn append(&mut self, writer: &mut MessageWriter, mut data: &[u8]) -> Result<(), SpoolError<F::Error>> {
        let slot = self.writer_slot(writer)?;
        if (writer.length as u64) + data.len() as u64 > u32::MAX as u64 {
            return Err(SpoolError::MessageTooLarge);
        }
        while !data.is_empty() {
            let room = CHUNK_CAPACITY - writer.filled;
            let take = room.min(data.len());
            writer.buffer[writer.filled..writer.filled + take].copy_from_slice(&data[..take]);
            writer.filled += take;
            writer.length += take as u32;
            data = &data[take..];
            if writer.filled == CHUNK_CAPACITY {
                self.flush_chunk(slot, writer).await?;
            }
        }
        Ok(())
    }

    /// Commits the message: after this returns `Ok` it survives any power cut (send "250").
    /// Programs the last chunk and one commit record (erases only if the erased space is
    /// short, see [`space`]). On an error the message is abandoned, as by
    /// [`Spool::abort`].
    pub async fn commit(&mut self, mut writer: MessageWriter) -> Result<CommitReport, SpoolError<F::Error>> {
        self.commit_in_place(&mut writer).await
    }

    /// [`Self::commit`] with the writer left where the caller keeps it (a static slot), so the
    /// caller's future does not hold its 1 KB buffer. The writer is finished afterwards
    /// (committed, or abandoned on an error): any further use is refused with
    /// [`SpoolError::WriterFinished`].
    pub async fn commit_in_place(&mut self, writer: &mut MessageWriter) -> Result<CommitReport, SpoolError<F::Error>> {
        let slot = self.writer_slot(writer)?;
        let result = self.commit_slot(slot, writer).await;
        if result.is_err() && self.entries[slot].status == EntryStatus::Receiving {
            let entry = &mut self.entries[slot];
            entry.status = EntryStatus::Abandoned;
            entry.reserved = 0;
        }
        result
    }

    async fn commit_slot(&mut self, slot: usize, writer: &mut MessageWriter) -> Result<CommitReport, SpoolError<F::Error>> {
        self.flush_chunk(slot, writer).await?;
        let mut payload = [0u8; COMMIT_PAYLOAD_SIZE];
        payload[..4].copy_from_slice(&writer.length.to_le_bytes());
        payload[4..8].copy_from_slice(&writer.next_chunk.to_le_bytes());
        payload[8..].copy_from_slice(&u32::from(self.entries[slot].envelope_parts).to_le_bytes());
        self.take_space(slot, record_extent(COMMIT_PAYLOAD_SIZE, F::WRITE_SIZE)).await?;
        let sequence = self.write_record(RecordKind::Commit, writer.id, 0, &payload).await?.sequence;
        let entry = &mut self.entries[slot];
        entry.status = EntryStatus::Queued;
        entry.last_sequence = sequence;
        entry.length = writer.length;
        entry.chunk_count = writer.next_chunk;
        entry.reserved = 0;
        Ok(CommitReport {
            id: MessageId(writer.id),
            length: writer.length,
            work: self.statistics.since(&writer.statistics_at_begin),
        })
    }

    /// Abandons a message being received (its records become garbage, reclaimed later).
    /// Its slot stays taken until the sector of its envelope record is erased: a mount
    /// before that would need a slot for the envelope again.
    pub fn abort(&mut self, writer: MessageWriter) {
        if let Ok(slot) = self.writer_slot(&writer) {
            let entry = &mut self.entries[slot];
            entry.status = EntryStatus::Abandoned;
            entry.reserved = 0;
        }
    }

    /// Queued messages (intact and damaged), from RAM.
    pub fn messages(&self) -> impl Iterator<Item = MessageSummary> + '_ {
        self.entries.iter().filter(|entry| entry.is_committed()).map(|entry| MessageSummary {
            id: MessageId(entry.id),
            length: entry.length,
            recipient_count: usize::from(entry.recipient_count),
            queued_at: u64::from(entry.queued_at),
            delivery: entry.delivery(),
            damaged: entry.status == EntryStatus::Damaged,
        })
    }

    /// One queued message, from RAM.
    pub fn message(&self, id: MessageId) -> Option<MessageSummary> {
        self.messages().find(|summary| summary.id == id)
    }

    /// Records a message's delivery state (one small record; the newest wins at mount).
    pub async fn set_delivery_state(&mut self, id: MessageId, state: DeliveryState) -> Result<(), SpoolError<F::Error>> {
        let slot = self.committed_entry(id)?;
        let payload = state.encode();
        let sequence = self.write_metadata(RecordKind::State, id.0, &payload).await?;
        self.entries[slot].set_delivery(state);
        self.entries[slot].marker_sequence = sequence;
        Ok(())
    }

    /// Writes a state or delete record; if no erased sector is left, reclaims first.
    async fn write_metadata(&mut self, kind: RecordKind, id: u32, payload: &[u8]) -> Result<u32, SpoolError<F::Error>> {
        match self.write_record(kind, id, 0, payload).await {
            Err(SpoolError::NoSpace) => {
                self.maintain().await?;
                Ok(self.write_record(kind, id, 0, payload).await?.sequence)
            }
            other => Ok(other?.sequence),
        }
    }

    fn current_state(&self, id: MessageId, recipient: usize) -> Result<DeliveryState, SpoolError<F::Error>> {
        let slot = self.committed_entry(id)?;
        if recipient >= usize::from(self.entries[slot].recipient_count) {
            return Err(SpoolError::TooManyRecipients);
        }
        Ok(self.entries[slot].delivery())
    }

    /// Marks recipient `recipient` (index into the envelope's recipients) delivered.
    pub async fn mark_delivered(&mut self, id: MessageId, recipient: usize) -> Result<(), SpoolError<F::Error>> {
        let mut state = self.current_state(id, recipient)?;
        state.set_recipient(recipient, RecipientState::Delivered);
        self.set_delivery_state(id, state).await
    }

    /// Marks recipient `recipient` failed for good.
    pub async fn mark_failed(&mut self, id: MessageId, recipient: usize) -> Result<(), SpoolError<F::Error>> {
        let mut state = self.current_state(id, recipient)?;
        state.set_recipient(recipient, RecipientState::Failed);
        self.set_delivery_state(id, state).await
    }

    /// Counts a delivery attempt and sets when to try the pending recipients again.
    pub async fn set_next_retry(&mut self, id: MessageId, next_retry: u64) -> Result<(), SpoolError<F::Error>> {
        let mut state = self.current_state(id, 0)?;
        state.attempts = state.attempts.saturating_add(1);
        state.next_retry = next_retry;
        self.set_delivery_state(id, state).await
    }

    /// Deletes a queued message (a tombstone record), then reclaims and erases every sector
    /// that no longer holds anything live. Returns the flash work of the whole operation.
    pub async fn delete(&mut self, id: MessageId) -> Result<Statistics, SpoolError<F::Error>> {
        let before = self.statistics;
        let slot = self.committed_entry(id)?;
        let sequence = self.write_metadata(RecordKind::Delete, id.0, &[]).await?;
        self.entries[slot].status = EntryStatus::Deleted;
        self.entries[slot].marker_sequence = sequence;
        self.maintain().await?;
        Ok(self.statistics.since(&before))
    }
}

#[cfg(test)]
mod tests {
    use super::{seconds_held, MessageEntry};
    use crate::DeliveryState;

    #[test]
    fn times_are_held_in_32_bits_and_a_later_one_as_the_latest() {
        assert_eq!(seconds_held(0), 0);
        assert_eq!(seconds_held(4_102_444_800), 4_102_444_800, "2100-01-01 fits");
        assert_eq!(seconds_held(u64::from(u32::MAX) + 1), u32::MAX);
        assert_eq!(seconds_held(u64::MAX), u32::MAX);
        let mut entry = MessageEntry::EMPTY;
        let state = DeliveryState { delivered: 0b101, failed: 0b10, next_retry: 86_400, attempts: 3 };
        entry.set_delivery(state);
        let back = entry.delivery();
        assert_eq!((back.delivered, back.failed, back.next_retry, back.attempts), (0b101, 0b10, 86_400, 3));
        entry.set_delivery(DeliveryState { next_retry: u64::MAX, ..state });
        assert_eq!(entry.delivery().next_retry, u64::from(u32::MAX));
    }
}
