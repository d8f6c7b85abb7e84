//! HTTP/1.1 client side for the appliance's own outgoing requests (DynDNS update, check-IP):
//! [`write_get`] writes a `GET` request with `Host`, `User-Agent`, optional `Authorization:
//! Basic` (own [`base64_encode`], RFC 4648), `Accept` and `Connection: close`, refusing any
//! input that could inject a header; [`write_request_head`] writes a `GET` or `POST` head with a
//! chosen `Accept` and, for a body, `Content-Type` and `Content-Length` (the ACME client's JWS
//! posts); [`ResponseParser`] reads the answer incrementally from arbitrary chunks into a caller
//! buffer with hard limits, and on request keeps the values of named headers
//! ([`ResponseParser::capture_headers`]: `Replay-Nonce`, `Location`, `Retry-After` …).
//!
//! The firmware does TLS and the socket: it writes the request bytes into the TLS stream and
//! feeds every decrypted chunk to [`ResponseParser::feed`], then calls
//! [`ResponseParser::connection_closed`] when the peer closes.
//!
//! Response rules (strict, since the answers this appliance asks for are tiny and known):
//! - status line `HTTP/1.0` or `HTTP/1.1`, a three-digit code 100..=599, optional reason;
//!   interim `1xx` responses are skipped (at most [`MAX_INTERIM_RESPONSES`]);
//! - lines end with CRLF only; a bare CR or LF, an obsolete folded header, a header name with
//!   non-token bytes or whitespace before the colon is malformed;
//! - at most [`MAX_RESPONSE_HEADERS`] header lines and [`MAX_RESPONSE_HEAD`] bytes of head;
//!   lines longer than [`MAX_LINE`] are skipped unread unless they are the status line or a
//!   framing header (`Content-Length`, `Transfer-Encoding`), which then fail;
//! - body framing: `Transfer-Encoding: chunked` (exactly; any other coding is refused), else
//!   `Content-Length` (repeated values must agree; both headers together are refused), else
//!   until the connection closes; 204 and 304 have no body;
//! - the body goes into the caller's buffer; a body that does not fit is an error
//!   ([`ResponseError::BodyTooLarge`]), never a silent truncation.

/// Longest line the parser keeps (status line, framing headers, chunk-size lines).
pub const MAX_LINE: usize = 256;
/// Most header lines accepted in one response head (and in a chunked trailer).
pub const MAX_RESPONSE_HEADERS: usize = 64;
/// Most bytes accepted in one response head (status line, headers, blank line).
pub const MAX_RESPONSE_HEAD: usize = 16 * 1024;
/// Most interim (`1xx`) responses skipped before the final one.
pub const MAX_INTERIM_RESPONSES: usize = 4;
/// Most header values [`ResponseParser::capture_headers`] keeps (all names together).
pub const MAX_CAPTURED_HEADERS: usize = 8;

/// Why [`write_get`] refused to write a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteError {
    /// The request does not fit in the output buffer.
    BufferTooSmall,
    /// The host is empty or has bytes outside letters, digits, `-`, `.`, `:`, `[`, `]`.
    InvalidHost,
    /// The path does not start with `/` or has a control byte, space or non-ASCII byte.
    InvalidPath,
    /// The user agent is empty or has a control byte (CR, LF, ...) or non-ASCII byte.
    InvalidUserAgent,
    /// The user name has a `:` (RFC 7617), a control byte or a non-ASCII byte.
    InvalidUserName,
    /// An `Accept` or `Content-Type` value that is empty or not printable ASCII.
    InvalidMediaType,
    /// A `GET` with a body or a `POST` without one.
    BodyMismatch,
}

struct Writer<'a> {
    buffer: &'a mut [u8],
    length: usize,
}

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) -> Result<(), WriteError> {
        let end = self.length.checked_add(bytes.len()).ok_or(WriteError::BufferTooSmall)?;
        self.buffer.get_mut(self.length..end).ok_or(WriteError::BufferTooSmall)?.copy_from_slice(bytes);
        self.length = end;
        Ok(())
    }
}

const BASE64_ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Length of the padded base64 encoding of `input_length` bytes.
pub const fn base64_length(input_length: usize) -> usize {
    input_length.div_ceil(3) * 4
}

fn base64_group(group: &[u8], out: &mut [u8; 4]) {
    let b0 = group.first().copied().unwrap_or(0);
    let b1 = group.get(1).copied().unwrap_or(0);
    let b2 = group.get(2).copied().unwrap_or(0);
    let n = (u32::from(b0) << 16) | (u32::from(b1) << 8) | u32::from(b2);
    for (index, slot) in out.iter_mut().enumerate() {
        let sextet = (n >> (18 - 6 * index as u32)) & 0x3f;
        *slot = BASE64_ALPHABET[sextet as usize];
    }
    if group.len() < 3 {
        out[3] = b'=';
    }
    if group.len() < 2 {
        out[2] = b'=';
    }
}

/// Encodes `input` as padded standard base64 (RFC 4648 section 4) into `out`; returns the
/// length written, or `None` if `out` is shorter than [`base64_length`].
pub fn base64_encode(input: &[u8], out: &mut [u8]) -> Option<usize> {
    let length = base64_length(input.len());
    let out = out.get_mut(..length)?;
    for (group, slot) in input.chunks(3).zip(out.chunks_mut(4)) {
        let mut quad = [0u8; 4];
        base64_group(group, &mut quad);
        slot.copy_from_slice(&quad);
    }
    Some(length)
}

/// Encodes a byte stream as padded base64 straight into the writer (the credentials
/// `user ":" password` are encoded without a temporary buffer).
fn put_base64_stream(writer: &mut Writer<'_>, mut bytes: impl Iterator<Item = u8>) -> Result<(), WriteError> {
    loop {
        let mut group = [0u8; 3];
        let mut count = 0;
        for slot in group.iter_mut() {
            match bytes.next() {
                Some(byte) => {
                    *slot = byte;
                    count += 1;
                }
                None => break,
            }
        }
        if count == 0 {
            return Ok(());
        }
        let mut quad = [0u8; 4];
        base64_group(group.get(..count).unwrap_or(&[]), &mut quad);
        writer.put(&quad)?;
        if count < 3 {
            return Ok(());
        }
    }
}

fn is_host_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"-.:[]".contains(&byte)
}

/// Writes `GET path_and_query HTTP/1.1` with `Host`, `User-Agent`, optional `Authorization:
/// Basic base64(user ":" password)`, `Accept: text/plain, text/html` and `Connection: close`
/// into `out`; returns the request length.
///
/// Refuses (header injection): CR, LF, other control bytes and non-ASCII anywhere; space in
/// host and path; a `:` in the user name. The password is base64-encoded, so any bytes pass.
pub fn write_get(
    out: &mut [u8],
    host: &str,
    path_and_query: &str,
    user_agent: &str,
    basic_auth: Option<(&str, &[u8])>,
) -> Result<usize, WriteError> {
    if host.is_empty() || !host.bytes().all(is_host_byte) {
        return Err(WriteError::InvalidHost);
    }
    if !path_and_query.starts_with('/') || !path_and_query.bytes().all(|b| (0x21..0x7f).contains(&b)) {
        return Err(WriteError::InvalidPath);
    }
    if user_agent.is_empty() || !user_agent.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(WriteError::InvalidUserAgent);
    }
    if let Some((user, _)) = basic_auth {
        if !user.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b':') {
            return Err(WriteError::InvalidUserName);
        }
    }
    let mut writer = Writer { buffer: out, length: 0 };
    writer.put(b"GET ")?;
    writer.put(path_and_query.as_bytes())?;
    writer.put(b" HTTP/1.1\r\nHost: ")?;
    writer.put(host.as_bytes())?;
    writer.put(b"\r\nUser-Agent: ")?;
    writer.put(user_agent.as_bytes())?;
    writer.put(b"\r\n")?;
    if let Some((user, password)) = basic_auth {
        writer.put(b"Authorization: Basic ")?;
        put_base64_stream(&mut writer, user.bytes().chain(b":".iter().copied()).chain(password.iter().copied()))?;
        writer.put(b"\r\n")?;
    }
    writer.put(b"Accept: text/plain, text/html\r\nConnection: close\r\n\r\n")?;
    Ok(writer.length)
}

/// The method of a request [`write_request_head`] writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestMethod {
    /// `GET`, no body.
    Get,
    /// `POST` with a body.
    Post,
}

/// A request head for [`write_request_head`]. The body (for `POST`) is `content_length` bytes
/// of `content_type` that the caller sends right after the head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestHeadOut<'a> {
    pub method: RequestMethod,
    /// `host` or `host:port`, as in the URL.
    pub host: &'a str,
    pub path_and_query: &'a str,
    pub user_agent: &'a str,
    /// The `Accept` value (a media type list).
    pub accept: &'a str,
    /// `Content-Type` and `Content-Length` of the body; only for `POST`.
    pub content: Option<(&'a str, usize)>,
}

/// Writes `METHOD path_and_query HTTP/1.1` with `Host`, `User-Agent`, `Accept`, for a body
/// `Content-Type` and `Content-Length`, and `Connection: close` into `out`; returns the head's
/// length. The same refusals as [`write_get`] (header injection); `Accept` and `Content-Type`
/// must be printable ASCII (else [`WriteError::InvalidMediaType`]); a `GET` with content or a
/// `POST` without is [`WriteError::BodyMismatch`].
pub fn write_request_head(out: &mut [u8], head: &RequestHeadOut<'_>) -> Result<usize, WriteError> {
    if head.host.is_empty() || !head.host.bytes().all(is_host_byte) {
        return Err(WriteError::InvalidHost);
    }
    if !head.path_and_query.starts_with('/') || !head.path_and_query.bytes().all(|b| (0x21..0x7f).contains(&b)) {
        return Err(WriteError::InvalidPath);
    }
    if head.user_agent.is_empty() || !head.user_agent.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(WriteError::InvalidUserAgent);
    }
    let is_media_type = |value: &str| !value.is_empty() && value.bytes().all(|b| (0x20..0x7f).contains(&b));
    if !is_media_type(head.accept) || head.content.is_some_and(|(content_type, _)| !is_media_type(content_type)) {
        return Err(WriteError::InvalidMediaType);
    }
    let method: &[u8] = match (head.method, head.content) {
        (RequestMethod::Get, None) => b"GET ",
        (RequestMethod::Post, Some(_)) => b"POST ",
        _ => return Err(WriteError::BodyMismatch),
    };
    let mut writer = Writer { buffer: out, length: 0 };
    writer.put(method)?;
    writer.put(head.path_and_query.as_bytes())?;
    writer.put(b" HTTP/1.1\r\nHost: ")?;
    writer.put(head.host.as_bytes())?;
    writer.put(b"\r\nUser-Agent: ")?;
    writer.put(head.user_agent.as_bytes())?;
    writer.put(b"\r\nAccept: ")?;
    writer.put(head.accept.as_bytes())?;
    writer.put(b"\r\n")?;
    if let Some((content_type, length)) = head.content {
        writer.put(b"Content-Type: ")?;
        writer.put(content_type.as_bytes())?;
        writer.put(b"\r\nContent-Length: ")?;
        let mut digits = [0u8; 20];
        let mut start = digits.len();
        let mut rest = length;
        loop {
            start -= 1;
            digits[start] = b'0' + (rest % 10) as u8;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        writer.put(digits.get(start..).unwrap_or(&[]))?;
        writer.put(b"\r\n")?;
    }
    writer.put(b"Connection: close\r\n\r\n")?;
    Ok(writer.length)
}

/// Why a response was refused. Errors are final: later calls return the same error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseError {
    /// The status line is not `HTTP/x.y NNN reason`.
    MalformedStatusLine,
    /// The status line names a version other than HTTP/1.0 or HTTP/1.1.
    UnsupportedVersion,
    /// A header line is malformed (no colon, bad name, folded, control bytes).
    MalformedHeader,
    /// A bare CR or LF (only CRLF ends a line).
    BareLineEnd,
    /// The status line or a framing header is longer than [`MAX_LINE`].
    LineTooLong,
    /// More than [`MAX_RESPONSE_HEADERS`] headers or [`MAX_RESPONSE_HEAD`] bytes of head.
    HeadTooLarge,
    /// More than [`MAX_INTERIM_RESPONSES`] interim `1xx` responses.
    TooManyInterimResponses,
    /// `Content-Length` is not a decimal number, or repeated with different values.
    InvalidContentLength,
    /// Both `Content-Length` and `Transfer-Encoding` (a smuggling shape).
    ConflictingFraming,
    /// A transfer coding other than exactly `chunked`.
    UnsupportedTransferEncoding,
    /// A chunk-size line or chunk terminator is malformed.
    MalformedChunk,
    /// The body is larger than the caller's buffer.
    BodyTooLarge,
    /// The connection closed before the head was complete.
    TruncatedHead,
    /// The connection closed before the declared body (length or last chunk) arrived.
    TruncatedBody,
    /// A captured header is longer than [`MAX_LINE`], or the captured values exceed their
    /// store or [`MAX_CAPTURED_HEADERS`].
    CapturedHeaderTooLarge,
}

/// What [`ResponseParser::feed`] reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// More bytes (or the connection close) are needed.
    NeedMore,
    /// The response is complete; any further bytes are ignored.
    Complete,
}

/// A complete response: status code and body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientResponse<'a> {
    /// The final status code (100..=599, never 1xx).
    pub status: u16,
    /// The body bytes (de-chunked).
    pub body: &'a [u8],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    None,
    Length(usize),
    Chunked,
    UntilClose,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    StatusLine,
    Headers,
    LengthBody(usize),
    CloseBody,
    ChunkSize,
    ChunkData(usize),
    ChunkEnd,
    Trailer,
    Done,
    Failed(ResponseError),
}

/// Incremental HTTP/1.x response parser writing the body into a caller buffer (the buffer's
/// length is the maximum body accepted). See the module documentation for the rules.
pub struct ResponseParser<'b> {
    body: &'b mut [u8],
    body_length: usize,
    state: State,
    line: [u8; MAX_LINE],
    line_length: usize,
    line_overflow: bool,
    pending_cr: bool,
    head_bytes: usize,
    header_count: usize,
    interim_count: usize,
    status: Option<u16>,
    content_length: Option<usize>,
    chunked: bool,
    transfer_encoding: bool,
    captures: Option<Captures<'b>>,
}

/// The headers a parser keeps: values of the named headers, in arrival order, in a caller
/// store.
struct Captures<'b> {
    names: &'b [&'b str],
    store: &'b mut [u8],
    used: usize,
    /// (index into `names`, start in `store`, length) per kept value.
    entries: [(usize, usize, usize); MAX_CAPTURED_HEADERS],
    count: usize,
}

impl Captures<'_> {
    fn keep(&mut self, name: &[u8], value: &[u8], overflow: bool) -> Result<(), ResponseError> {
        let Some(index) = self.names.iter().position(|wanted| name.eq_ignore_ascii_case(wanted.as_bytes())) else {
            return Ok(());
        };
        if overflow || self.count >= MAX_CAPTURED_HEADERS {
            return Err(ResponseError::CapturedHeaderTooLarge);
        }
        let end = self.used.checked_add(value.len()).ok_or(ResponseError::CapturedHeaderTooLarge)?;
        self.store.get_mut(self.used..end).ok_or(ResponseError::CapturedHeaderTooLarge)?.copy_from_slice(value);
        self.entries[self.count] = (index, self.used, value.len());
        self.count += 1;
        self.used = end;
        Ok(())
    }

    fn values<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s [u8]> + 's {
        self.entries.iter().take(self.count).filter_map(move |&(index, start, length)| {
            let wanted = self.names.get(index)?;
            if !wanted.eq_ignore_ascii_case(name) {
                return None;
            }
            self.store.get(start..start + length)
        })
    }
}

fn is_token_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

fn trim_ows(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != b' ' && b != b'\t').unwrap_or(bytes.len());
    let end = bytes.iter().rposition(|&b| b != b' ' && b != b'\t').map_or(start, |p| p + 1);
    bytes.get(start..end).unwrap_or(&[])
}

fn parse_decimal(bytes: &[u8]) -> Option<usize> {
    if bytes.is_empty() || bytes.len() > 12 || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    bytes.iter().try_fold(0usize, |value, &digit| value.checked_mul(10)?.checked_add(usize::from(digit - b'0')))
}

impl<'b> ResponseParser<'b> {
    /// A parser that stores at most `body.len()` body bytes in `body`.
    pub fn new(body: &'b mut [u8]) -> Self {
        ResponseParser {
            body,
            body_length: 0,
            state: State::StatusLine,
            line: [0; MAX_LINE],
            line_length: 0,
            line_overflow: false,
            pending_cr: false,
            head_bytes: 0,
            header_count: 0,
            interim_count: 0,
            status: None,
            content_length: None,
            chunked: false,
            transfer_encoding: false,
            captures: None,
        }
    }

    /// Keeps the values of the headers named in `names` (case-insensitive) in `store`, for
    /// [`header`](Self::header) and [`headers`](Self::headers) once the head is parsed. A kept
    /// header must fit [`MAX_LINE`] and `store`, and at most [`MAX_CAPTURED_HEADERS`] values are
    /// kept, else the response fails with [`ResponseError::CapturedHeaderTooLarge`] (a value is
    /// never cut short). Values of interim (`1xx`) responses are dropped.
    pub fn capture_headers(mut self, names: &'b [&'b str], store: &'b mut [u8]) -> Self {
        self.captures =
            Some(Captures { names, store, used: 0, entries: [(0, 0, 0); MAX_CAPTURED_HEADERS], count: 0 });
        self
    }

    /// The first kept value of header `name` (one of the names given to
    /// [`capture_headers`](Self::capture_headers)), once the head is parsed.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        let captures = self.captures.as_ref().filter(|_| self.status().is_some())?;
        let &(_, start, length) = captures.entries.iter().take(captures.count).find(|&&(index, _, _)| {
            captures.names.get(index).is_some_and(|wanted| wanted.eq_ignore_ascii_case(name))
        })?;
        captures.store.get(start..start + length)
    }

    /// Every kept value of header `name`, in arrival order, once the head is parsed.
    pub fn headers<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s [u8]> + 's {
        let ready = self.status().is_some();
        self.captures.iter().filter(move |_| ready).flat_map(move |captures| captures.values(name))
    }

    /// The final status code once the head is parsed (available before the body is complete,
    /// so a 401 can be acted on at once).
    pub fn status(&self) -> Option<u16> {
        match self.state {
            State::StatusLine | State::Headers => None,
            _ => self.status,
        }
    }

    /// The complete response, once [`feed`](Self::feed) reported [`Progress::Complete`] (or
    /// [`connection_closed`](Self::connection_closed) ended a close-delimited body).
    pub fn response(&self) -> Option<ClientResponse<'_>> {
        match (self.state, self.status) {
            (State::Done, Some(status)) => {
                Some(ClientResponse { status, body: self.body.get(..self.body_length).unwrap_or(&[]) })
            }
            _ => None,
        }
    }

    /// Feeds the next chunk of bytes from the connection.
    pub fn feed(&mut self, input: &[u8]) -> Result<Progress, ResponseError> {
        let mut rest = input;
        while !rest.is_empty() {
            match self.state {
                State::Done => return Ok(Progress::Complete),
                State::Failed(error) => return Err(error),
                State::LengthBody(remaining) => {
                    let take = remaining.min(rest.len());
                    let (now, later) = rest.split_at(take);
                    self.store_body(now)?;
                    rest = later;
                    self.state = if remaining == take { State::Done } else { State::LengthBody(remaining - take) };
                }
                State::ChunkData(remaining) => {
                    let take = remaining.min(rest.len());
                    let (now, later) = rest.split_at(take);
                    self.store_body(now)?;
                    rest = later;
                    self.state = if remaining == take { State::ChunkEnd } else { State::ChunkData(remaining - take) };
                }
                State::CloseBody => {
                    self.store_body(rest)?;
                    rest = &[];
                }
                State::StatusLine | State::Headers | State::ChunkSize | State::ChunkEnd | State::Trailer => {
                    let (&byte, later) = rest.split_first().ok_or(ResponseError::TruncatedHead)?;
                    rest = later;
                    if let Err(error) = self.line_byte(byte) {
                        self.state = State::Failed(error);
                        return Err(error);
                    }
                }
            }
        }
        match self.state {
            State::Done => Ok(Progress::Complete),
            State::Failed(error) => Err(error),
            _ => Ok(Progress::NeedMore),
        }
    }

    /// The peer closed the connection: ends a close-delimited body; any other unfinished
    /// response is truncated.
    pub fn connection_closed(&mut self) -> Result<ClientResponse<'_>, ResponseError> {
        let error = match self.state {
            State::Done => None,
            State::Failed(error) => Some(error),
            State::CloseBody => None,
            State::StatusLine | State::Headers => Some(ResponseError::TruncatedHead),
            _ => Some(ResponseError::TruncatedBody),
        };
        match error {
            Some(error) => {
                self.state = State::Failed(error);
                Err(error)
            }
            None => {
                self.state = State::Done;
                self.response().ok_or(ResponseError::TruncatedHead)
            }
        }
    }

    fn store_body(&mut self, bytes: &[u8]) -> Result<(), ResponseError> {
        let end = self.body_length.checked_add(bytes.len());
        match end.and_then(|end| self.body.get_mut(self.body_length..end)) {
            Some(slot) => {
                slot.copy_from_slice(bytes);
                self.body_length += bytes.len();
                Ok(())
            }
            None => {
                self.state = State::Failed(ResponseError::BodyTooLarge);
                Err(ResponseError::BodyTooLarge)
            }
        }
    }

    fn line_byte(&mut self, byte: u8) -> Result<(), ResponseError> {
        if matches!(self.state, State::StatusLine | State::Headers) {
            self.head_bytes += 1;
            if self.head_bytes > MAX_RESPONSE_HEAD {
                return Err(ResponseError::HeadTooLarge);
            }
        }
        if self.pending_cr {
            if byte != b'\n' {
                return Err(ResponseError::BareLineEnd);
            }
            self.pending_cr = false;
            let length = self.line_length;
            let overflow = self.line_overflow;
            self.line_length = 0;
            self.line_overflow = false;
            let line = self.line;
            return self.end_of_line(line.get(..length).unwrap_or(&[]), overflow);
        }
        match byte {
            b'\r' => self.pending_cr = true,
            b'\n' => return Err(ResponseError::BareLineEnd),
            _ => match self.line.get_mut(self.line_length) {
                Some(slot) => {
                    *slot = byte;
                    self.line_length += 1;
                }
                None => match self.state {
                    // Long header lines are skipped; the head limit still bounds them.
                    State::Headers => self.line_overflow = true,
                    State::Trailer => {
                        // Trailers are bounded like the head, by line count and length.
                        self.head_bytes += 1;
                        if self.head_bytes > MAX_RESPONSE_HEAD {
                            return Err(ResponseError::HeadTooLarge);
                        }
                        self.line_overflow = true;
                    }
                    _ => return Err(ResponseError::LineTooLong),
                },
            },
        }
        Ok(())
    }

    fn end_of_line(&mut self, line: &[u8], overflow: bool) -> Result<(), ResponseError> {
        match self.state {
            State::StatusLine => {
                if overflow {
                    return Err(ResponseError::LineTooLong);
                }
                self.status = Some(parse_status_line(line)?);
                self.state = State::Headers;
                self.header_count = 0;
                Ok(())
            }
            State::Headers => {
                if line.is_empty() && !overflow {
                    return self.end_of_head();
                }
                self.count_header()?;
                self.header_line(line, overflow)
            }
            State::ChunkSize => {
                if overflow {
                    return Err(ResponseError::LineTooLong);
                }
                let size = parse_chunk_size(line)?;
                if size == 0 {
                    self.state = State::Trailer;
                    self.header_count = 0;
                } else if self.body_length.checked_add(size).is_none_or(|end| end > self.body.len()) {
                    return Err(ResponseError::BodyTooLarge);
                } else {
                    self.state = State::ChunkData(size);
                }
                Ok(())
            }
            State::ChunkEnd => {
                if !line.is_empty() || overflow {
                    return Err(ResponseError::MalformedChunk);
                }
                self.state = State::ChunkSize;
                Ok(())
            }
            State::Trailer => {
                if line.is_empty() && !overflow {
                    self.state = State::Done;
                    return Ok(());
                }
                self.count_header()?;
                // Trailer fields are read and ignored (nothing framing-related may be there).
                check_header_shape(line)?;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn count_header(&mut self) -> Result<(), ResponseError> {
        self.header_count += 1;
        if self.header_count > MAX_RESPONSE_HEADERS {
            return Err(ResponseError::HeadTooLarge);
        }
        Ok(())
    }

    fn header_line(&mut self, line: &[u8], overflow: bool) -> Result<(), ResponseError> {
        let (name, value) = check_header_shape(line)?;
        if let Some(captures) = self.captures.as_mut() {
            if !overflow && value.iter().any(|&b| b < 0x20 && b != b'\t' || b == 0x7f) {
                return Err(ResponseError::MalformedHeader);
            }
            captures.keep(name, value, overflow)?;
        }
        let is_length = name.eq_ignore_ascii_case(b"content-length");
        let is_coding = name.eq_ignore_ascii_case(b"transfer-encoding");
        if overflow {
            // Only the kept prefix was checked; a framing header must be read whole.
            return if is_length || is_coding { Err(ResponseError::LineTooLong) } else { Ok(()) };
        }
        if value.iter().any(|&b| b < 0x20 && b != b'\t' || b == 0x7f) {
            return Err(ResponseError::MalformedHeader);
        }
        if is_length {
            let length = parse_decimal(value).ok_or(ResponseError::InvalidContentLength)?;
            if self.content_length.is_some_and(|previous| previous != length) {
                return Err(ResponseError::InvalidContentLength);
            }
            self.content_length = Some(length);
        } else if is_coding {
            if self.transfer_encoding || !value.eq_ignore_ascii_case(b"chunked") {
                return Err(ResponseError::UnsupportedTransferEncoding);
            }
            self.transfer_encoding = true;
            self.chunked = true;
        }
        Ok(())
    }

    fn end_of_head(&mut self) -> Result<(), ResponseError> {
        let status = self.status.ok_or(ResponseError::MalformedStatusLine)?;
        if (100..200).contains(&status) {
            // Interim response: forget its headers and read the next status line.
            self.interim_count += 1;
            if self.interim_count > MAX_INTERIM_RESPONSES {
                return Err(ResponseError::TooManyInterimResponses);
            }
            self.status = None;
            self.content_length = None;
            self.chunked = false;
            self.transfer_encoding = false;
            if let Some(captures) = self.captures.as_mut() {
                captures.used = 0;
                captures.count = 0;
            }
            self.state = State::StatusLine;
            return Ok(());
        }
        if self.transfer_encoding && self.content_length.is_some() {
            return Err(ResponseError::ConflictingFraming);
        }
        let framing = if status == 204 || status == 304 {
            Framing::None
        } else if self.chunked {
            Framing::Chunked
        } else if let Some(length) = self.content_length {
            Framing::Length(length)
        } else {
            Framing::UntilClose
        };
        self.state = match framing {
            Framing::None | Framing::Length(0) => State::Done,
            Framing::Length(length) if length > self.body.len() => return Err(ResponseError::BodyTooLarge),
            Framing::Length(length) => State::LengthBody(length),
            Framing::Chunked => State::ChunkSize,
            Framing::UntilClose => State::CloseBody,
        };
        Ok(())
    }
}

/// Splits `name: value`, checking the name is a token directly followed by the colon.
fn check_header_shape(line: &[u8]) -> Result<(&[u8], &[u8]), ResponseError> {
    let colon = line.iter().position(|&b| b == b':').ok_or(ResponseError::MalformedHeader)?;
    let (name, value) = line.split_at(colon);
    if name.is_empty() || !name.iter().all(|&b| is_token_byte(b)) {
        return Err(ResponseError::MalformedHeader);
    }
    Ok((name, trim_ows(value.get(1..).unwrap_or(&[]))))
}

fn parse_status_line(line: &[u8]) -> Result<u16, ResponseError> {
    let version = line.get(..8).ok_or(ResponseError::MalformedStatusLine)?;
    if !version.starts_with(b"HTTP/") {
        return Err(ResponseError::MalformedStatusLine);
    }
    if version != b"HTTP/1.1" && version != b"HTTP/1.0" {
        return Err(ResponseError::UnsupportedVersion);
    }
    let rest = line.get(8..).unwrap_or(&[]);
    let code = match rest {
        [b' ', a, b, c] | [b' ', a, b, c, b' ', ..] if [a, b, c].iter().all(|d| d.is_ascii_digit()) => {
            u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0')
        }
        _ => return Err(ResponseError::MalformedStatusLine),
    };
    if !(100..=599).contains(&code) {
        return Err(ResponseError::MalformedStatusLine);
    }
    if rest.iter().any(|&b| b < 0x20 && b != b'\t' || b == 0x7f) {
        return Err(ResponseError::MalformedStatusLine);
    }
    Ok(code)
}

fn parse_chunk_size(line: &[u8]) -> Result<usize, ResponseError> {
    let end = line.iter().position(|&b| b == b';').unwrap_or(line.len());
    let digits = trim_ows(line.get(..end).unwrap_or(&[]));
    if digits.is_empty() || digits.len() > 8 {
        return Err(ResponseError::MalformedChunk);
    }
    let mut size = 0usize;
    for &digit in digits {
        let value = match digit {
            b'0'..=b'9' => digit - b'0',
            b'a'..=b'f' => digit - b'a' + 10,
            b'A'..=b'F' => digit - b'A' + 10,
            _ => return Err(ResponseError::MalformedChunk),
        };
        size = size * 16 + usize::from(value);
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encode(input: &[u8]) -> String {
        let mut out = [0u8; 64];
        let length = base64_encode(input, &mut out).unwrap();
        String::from_utf8(out[..length].to_vec()).unwrap()
    }

    #[test]
    fn base64_rfc4648_vectors() {
        let table: &[(&str, &str)] = &[
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (input, expected) in table {
            assert_eq!(encode(input.as_bytes()), *expected, "input {input:?}");
        }
        assert_eq!(encode(&[0xfb, 0xff, 0xbf]), "+/+/");
        assert_eq!(base64_encode(b"foo", &mut [0u8; 3]), None);
    }

    fn get(host: &str, path: &str, agent: &str, auth: Option<(&str, &[u8])>) -> Result<String, WriteError> {
        let mut out = [0u8; 512];
        let length = write_get(&mut out, host, path, agent, auth)?;
        Ok(String::from_utf8(out[..length].to_vec()).unwrap())
    }

    #[test]
    fn writes_a_get_with_basic_auth() {
        let request = get(
            "members.dyndns.example",
            "/nic/update?hostname=mx.example.org&myip=203.0.113.5",
            "homemx/0.1 (owner-built appliance)",
            Some(("Aladdin", b"open sesame")),
        )
        .unwrap();
        assert_eq!(
            request,
            "GET /nic/update?hostname=mx.example.org&myip=203.0.113.5 HTTP/1.1\r\n\
             Host: members.dyndns.example\r\n\
             User-Agent: homemx/0.1 (owner-built appliance)\r\n\
             Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\r\n\
             Accept: text/plain, text/html\r\n\
             Connection: close\r\n\r\n"
        );
    }

    #[test]
    fn long_credentials_are_encoded_across_scratch_blocks() {
        let password = [b'x'; 100];
        let request = get("h", "/", "a", Some(("user", &password))).unwrap();
        let mut joined = b"user:".to_vec();
        joined.extend_from_slice(&password);
        let mut expected = [0u8; 256];
        let length = base64_encode(&joined, &mut expected).unwrap();
        let expected = core::str::from_utf8(&expected[..length]).unwrap();
        assert!(request.contains(&format!("Authorization: Basic {expected}\r\n")));
    }

    #[test]
    fn refuses_header_injection() {
        type Row<'a> = (&'a str, &'a str, &'a str, Option<(&'a str, &'a [u8])>, WriteError);
        let table: &[Row] = &[
            ("h\r\nX: y", "/", "a", None, WriteError::InvalidHost),
            ("h h", "/", "a", None, WriteError::InvalidHost),
            ("", "/", "a", None, WriteError::InvalidHost),
            ("h", "/a b", "a", None, WriteError::InvalidPath),
            ("h", "/a\r\nX: y", "a", None, WriteError::InvalidPath),
            ("h", "a", "a", None, WriteError::InvalidPath),
            ("h", "/\u{e9}", "a", None, WriteError::InvalidPath),
            ("h", "/", "a\r\nX: y", None, WriteError::InvalidUserAgent),
            ("h", "/", "a\nb", None, WriteError::InvalidUserAgent),
            ("h", "/", "", None, WriteError::InvalidUserAgent),
            ("h", "/", "a", Some(("u:v", b"p")), WriteError::InvalidUserName),
            ("h", "/", "a", Some(("u\r\n", b"p")), WriteError::InvalidUserName),
        ];
        for (host, path, agent, auth, error) in table {
            assert_eq!(get(host, path, agent, *auth), Err(*error), "{host:?} {path:?} {agent:?}");
        }
        // Any bytes in the password are fine: they are base64-encoded.
        assert!(get("h", "/", "a", Some(("u", b"p\r\n:x"))).unwrap().contains("Basic dTpwDQo6eA==\r\n"));
    }

    #[test]
    fn refuses_a_small_buffer_at_every_size() {
        let mut out = [0u8; 512];
        let full = write_get(&mut out, "h.example", "/x?y=1", "ua", Some(("u", b"p"))).unwrap();
        for size in 0..full {
            let mut small = vec![0u8; size];
            assert_eq!(
                write_get(&mut small, "h.example", "/x?y=1", "ua", Some(("u", b"p"))),
                Err(WriteError::BufferTooSmall)
            );
        }
    }

    /// Parses `input` fed in the given chunk sizes (cycled), then closes.
    fn parse_chunked(input: &[u8], sizes: &[usize], capacity: usize) -> (Result<u16, ResponseError>, Vec<u8>) {
        let mut body = vec![0u8; capacity];
        let mut parser = ResponseParser::new(&mut body);
        let mut rest = input;
        let mut index = 0;
        while !rest.is_empty() {
            let size = sizes.get(index % sizes.len().max(1)).copied().unwrap_or(rest.len()).clamp(1, rest.len());
            index += 1;
            let (now, later) = rest.split_at(size);
            rest = later;
            match parser.feed(now) {
                Ok(Progress::Complete) => break,
                Ok(Progress::NeedMore) => {}
                Err(error) => return (Err(error), Vec::new()),
            }
        }
        match parser.connection_closed() {
            Ok(response) => (Ok(response.status), response.body.to_vec()),
            Err(error) => (Err(error), Vec::new()),
        }
    }

    fn parse(input: &[u8]) -> (Result<u16, ResponseError>, Vec<u8>) {
        parse_chunked(input, &[input.len().max(1)], 1024)
    }

    #[test]
    fn writes_get_and_post_heads() {
        let mut out = [0u8; 512];
        let get = RequestHeadOut {
            method: RequestMethod::Get,
            host: "127.0.0.1:14000",
            path_and_query: "/dir",
            user_agent: "homemx-acme/0.1",
            accept: "application/json",
            content: None,
        };
        let length = write_request_head(&mut out, &get).unwrap();
        assert_eq!(
            &out[..length],
            b"GET /dir HTTP/1.1\r\nHost: 127.0.0.1:14000\r\nUser-Agent: homemx-acme/0.1\r\nAccept: application/json\r\n\
              Connection: close\r\n\r\n"
        );
        let post = RequestHeadOut { method: RequestMethod::Post, content: Some(("application/jose+json", 1234)), ..get };
        let length = write_request_head(&mut out, &post).unwrap();
        assert_eq!(
            &out[..length],
            b"POST /dir HTTP/1.1\r\nHost: 127.0.0.1:14000\r\nUser-Agent: homemx-acme/0.1\r\nAccept: application/json\r\n\
              Content-Type: application/jose+json\r\nContent-Length: 1234\r\nConnection: close\r\n\r\n"
        );
        let zero = RequestHeadOut { content: Some(("a/b", 0)), ..post };
        let length = write_request_head(&mut out, &zero).unwrap();
        assert!(out[..length].windows(19).any(|w| w == b"Content-Length: 0\r\n"));
        for size in 0..length {
            assert_eq!(write_request_head(&mut vec![0u8; size], &zero), Err(WriteError::BufferTooSmall));
        }
        let refusals = [
            (RequestHeadOut { content: None, ..post }, WriteError::BodyMismatch),
            (RequestHeadOut { content: Some(("a/b", 1)), ..get }, WriteError::BodyMismatch),
            (RequestHeadOut { accept: "a\r\nX: y", ..get }, WriteError::InvalidMediaType),
            (RequestHeadOut { accept: "", ..get }, WriteError::InvalidMediaType),
            (RequestHeadOut { content: Some(("a\nb", 1)), ..post }, WriteError::InvalidMediaType),
            (RequestHeadOut { host: "h\r\n", ..get }, WriteError::InvalidHost),
            (RequestHeadOut { path_and_query: "/a b", ..get }, WriteError::InvalidPath),
            (RequestHeadOut { user_agent: "a\r\n", ..get }, WriteError::InvalidUserAgent),
        ];
        for (head, error) in refusals {
            assert_eq!(write_request_head(&mut out, &head), Err(error), "{head:?}");
        }
    }

    const ACME_HEADERS: &[&str] = &["Replay-Nonce", "Location", "Link"];

    /// Each header name of [`ACME_HEADERS`] with its kept values.
    type Kept = Vec<(String, Vec<Vec<u8>>)>;

    fn parse_captured(input: &[u8], store_size: usize) -> Result<(u16, Kept), ResponseError> {
        let mut body = [0u8; 256];
        let mut store = vec![0u8; store_size];
        let mut parser = ResponseParser::new(&mut body).capture_headers(ACME_HEADERS, &mut store);
        assert_eq!(parser.header("Location"), None);
        parser.feed(input)?;
        let status = parser.connection_closed()?.status;
        let kept = ACME_HEADERS.iter().map(|name| (name.to_string(), parser.headers(name).map(<[u8]>::to_vec).collect())).collect();
        Ok((status, kept))
    }

    #[test]
    fn captures_named_headers() {
        let input = b"HTTP/1.1 100 Continue\r\nLocation: interim\r\n\r\n\
            HTTP/1.1 201 Created\r\nreplay-nonce: abc_DEF-1\r\nLink: <https://a/dir>;rel=\"index\"\r\n\
            Location:  https://a/acct/1 \r\nLink: <https://a/up>;rel=\"up\"\r\nContent-Length: 2\r\n\r\n{}";
        let (status, kept) = parse_captured(input, 256).unwrap();
        assert_eq!(status, 201);
        assert_eq!(kept[0].1, vec![b"abc_DEF-1".to_vec()]);
        assert_eq!(kept[1].1, vec![b"https://a/acct/1".to_vec()]);
        assert_eq!(kept[2].1, vec![b"<https://a/dir>;rel=\"index\"".to_vec(), b"<https://a/up>;rel=\"up\"".to_vec()]);

        // A value never gets cut short: a store too small or a too long line fails the response.
        assert_eq!(parse_captured(input, 20), Err(ResponseError::CapturedHeaderTooLarge));
        let mut long = b"HTTP/1.1 200 OK\r\nLocation: ".to_vec();
        long.extend(std::iter::repeat_n(b'x', MAX_LINE));
        long.extend_from_slice(b"\r\n\r\n");
        assert_eq!(parse_captured(&long, 4096), Err(ResponseError::CapturedHeaderTooLarge));
        let mut many = b"HTTP/1.1 200 OK\r\n".to_vec();
        for _ in 0..=MAX_CAPTURED_HEADERS {
            many.extend_from_slice(b"Link: <x>\r\n");
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(parse_captured(&many, 4096), Err(ResponseError::CapturedHeaderTooLarge));
        assert_eq!(parse_captured(b"HTTP/1.1 200 OK\r\nLocation: a\x01b\r\n\r\n", 64), Err(ResponseError::MalformedHeader));
        // Headers not asked for are not kept, however long.
        let mut other = b"HTTP/1.1 204 No Content\r\nX-Other: ".to_vec();
        other.extend(std::iter::repeat_n(b'x', 1000));
        other.extend_from_slice(b"\r\n\r\n");
        assert_eq!(parse_captured(&other, 16).unwrap().0, 204);
    }

    #[test]
    fn content_length_body() {
        let (status, body) = parse(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\ngood ");
        assert_eq!(status, Ok(200));
        assert_eq!(body, b"good ");
    }

    #[test]
    fn chunked_body_with_extensions_and_trailer() {
        let input = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n4;ext=1\r\ngood\r\nA\r\n 1.2.3.4\r\n\r\n0\r\nX-Trailer: 1\r\n\r\n";
        let (status, body) = parse(input);
        assert_eq!(status, Ok(200));
        assert_eq!(body, b"good 1.2.3.4\r\n");
    }

    #[test]
    fn body_until_close_and_http_1_0() {
        let (status, body) = parse(b"HTTP/1.0 200 OK\r\nServer: x\r\n\r\n203.0.113.5\n");
        assert_eq!(status, Ok(200));
        assert_eq!(body, b"203.0.113.5\n");
    }

    #[test]
    fn status_is_known_before_the_body_and_interim_responses_are_skipped() {
        let mut body = [0u8; 64];
        let mut parser = ResponseParser::new(&mut body);
        assert_eq!(parser.feed(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 401 Unauthorized\r\n"), Ok(Progress::NeedMore));
        assert_eq!(parser.status(), None);
        assert_eq!(parser.feed(b"Content-Length: 7\r\n\r\nbad"), Ok(Progress::NeedMore));
        assert_eq!(parser.status(), Some(401));
        assert_eq!(parser.feed(b"auth"), Ok(Progress::Complete));
        assert_eq!(parser.response(), Some(ClientResponse { status: 401, body: b"badauth" }));
        assert_eq!(parser.feed(b"trailing junk"), Ok(Progress::Complete));
    }

    #[test]
    fn no_body_statuses() {
        assert_eq!(parse(b"HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n"), (Ok(204), Vec::new()));
        assert_eq!(parse(b"HTTP/1.1 304 Not Modified\r\n\r\n"), (Ok(304), Vec::new()));
        assert_eq!(parse(b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n"), (Ok(200), Vec::new()));
    }

    #[test]
    fn error_table() {
        use ResponseError::*;
        let table: &[(&[u8], ResponseError)] = &[
            (b"", TruncatedHead),
            (b"HTTP/1.1 200 OK\r\n", TruncatedHead),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab", TruncatedBody),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", TruncatedBody),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n", TruncatedBody),
            (b"HTTP/2 200 OK\r\n\r\n", UnsupportedVersion),
            (b"HTTX/1.1 200 OK\r\n\r\n", MalformedStatusLine),
            (b"HTTP/2.0 200 OK\r\n\r\n", UnsupportedVersion),
            (b"HTTP/1.1 20 OK\r\n\r\n", MalformedStatusLine),
            (b"HTTP/1.1 2000 OK\r\n\r\n", MalformedStatusLine),
            (b"HTTP/1.1 099 OK\r\n\r\n", MalformedStatusLine),
            (b"HTTP/1.1 600 OK\r\n\r\n", MalformedStatusLine),
            (b"HTTP/1.1  200 OK\r\n\r\n", MalformedStatusLine),
            (b"SMTP 220 hello\r\n", MalformedStatusLine),
            (b"HTTP/1.1 200 OK\n\n", BareLineEnd),
            (b"HTTP/1.1 200 OK\r\nA: b\rc\r\n\r\n", BareLineEnd),
            (b"HTTP/1.1 200 OK\r\nA : b\r\n\r\n", MalformedHeader),
            (b"HTTP/1.1 200 OK\r\nNoColon\r\n\r\n", MalformedHeader),
            (b"HTTP/1.1 200 OK\r\nA: b\r\n c\r\n\r\n", MalformedHeader),
            (b"HTTP/1.1 200 OK\r\nA: b\x00\r\n\r\n", MalformedHeader),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n", InvalidContentLength),
            (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", InvalidContentLength),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", InvalidContentLength),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", ConflictingFraming),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", UnsupportedTransferEncoding),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", UnsupportedTransferEncoding),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", MalformedChunk),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\n", MalformedChunk),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n123456789\r\n", MalformedChunk),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n", MalformedChunk),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n401\r\n", BodyTooLarge),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 1025\r\n\r\n", BodyTooLarge),
            (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\n", TooManyInterimResponses),
        ];
        for (input, error) in table {
            assert_eq!(parse(input).0, Err(*error), "input {:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn limits() {
        let mut long_status = b"HTTP/1.1 200 ".to_vec();
        long_status.extend(std::iter::repeat_n(b'x', MAX_LINE));
        long_status.extend_from_slice(b"\r\n\r\n");
        assert_eq!(parse(&long_status).0, Err(ResponseError::LineTooLong));

        // A long header we do not read is skipped; a long framing header fails.
        let mut long_header = b"HTTP/1.1 200 OK\r\nContent-Security-Policy: ".to_vec();
        long_header.extend(std::iter::repeat_n(b'x', 2000));
        long_header.extend_from_slice(b"\r\nContent-Length: 2\r\n\r\nok");
        assert_eq!(parse(&long_header), (Ok(200), b"ok".to_vec()));
        let mut long_length = b"HTTP/1.1 200 OK\r\nContent-Length: ".to_vec();
        long_length.extend(std::iter::repeat_n(b'0', 300));
        long_length.extend_from_slice(b"2\r\n\r\nok");
        assert_eq!(parse(&long_length).0, Err(ResponseError::LineTooLong));

        let mut many = b"HTTP/1.1 200 OK\r\n".to_vec();
        for _ in 0..=MAX_RESPONSE_HEADERS {
            many.extend_from_slice(b"X: y\r\n");
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(parse(&many).0, Err(ResponseError::HeadTooLarge));

        let mut huge = b"HTTP/1.1 200 OK\r\n".to_vec();
        for _ in 0..20 {
            huge.extend_from_slice(b"X: ");
            huge.extend(std::iter::repeat_n(b'y', 1000));
            huge.extend_from_slice(b"\r\n");
        }
        assert_eq!(parse(&huge).0, Err(ResponseError::HeadTooLarge));

        let mut big_body = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
        big_body.extend(std::iter::repeat_n(b'b', 1025));
        assert_eq!(parse(&big_body).0, Err(ResponseError::BodyTooLarge));
        big_body.pop();
        assert_eq!(parse(&big_body).1.len(), 1024);
    }

    #[test]
    fn errors_are_sticky() {
        let mut body = [0u8; 16];
        let mut parser = ResponseParser::new(&mut body);
        assert_eq!(parser.feed(b"HTTP/9.9 200 OK\r\n"), Err(ResponseError::UnsupportedVersion));
        assert_eq!(parser.feed(b"HTTP/1.1 200 OK\r\n\r\n"), Err(ResponseError::UnsupportedVersion));
        assert_eq!(parser.connection_closed().err(), Some(ResponseError::UnsupportedVersion));
        assert_eq!(parser.response(), None);
    }

    fn response_strategy() -> impl Strategy<Value = Vec<u8>> {
        let body = proptest::collection::vec(any::<u8>(), 0..200);
        (body, 0..3u8, proptest::collection::vec(1usize..50, 1..6)).prop_map(|(body, framing, chunks)| {
            let mut out = b"HTTP/1.1 200 OK\r\nServer: test\r\n".to_vec();
            match framing {
                0 => {
                    out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
                    out.extend_from_slice(&body);
                }
                1 => {
                    out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
                    let mut rest = &body[..];
                    let mut index = 0;
                    while !rest.is_empty() {
                        let take = chunks[index % chunks.len()].min(rest.len());
                        index += 1;
                        out.extend_from_slice(format!("{take:x}\r\n").as_bytes());
                        out.extend_from_slice(&rest[..take]);
                        out.extend_from_slice(b"\r\n");
                        rest = &rest[take..];
                    }
                    out.extend_from_slice(b"0\r\n\r\n");
                }
                _ => {
                    out.extend_from_slice(b"\r\n");
                    out.extend_from_slice(&body);
                }
            }
            out
        })
    }

    proptest! {
        #[test]
        fn valid_responses_round_trip_under_any_chunking(
            input in response_strategy(),
            sizes in proptest::collection::vec(1usize..40, 1..8),
        ) {
            let whole = parse(&input);
            prop_assert_eq!(whole.0, Ok(200));
            prop_assert_eq!(parse_chunked(&input, &sizes, 1024), whole);
        }

        #[test]
        fn any_bytes_any_chunking_same_result_no_panic(
            input in proptest::collection::vec(any::<u8>(), 0..300),
            sizes in proptest::collection::vec(1usize..40, 1..8),
            capacity in 0usize..64,
        ) {
            let whole = parse_chunked(&input, &[input.len().max(1)], capacity);
            prop_assert_eq!(parse_chunked(&input, &sizes, capacity), whole);
        }

        #[test]
        fn mutated_valid_responses_same_result_under_chunking(
            input in response_strategy(),
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
            sizes in proptest::collection::vec(1usize..40, 1..8),
        ) {
            let mut input = input;
            for (position, byte) in flips {
                let length = input.len();
                input[position % length] = byte;
            }
            let whole = parse_chunked(&input, &[input.len().max(1)], 64);
            prop_assert_eq!(parse_chunked(&input, &sizes, 64), whole);
        }
    }
}
