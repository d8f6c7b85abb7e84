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
    let start = encoding_room(payload.len())?;
    output.get_mut(start..start + payload.len()).ok_or(FrameError::OutputTooSmall)?.copy_from_slice(payload);
    encode_frame_in_place(output, start, payload.len())
}

/// Bytes a frame's COBS encoding needs in front of its payload when encoded in place (one code
/// byte, and one more for each run of 254 non-zero bytes of payload and CRC).
fn encoding_room(payload_length: usize) -> Result<usize, FrameError> {
    if payload_length + CHECKSUM_LENGTH > MAX_PAYLOAD {
        return Err(FrameError::TooLong);
    }
    Ok(1 + (payload_length + CHECKSUM_LENGTH) / 254)
}

/// Where [`encode_frame_in_place`] wants a payload of at most [`MAX_PAYLOAD`] - [`CHECKSUM_LENGTH`]
/// bytes placed in a buffer of [`MAX_ENCODED_FRAME`] bytes.
pub const IN_PLACE_PAYLOAD_OFFSET: usize = MAX_ENCODED_FRAME - MAX_PAYLOAD;

/// Frames the payload at `buffer[start..start + payload_length]` in place: its CRC is appended,
/// payload and CRC are COBS-encoded to the start of `buffer`, the delimiter follows. Returns
/// the frame's length. `start` must leave room for the encoding's overhead (for the longest
/// payload, [`IN_PLACE_PAYLOAD_OFFSET`]): the writer then never passes the reader.
pub fn encode_frame_in_place(buffer: &mut [u8], start: usize, payload_length: usize) -> Result<usize, FrameError> {
    if start < encoding_room(payload_length)? {
        return Err(FrameError::OutputTooSmall);
    }
    let end = start + payload_length;
    let crc = checksum(buffer.get(start..end).ok_or(FrameError::OutputTooSmall)?).to_le_bytes();
    buffer.get_mut(end..end + CHECKSUM_LENGTH).ok_or(FrameError::OutputTooSmall)?.copy_from_slice(&crc);
    // COBS, byte for byte as `cobs::CobsEncoder` writes it: each block is a code byte (the
    // block's length + 1) and up to 254 non-zero bytes; a zero ends a block; a full block at
    // the very end is not followed by an empty one. Output position
    // `write` stays at or below the input position being read, as `start` covers the code
    // bytes written ahead of the data.
    let mut code_at = 0;
    let mut write = 1;
    let mut code = 1u8;
    let mut full_block_ended = false;
    for read in start..end + CHECKSUM_LENGTH {
        let byte = buffer[read];
        full_block_ended = false;
        if byte == 0 {
            buffer[code_at] = code;
            code_at = write;
            write += 1;
            code = 1;
        } else {
            buffer[write] = byte;
            write += 1;
            code += 1;
            if code == 0xFF {
                buffer[code_at] = code;
                code_at = write;
                write += 1;
                code = 1;
                full_block_ended = true;
            }
        }
    }
    if full_block_ended {
        write = code_at;
    } else {
        buffer[code_at] = code;
    }
    *buffer.get_mut(write).ok_or(FrameError::OutputTooSmall)? = DELIMITER;
    Ok(write + 1)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The frame as the `cobs` crate's encoder writes it.
    fn reference_frame(payload: &[u8]) -> ([u8; MAX_ENCODED_FRAME], usize) {
        let mut output = [0; MAX_ENCODED_FRAME];
        let crc = checksum(payload).to_le_bytes();
        let mut encoder = cobs::CobsEncoder::new(&mut output);
        encoder.push(payload).unwrap();
        encoder.push(&crc).unwrap();
        let length = encoder.finalize();
        output[length] = DELIMITER;
        (output, length + 1)
    }

    #[test]
    fn frames_byte_for_byte_as_the_cobs_crate() {
        let mut state = 0x2545_f491_u32;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state
        };
        let limit = MAX_PAYLOAD - CHECKSUM_LENGTH;
        let mut payloads: std::vec::Vec<std::vec::Vec<u8>> = std::vec::Vec::new();
        for length in [0, 1, 249, 250, 251, 253, 254, 255, 500, 504, 508, 762, 1012, 1016, limit - 1, limit] {
            payloads.push(vec![0x41; length]);
            payloads.push(vec![0; length]);
        }
        for _ in 0..2000 {
            let length = next() as usize % (limit + 1);
            let zero_every = 1 + next() % 400;
            payloads.push((0..length).map(|_| if next() % zero_every == 0 { 0 } else { next() as u8 | 1 }).collect());
        }
        for payload in payloads {
            let (expected, expected_length) = reference_frame(&payload);
            let mut output = [0; MAX_ENCODED_FRAME];
            let length = encode_frame(&payload, &mut output).unwrap();
            assert_eq!(&output[..length], &expected[..expected_length], "payload of {} bytes", payload.len());
            let mut buffer = [0xEE; MAX_ENCODED_FRAME];
            buffer[IN_PLACE_PAYLOAD_OFFSET..IN_PLACE_PAYLOAD_OFFSET + payload.len()].copy_from_slice(&payload);
            let length = encode_frame_in_place(&mut buffer, IN_PLACE_PAYLOAD_OFFSET, payload.len()).unwrap();
            assert_eq!(&buffer[..length], &expected[..expected_length], "in place, payload of {} bytes", payload.len());
            if !payload.is_empty() {
                let mut decoded = buffer;
                assert_eq!(decode_frame(&mut decoded[..length - 1]).unwrap(), &payload[..]);
            }
        }
    }

    #[test]
    fn refuses_too_little_room_in_front() {
        let mut buffer = [1; MAX_ENCODED_FRAME];
        assert_eq!(encode_frame_in_place(&mut buffer, 0, 10), Err(FrameError::OutputTooSmall));
        assert_eq!(encode_frame_in_place(&mut buffer, 4, MAX_PAYLOAD - CHECKSUM_LENGTH), Err(FrameError::OutputTooSmall));
        assert_eq!(encode_frame_in_place(&mut buffer, 1, MAX_PAYLOAD), Err(FrameError::TooLong));
        assert_eq!(encode_frame_in_place(&mut buffer, 1, 1200), Err(FrameError::TooLong));
        assert!(encode_frame(&[1; MAX_PAYLOAD - CHECKSUM_LENGTH], &mut [0; MAX_ENCODED_FRAME - 1]).is_err());
    }
}
