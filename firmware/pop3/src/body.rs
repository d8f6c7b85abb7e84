//! The streaming decoder of a multi-line RETR response (RFC 1939 3): dot-unstuffing, the
//! terminating `CRLF.CRLF`, and line ends normalised to CRLF, over whatever part of the
//! response has arrived.
//!
//! Only CRLF ends a line of the response. A bare LF or CR inside the body does not: if it
//! did, a body holding `LF.LF` or `LF.CRLF` would end the message early for this client but
//! not for the server, and the rest would be read as replies (the POP3 form of SMTP
//! smuggling); so a dot after it is content, never a stuffing dot or the terminator. But a
//! bare LF or CR is not passed on either: each one becomes a CRLF in the body
//! ([`BodyStep::BareLineEnd`]). The body thus enters the spool with CRLF line ends only, as
//! RFC 5322 requires, and no later hop (the SMTP/LMTP client, the LAN mailbox host) can read a
//! line `.` after a bare LF as the end of its data. A server that ends its *response* lines
//! with bare LF never produces a terminator here, so the session times out and nothing is
//! deleted.

/// What to do with the start of the buffered response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyStep {
    /// Drop `skip` octets (a stuffing dot), then pass the next `length` octets on as body and
    /// drop them too. `length` may be 0 (only a dot was dropped). The body octets hold no
    /// bare CR or LF.
    Data {
        /// Octets to drop first (0 or 1).
        skip: usize,
        /// Body octets after them.
        length: usize,
    },
    /// The first octet is a CR or an LF that is not part of a CRLF: drop it and pass a CRLF
    /// on as body in its place.
    BareLineEnd,
    /// The terminating line: drop `consumed` octets; the body is complete.
    End {
        /// Octets of the terminator line.
        consumed: usize,
    },
    /// Nothing can be decided until more octets arrive.
    NeedMore,
}

/// Where the decoder is within the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BodyDecoder {
    /// The previous octet ended a CRLF (or nothing was decoded yet).
    at_line_start: bool,
}

impl Default for BodyDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl BodyDecoder {
    /// A decoder at the start of a body (right after the `+OK` line).
    pub const fn new() -> BodyDecoder {
        BodyDecoder { at_line_start: true }
    }

    /// The next step over `window`, the buffered response octets not yet consumed. The
    /// caller consumes what the step says and calls again. A data step covers as many whole
    /// lines as possible (up to the next line starting with a dot, or the next bare CR or LF)
    /// and then any partial line, holding back a trailing CR that may begin a CRLF.
    pub fn step(&mut self, window: &[u8]) -> BodyStep {
        let mut skip = 0;
        if self.at_line_start {
            match window {
                [] | [b'.'] | [b'.', b'\r'] => return BodyStep::NeedMore,
                [b'.', b'\r', b'\n', ..] => {
                    return BodyStep::End { consumed: 3 };
                }
                [b'.', ..] => skip = 1,
                _ => {}
            }
        }
        let mut position = skip;
        let end = loop {
            let Some(offset) = window[position..].iter().position(|&b| b == b'\r' || b == b'\n') else {
                break window.len();
            };
            let at = position + offset;
            match (window[at], window.get(at + 1)) {
                (b'\r', Some(b'\n')) => {
                    position = at + 2;
                    if window.get(position).is_none_or(|&b| b == b'.') {
                        break position;
                    }
                }
                // A trailing CR may begin a CRLF: wait for the next octet.
                (b'\r', None) => break at,
                // A bare CR or LF: the data stops before it.
                _ if at == 0 => {
                    self.at_line_start = false;
                    return BodyStep::BareLineEnd;
                }
                _ => break at,
            }
        };
        if end == 0 {
            return BodyStep::NeedMore;
        }
        // Data never ends in a bare LF, so an LF at its end closes a CRLF.
        self.at_line_start = end > skip && window[end - 1] == b'\n';
        BodyStep::Data { skip, length: end - skip }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `input` fed in pieces of `piece` octets; returns the body and whether the
    /// terminator was seen, plus the octets left after it.
    fn decode(input: &[u8], piece: usize) -> (Vec<u8>, bool, usize) {
        let mut decoder = BodyDecoder::new();
        let mut buffer = Vec::new();
        let mut body = Vec::new();
        let mut fed = 0;
        loop {
            match decoder.step(&buffer) {
                BodyStep::Data { skip, length } => {
                    body.extend_from_slice(&buffer[skip..skip + length]);
                    buffer.drain(..skip + length);
                }
                BodyStep::BareLineEnd => {
                    body.extend_from_slice(b"\r\n");
                    buffer.drain(..1);
                }
                BodyStep::End { consumed } => {
                    buffer.drain(..consumed);
                    return (body, true, buffer.len() + input.len() - fed);
                }
                BodyStep::NeedMore => {
                    if fed == input.len() {
                        return (body, false, buffer.len());
                    }
                    let next = (fed + piece).min(input.len());
                    buffer.extend_from_slice(&input[fed..next]);
                    fed = next;
                }
            }
        }
    }

    #[test]
    fn unstuffing_table() {
        let cases: &[(&[u8], &[u8])] = &[
            (b".\r\n", b""),
            (b"a\r\n.\r\n", b"a\r\n"),
            (b"..\r\n.\r\n", b".\r\n"),
            (b"...\r\n.\r\n", b"..\r\n"),
            (b"..x\r\n.x\r\n.\r\n", b".x\r\nx\r\n"),
            (b"a\r\n\r\n.\r\n", b"a\r\n\r\n"),
            (b"a.\r\n.b\r\n.\r\n", b"a.\r\nb\r\n"),
            // Bare LF and CR: content (never a line end of the response), normalised to CRLF.
            (b"bare\nlf\n.\nstill body\r\n.\r\n", b"bare\r\nlf\r\n.\r\nstill body\r\n"),
            (b"bare\rcr\r.\r\r\n.\r\n", b"bare\r\ncr\r\n.\r\n\r\n"),
            (b".\r.\r\n.\r\n", b"\r\n.\r\n"),
            (b"a\n.\r\nMAIL FROM:<x@y>\r\n.\r\n", b"a\r\n.\r\nMAIL FROM:<x@y>\r\n"),
            (b"\n\n.\n\r\r\n.\r\n", b"\r\n\r\n.\r\n\r\n\r\n"),
            (b"..\n.\r\n.\r\n", b".\r\n.\r\n"),
        ];
        for &(input, expected) in cases {
            for piece in [1, 2, 3, 7, 1000] {
                let (body, ended, left) = decode(input, piece);
                assert_eq!(body, expected, "{:?} in pieces of {piece}", String::from_utf8_lossy(input));
                assert!(ended);
                assert_eq!(left, 0);
            }
        }
    }

    #[test]
    fn stops_at_the_terminator() {
        let (body, ended, left) = decode(b"x\r\n.\r\n+OK next\r\n", 4);
        assert_eq!(body, b"x\r\n");
        assert!(ended);
        assert_eq!(left, 10);
    }

    #[test]
    fn unterminated_body_never_ends() {
        let (body, ended, _) = decode(b"a\r\n.", 1);
        assert_eq!(body, b"a\r\n");
        assert!(!ended);
        let (body, ended, left) = decode(b"abc\r", 1);
        assert_eq!((body.as_slice(), ended, left), (&b"abc"[..], false, 1));
    }

    #[test]
    fn whole_lines_are_batched() {
        let mut decoder = BodyDecoder::new();
        assert_eq!(decoder.step(b"a\r\nb\r\n.c\r\n"), BodyStep::Data { skip: 0, length: 6 });
        assert_eq!(decoder.step(b".c\r\n.\r\n"), BodyStep::Data { skip: 1, length: 3 });
        assert_eq!(decoder.step(b".\r\n"), BodyStep::End { consumed: 3 });
    }
}
