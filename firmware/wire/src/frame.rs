//! Framing: a payload plus its CRC-32, COBS-encoded, ended by a `0x00` delimiter.
//!
//! ```text
//! wire:     [ COBS( payload | CRC-32 LE ) ] [ 0x00 ]
//! payload:  [ version ] [ body ... ]          at most MAX_PAYLOAD - 4 bytes
//! ```
//!
//! [`FrameReceiver`] collects bytes up to a delimiter with a bounded buffer; [`decode_frame`]
//! checks a collected frame before anything trusts it; [`encode_frame`] writes one.

use crate::{MAX_ENCODED_FRAME, MAX_PAYLOAD};

/// Bytes of CRC-32 at the end of every decoded frame.
pub const CHECKSUM_LENGTH: usize = 4;

/// The frame delimiter.
pub const DELIMITER: u8 = 0x00;

/// CRC-32 (ISO-HDLC, the one of Ethernet and zlib) over the payload.
const CHECKSUM: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

/// Why a frame could not be taken apart or put together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// More bytes than [`MAX_ENCODED_FRAME`] arrived before a delimiter; they were dropped.
    TooLong,
    /// The bytes are not valid COBS.
    BadEncoding,
    /// The decoded frame is shorter than a version byte and a checksum.
    TooShort,
    /// The CRC-32 does not match the payload: the frame was damaged on the way.
    BadChecksum,
    /// The output buffer is too small for the frame (a programming error on the sending side).
    OutputTooSmall,
}

impl FrameError {
    /// A one-line description for people.
    pub fn describe(self) -> &'static str {
        match self {
            FrameError::TooLong => "frame longer than the protocol's maximum",
            FrameError::BadEncoding => "frame is not valid COBS",
            FrameError::TooShort => "frame too short to hold a version and a checksum",
            FrameError::BadChecksum => "frame checksum (CRC-32) does not match: damaged in transit",
            FrameError::OutputTooSmall => "frame does not fit the output buffer",
        }
    }
}

/// CRC-32 of `bytes` as used in frames.
pub fn checksum(bytes: &[u8]) -> u32 {
    CHECKSUM.checksum(bytes)
}

/// Writes `payload` as one frame (COBS of payload and CRC, then the delimiter) into `output`;
/// returns the number of bytes written.
pub fn encode_frame(payload: &[u8], output: &mut [u8]) -> Result<usize, FrameError> {
    if payload.len() + CHECKSUM_LENGTH > MAX_PAYLOAD {
        return Err(FrameError::TooLong);
    }
    let crc = checksum(payload).to_le_bytes();
    let mut encoder = cobs::CobsEncoder::new(output);
    encoder.push(payload).map_err(|_| FrameError::OutputTooSmall)?;
    encoder.push(&crc).map_err(|_| FrameError::OutputTooSmall)?;
    let length = encoder.finalize();
    let delimiter = output.get_mut(length).ok_or(FrameError::OutputTooSmall)?;
    *delimiter = DELIMITER;
    Ok(length + 1)
}

/// Decodes one collected frame (the bytes before the delimiter) in place, checks its length and
/// CRC, and returns the payload without the CRC. Never panics, whatever the bytes.
pub fn decode_frame(encoded: &mut [u8]) -> Result<&[u8], FrameError> {
    if encoded.len() > MAX_ENCODED_FRAME {
        return Err(FrameError::TooLong);
    }
    if encoded.contains(&DELIMITER) {
        return Err(FrameError::BadEncoding);
    }
    let length = cobs::decode_in_place(encoded).map_err(|_| FrameError::BadEncoding)?;
    if length > MAX_PAYLOAD || length > encoded.len() {
        return Err(FrameError::TooLong);
    }
    if length < 1 + CHECKSUM_LENGTH {
        return Err(FrameError::TooShort);
    }
    let (payload, crc) = encoded[..length].split_at(length - CHECKSUM_LENGTH);
    let expected = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    if checksum(payload) != expected {
        return Err(FrameError::BadChecksum);
    }
    Ok(payload)
}

/// What [`FrameReceiver::push`] found in the bytes it was given.
#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    /// All bytes were taken; no delimiter yet.
    NeedMore,
    /// A delimiter ended an empty frame (line noise or a resynchronising `0x00`): ignore it.
    Empty,
    /// A delimiter ended a frame of this many encoded bytes, now in [`FrameReceiver::frame`].
    Frame(usize),
    /// A delimiter ended a frame that was longer than [`MAX_ENCODED_FRAME`]; it was dropped.
    Overflow,
}

/// Collects bytes up to a delimiter in a fixed buffer. Bytes past the maximum are dropped and
/// reported as [`Received::Overflow`] when the delimiter comes, so the stream resynchronises.
pub struct FrameReceiver {
    buffer: [u8; MAX_ENCODED_FRAME],
    length: usize,
    overflowed: bool,
}

impl Default for FrameReceiver {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameReceiver {
    /// An empty receiver.
    pub const fn new() -> Self {
        Self { buffer: [0; MAX_ENCODED_FRAME], length: 0, overflowed: false }
    }

    /// Takes bytes from `input` up to and including the first delimiter. Returns how many bytes
    /// were taken and what they completed.
    pub fn push(&mut self, input: &[u8]) -> (usize, Received) {
        for (index, &byte) in input.iter().enumerate() {
            if byte == DELIMITER {
                let length = core::mem::replace(&mut self.length, 0);
                let result = if core::mem::replace(&mut self.overflowed, false) {
                    Received::Overflow
                } else if length == 0 {
                    Received::Empty
                } else {
                    Received::Frame(length)
                };
                return (index + 1, result);
            }
            if self.length < self.buffer.len() {
                self.buffer[self.length] = byte;
                self.length += 1;
            } else {
                self.overflowed = true;
            }
        }
        (input.len(), Received::NeedMore)
    }

    /// The last completed frame's encoded bytes (valid after [`Received::Frame`] until the next
    /// push), mutable so it can be decoded in place.
    pub fn frame(&mut self, length: usize) -> &mut [u8] {
        let length = length.min(self.buffer.len());
        &mut self.buffer[..length]
    }

    /// The whole buffer as scratch space; its contents are undefined afterwards. Only call it
    /// when no frame is being collected (right after a completed frame has been handled).
    pub fn scratch(&mut self) -> &mut [u8; MAX_ENCODED_FRAME] {
        &mut self.buffer
    }

    /// True while a partial frame is being collected.
    pub fn in_progress(&self) -> bool {
        self.length != 0 || self.overflowed
    }
}
