//! The DATA stream: exact dot-unstuffing with `CRLF.CRLF` as the only end (server side) and
//! dot-stuffing (client side), both streaming over arbitrary chunk boundaries.
//!
//! A bare CR or a bare LF is never a line end (SMTP smuggling): the decoder reports it as a
//! fault, keeps swallowing input without producing body, and still ends only at `CRLF.CRLF`.
//!
//! The stuffer is the other way round: a leading dot is doubled after *any* line end, CRLF,
//! bare LF or bare CR, so that a receiver which takes a bare LF or CR as a line end (older
//! MTAs do) never sees a lone `.` line that would end the data early (smuggling), whatever the
//! spool holds. Its end of data is `.CRLF` only right after a CRLF.

/// Why a message in DATA is refused; reported once, when it is first seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataFault {
    /// A CR not followed by LF, or an LF not preceded by CR (SMTP smuggling).
    BareLineEnding,
    /// A text line longer than the limit (including CRLF).
    LineTooLong,
    /// The body grew past the message size limit.
    MessageTooBig,
}

/// What one decoding step found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataStep {
    /// `input[start..end]` is message body (dot-unstuffed, CRLF line ends).
    Body {
        /// First body byte in the input.
        start: usize,
        /// One past the last body byte.
        end: usize,
    },
    /// Input was swallowed without body (a stuffing dot, or data of a refused message).
    Skipped,
    /// `CRLF.CRLF` was reached; the message is over.
    End,
    /// The message became refused now; the body given so far must be discarded.
    Fault(DataFault),
    /// The input held nothing to decide on; the unconsumed rest needs more bytes behind it.
    NeedMore,
}

/// A step's result: what was found and how many input bytes it used up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataOutcome {
    /// Bytes of the input used up; the rest must be offered again with more behind it.
    pub consumed: usize,
    /// What was found.
    pub step: DataStep,
}

/// Streaming decoder of the DATA section (RFC 5321 4.5.2 transparency, 4.1.1.4 end).
#[derive(Clone, Debug)]
pub struct DataDecoder {
    at_line_start: bool,
    line_length: usize,
    body_size: u64,
    fault: Option<DataFault>,
    text_line_limit: usize,
    size_limit: u64,
}

impl DataDecoder {
    /// A decoder at the start of a message, with the text line limit (including CRLF) and
    /// the body size limit in octets.
    pub fn new(text_line_limit: usize, size_limit: u64) -> DataDecoder {
        DataDecoder {
            at_line_start: true,
            line_length: 0,
            body_size: 0,
            fault: None,
            text_line_limit: text_line_limit.max(3),
            size_limit,
        }
    }

    /// Body octets decoded so far (after unstuffing).
    pub fn body_size(&self) -> u64 {
        self.body_size
    }

    /// The fault that refused this message, if any.
    pub fn fault(&self) -> Option<DataFault> {
        self.fault
    }

    /// Decodes from the start of `input`. Call again with the unconsumed rest (plus any new
    /// bytes) until it returns `NeedMore` or `End`.
    pub fn step(&mut self, input: &[u8]) -> DataOutcome {
        let mut index = 0;
        let mut start = 0;
        while index < input.len() {
            if self.at_line_start && input[index] == b'.' {
                match (input.get(index + 1), input.get(index + 2)) {
                    (Some(b'\r'), Some(b'\n')) => {
                        if let Some(outcome) = self.body_before(start, index) {
                            return outcome;
                        }
                        return DataOutcome { consumed: index + 3, step: DataStep::End };
                    }
                    (None, _) | (Some(b'\r'), None) => break,
                    _ => {
                        // A leading dot on a line with more on it is deleted (4.5.2).
                        if let Some(outcome) = self.body_before(start, index) {
                            return outcome;
                        }
                        self.at_line_start = false;
                        index += 1;
                        start = index;
                        continue;
                    }
                }
            }
            self.at_line_start = false;
            let fault = match input[index] {
                b'\r' => match input.get(index + 1) {
                    None => break,
                    Some(b'\n') => {
                        let fault = self.count(2, true);
                        index += 2;
                        self.at_line_start = true;
                        self.line_length = 0;
                        fault
                    }
                    Some(_) => {
                        index += 1;
                        self.count(1, false).or(Some(DataFault::BareLineEnding))
                    }
                },
                b'\n' => {
                    index += 1;
                    self.count(1, false).or(Some(DataFault::BareLineEnding))
                }
                _ => {
                    index += 1;
                    self.count(1, false)
                }
            };
            if let Some(fault) = fault {
                if self.fault.is_none() {
                    self.fault = Some(fault);
                    return DataOutcome { consumed: index, step: DataStep::Fault(fault) };
                }
            }
            if self.fault.is_some() {
                start = index;
            }
        }
        if let Some(outcome) = self.body_before(start, index) {
            return outcome;
        }
        if index > 0 {
            DataOutcome { consumed: index, step: DataStep::Skipped }
        } else {
            DataOutcome { consumed: 0, step: DataStep::NeedMore }
        }
    }

    /// Body `start..end` (if non-empty and the message is not refused), consuming up to `end`.
    fn body_before(&self, start: usize, end: usize) -> Option<DataOutcome> {
        if end > start && self.fault.is_none() {
            Some(DataOutcome { consumed: end, step: DataStep::Body { start, end } })
        } else if end > 0 && start == end {
            // Something (a stuffing dot or refused data) was swallowed before `end`.
            Some(DataOutcome { consumed: end, step: DataStep::Skipped })
        } else {
            None
        }
    }

    /// Counts `octets` of body on the current line; reports a limit it crosses.
    fn count(&mut self, octets: usize, line_end: bool) -> Option<DataFault> {
        self.body_size += octets as u64;
        self.line_length += octets;
        if self.body_size > self.size_limit {
            return Some(DataFault::MessageTooBig);
        }
        // A line that cannot end within the limit any more is too long already.
        let room_for_crlf = if line_end { 0 } else { 2 };
        if self.line_length + room_for_crlf > self.text_line_limit {
            return Some(DataFault::LineTooLong);
        }
        None
    }
}

/// Streaming dot-stuffer for a client sending DATA (RFC 5321 4.5.2).
#[derive(Clone, Debug)]
pub struct DotStuffer {
    /// The previous octet ended a line in any reading (CR, LF) or nothing was sent yet.
    at_line_start: bool,
    /// The previous octet was a CR.
    after_cr: bool,
    /// The octets sent so far end with CRLF (or there are none).
    after_crlf: bool,
}

impl Default for DotStuffer {
    fn default() -> Self {
        DotStuffer::new()
    }
}

impl DotStuffer {
    /// A stuffer at the start of a message.
    pub const fn new() -> DotStuffer {
        DotStuffer { at_line_start: true, after_cr: false, after_crlf: true }
    }

    /// Stuffs as much of `body` into `output` as fits; returns (body bytes used, output bytes
    /// written). A line start is the byte after a CR or an LF (so after CRLF too).
    pub fn encode(&mut self, body: &[u8], output: &mut [u8]) -> (usize, usize) {
        let mut used = 0;
        let mut written = 0;
        for &byte in body {
            let needed = if self.at_line_start && byte == b'.' { 2 } else { 1 };
            if written + needed > output.len() {
                break;
            }
            if needed == 2 {
                output[written] = b'.';
                written += 1;
            }
            output[written] = byte;
            written += 1;
            used += 1;
            self.at_line_start = byte == b'\r' || byte == b'\n';
            self.after_crlf = self.after_cr && byte == b'\n';
            self.after_cr = byte == b'\r';
        }
        (used, written)
    }

    /// The end of data to send after the body: `.CRLF` after a complete line, otherwise
    /// `CRLF.CRLF` (the body's last line is completed, RFC 5321 4.1.1.4; a bare LF or CR at
    /// the end is not a complete line).
    pub fn terminator(&self) -> &'static [u8] {
        if self.after_crlf {
            b".\r\n"
        } else {
            b"\r\n.\r\n"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    /// Decodes `input` fed in chunks of `chunk` bytes; returns body, end seen, faults.
    pub(crate) fn decode(input: &[u8], chunk: usize) -> (Vec<u8>, bool, Vec<DataFault>, usize) {
        let mut decoder = DataDecoder::new(1000, 1 << 20);
        let mut buffer: Vec<u8> = Vec::new();
        let mut body = Vec::new();
        let mut faults = Vec::new();
        let mut fed = 0;
        loop {
            let outcome = decoder.step(&buffer);
            match outcome.step {
                DataStep::Body { start, end } => body.extend_from_slice(&buffer[start..end]),
                DataStep::Fault(fault) => faults.push(fault),
                DataStep::End => {
                    buffer.drain(..outcome.consumed);
                    return (body, true, faults, fed - buffer.len());
                }
                DataStep::Skipped => {}
                DataStep::NeedMore => {
                    if fed == input.len() {
                        return (body, false, faults, fed);
                    }
                    let next = (fed + chunk).min(input.len());
                    buffer.extend_from_slice(&input[fed..next]);
                    fed = next;
                }
            }
            buffer.drain(..outcome.consumed);
        }
    }

    #[test]
    fn plain_message_and_end() {
        let (body, end, faults, used) = decode(b"Subject: x\r\n\r\nhello\r\n.\r\nQUIT\r\n", 1024);
        assert_eq!(body, b"Subject: x\r\n\r\nhello\r\n");
        assert!(end && faults.is_empty());
        assert_eq!(used, 24);
    }

    #[test]
    fn empty_message() {
        let (body, end, faults, _) = decode(b".\r\n", 1);
        assert!(body.is_empty() && end && faults.is_empty());
    }

    #[test]
    fn unstuffing_is_exact() {
        let (body, end, _, _) = decode(b"..\r\n...x\r\n.y\r\na.b\r\n.\r\n", 1024);
        assert_eq!(body, b".\r\n..x\r\ny\r\na.b\r\n");
        assert!(end);
    }

    #[test]
    fn every_chunk_size_gives_the_same_body() {
        let input = b"a\r\n..b\r\n.\r\r\n.\r\n";
        let reference = decode(input, 1024);
        for chunk in 1..input.len() {
            assert_eq!(decode(input, chunk), reference, "chunk {chunk}");
        }
    }

    #[test]
    fn bare_line_endings_are_faults_not_ends() {
        for input in [
            &b"a\n.\nMAIL FROM:<x@y>\r\n.\r\n"[..],
            b"a\r.\rMAIL FROM:<x@y>\r\n.\r\n",
            b"a\r\n.\nMAIL FROM:<x@y>\r\n.\r\n",
            b"a\n.\r\nMAIL FROM:<x@y>\r\n.\r\n",
            b"a\r\r\n.\r\n",
            b"a\rb\r\n.\r\n",
        ] {
            for chunk in [1, 2, 3, 1024] {
                let (_, end, faults, used) = decode(input, chunk);
                assert!(end, "{input:?}");
                assert_eq!(faults, [DataFault::BareLineEnding], "{input:?}");
                assert_eq!(used, input.len(), "only the final CRLF.CRLF ends {input:?}");
            }
        }
    }

    #[test]
    fn line_and_size_limits() {
        let mut decoder = DataDecoder::new(10, 1 << 20);
        let outcome = decoder.step(b"12345678\r\n");
        assert_eq!(outcome.step, DataStep::Body { start: 0, end: 10 });
        let outcome = decoder.step(b"123456789\r\n");
        assert_eq!(outcome.step, DataStep::Fault(DataFault::LineTooLong));
        let mut decoder = DataDecoder::new(1000, 4);
        let outcome = decoder.step(b"abcde\r\n.\r\n");
        assert_eq!(outcome.step, DataStep::Fault(DataFault::MessageTooBig));
        let rest = &b"abcde\r\n.\r\n"[outcome.consumed..];
        let mut rest = rest;
        loop {
            let outcome = decoder.step(rest);
            rest = &rest[outcome.consumed..];
            if outcome.step == DataStep::End {
                break;
            }
            assert_eq!(outcome.step, DataStep::Skipped);
        }
    }

    #[test]
    fn stuffer_stuffs_and_terminates() {
        let mut stuffer = DotStuffer::new();
        let mut output = [0u8; 64];
        let (used, written) = stuffer.encode(b".a\r\n..b\r\nc.\r\n", &mut output);
        assert_eq!(used, 13);
        assert_eq!(&output[..written], b"..a\r\n...b\r\nc.\r\n");
        assert_eq!(stuffer.terminator(), b".\r\n");
        let mut stuffer = DotStuffer::new();
        stuffer.encode(b"no newline", &mut output);
        assert_eq!(stuffer.terminator(), b"\r\n.\r\n");
        let mut small = [0u8; 1];
        let mut stuffer = DotStuffer::new();
        assert_eq!(stuffer.encode(b".", &mut small), (0, 0));
    }

    /// A leading dot after a bare LF or a bare CR is stuffed too: a receiver that takes them
    /// as line ends must not see a lone `.` line (the data would end there and the rest be
    /// read as commands).
    #[test]
    fn stuffer_stuffs_after_bare_line_ends() {
        let cases: [(&[u8], &[u8], &[u8]); 6] = [
            (b"a\n.\nMAIL FROM:<x@y>\n", b"a\n..\nMAIL FROM:<x@y>\n", b"\r\n.\r\n"),
            (b"a\r.\rRCPT TO:<x@y>\r", b"a\r..\rRCPT TO:<x@y>\r", b"\r\n.\r\n"),
            (b"a\n.\r\nb\r\n", b"a\n..\r\nb\r\n", b".\r\n"),
            (b"a\r\n.\nb\r\n", b"a\r\n..\nb\r\n", b".\r\n"),
            (b"\n.x\r\r\n..\r\n", b"\n..x\r\r\n...\r\n", b".\r\n"),
            (b".\n", b"..\n", b"\r\n.\r\n"),
        ];
        for (body, stuffed, terminator) in cases {
            for piece in 1..=body.len() {
                let mut stuffer = DotStuffer::new();
                let mut wire = Vec::new();
                for chunk in body.chunks(piece) {
                    let mut output = [0u8; 64];
                    let (used, written) = stuffer.encode(chunk, &mut output);
                    assert_eq!(used, chunk.len());
                    wire.extend_from_slice(&output[..written]);
                }
                assert_eq!(wire, stuffed, "{body:?} in pieces of {piece}");
                assert_eq!(stuffer.terminator(), terminator, "{body:?}");
            }
        }
    }
}
