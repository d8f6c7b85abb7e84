//! The envelope (queued-at time, reverse path, recipients) and the per-recipient delivery
//! state.
//!
//! **Encoding** (format version 2), all integers little-endian:
//!
//! ```text
//! queued_at u64 | recipient count u8 (1..=128) | reverse path length u16 | reverse path
//!   | per recipient: length u16 | address
//! ```
//!
//! At most [`ENVELOPE_CAPACITY`] bytes. On flash the encoding is cut into parts of at most
//! [`ENVELOPE_PART_CAPACITY`] bytes, part `i` in the envelope record with index `i` (see
//! [`crate::layout`]); part 0 always holds the queued-at time and the recipient count.

use crate::layout::{RECORD_PAYLOAD_CAPACITY, STATE_PAYLOAD_SIZE};

/// Most recipients one queued message can have: RFC 5321 4.5.3.1.8 asks a server to accept
/// at least 100 (the SMTP server answers 452 beyond this one, and the client sends the rest
/// in another transaction).
pub const MAX_RECIPIENTS: usize = 128;
/// Largest encoded envelope: 11 + reverse path + recipients × (2 + address).
pub const ENVELOPE_CAPACITY: usize = 4096;
/// Bytes of the encoded envelope one envelope record carries.
pub const ENVELOPE_PART_CAPACITY: usize = RECORD_PAYLOAD_CAPACITY;
/// Most envelope records one message has.
pub const MAX_ENVELOPE_PARTS: usize = ENVELOPE_CAPACITY.div_ceil(ENVELOPE_PART_CAPACITY);
/// Bytes before the first address field: queued-at time and recipient count.
pub(crate) const ENVELOPE_PREFIX_SIZE: usize = 9;

/// The SMTP envelope of a message, borrowing the addresses where they are: the caller's list,
/// the receiving session's transaction ([`EnvelopeFields`]), or the encoded envelope read
/// from flash. About 40 bytes whatever the recipient count: a session's future holds it across
/// the spool's writes.
#[derive(Debug, Clone, Copy)]
pub struct Envelope<'a> {
    queued_at: u64,
    reverse_path: &'a [u8],
    recipients: Recipients<'a>,
}

/// Where an [`Envelope`]'s recipients are (checked when the envelope was made).
#[derive(Debug, Clone, Copy)]
enum Recipients<'a> {
    /// The caller's list.
    List(&'a [&'a [u8]]),
    /// As encoded: `count` times a length (u16 LE) and the address.
    Encoded { bytes: &'a [u8], count: usize },
}

/// The recipients of an [`Envelope`], in the order given.
#[derive(Debug, Clone)]
pub struct RecipientIter<'a> {
    recipients: Recipients<'a>,
    /// Recipients yielded so far.
    index: usize,
    /// Encoded: where the next length field is.
    position: usize,
}

impl<'a> Iterator for RecipientIter<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let address = match self.recipients {
            Recipients::List(list) => *list.get(self.index)?,
            Recipients::Encoded { bytes, count } => {
                if self.index >= count {
                    return None;
                }
                let length = usize::from(u16::from_le_bytes([*bytes.get(self.position)?, *bytes.get(self.position + 1)?]));
                let address = bytes.get(self.position + 2..self.position + 2 + length)?;
                self.position += 2 + length;
                address
            }
        };
        self.index += 1;
        Some(address)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let count = match self.recipients {
            Recipients::List(list) => list.len(),
            Recipients::Encoded { count, .. } => count,
        };
        let left = count.saturating_sub(self.index);
        (left, Some(left))
    }
}

impl ExactSizeIterator for RecipientIter<'_> {}

/// Two envelopes are equal when their time, reverse path and recipients are, wherever the
/// addresses are kept.
impl PartialEq for Envelope<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.queued_at == other.queued_at && self.reverse_path == other.reverse_path && self.recipients().eq(other.recipients())
    }
}

impl Eq for Envelope<'_> {}

impl<'a> Envelope<'a> {
    /// An envelope with an unknown queued-at time (0); `None` if there are no recipients,
    /// too many, an address longer than 65 535 bytes, or it encodes to more than
    /// [`ENVELOPE_CAPACITY`] bytes.
    pub fn new(reverse_path: &'a [u8], recipients: &'a [&'a [u8]]) -> Option<Self> {
        Self::checked(reverse_path, Recipients::List(recipients))
    }

    fn checked(reverse_path: &'a [u8], recipients: Recipients<'a>) -> Option<Self> {
        let envelope = Self { queued_at: 0, reverse_path, recipients };
        let count = envelope.recipients().len();
        if count == 0 || count > MAX_RECIPIENTS {
            return None;
        }
        let fields_fit = envelope.fields().all(|field| field.len() <= usize::from(u16::MAX));
        (fields_fit && envelope.encoded_length() <= ENVELOPE_CAPACITY).then_some(envelope)
    }

    /// The same envelope accepted at `unix_seconds` (the start of the queue lifetime).
    pub fn with_queued_at(self, unix_seconds: u64) -> Self {
        Self {
            queued_at: unix_seconds,
            ..self
        }
    }

    /// When the message was accepted, in Unix seconds; 0 if unknown.
    pub fn queued_at(&self) -> u64 {
        self.queued_at
    }

    /// The reverse path (MAIL FROM), possibly empty for bounces.
    pub fn reverse_path(&self) -> &'a [u8] {
        self.reverse_path
    }

    /// The forward paths (RCPT TO), in the order given.
    pub fn recipients(&self) -> RecipientIter<'a> {
        RecipientIter { recipients: self.recipients, index: 0, position: 0 }
    }

    /// Forward path `index`, if there is one.
    pub fn recipient(&self, index: usize) -> Option<&'a [u8]> {
        self.recipients().nth(index)
    }

    /// Bytes of the encoded envelope.
    pub fn encoded_length(&self) -> usize {
        ENVELOPE_PREFIX_SIZE + self.fields().map(|field| 2 + field.len()).sum::<usize>()
    }

    /// Number of envelope records the encoded envelope takes (1 to [`MAX_ENVELOPE_PARTS`]).
    pub fn part_count(&self) -> usize {
        self.encoded_length().div_ceil(ENVELOPE_PART_CAPACITY)
    }

    /// The reverse path, then the recipients.
    fn fields(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        core::iter::once(self.reverse_path).chain(self.recipients())
    }

    /// Writes the encoded bytes `skip..skip + out.len()` into `out` (so one record's part
    /// is encoded without a buffer for the whole envelope); returns the bytes written.
    pub(crate) fn encode_range(&self, skip: usize, out: &mut [u8]) -> usize {
        let end = skip + out.len();
        let mut position = 0;
        let mut written = 0;
        let mut put = |piece: &[u8]| {
            let piece_end = position + piece.len();
            let from = skip.max(position);
            let to = end.min(piece_end);
            if from < to {
                out[from - skip..to - skip].copy_from_slice(&piece[from - position..to - position]);
                written += to - from;
            }
            position = piece_end;
            position < end
        };
        if !put(&self.queued_at.to_le_bytes()) || !put(&[self.recipients().len() as u8]) {
            return written;
        }
        for field in self.fields() {
            if !put(&(field.len() as u16).to_le_bytes()) || !put(field) {
                break;
            }
        }
        written
    }

    /// Decodes a whole encoded envelope; `None` if malformed (including trailing bytes).
    pub(crate) fn decode(bytes: &'a [u8]) -> Option<Self> {
        let (queued_at, count) = decode_prefix(bytes)?;
        Some(Self::parse_fields(&bytes[ENVELOPE_PREFIX_SIZE..], count)?.with_queued_at(queued_at))
    }

    /// The envelope whose fields (the encoding after its prefix: the reverse path, then
    /// `count` recipients, each a length (u16 LE) and the address) are exactly `fields`;
    /// `None` if malformed (including trailing bytes).
    fn parse_fields(fields: &'a [u8], count: usize) -> Option<Self> {
        // One field at `position`: the field and where the next starts.
        let field_at = |position: usize| -> Option<(&'a [u8], usize)> {
            let length = usize::from(u16::from_le_bytes([*fields.get(position)?, *fields.get(position + 1)?]));
            Some((fields.get(position + 2..position + 2 + length)?, position + 2 + length))
        };
        let (reverse_path, first_recipient) = field_at(0)?;
        let mut position = first_recipient;
        for _ in 0..count {
            position = field_at(position)?.1;
        }
        (position == fields.len()).then_some(Self {
            queued_at: 0,
            reverse_path,
            recipients: Recipients::Encoded { bytes: &fields[first_recipient..], count },
        })
    }
}

/// Bytes of an encoded envelope after its prefix: what [`EnvelopeFields`] holds.
pub const ENVELOPE_FIELDS_CAPACITY: usize = ENVELOPE_CAPACITY - ENVELOPE_PREFIX_SIZE;

/// An envelope being gathered by a receiving SMTP session, kept as its encoding after the
/// prefix (the reverse path, then each recipient, each a u16 LE length and the address), so
/// that the one bound on it is the spool's own: the encoded envelope fits
/// [`ENVELOPE_CAPACITY`] and has at most [`MAX_RECIPIENTS`] recipients. A recipient beyond
/// either is refused when it is added. About 4.1 KB: no separate reverse-path buffer or
/// recipient-end table.
pub struct EnvelopeFields {
    bytes: [u8; ENVELOPE_FIELDS_CAPACITY],
    /// Bytes of `bytes` in use; 0 stands for an empty reverse path (so that [`Self::new`]
    /// is all zeros).
    length: u16,
    recipients: u8,
}

impl Default for EnvelopeFields {
    fn default() -> Self {
        Self::new()
    }
}

impl EnvelopeFields {
    /// An empty reverse path and no recipients. All zero bytes, so a static of it (a
    /// session's transaction slot) takes no flash for its initial value.
    pub const fn new() -> Self {
        Self { bytes: [0; ENVELOPE_FIELDS_CAPACITY], length: 0, recipients: 0 }
    }

    /// Starts a new envelope with `reverse_path` (empty for bounces) and no recipients; false
    /// (and an empty reverse path) if it would not fit.
    pub fn start(&mut self, reverse_path: &[u8]) -> bool {
        self.recipients = 0;
        self.length = 0;
        let started = self.push_field(&[reverse_path]);
        if !started {
            self.length = 0;
        }
        started
    }

    /// Adds a recipient made of `parts` back to back; false (nothing added) if the envelope
    /// would then encode to more than [`ENVELOPE_CAPACITY`] bytes or have more than
    /// [`MAX_RECIPIENTS`] recipients.
    pub fn push_recipient(&mut self, parts: &[&[u8]]) -> bool {
        if usize::from(self.recipients) >= MAX_RECIPIENTS {
            return false;
        }
        if self.length == 0 {
            // The empty reverse path's field: `length` 0 stands for it until now.
            self.push_field(&[]);
        }
        let added = self.push_field(parts);
        self.recipients += u8::from(added);
        added
    }

    /// Recipients added since the start.
    pub fn recipient_count(&self) -> usize {
        usize::from(self.recipients)
    }

    /// The envelope gathered (queued-at time unknown); `None` without a recipient.
    pub fn envelope(&self) -> Option<Envelope<'_>> {
        let parsed = Envelope::parse_fields(&self.bytes[..usize::from(self.length)], self.recipient_count())?;
        Envelope::checked(parsed.reverse_path, parsed.recipients)
    }

    /// Appends one field (its length, then `parts` back to back) if it fits.
    fn push_field(&mut self, parts: &[&[u8]]) -> bool {
        let field_length: usize = parts.iter().map(|part| part.len()).sum();
        let start = usize::from(self.length);
        let end = start + 2 + field_length;
        if end > ENVELOPE_FIELDS_CAPACITY {
            return false;
        }
        // Fits u16: the capacity is below 64 KiB.
        self.bytes[start..start + 2].copy_from_slice(&(field_length as u16).to_le_bytes());
        let mut position = start + 2;
        for part in parts {
            self.bytes[position..position + part.len()].copy_from_slice(part);
            position += part.len();
        }
        self.length = end as u16;
        true
    }
}

/// The queued-at time and recipient count from the start of an encoded envelope (part 0);
/// `None` if too short or the count is out of range.
pub(crate) fn decode_prefix(bytes: &[u8]) -> Option<(u64, usize)> {
    let prefix = bytes.get(..ENVELOPE_PREFIX_SIZE)?;
    let mut time = [0u8; 8];
    time.copy_from_slice(&prefix[..8]);
    let count = usize::from(prefix[8]);
    (1..=MAX_RECIPIENTS).contains(&count).then_some((u64::from_le_bytes(time), count))
}

/// Where delivery to one recipient stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecipientState {
    /// Not yet delivered; will be tried at the message's next retry time.
    Pending,
    /// Delivered (2xx from the next hop).
    Delivered,
    /// Failed for good (5xx); a notice is due to the sender.
    Failed,
}

/// Delivery state of a queued message: per-recipient outcome, retry time and attempts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryState {
    /// Bit `i` set: recipient `i` was delivered.
    pub delivered: u128,
    /// Bit `i` set: recipient `i` failed for good.
    pub failed: u128,
    /// When to try the pending recipients again, in the caller's clock (e.g. Unix seconds).
    pub next_retry: u64,
    /// Delivery attempts made so far.
    pub attempts: u32,
}

/// The bit of recipient `index`, 0 beyond the bitmap.
fn bit(index: usize) -> u128 {
    u32::try_from(index).ok().and_then(|index| 1u128.checked_shl(index)).unwrap_or(0)
}

impl DeliveryState {
    /// The state of recipient `index` (`Pending` for indexes beyond [`MAX_RECIPIENTS`]).
    pub fn recipient(&self, index: usize) -> RecipientState {
        let bit = bit(index);
        if self.delivered & bit != 0 {
            RecipientState::Delivered
        } else if self.failed & bit != 0 {
            RecipientState::Failed
        } else {
            RecipientState::Pending
        }
    }

    /// Sets the state of recipient `index` (ignored beyond [`MAX_RECIPIENTS`]).
    pub fn set_recipient(&mut self, index: usize, state: RecipientState) {
        let bit = bit(index);
        self.delivered &= !bit;
        self.failed &= !bit;
        match state {
            RecipientState::Pending => {}
            RecipientState::Delivered => self.delivered |= bit,
            RecipientState::Failed => self.failed |= bit,
        }
    }

    /// Whether no recipient of `recipient_count` is pending any more.
    pub fn is_finished(&self, recipient_count: usize) -> bool {
        (0..recipient_count).all(|index| self.recipient(index) != RecipientState::Pending)
    }

    pub(crate) fn encode(&self) -> [u8; STATE_PAYLOAD_SIZE] {
        let mut bytes = [0u8; STATE_PAYLOAD_SIZE];
        bytes[..16].copy_from_slice(&self.delivered.to_le_bytes());
        bytes[16..32].copy_from_slice(&self.failed.to_le_bytes());
        bytes[32..40].copy_from_slice(&self.next_retry.to_le_bytes());
        bytes[40..44].copy_from_slice(&self.attempts.to_le_bytes());
        bytes
    }

    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        let bytes: &[u8; STATE_PAYLOAD_SIZE] = bytes.try_into().ok()?;
        let mut delivered = [0u8; 16];
        let mut failed = [0u8; 16];
        let mut retry = [0u8; 8];
        let mut attempts = [0u8; 4];
        delivered.copy_from_slice(&bytes[..16]);
        failed.copy_from_slice(&bytes[16..32]);
        retry.copy_from_slice(&bytes[32..40]);
        attempts.copy_from_slice(&bytes[40..44]);
        Some(Self {
            delivered: u128::from_le_bytes(delivered),
            failed: u128::from_le_bytes(failed),
            next_retry: u64::from_le_bytes(retry),
            attempts: u32::from_le_bytes(attempts),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addresses(count: usize) -> std::vec::Vec<std::vec::Vec<u8>> {
        (0..count).map(|index| std::format!("recipient-{index:03}@example.org").into_bytes()).collect()
    }

    #[test]
    fn encode_range_matches_whole_encoding_for_every_split() {
        let owned = addresses(100);
        let list: std::vec::Vec<&[u8]> = owned.iter().map(|a| a.as_slice()).collect();
        let envelope = Envelope::new(b"sender@example.net", &list).unwrap().with_queued_at(1_700_000_000);
        let length = envelope.encoded_length();
        assert!(length > 2 * ENVELOPE_PART_CAPACITY && envelope.part_count() == 3);
        let mut whole = std::vec![0u8; length];
        assert_eq!(envelope.encode_range(0, &mut whole), length);
        for part in [1usize, 7, 100, 1024] {
            let mut joined = std::vec::Vec::new();
            let mut skip = 0;
            while skip < length {
                let mut piece = std::vec![0u8; part.min(length - skip)];
                assert_eq!(envelope.encode_range(skip, &mut piece), piece.len());
                joined.extend_from_slice(&piece);
                skip += part;
            }
            assert_eq!(joined, whole, "parts of {part}");
        }
        let decoded = Envelope::decode(&whole).unwrap();
        assert_eq!(decoded, envelope);
        assert_eq!(decoded.queued_at(), 1_700_000_000);
        assert_eq!(decode_prefix(&whole), Some((1_700_000_000, 100)));
        assert!(Envelope::decode(&whole[..length - 1]).is_none(), "truncated");
        let mut longer = whole.clone();
        longer.push(0);
        assert!(Envelope::decode(&longer).is_none(), "trailing bytes");
    }

    #[test]
    fn gathered_fields_make_the_same_envelope_and_stop_at_the_spool_bounds() {
        let owned = addresses(5);
        let list: std::vec::Vec<&[u8]> = owned.iter().map(|a| a.as_slice()).collect();
        let mut fields = EnvelopeFields::new();
        assert!(fields.envelope().is_none(), "no recipient");
        assert!(fields.start(b"s@x"));
        assert!(fields.envelope().is_none(), "no recipient");
        for (index, address) in list.iter().enumerate() {
            let (local, domain) = address.split_at(index);
            assert!(fields.push_recipient(&[local, domain]));
        }
        let gathered = fields.envelope().unwrap();
        assert_eq!(gathered, Envelope::new(b"s@x", &list).unwrap());
        assert_eq!(fields.recipient_count(), 5);
        assert_eq!(gathered.recipient(4), Some(list[4]));
        assert_eq!(gathered.recipient(5), None);
        let mut whole = std::vec![0u8; gathered.encoded_length()];
        gathered.encode_range(0, &mut whole);
        assert_eq!(Envelope::decode(&whole).unwrap(), gathered, "decoded from flash, the same envelope");
        assert_eq!(&whole[ENVELOPE_PREFIX_SIZE..], &fields.bytes[..usize::from(fields.length)], "the encoding after the prefix");

        // A new start forgets the recipients; a bounce has an empty reverse path.
        assert!(fields.start(b""));
        assert!(fields.envelope().is_none());
        assert!(fields.push_recipient(&[b"a@b"]));
        assert_eq!(fields.envelope().unwrap(), Envelope::new(b"", &[b"a@b"]).unwrap());

        // The count bound: MAX_RECIPIENTS, then no more.
        assert!(fields.start(b"s@x"));
        for _ in 0..MAX_RECIPIENTS {
            assert!(fields.push_recipient(&[b"a@b"]));
        }
        assert!(!fields.push_recipient(&[b"a@b"]), "one too many");
        assert_eq!(fields.envelope().unwrap().recipients().len(), MAX_RECIPIENTS);

        // The size bound: filled to exactly ENVELOPE_CAPACITY encoded, not a byte beyond.
        let long = [b'a'; 250];
        assert!(fields.start(&long));
        let mut added = 0;
        while fields.push_recipient(&[&long]) {
            added += 1;
        }
        let left = ENVELOPE_CAPACITY - fields.envelope().unwrap().encoded_length();
        assert!(left < 2 + long.len(), "refused only when it no longer fits");
        assert_eq!(fields.envelope().unwrap().recipients().len(), added);
        if left >= 2 {
            assert!(fields.push_recipient(&[&long[..left - 2]]), "the last byte fits");
            assert_eq!(fields.envelope().unwrap().encoded_length(), ENVELOPE_CAPACITY);
        }
        assert!(!fields.push_recipient(&[b""]), "full");

        // A reverse path that cannot fit leaves an empty one and refuses to start.
        let huge = std::vec![b'x'; ENVELOPE_CAPACITY];
        assert!(!fields.start(&huge));
        assert!(fields.push_recipient(&[b"a@b"]));
        assert_eq!(fields.envelope().unwrap().reverse_path(), b"");
    }

    #[test]
    fn limits() {
        let owned = addresses(MAX_RECIPIENTS + 1);
        let list: std::vec::Vec<&[u8]> = owned.iter().map(|a| a.as_slice()).collect();
        assert!(Envelope::new(b"s@x", &list[..MAX_RECIPIENTS]).is_some());
        assert!(Envelope::new(b"s@x", &list).is_none());
        assert!(Envelope::new(b"s@x", &[]).is_none());
        let long = std::vec![b'x'; ENVELOPE_CAPACITY - ENVELOPE_PREFIX_SIZE - 4];
        let exact = Envelope::new(&long, &[b""]).unwrap();
        assert_eq!(exact.encoded_length(), ENVELOPE_CAPACITY);
        assert_eq!(exact.part_count(), MAX_ENVELOPE_PARTS);
        assert!(Envelope::new(&long, &[b"a"]).is_none());
        let mut zero_count = [0u8; ENVELOPE_PREFIX_SIZE + 2];
        assert!(Envelope::decode(&zero_count).is_none());
        zero_count[8] = (MAX_RECIPIENTS + 1) as u8;
        assert!(decode_prefix(&zero_count).is_none());
    }

    #[test]
    fn delivery_state_covers_every_recipient() {
        let mut state = DeliveryState::default();
        for index in 0..MAX_RECIPIENTS {
            assert_eq!(state.recipient(index), RecipientState::Pending);
            let wanted = if index % 3 == 0 { RecipientState::Failed } else { RecipientState::Delivered };
            state.set_recipient(index, wanted);
            assert_eq!(state.recipient(index), wanted);
            assert!(state.is_finished(index + 1));
            assert!(!state.is_finished(index + 2) || index + 1 == MAX_RECIPIENTS);
        }
        state.set_recipient(127, RecipientState::Pending);
        assert!(!state.is_finished(128));
        state.set_recipient(MAX_RECIPIENTS, RecipientState::Delivered);
        assert_eq!(state.recipient(MAX_RECIPIENTS), RecipientState::Pending);
        assert_eq!(state.recipient(usize::MAX), RecipientState::Pending);
        state.next_retry = u64::MAX - 1;
        state.attempts = 77;
        assert_eq!(DeliveryState::decode(&state.encode()), Some(state));
        assert_eq!(DeliveryState::decode(&[0; STATE_PAYLOAD_SIZE - 1]), None);
    }
}
