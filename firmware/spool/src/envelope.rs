//! The envelope (reverse path, recipients) and the per-recipient delivery state.

use crate::layout::{RECORD_PAYLOAD_CAPACITY, STATE_PAYLOAD_SIZE};

/// Most recipients one queued message can have (the SMTP server answers 452 beyond it,
/// and the client sends the rest in another transaction, as RFC 5321 allows).
pub const MAX_RECIPIENTS: usize = 32;
/// Largest encoded envelope: 1 + (2 + reverse path) + recipients × (2 + address).
pub const ENVELOPE_CAPACITY: usize = RECORD_PAYLOAD_CAPACITY;

/// The SMTP envelope of a message, borrowing the addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Envelope<'a> {
    reverse_path: &'a [u8],
    recipients: [&'a [u8]; MAX_RECIPIENTS],
    recipient_count: usize,
}

impl<'a> Envelope<'a> {
    /// An envelope; `None` if there are no recipients, too many, or it encodes to more than
    /// [`ENVELOPE_CAPACITY`] bytes.
    pub fn new(reverse_path: &'a [u8], recipients: &[&'a [u8]]) -> Option<Self> {
        if recipients.is_empty() || recipients.len() > MAX_RECIPIENTS {
            return None;
        }
        let mut all: [&'a [u8]; MAX_RECIPIENTS] = [&[]; MAX_RECIPIENTS];
        all[..recipients.len()].copy_from_slice(recipients);
        let envelope = Self {
            reverse_path,
            recipients: all,
            recipient_count: recipients.len(),
        };
        (envelope.encoded_length() <= ENVELOPE_CAPACITY).then_some(envelope)
    }

    /// The reverse path (MAIL FROM), possibly empty for bounces.
    pub fn reverse_path(&self) -> &'a [u8] {
        self.reverse_path
    }

    /// The forward paths (RCPT TO), in the order given.
    pub fn recipients(&self) -> &[&'a [u8]] {
        &self.recipients[..self.recipient_count]
    }

    /// Bytes of the encoded envelope.
    pub fn encoded_length(&self) -> usize {
        3 + self.reverse_path.len() + self.recipients().iter().map(|r| 2 + r.len()).sum::<usize>()
    }

    /// Encodes into `out` (at least [`Self::encoded_length`] bytes); returns the length.
    pub(crate) fn encode(&self, out: &mut [u8]) -> usize {
        let mut position = 0;
        out[position] = self.recipient_count as u8;
        position += 1;
        for field in core::iter::once(&self.reverse_path).chain(self.recipients().iter()) {
            out[position..position + 2].copy_from_slice(&(field.len() as u16).to_le_bytes());
            out[position + 2..position + 2 + field.len()].copy_from_slice(field);
            position += 2 + field.len();
        }
        position
    }

    /// Decodes an envelope; `None` if malformed.
    pub(crate) fn decode(bytes: &'a [u8]) -> Option<Self> {
        let count = usize::from(*bytes.first()?);
        if count == 0 || count > MAX_RECIPIENTS {
            return None;
        }
        let mut position = 1;
        let mut take = || -> Option<&'a [u8]> {
            let length = usize::from(u16::from_le_bytes([*bytes.get(position)?, *bytes.get(position + 1)?]));
            let field = bytes.get(position + 2..position + 2 + length)?;
            position += 2 + length;
            Some(field)
        };
        let reverse_path = take()?;
        let mut recipients: [&'a [u8]; MAX_RECIPIENTS] = [&[]; MAX_RECIPIENTS];
        for slot in recipients.iter_mut().take(count) {
            *slot = take()?;
        }
        Some(Self {
            reverse_path,
            recipients,
            recipient_count: count,
        })
    }
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
    pub delivered: u32,
    /// Bit `i` set: recipient `i` failed for good.
    pub failed: u32,
    /// When to try the pending recipients again, in the caller's clock (e.g. Unix seconds).
    pub next_retry: u64,
    /// Delivery attempts made so far.
    pub attempts: u32,
}

impl DeliveryState {
    /// The state of recipient `index`.
    pub fn recipient(&self, index: usize) -> RecipientState {
        let bit = 1u32.checked_shl(index as u32).unwrap_or(0);
        if self.delivered & bit != 0 {
            RecipientState::Delivered
        } else if self.failed & bit != 0 {
            RecipientState::Failed
        } else {
            RecipientState::Pending
        }
    }

    /// Whether no recipient of `recipient_count` is pending any more.
    pub fn is_finished(&self, recipient_count: usize) -> bool {
        (0..recipient_count).all(|index| self.recipient(index) != RecipientState::Pending)
    }

    pub(crate) fn encode(&self) -> [u8; STATE_PAYLOAD_SIZE] {
        let mut bytes = [0u8; STATE_PAYLOAD_SIZE];
        bytes[..4].copy_from_slice(&self.delivered.to_le_bytes());
        bytes[4..8].copy_from_slice(&self.failed.to_le_bytes());
        bytes[8..16].copy_from_slice(&self.next_retry.to_le_bytes());
        bytes[16..20].copy_from_slice(&self.attempts.to_le_bytes());
        bytes
    }

    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != STATE_PAYLOAD_SIZE {
            return None;
        }
        let word = |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
        let mut retry = [0u8; 8];
        retry.copy_from_slice(&bytes[8..16]);
        Some(Self {
            delivered: word(0),
            failed: word(4),
            next_retry: u64::from_le_bytes(retry),
            attempts: word(16),
        })
    }
}
