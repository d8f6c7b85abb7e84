//! Free-space accounting, admission ("can I accept N more bytes") and reclaiming sectors.
//!
//! **Accounting.** Free is what a new message can get: erased sectors, the rest of the head
//! sector, and every sector that holds nothing live (written by aborted, refused, cut-off or
//! deleted messages: *reclaimable*, erased on demand). One sector is always held back as a
//! spare for state and delete records, so delivery bookkeeping and deletion work on a spool
//! that is full of messages. A message being received holds a reservation: at
//! [`Spool::begin_message`] the worst-case flash bytes ([`Spool::worst_case_bytes`]) of the
//! size it declared (SMTP `SIZE=`, or 0), then, as its data arrives beyond that, more in
//! steps of [`RESERVATION_STEP`]; what is reserved is not offered to anyone else, and an
//! abort or commit gives the unused rest back at once. So the SMTP server learns before
//! DATA (from [`Spool::can_accept`] or a failing begin) whether a declared message fits and
//! answers 452 4.3.1 instead of accepting and losing it, and a message without `SIZE=` is
//! refused only when the spool really has no room left for its data.
//!
//! **Reclaiming.** A sector in the log is live if it holds the head, or lies within the span
//! (envelope sector to commit sector, by sequence) of a message being received or queued, or
//! holds the newest state record of a queued message, or holds the tombstone of a deleted
//! message whose envelope's sector still exists (were the tombstone erased first, the
//! message would come back after a reset). Every other sector is erased by
//! [`Spool::maintain`], which [`Spool::delete`] calls and the firmware calls after an abort;
//! sectors found unreadable at mount are erased first, as they may hold anything. When a
//! write finds too little erased space, the spool reclaims right then (dead sectors first,
//! then the head sector if it holds nothing live) before it declares the space short; in
//! normal operation (reclaiming after every delete and abort) the receive path only programs
//! pre-erased sectors and nothing is erased between begin and commit.

use crate::error::SpoolError;
use crate::layout::{envelope_extent, record_extent, sector_header_extent, COMMIT_PAYLOAD_SIZE, MINIMUM_SPLIT_PAYLOAD, RECORD_OVERHEAD, STATE_PAYLOAD_SIZE};
use crate::spool::{EntryStatus, MessageEntry, SectorState, Spool, CHUNK_CAPACITY};
use crate::RandomSource;
use embedded_storage_async::nor_flash::NorFlash;

/// Erased sectors kept back for state and delete records.
pub const SPARE_SECTORS: usize = 1;

/// Flash bytes a message being received reserves at a time once its data outgrows what it
/// reserved before (its declared size, or nothing).
pub const RESERVATION_STEP: u32 = 64 * 1024;

/// The spool's space, for the status page and the free-flash alarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpaceReport {
    /// Sectors in the region.
    pub sectors: usize,
    /// Sectors erased and ready.
    pub sectors_erased: usize,
    /// Sectors holding log data (live or waiting to be reclaimed).
    pub sectors_in_use: usize,
    /// Sectors that must be erased before use (unreadable, torn or half-erased).
    pub sectors_unreadable: usize,
    /// Bytes a new message can still get (after reservations and the spare).
    pub free_bytes: u64,
    /// Bytes reserved by messages being received.
    pub reserved_bytes: u64,
    /// Bytes of a dead head sector (all its messages gone) not counted in `free_bytes` (at most
    /// a sector, and at most `free_bytes` before reservations): they come back when the head
    /// fills up and is erased, or is closed when the spool is nearly full (see
    /// [`Spool::free_bytes`]).
    pub held_by_dead_head: u64,
    /// Number of queued messages.
    pub messages: usize,
}

impl<F: NorFlash, R: RandomSource, const SECTORS: usize, const MESSAGES: usize>
    Spool<F, R, SECTORS, MESSAGES>
{
    /// Per-sector bytes never counted on: end-of-sector waste before a split or a small record.
    fn sector_slack() -> usize {
        record_extent(MINIMUM_SPLIT_PAYLOAD, F::WRITE_SIZE) + record_extent(STATE_PAYLOAD_SIZE, F::WRITE_SIZE)
    }

    /// Bytes of one sector that records can use.
    pub(crate) fn sector_capacity() -> usize {
        F::ERASE_SIZE - sector_header_extent(F::WRITE_SIZE) - Self::sector_slack()
    }

    /// Flash bytes a message of `length` data bytes and an envelope of `envelope_length`
    /// encoded bytes (1 to 4 records) can take at most (records, padding, splits at sector
    /// ends).
    pub fn worst_case_bytes(&self, length: u32, envelope_length: usize) -> u64 {
        Self::worst_case(length, envelope_length)
    }

    /// Whether a region of `sector_count` sectors, empty, can take the smallest message worth
    /// the name: one chunk of data with the largest envelope. A region with fewer sectors (3 of
    /// 4 KiB: two usable beside the spare, 7.8 KB, against 8.5 KB for the envelope's records
    /// alone) would refuse every message that `can_accept` is asked about, so it is refused.
    pub(crate) fn region_takes_a_message(sector_count: usize) -> bool {
        let usable = sector_count.saturating_sub(SPARE_SECTORS) as u64 * Self::sector_capacity() as u64;
        usable >= Self::worst_case(CHUNK_CAPACITY as u32, crate::ENVELOPE_CAPACITY)
    }

    fn worst_case(length: u32, envelope_length: usize) -> u64 {
        let length = u64::from(length);
        let per_record = (RECORD_OVERHEAD + F::WRITE_SIZE) as u64;
        let envelope = envelope_extent(envelope_length, F::WRITE_SIZE) as u64;
        let chunks = length.div_ceil(CHUNK_CAPACITY as u64);
        let sectors = (length + envelope).div_ceil(Self::sector_capacity() as u64) + 1;
        // The envelope's records are never split: each may close a sector, wasting less
        // than its own extent, hence twice the envelope's extent.
        length
            + (chunks + sectors) * per_record
            + 2 * envelope
            + record_extent(COMMIT_PAYLOAD_SIZE, F::WRITE_SIZE) as u64
    }

    /// Bytes left in the head sector for records (0 without a head).
    fn head_free_bytes(&self) -> u64 {
        self.head
            .map(|head| (F::ERASE_SIZE - head.offset as usize).saturating_sub(Self::sector_slack()))
            .unwrap_or(0) as u64
    }

    /// The used part of a dead head (one that holds nothing live): it comes back only when
    /// that sector is erased. 0 if the head holds anything live, or there is no head.
    fn dead_head_used_bytes(&self) -> u64 {
        if self.head_is_dead() {
            Self::sector_capacity() as u64 - self.head_free_bytes()
        } else {
            0
        }
    }

    /// Free bytes before reservations, not counting a dead head's used part, and that part.
    fn free_space_parts(&self) -> (u64, u64) {
        let erased = self.states[..self.sector_count].iter().filter(|&&state| state == SectorState::Erased).count();
        let sectors = (erased + self.reclaimable_sectors()).saturating_sub(SPARE_SECTORS) as u64;
        (sectors * Self::sector_capacity() as u64 + self.head_free_bytes(), self.dead_head_used_bytes())
    }

    /// Whether a new message closes the dead head before it is written (see
    /// [`Spool::free_bytes`]): when its used part is more than all other free space.
    fn dead_head_worth_closing(&self) -> bool {
        let (other, dead) = self.free_space_parts();
        dead > other
    }

    /// Closes the head if it is dead and worth closing: the message about to be written
    /// starts in a fresh sector, and the old head is erased whole when its space is needed.
    pub(crate) fn close_dead_head_if_worth_it(&mut self) {
        if self.dead_head_worth_closing() {
            self.head = None;
        }
    }

    /// Whether the head sector holds nothing that outlives a full reclaim.
    fn head_is_dead(&self) -> bool {
        let keepers = self.reclaim_keepers();
        self.head.is_some_and(|head| !self.sector_survives_reclaim(head.context.index as usize, &keepers))
    }

    /// Sectors that a full reclaim erases: unreadable ones and those holding nothing that
    /// outlives it (the head aside).
    fn reclaimable_sectors(&self) -> usize {
        let keepers = self.reclaim_keepers();
        (0..self.sector_count)
            .filter(|&index| match self.states[index] {
                SectorState::Garbage => true,
                SectorState::InUse => {
                    let head = self.head.is_some_and(|head| head.context.index as usize == index);
                    !head && !self.sector_survives_reclaim(index, &keepers)
                }
                SectorState::Erased => false,
            })
            .count()
    }

    /// Whether a sector with this sequence holds records of a message being received or
    /// queued (tombstones aside).
    fn entry_keeps_records(entry: &MessageEntry, sequence: u32) -> bool {
        match entry.status {
            EntryStatus::Receiving => sequence >= entry.envelope_sequence,
            EntryStatus::Queued | EntryStatus::Damaged => {
                (entry.envelope_sequence..=entry.last_sequence).contains(&sequence) || sequence == entry.marker_sequence
            }
            EntryStatus::Free | EntryStatus::Abandoned | EntryStatus::Deleted => false,
        }
    }

    /// The slots whose records outlive a full reclaim, first `.1` of them: messages being
    /// received or queued, and deleted messages whose tombstone is still needed because
    /// their envelope's sector outlives the reclaim (holds message records, or such a
    /// tombstone in turn). [`Spool::maintain`] gets there step by step: it erases a dead
    /// envelope sector, then forgets the message, then erases the tombstone's sector. Only
    /// these slots are consulted per sector, so accounting costs sectors × active messages.
    fn reclaim_keepers(&self) -> ([u16; MESSAGES], usize) {
        let mut keepers = [0u16; MESSAGES];
        let mut count = 0;
        for (slot, entry) in self.entries.iter().enumerate() {
            if matches!(entry.status, EntryStatus::Receiving | EntryStatus::Queued | EntryStatus::Damaged) {
                keepers[count] = slot as u16;
                count += 1;
            }
        }
        let messages = count;
        loop {
            let mut changed = false;
            for slot in 0..MESSAGES {
                let entry = &self.entries[slot];
                let sequence = entry.envelope_sequence;
                if entry.status != EntryStatus::Deleted
                    || entry.marker_sequence == sequence
                    || keepers[messages..count].contains(&(slot as u16))
                {
                    continue;
                }
                let (sector, _) = entry.envelope_at(F::ERASE_SIZE);
                let envelope_exists =
                    self.states.get(sector) == Some(&SectorState::InUse) && self.sequences[sector] == sequence;
                let envelope_survives = keepers[..count].iter().any(|&keeper| {
                    let other = &self.entries[keeper as usize];
                    match other.status {
                        EntryStatus::Deleted => other.marker_sequence == sequence,
                        _ => Self::entry_keeps_records(other, sequence),
                    }
                });
                if envelope_exists && envelope_survives {
                    keepers[count] = slot as u16;
                    count += 1;
                    changed = true;
                }
            }
            if !changed {
                return (keepers, count);
            }
        }
    }

    /// Whether sector `index` (in use) holds anything that outlives a full reclaim.
    fn sector_survives_reclaim(&self, index: usize, keepers: &([u16; MESSAGES], usize)) -> bool {
        let sequence = self.sequences[index];
        keepers.0[..keepers.1].iter().any(|&slot| {
            let entry = &self.entries[slot as usize];
            match entry.status {
                EntryStatus::Deleted => entry.marker_sequence == sequence,
                _ => Self::entry_keeps_records(entry, sequence),
            }
        })
    }

    /// Bytes that can be written without erasing anything.
    fn erased_free_bytes(&self) -> u64 {
        let erased = self.states[..self.sector_count]
            .iter()
            .filter(|&&state| state == SectorState::Erased)
            .count();
        erased.saturating_sub(SPARE_SECTORS) as u64 * Self::sector_capacity() as u64 + self.head_free_bytes()
    }

    /// Bytes that a new message can get once everything reclaimable is erased (before
    /// reservations): a dead head's used part only if the message closes the head first.
    fn raw_free_bytes(&self) -> u64 {
        let (other, dead) = self.free_space_parts();
        if dead > other {
            other + dead
        } else {
            other
        }
    }

    /// Makes sure `needed` bytes can be written without erasing: if the erased space is
    /// short, erases unreadable and dead sectors (and closes and erases a dead head) one at
    /// a time until it suffices. [`SpoolError::NoSpace`] if reclaiming all cannot make room.
    pub(crate) async fn make_room(&mut self, needed: u64) -> Result<(), SpoolError<F::Error>> {
        if self.head_free_bytes() >= needed {
            return Ok(());
        }
        while self.erased_free_bytes() < needed {
            let candidate = (0..self.sector_count)
                .find(|&index| self.states[index] == SectorState::Garbage)
                .or_else(|| {
                    (0..self.sector_count)
                        .find(|&index| self.states[index] == SectorState::InUse && !self.sector_is_live(index))
                });
            match candidate {
                Some(index) => self.erase_sector(index).await?,
                None if self.head_is_dead() => self.head = None,
                None => return Err(SpoolError::NoSpace),
            }
            self.forget_settled_entries();
        }
        Ok(())
    }

    fn reserved_bytes(&self) -> u64 {
        self.entries
            .iter()
            .filter(|entry| entry.status == EntryStatus::Receiving)
            .map(|entry| u64::from(entry.reserved))
            .sum()
    }

    /// Bytes still free for new messages (after reservations and the spare sector): what one
    /// message, with or without a declared size, can get for sure.
    ///
    /// A *dead* head (every message with records in it is gone) holds back its used part until
    /// the sector is erased, and it is erased only once closed: a new message's first record
    /// would pin it again. Closing it costs its unused rest and an erase sooner, when the
    /// queue drains between messages up to an erase per message (10 KB messages, 4 KiB sectors:
    /// closing a head more than half used took 3.0 erases per message instead of 2.7; with
    /// 128 KiB sectors an erase per message instead of one per twelve). So a new message
    /// goes on in a dead head, and its used part is not counted as free, as long as that part
    /// is at most all other free space; only when it is more (the spool is nearly full) is it
    /// counted, and the next message closes the head first. The free space is thus at least
    /// half of what a full reclaim would give, and never short of it by more than a sector; the
    /// part held back is [`SpaceReport::held_by_dead_head`]. (Counting it always, as before,
    /// promised a message up to a sector more than it could get once its envelope pinned the
    /// head: with 16 KiB sectors and more, a message admitted as fitting was refused half-way.)
    pub fn free_bytes(&self) -> u64 {
        self.raw_free_bytes().saturating_sub(self.reserved_bytes())
    }

    /// Whether a message of `length` data bytes with an envelope of up to
    /// [`crate::ENVELOPE_CAPACITY`] bytes can be accepted now (else answer 452 4.3.1).
    pub fn can_accept(&self, length: u32) -> bool {
        let slot_free = self.entries.iter().any(|entry| entry.status == EntryStatus::Free);
        slot_free && self.free_bytes() >= self.worst_case_bytes(length, crate::ENVELOPE_CAPACITY)
    }

    /// Space figures for status and monitoring.
    pub fn space(&self) -> SpaceReport {
        let states = &self.states[..self.sector_count];
        let count = |wanted: SectorState| states.iter().filter(|&&state| state == wanted).count();
        SpaceReport {
            sectors: self.sector_count,
            sectors_erased: count(SectorState::Erased),
            sectors_in_use: count(SectorState::InUse),
            sectors_unreadable: count(SectorState::Garbage),
            free_bytes: self.free_bytes(),
            reserved_bytes: self.reserved_bytes(),
            held_by_dead_head: if self.dead_head_worth_closing() { 0 } else { self.dead_head_used_bytes() },
            messages: self.messages().count(),
        }
    }

    /// Whether sector `index` (in use) holds anything still needed: it is the head, or
    /// holds live records.
    fn sector_is_live(&self, index: usize) -> bool {
        self.head.is_some_and(|head| head.context.index as usize == index) || self.sector_holds_live_records(index)
    }

    /// Whether sector `index` (in use) holds records still needed (see the module doc).
    fn sector_holds_live_records(&self, index: usize) -> bool {
        let sequence = self.sequences[index];
        self.entries.iter().any(|entry| match entry.status {
            EntryStatus::Free | EntryStatus::Abandoned => false,
            EntryStatus::Receiving => sequence >= entry.envelope_sequence,
            EntryStatus::Queued | EntryStatus::Damaged => {
                (entry.envelope_sequence..=entry.last_sequence).contains(&sequence)
                    || sequence == entry.marker_sequence
            }
            // A tombstone in its envelope's own sector keeps nothing alive: one erase takes
            // both (else that sector and the slot would be pinned for ever).
            EntryStatus::Deleted => sequence == entry.marker_sequence && entry.envelope_sequence != sequence,
        })
    }

    /// Frees the slots of deleted and abandoned messages whose envelope sector is gone (a
    /// mount would no longer find the envelope, and the tombstone is not needed).
    fn forget_settled_entries(&mut self) {
        let garbage_left = self.states[..self.sector_count].contains(&SectorState::Garbage);
        for slot in 0..MESSAGES {
            let entry = self.entries[slot];
            let settling = matches!(entry.status, EntryStatus::Deleted | EntryStatus::Abandoned);
            if !settling || garbage_left {
                continue;
            }
            let (sector, _) = entry.envelope_at(F::ERASE_SIZE);
            let envelope_exists = self.states.get(sector) == Some(&SectorState::InUse)
                && self.sequences[sector] == entry.envelope_sequence;
            if !envelope_exists {
                self.entries[slot] = crate::spool::MessageEntry::EMPTY;
            }
        }
    }

    async fn erase_sector(&mut self, index: usize) -> Result<(), SpoolError<F::Error>> {
        let address = self.sector_address(index);
        self.states[index] = SectorState::Garbage;
        self.flash.erase(address, address + F::ERASE_SIZE as u32).await?;
        self.statistics.sectors_erased += 1;
        self.states[index] = SectorState::Erased;
        Ok(())
    }

    /// Erases every unreadable sector and every sector that holds nothing live; returns the
    /// number erased. Call it after mount and when idle; [`Spool::delete`] calls it too.
    pub async fn maintain(&mut self) -> Result<u32, SpoolError<F::Error>> {
        let mut erased = 0;
        // Unreadable sectors first: they may hold records a tombstone still has to cancel.
        for index in 0..self.sector_count {
            if self.states[index] == SectorState::Garbage {
                self.erase_sector(index).await?;
                erased += 1;
            }
        }
        loop {
            self.forget_settled_entries();
            let candidate = (0..self.sector_count)
                .find(|&index| self.states[index] == SectorState::InUse && !self.sector_is_live(index));
            if let Some(index) = candidate {
                self.erase_sector(index).await?;
                erased += 1;
                continue;
            }
            // The table is full and the head sector alone keeps slots of deleted or abandoned
            // messages (their envelopes are in it): close it so it can be reclaimed, or no
            // message could ever be admitted again. Costs the rest of that sector.
            if self.table_pinned_by_head() {
                self.head = None;
                continue;
            }
            break;
        }
        self.forget_settled_entries();
        Ok(erased)
    }

    /// Whether no slot is free and some slot is held only because its deleted or abandoned
    /// message's envelope lies in the head sector.
    fn table_pinned_by_head(&self) -> bool {
        let Some(head) = self.head else { return false };
        let full = self.entries.iter().all(|entry| entry.status != EntryStatus::Free);
        full && self.entries.iter().any(|entry| {
            matches!(entry.status, EntryStatus::Deleted | EntryStatus::Abandoned)
                && entry.envelope_at(F::ERASE_SIZE).0 == head.context.index as usize
                && entry.envelope_sequence == head.context.sequence
        })
    }
}
