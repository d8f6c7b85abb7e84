//! Mount and recovery: rebuilding the queue's RAM state from flash after any reset.
//!
//! **Power-cut argument.** The spool changes flash in three ways, and each is safe to cut:
//!
//! 1. *Programming a record* at the end of the head sector. A cut leaves the record absent,
//!    whole, or torn. A torn record fails authentication; being the last thing in the newest
//!    sector, followed only by erased bytes, it is counted as a repaired torn write, and the
//!    sector is closed: nothing is ever programmed after it (NOR cannot rewrite the word, and
//!    the nonce of that offset must not be used twice). A message exists only once its
//!    commit record is authentic, so a cut before or during the commit record loses only an
//!    uncommitted message (its "250" was never sent), and a cut after it loses nothing.
//!    State and delete records are single records too: the old or the new state holds.
//! 2. *Programming a sector header* to open a sector. A torn header makes the sector
//!    unreadable; it holds nothing yet and is erased by [`crate::Spool::maintain`].
//! 3. *Erasing* a dead sector. A cut leaves it half-erased: unreadable, or readable with
//!    records that fail. Either way it held nothing live. The one danger, a tombstone being
//!    erased before the message it cancels, is ruled out by order: a tombstone's sector is
//!    kept until the sector with the message's envelope is erased (see [`crate::spool::space`]),
//!    and a message without its envelope record is never rebuilt.
//!
//! **Message table at mount.** The walk gives a slot to every authentic envelope record it
//! meets and frees none until the end, so it needs a slot for every message whose envelope
//! is on flash: queued, deleted with the envelope's sector not yet erased (its tombstone
//! must be applied), and never committed (aborted, or cut off by a reset) with the
//! envelope's sector not yet erased (it is known to be incomplete only at the end of the
//! walk, as receipts interleave). The running spool keeps exactly these holding their slots:
//! a deleted message keeps its slot until its envelope's sector is erased, and so does an
//! aborted one or one found incomplete by a mount (`Abandoned`; such a slot keeps no sector
//! live). So admission ([`crate::Spool::begin_message`], the only place a message is refused,
//! with [`crate::SpoolError::MessageTableFull`]) already counts everything a later mount
//! will need, and a mount of flash written by a spool with the same `MESSAGES` never runs
//! out of slots. (Before this rule, aborted and cut-off messages freed their slot at once
//! while their envelopes stayed on flash; after many power cuts a mount met more envelopes
//! than slots and dropped committed messages as over capacity.) When the table is full and
//! only the head sector pins slots of deleted or abandoned messages, [`crate::Spool::maintain`]
//! closes the head so that sector can be reclaimed.
//!
//! Mount reads every sector header, then walks the log in sequence order, authenticating
//! every record (each is decrypted once), and rebuilds: messages committed (with their newest
//! delivery state), deleted, or incomplete (dropped). Anything failing authentication is
//! counted, never used; a corrupt record costs the rest of its sector (its length can no
//! longer be trusted), and a message missing any chunk or any envelope part is listed as
//! damaged (its commit record names its chunk and envelope part counts).
//!
//! **Envelope parts.** An envelope of more than 1 KiB takes up to four records (part 0 to 3)
//! written one after another at [`crate::Spool::begin_message`], before any chunk. Part 0
//! is the message's first record: it takes the slot, and the message's span and slot
//! pinning start at its sector, exactly as with a one-record envelope. A cut between the
//! parts, or anywhere before the commit record, leaves a message without an authentic
//! commit: dropped as incomplete. Parts whose part 0 is gone (erased with its sector, or
//! never authentic) belong to no slot and are ignored, like orphaned chunks.
//!
//! **Other format versions.** A sector header with another version byte (a version-1
//! spool, or anything foreign) fails the header check before any record is read: the sector
//! is counted unreadable and erased by [`crate::Spool::maintain`]; nothing of it is used.

use crate::crypto::SectorContext;
use crate::envelope::{decode_prefix, DeliveryState, MAX_ENVELOPE_PARTS};
use crate::error::SpoolError;
use crate::layout::{
    align_up, record_extent, sector_header_extent, RecordHeader, RecordKind, COMMIT_PAYLOAD_SIZE,
    NO_SEQUENCE, RECORD_HEADER_SIZE, RECORD_PAYLOAD_CAPACITY, SECTOR_HEADER_SIZE,
};
use crate::spool::{read, EntryStatus, Head, MessageEntry, SectorState, Spool};
use crate::RandomSource;
use embedded_storage_async::nor_flash::NorFlash;

/// What mount found on flash.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Committed messages found (intact or damaged).
    pub messages_found: u32,
    /// Committed messages with a missing or failing record: never to be delivered as good.
    pub messages_damaged: u32,
    /// Messages whose commit record was never written (cut off during receipt): dropped.
    pub messages_incomplete_dropped: u32,
    /// Envelope records (of any message: committed, deleted or incomplete) met while every
    /// slot of the RAM table was taken: those messages are ignored by this mount, so a
    /// committed one among them is not listed (and a deleted one's tombstone is not applied).
    /// Always 0 for flash written by a spool with the same or a smaller `MESSAGES`, since
    /// admission holds a slot for every message whose envelope is on flash; nonzero means the
    /// flash was written with a larger table (raise `MESSAGES`) or by a defective build.
    pub messages_over_capacity: u32,
    /// Records that authenticated.
    pub records_valid: u32,
    /// Records (or sector contents) that failed authentication or sanity checks: corruption
    /// or tampering.
    pub records_corrupt: u32,
    /// Writes interrupted by a power cut (a torn record or sector header), made harmless.
    pub torn_writes_repaired: u32,
    /// Sectors that must be erased before use (unreadable headers, half erases).
    pub sectors_unreadable: u32,
    /// Sectors in the log.
    pub sectors_in_use: u32,
    /// Sectors erased and ready.
    pub sectors_erased: u32,
    /// Flash bytes read by the mount.
    pub bytes_read: u64,
}

impl RecoveryReport {
    /// Whether nothing corrupt, tampered, damaged or torn was found.
    pub fn is_clean(&self) -> bool {
        self.messages_damaged == 0
            && self.records_corrupt == 0
            && self.torn_writes_repaired == 0
            && self.sectors_unreadable == 0
            && self.messages_over_capacity == 0
    }
}

/// Whether every byte is `0xFF` (compared a word at a time).
fn all_erased(bytes: &[u8]) -> bool {
    let mut words = bytes.chunks_exact(8);
    let words_erased = words.all(|word| word == [0xFF; 8]);
    words_erased && words.remainder().iter().all(|&byte| byte == 0xFF)
}

/// How scanning a sector ended.
enum SectorEnd {
    /// Clean: erased from `offset` to the end.
    Erased(u32),
    /// Sector completely used.
    Full,
    /// A record failed at `offset`; `torn` if only erased bytes follow it.
    Failed { torn: bool },
}

impl<F: NorFlash, R: RandomSource, const SECTORS: usize, const MESSAGES: usize>
    Spool<F, R, SECTORS, MESSAGES>
{
    /// Whether flash from `start` to `end` (region-relative to sector `index`) is all `0xFF`.
    pub(crate) async fn is_erased(&mut self, index: usize, start: usize, end: usize) -> Result<bool, SpoolError<F::Error>> {
        let base = self.sector_address(index);
        let mut position = start;
        while position < end {
            let length = (end - position).min(self.buffer.len());
            read(&mut self.flash, &mut self.statistics, base + position as u32, &mut self.buffer[..length]).await?;
            if !all_erased(&self.buffer[..length]) {
                return Ok(false);
            }
            position += length;
        }
        Ok(true)
    }

    /// Reads and authenticates the header of sector `index`.
    pub(crate) async fn read_sector_header(&mut self, index: usize) -> Result<Option<SectorContext>, SpoolError<F::Error>> {
        let extent = sector_header_extent(F::WRITE_SIZE);
        let address = self.sector_address(index);
        read(&mut self.flash, &mut self.statistics, address, &mut self.buffer[..extent]).await?;
        if self.buffer[SECTOR_HEADER_SIZE..extent].iter().any(|&byte| byte != 0xFF) {
            return Ok(None);
        }
        let mut header = [0u8; SECTOR_HEADER_SIZE];
        header.copy_from_slice(&self.buffer[..SECTOR_HEADER_SIZE]);
        Ok(self.cipher.open_sector_header(index as u32, &header))
    }

    /// Reads the record at `offset` of a sector and authenticates it; on success the
    /// plaintext payload is in `self.buffer[RECORD_HEADER_SIZE..][..length]`.
    /// `Ok(false)` when the record is not authentic.
    pub(crate) async fn read_record(
        &mut self,
        context: &SectorContext,
        offset: u32,
        header: RecordHeader,
        raw_header: &[u8; RECORD_HEADER_SIZE],
    ) -> Result<bool, SpoolError<F::Error>> {
        let length = usize::from(header.length);
        let extent = record_extent(length, F::WRITE_SIZE);
        if offset as usize + extent > F::ERASE_SIZE {
            return Ok(false);
        }
        let address = self.sector_address(context.index as usize) + offset;
        read(&mut self.flash, &mut self.statistics, address, &mut self.buffer[..extent]).await?;
        let tag_start = RECORD_HEADER_SIZE + length;
        let mut tag = [0u8; 16];
        tag.copy_from_slice(&self.buffer[tag_start..tag_start + 16]);
        if self.buffer[tag_start + 16..extent].iter().any(|&byte| byte != 0xFF) {
            return Ok(false);
        }
        Ok(self.cipher.open_record(
            context,
            offset,
            raw_header,
            &mut self.buffer[RECORD_HEADER_SIZE..tag_start],
            &tag,
        ))
    }

    /// Reads the record header at `offset`: `None` if the sector's records end there.
    pub(crate) async fn read_record_header(
        &mut self,
        index: usize,
        offset: u32,
    ) -> Result<Option<[u8; RECORD_HEADER_SIZE]>, SpoolError<F::Error>> {
        let span = align_up(RECORD_HEADER_SIZE, F::WRITE_SIZE);
        if offset as usize + span > F::ERASE_SIZE {
            return Ok(None);
        }
        let address = self.sector_address(index) + offset;
        let mut raw = [0u8; RECORD_HEADER_SIZE];
        let mut bytes = [0u8; crate::layout::MAXIMUM_WRITE_SIZE];
        read(&mut self.flash, &mut self.statistics, address, &mut bytes[..span]).await?;
        raw.copy_from_slice(&bytes[..RECORD_HEADER_SIZE]);
        if raw.iter().all(|&byte| byte == 0xFF) {
            return Ok(None);
        }
        Ok(Some(raw))
    }

    /// Rebuilds the queue from flash (call once after [`Spool::new`], and after any flash
    /// error). Reads only; erasing what it found unreadable is left to [`Spool::maintain`].
    /// Sectors of another format version (e.g. version 1) count as unreadable: after
    /// `maintain` the region is an empty version-2 spool.
    pub async fn mount(&mut self) -> Result<RecoveryReport, SpoolError<F::Error>> {
        let mut report = RecoveryReport::default();
        let read_before = self.statistics.bytes_read;
        self.entries = [MessageEntry::EMPTY; MESSAGES];
        self.head = None;
        self.mounted = false;
        let header_extent = sector_header_extent(F::WRITE_SIZE);
        // Pass 1: classify every sector by its header.
        for index in 0..self.sector_count {
            self.sequences[index] = NO_SEQUENCE;
            match self.read_sector_header(index).await? {
                Some(context) if context.sequence != NO_SEQUENCE => {
                    self.states[index] = SectorState::InUse;
                    self.sequences[index] = context.sequence;
                }
                _ => {
                    if self.is_erased(index, 0, F::ERASE_SIZE).await? {
                        self.states[index] = SectorState::Erased;
                    } else {
                        self.states[index] = SectorState::Garbage;
                        if self.is_erased(index, header_extent, F::ERASE_SIZE).await? {
                            report.torn_writes_repaired += 1;
                        } else {
                            report.sectors_unreadable += 1;
                        }
                    }
                }
            }
        }
        // Pass 2: walk the log in (sequence, index) order.
        let mut previous: Option<(u32, usize)> = None;
        let mut newest: Option<(usize, SectorEnd, SectorContext)> = None;
        let mut highest_message = 0u32;
        while let Some(index) = self.next_in_log(previous) {
            previous = Some((self.sequences[index], index));
            let Some(context) = self.read_sector_header(index).await? else {
                self.states[index] = SectorState::Garbage;
                report.sectors_unreadable += 1;
                continue;
            };
            let end = self.scan_sector(&context, &mut report, &mut highest_message).await?;
            newest = Some((index, end, context));
        }
        // The newest sector becomes the head if it ends cleanly; a failure there is a torn write.
        let newest_index = newest.as_ref().map(|(index, _, _)| *index);
        if let Some((_, end, context)) = newest {
            match end {
                SectorEnd::Erased(offset) => self.head = Some(Head { context, offset }),
                SectorEnd::Full => {}
                SectorEnd::Failed { torn: true } => report.torn_writes_repaired += 1,
                SectorEnd::Failed { torn: false } => report.records_corrupt += 1,
            }
        }
        // Messages never committed are dropped; count the rest.
        for entry in self.entries.iter_mut() {
            match entry.status {
                EntryStatus::Receiving => {
                    // Dropped as a message, but its envelope is still on flash: the slot
                    // stays held until that sector is erased (see the module doc).
                    report.messages_incomplete_dropped += 1;
                    entry.status = EntryStatus::Abandoned;
                }
                EntryStatus::Queued => report.messages_found += 1,
                EntryStatus::Damaged => {
                    report.messages_found += 1;
                    report.messages_damaged += 1;
                }
                EntryStatus::Free | EntryStatus::Deleted | EntryStatus::Abandoned => {}
            }
        }
        self.next_sequence = previous.map(|(sequence, _)| sequence.saturating_add(1)).unwrap_or(0);
        self.allocation_cursor = newest_index.map(|index| (index + 1) % self.sector_count).unwrap_or(0);
        self.next_message = highest_message.saturating_add(1).max(1);
        // Mounted again while guarded: never fall back below what may have been used.
        if let Some(guard) = self.counter_guard {
            self.next_sequence = self.next_sequence.max(guard.sequence_limit);
            self.next_message = self.next_message.max(guard.message_limit);
        }
        let states = &self.states[..self.sector_count];
        report.sectors_in_use = states.iter().filter(|&&state| state == SectorState::InUse).count() as u32;
        report.sectors_erased = states.iter().filter(|&&state| state == SectorState::Erased).count() as u32;
        report.bytes_read = self.statistics.bytes_read - read_before;
        self.mounted = true;
        Ok(report)
    }

    /// The in-use sector following `previous` in (sequence, index) order.
    pub(crate) fn next_in_log(&self, previous: Option<(u32, usize)>) -> Option<usize> {
        (0..self.sector_count)
            .filter(|&index| self.states[index] == SectorState::InUse)
            .filter(|&index| previous.is_none_or(|last| (self.sequences[index], index) > last))
            .min_by_key(|&index| (self.sequences[index], index))
    }

    async fn scan_sector(
        &mut self,
        context: &SectorContext,
        report: &mut RecoveryReport,
        highest_message: &mut u32,
    ) -> Result<SectorEnd, SpoolError<F::Error>> {
        let index = context.index as usize;
        let mut offset = sector_header_extent(F::WRITE_SIZE) as u32;
        loop {
            if offset as usize >= F::ERASE_SIZE {
                return Ok(SectorEnd::Full);
            }
            let Some(raw) = self.read_record_header(index, offset).await? else {
                if self.is_erased(index, offset as usize, F::ERASE_SIZE).await? {
                    return Ok(SectorEnd::Erased(offset));
                }
                return self.failed(index, offset, None, report).await;
            };
            let Some(header) = RecordHeader::decode(&raw) else {
                return self.failed(index, offset, None, report).await;
            };
            if !self.read_record(context, offset, header, &raw).await? {
                return self.failed(index, offset, Some(header), report).await;
            }
            report.records_valid += 1;
            *highest_message = (*highest_message).max(header.message);
            if !self.apply(context, offset, header, report) {
                report.records_corrupt += 1;
            }
            offset += record_extent(usize::from(header.length), F::WRITE_SIZE) as u32;
        }
    }

    /// A record failed at `offset`: decides torn (only erased bytes after it) or corrupt.
    /// Only the newest sector can hold a torn write; the caller decides which one that is,
    /// so here "torn" is just a property, counted later for the newest sector.
    async fn failed(
        &mut self,
        index: usize,
        offset: u32,
        header: Option<RecordHeader>,
        report: &mut RecoveryReport,
    ) -> Result<SectorEnd, SpoolError<F::Error>> {
        // Bits of a torn header can only be left 1, so a torn length is never too short;
        // an undecodable header may claim anything, so assume the longest record.
        let claimed = header.map_or(RECORD_PAYLOAD_CAPACITY, |header| usize::from(header.length));
        let end = (offset as usize + record_extent(claimed, F::WRITE_SIZE)).min(F::ERASE_SIZE);
        let torn = self.is_erased(index, end, F::ERASE_SIZE).await?;
        let newest = self.next_in_log(Some((self.sequences[index], index))).is_none();
        if !newest {
            report.records_corrupt += 1;
        }
        Ok(SectorEnd::Failed { torn })
    }

    /// Applies one authentic record (payload in the buffer) to the RAM state; `false` if
    /// its content makes no sense (counted as corrupt).
    fn apply(&mut self, context: &SectorContext, offset: u32, header: RecordHeader, report: &mut RecoveryReport) -> bool {
        let payload_end = RECORD_HEADER_SIZE + usize::from(header.length);
        let slot = self.find_entry(header.message);
        match header.kind {
            RecordKind::Envelope if header.index != 0 => {
                // A later part: counted if it comes in order, before any chunk.
                if let Some(slot) = slot {
                    let entry = &mut self.entries[slot];
                    if entry.status == EntryStatus::Receiving {
                        let in_order = header.index == u32::from(entry.envelope_parts)
                            && (header.index as usize) < MAX_ENVELOPE_PARTS
                            && entry.chunk_count == 0;
                        if in_order {
                            entry.envelope_parts += 1;
                        } else {
                            entry.intact = false;
                        }
                    }
                }
            }
            RecordKind::Envelope => {
                // Part 0, the message's first record: holds the queued-at time and the
                // recipient count (the whole envelope is checked when it is read).
                let payload = &self.buffer[RECORD_HEADER_SIZE..payload_end];
                let Some((queued_at, recipient_count)) = decode_prefix(payload) else { return false };
                if slot.is_some() {
                    return false;
                }
                let Some(free) = self.entries.iter().position(|entry| entry.status == EntryStatus::Free) else {
                    report.messages_over_capacity += 1;
                    return true;
                };
                self.entries[free] = MessageEntry {
                    id: header.message,
                    status: EntryStatus::Receiving,
                    recipient_count: recipient_count as u8,
                    envelope_parts: 1,
                    queued_at: crate::spool::seconds_held(queued_at),
                    envelope_position: crate::spool::envelope_position(context.index, offset, F::ERASE_SIZE),
                    envelope_sequence: context.sequence,
                    last_sequence: context.sequence,
                    ..MessageEntry::EMPTY
                };
            }
            RecordKind::Chunk => {
                if let Some(slot) = slot {
                    let entry = &mut self.entries[slot];
                    if entry.status == EntryStatus::Receiving {
                        if header.index == entry.chunk_count {
                            entry.chunk_count += 1;
                            entry.length = entry.length.saturating_add(u32::from(header.length));
                        } else {
                            entry.intact = false;
                        }
                    }
                }
            }
            RecordKind::Commit => {
                if header.length as usize != COMMIT_PAYLOAD_SIZE {
                    return false;
                }
                let payload = &self.buffer[RECORD_HEADER_SIZE..payload_end];
                let length = u32::from_le_bytes([payload[0], payload[1], payload[2], payload[3]]);
                let count = u32::from_le_bytes([payload[4], payload[5], payload[6], payload[7]]);
                let parts = u32::from_le_bytes([payload[8], payload[9], payload[10], payload[11]]);
                if parts == 0 || parts as usize > MAX_ENVELOPE_PARTS {
                    return false;
                }
                if let Some(slot) = slot {
                    let entry = &mut self.entries[slot];
                    if entry.status == EntryStatus::Receiving {
                        let intact = entry.intact
                            && entry.length == length
                            && entry.chunk_count == count
                            && u32::from(entry.envelope_parts) == parts;
                        entry.status = if intact { EntryStatus::Queued } else { EntryStatus::Damaged };
                        entry.length = length;
                        entry.chunk_count = count;
                        entry.envelope_parts = parts as u8;
                        entry.last_sequence = context.sequence;
                    }
                }
            }
            RecordKind::State => {
                let payload = &self.buffer[RECORD_HEADER_SIZE..payload_end];
                let Some(state) = DeliveryState::decode(payload) else { return false };
                if let Some(slot) = slot {
                    let entry = &mut self.entries[slot];
                    if entry.is_committed() {
                        entry.set_delivery(state);
                        entry.marker_sequence = context.sequence;
                    }
                }
            }
            RecordKind::Delete => {
                if let Some(slot) = slot {
                    let entry = &mut self.entries[slot];
                    if entry.is_committed() {
                        entry.status = EntryStatus::Deleted;
                        entry.marker_sequence = context.sequence;
                    }
                }
            }
        }
        true
    }
}
