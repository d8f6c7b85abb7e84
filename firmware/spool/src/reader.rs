//! Reading queued messages back: the envelope, then the data chunk by chunk.
//!
//! A reader walks the log forward from the message's first envelope record, skipping
//! records of other messages, and hands out the envelope parts and then the chunks in
//! order, each authenticated before a byte of it is returned. A part or chunk that is
//! missing, out of order or not authentic ends the read with [`SpoolError::Corrupt`] and
//! marks the message damaged: it is never delivered as good.

use crate::crypto::SectorContext;
use crate::envelope::{Envelope, ENVELOPE_CAPACITY};
use crate::error::SpoolError;
use crate::layout::{record_extent, sector_header_extent, RecordHeader, RecordKind, RECORD_HEADER_SIZE};
use crate::spool::{EntryStatus, MessageId, Spool, CHUNK_CAPACITY};
use crate::RandomSource;
use embedded_storage_async::nor_flash::NorFlash;

/// A position in a queued message's data; owned by the delivering task.
#[derive(Debug, Clone, Copy)]
pub struct MessageReader {
    id: u32,
    context: SectorContext,
    offset: u32,
    next_chunk: u32,
    chunk_count: u32,
}

impl MessageReader {
    /// The message being read.
    pub fn id(&self) -> MessageId {
        MessageId(self.id)
    }
}

impl<F: NorFlash, R: RandomSource, const SECTORS: usize, const MESSAGES: usize>
    Spool<F, R, SECTORS, MESSAGES>
{
    fn mark_damaged(&mut self, id: u32) -> SpoolError<F::Error> {
        if let Some(slot) = self.find_entry(id) {
            if self.entries[slot].status == EntryStatus::Queued {
                self.entries[slot].status = EntryStatus::Damaged;
            }
        }
        SpoolError::Corrupt
    }

    /// The sector context of a committed message's first envelope record, checked against
    /// the sequence it had when written.
    async fn envelope_context(&mut self, id: u32) -> Result<(SectorContext, u32), SpoolError<F::Error>> {
        let slot = self.find_entry(id).ok_or(SpoolError::UnknownMessage)?;
        let entry = self.entries[slot];
        let (sector, offset) = entry.envelope_at(F::ERASE_SIZE);
        match self.read_sector_header(sector).await? {
            Some(context) if context.sequence == entry.envelope_sequence => Ok((context, offset)),
            _ => Err(self.mark_damaged(id)),
        }
    }

    /// Moves `(context, offset)` forward through the log to the next record of message `id`
    /// (the one at the position itself included) and returns its header, unread. The end
    /// of the log or an undecodable header marks the message damaged.
    async fn seek_own_record(
        &mut self,
        id: u32,
        context: &mut SectorContext,
        offset: &mut u32,
    ) -> Result<(RecordHeader, [u8; RECORD_HEADER_SIZE]), SpoolError<F::Error>> {
        loop {
            let index = context.index as usize;
            let Some(raw) = self.read_record_header(index, *offset).await? else {
                // End of this sector's records: continue in the next sector of the log.
                let next = self.next_in_log(Some((context.sequence, index)));
                let Some(next) = next else { return Err(self.mark_damaged(id)) };
                match self.read_sector_header(next).await? {
                    Some(next_context) => {
                        *context = next_context;
                        *offset = sector_header_extent(F::WRITE_SIZE) as u32;
                        continue;
                    }
                    None => return Err(self.mark_damaged(id)),
                }
            };
            let Some(header) = RecordHeader::decode(&raw) else {
                return Err(self.mark_damaged(id));
            };
            if header.message == id {
                return Ok((header, raw));
            }
            *offset += record_extent(usize::from(header.length), F::WRITE_SIZE) as u32;
        }
    }

    /// Reads and authenticates a queued message's envelope (all its parts) into `buffer`.
    pub async fn read_envelope<'b>(
        &mut self,
        id: MessageId,
        buffer: &'b mut [u8; ENVELOPE_CAPACITY],
    ) -> Result<Envelope<'b>, SpoolError<F::Error>> {
        let slot = self.find_entry(id.0).filter(|&slot| self.entries[slot].is_committed()).ok_or(SpoolError::UnknownMessage)?;
        let parts = u32::from(self.entries[slot].envelope_parts);
        let (mut context, mut offset) = self.envelope_context(id.0).await?;
        let mut part = 0;
        let mut filled = 0;
        while part < parts {
            let (header, raw) = self.seek_own_record(id.0, &mut context, &mut offset).await?;
            let extent = record_extent(usize::from(header.length), F::WRITE_SIZE) as u32;
            match header.kind {
                RecordKind::Envelope if header.index == part => {
                    let length = usize::from(header.length);
                    if filled + length > ENVELOPE_CAPACITY || !self.read_record(&context, offset, header, &raw).await? {
                        return Err(self.mark_damaged(id.0));
                    }
                    buffer[filled..filled + length]
                        .copy_from_slice(&self.buffer[RECORD_HEADER_SIZE..RECORD_HEADER_SIZE + length]);
                    filled += length;
                    part += 1;
                }
                RecordKind::Envelope | RecordKind::Chunk | RecordKind::Commit => return Err(self.mark_damaged(id.0)),
                RecordKind::State | RecordKind::Delete => {}
            }
            offset += extent;
        }
        Envelope::decode(&buffer[..filled]).ok_or(SpoolError::Corrupt)
    }

    /// Starts reading a queued message's data. Damaged messages cannot be opened.
    pub async fn open_message(&mut self, id: MessageId) -> Result<MessageReader, SpoolError<F::Error>> {
        let slot = self.find_entry(id.0).ok_or(SpoolError::UnknownMessage)?;
        let entry = self.entries[slot];
        match entry.status {
            EntryStatus::Queued => {}
            EntryStatus::Damaged => return Err(SpoolError::Corrupt),
            _ => return Err(SpoolError::UnknownMessage),
        }
        let (context, offset) = self.envelope_context(id.0).await?;
        Ok(MessageReader {
            id: id.0,
            context,
            offset,
            next_chunk: 0,
            chunk_count: entry.chunk_count,
        })
    }

    /// Reads the next chunk of data into `out` (at least [`CHUNK_CAPACITY`] bytes); returns
    /// its length, 0 at the end of the message.
    pub async fn read_chunk(&mut self, reader: &mut MessageReader, out: &mut [u8]) -> Result<usize, SpoolError<F::Error>> {
        if out.len() < CHUNK_CAPACITY {
            return Err(SpoolError::BufferTooSmall);
        }
        if reader.next_chunk >= reader.chunk_count {
            return Ok(0);
        }
        if self.find_entry(reader.id).is_none_or(|slot| self.entries[slot].status != EntryStatus::Queued) {
            return Err(SpoolError::UnknownMessage);
        }
        loop {
            let (header, raw) = self.seek_own_record(reader.id, &mut reader.context, &mut reader.offset).await?;
            let extent = record_extent(usize::from(header.length), F::WRITE_SIZE) as u32;
            match header.kind {
                RecordKind::Chunk if header.index == reader.next_chunk => {
                    if !self.read_record(&reader.context, reader.offset, header, &raw).await? {
                        return Err(self.mark_damaged(reader.id));
                    }
                    let length = usize::from(header.length);
                    out[..length].copy_from_slice(&self.buffer[RECORD_HEADER_SIZE..RECORD_HEADER_SIZE + length]);
                    reader.offset += extent;
                    reader.next_chunk += 1;
                    return Ok(length);
                }
                RecordKind::Commit | RecordKind::Chunk => return Err(self.mark_damaged(reader.id)),
                // The envelope parts (read by `read_envelope`), state and delete records.
                RecordKind::Envelope | RecordKind::State | RecordKind::Delete => {}
            }
            reader.offset += extent;
        }
    }
}
