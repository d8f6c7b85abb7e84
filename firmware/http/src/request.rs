//! HTTP/1.1 request-head parsing: request line and the headers homemx needs (`Host`,
//! `Content-Length`, `Transfer-Encoding`), checked before trusted, with fixed limits.

/// Longest request head accepted (request line + headers + blank line).
pub const MAX_HEAD_LENGTH: usize = 2048;
/// Most header lines accepted.
pub const MAX_HEADER_COUNT: usize = 32;

/// Request methods the appliance distinguishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// `GET`
    Get,
    /// `HEAD`
    Head,
    /// Any other token (answered 405: the LAN services are read-only).
    Other,
}

/// A parsed request head borrowing from the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestHead<'a> {
    /// The method.
    pub method: Method,
    /// The origin-form target without query string, e.g. `/health`.
    pub path: &'a str,
    /// The query string after `?`, if any.
    pub query: Option<&'a str>,
    /// The `Host` header with any port removed, lower-case ASCII not guaranteed.
    pub host: &'a str,
    /// Length of the head in bytes, including the final blank line.
    pub head_length: usize,
    /// Whether the request declares a body (`Content-Length` > 0 or `Transfer-Encoding`).
    pub has_body: bool,
}

/// Why a request head was refused; each maps to a status code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// More bytes are needed; not an error yet.
    Incomplete,
    /// The head is longer than [`MAX_HEAD_LENGTH`] or has too many headers (431).
    HeadTooLarge,
    /// Malformed request line or header, bare CR/LF, missing or repeated `Host` (400).
    Malformed,
    /// Not HTTP/1.0 or HTTP/1.1 (505).
    UnsupportedVersion,
}

fn find_head_end(input: &[u8]) -> Option<usize> {
    input.windows(4).position(|window| window == b"\r\n\r\n").map(|position| position + 4)
}

fn is_token_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

fn is_target_byte(byte: u8) -> bool {
    (0x21..0x7f).contains(&byte)
}

/// Parses a request head from the start of `input`.
///
/// Returns [`ParseError::Incomplete`] while no blank line has arrived and the input is still
/// within the limit. Only CRLF ends a line; a bare CR or LF is malformed.
pub fn parse_request_head(input: &[u8]) -> Result<RequestHead<'_>, ParseError> {
    let head_length = match find_head_end(input) {
        Some(end) if end <= MAX_HEAD_LENGTH => end,
        Some(_) => return Err(ParseError::HeadTooLarge),
        None if input.len() >= MAX_HEAD_LENGTH => return Err(ParseError::HeadTooLarge),
        None => {
            if input.iter().enumerate().any(|(index, &byte)| is_bare_line_end(input, index, byte)) {
                return Err(ParseError::Malformed);
            }
            return Err(ParseError::Incomplete);
        }
    };
    let head = &input[..head_length - 2];
    let text = core::str::from_utf8(head).map_err(|_| ParseError::Malformed)?;
    if head.iter().enumerate().any(|(index, &byte)| is_bare_line_end(head, index, byte)) {
        return Err(ParseError::Malformed);
    }
    let mut lines = text.split("\r\n");
    let request_line = lines.next().ok_or(ParseError::Malformed)?;
    let (method, path, query) = parse_request_line(request_line)?;

    let mut host = None;
    let mut has_body = false;
    let mut header_count = 0;
    for line in lines.filter(|line| !line.is_empty()) {
        header_count += 1;
        if header_count > MAX_HEADER_COUNT {
            return Err(ParseError::HeadTooLarge);
        }
        let (name, value) = line.split_once(':').ok_or(ParseError::Malformed)?;
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            return Err(ParseError::Malformed);
        }
        let value = value.trim_matches(|c| c == ' ' || c == '\t');
        if value.bytes().any(|byte| byte < 0x20 && byte != b'\t' || byte == 0x7f) {
            return Err(ParseError::Malformed);
        }
        if name.eq_ignore_ascii_case("host") {
            if host.is_some() {
                return Err(ParseError::Malformed);
            }
            host = Some(strip_port(value)?);
        } else if name.eq_ignore_ascii_case("content-length") {
            let length: u64 = value.parse().map_err(|_| ParseError::Malformed)?;
            has_body |= length > 0;
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            has_body = true;
        }
    }
    let host = host.ok_or(ParseError::Malformed)?;
    Ok(RequestHead { method, path, query, host, head_length, has_body })
}

fn is_bare_line_end(bytes: &[u8], index: usize, byte: u8) -> bool {
    match byte {
        b'\r' => bytes.get(index + 1).is_some_and(|&next| next != b'\n'),
        b'\n' => index == 0 || bytes[index - 1] != b'\r',
        _ => false,
    }
}

fn parse_request_line(line: &str) -> Result<(Method, &str, Option<&str>), ParseError> {
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ParseError::Malformed);
    };
    if method.is_empty() || !method.bytes().all(is_token_byte) {
        return Err(ParseError::Malformed);
    }
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return if version.starts_with("HTTP/") { Err(ParseError::UnsupportedVersion) } else { Err(ParseError::Malformed) };
    }
    if !target.starts_with('/') || !target.bytes().all(is_target_byte) {
        return Err(ParseError::Malformed);
    }
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    };
    let method = match method {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        _ => Method::Other,
    };
    Ok((method, path, query))
}

fn strip_port(host: &str) -> Result<&str, ParseError> {
    if host.is_empty() {
        return Err(ParseError::Malformed);
    }
    let name = if let Some(rest) = host.strip_prefix('[') {
        let end = rest.find(']').ok_or(ParseError::Malformed)?;
        &host[..end + 2]
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|byte| byte.is_ascii_digit()) && !port.is_empty() => name,
            Some(_) => return Err(ParseError::Malformed),
            None => host,
        }
    };
    if name.is_empty() || !name.bytes().all(|byte| byte.is_ascii_alphanumeric() || b".-[]:".contains(&byte)) {
        return Err(ParseError::Malformed);
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_a_plain_get() {
        let head = parse_request_head(b"GET /health?x=1 HTTP/1.1\r\nHost: 192.168.1.2:80\r\nAccept: */*\r\n\r\n").unwrap();
        assert_eq!(head.method, Method::Get);
        assert_eq!(head.path, "/health");
        assert_eq!(head.query, Some("x=1"));
        assert_eq!(head.host, "192.168.1.2");
        assert!(!head.has_body);
    }

    #[test]
    fn waits_for_the_blank_line() {
        assert_eq!(parse_request_head(b"GET / HTTP/1.1\r\nHost: a\r\n"), Err(ParseError::Incomplete));
    }

    #[test]
    fn refuses_bare_line_ends_and_missing_or_double_host() {
        assert_eq!(parse_request_head(b"GET / HTTP/1.1\nHost: a\r\n\r\n"), Err(ParseError::Malformed));
        assert_eq!(parse_request_head(b"GET / HTTP/1.1\r\nHost: a\rX: y\r\n\r\n"), Err(ParseError::Malformed));
        assert_eq!(parse_request_head(b"GET / HTTP/1.1\r\n\r\n"), Err(ParseError::Malformed));
        assert_eq!(parse_request_head(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), Err(ParseError::Malformed));
    }

    #[test]
    fn refuses_absolute_targets_and_odd_versions() {
        assert_eq!(parse_request_head(b"GET http://x/ HTTP/1.1\r\nHost: a\r\n\r\n"), Err(ParseError::Malformed));
        assert_eq!(parse_request_head(b"GET / HTTP/2.0\r\nHost: a\r\n\r\n"), Err(ParseError::UnsupportedVersion));
        assert_eq!(parse_request_head(b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n"), Err(ParseError::Malformed));
    }

    #[test]
    fn enforces_the_size_limit() {
        let mut long = b"GET / HTTP/1.1\r\nHost: a\r\nX: ".to_vec();
        long.resize(MAX_HEAD_LENGTH + 10, b'a');
        assert_eq!(parse_request_head(&long), Err(ParseError::HeadTooLarge));
        long.extend_from_slice(b"\r\n\r\n");
        assert_eq!(parse_request_head(&long), Err(ParseError::HeadTooLarge));
    }

    #[test]
    fn notes_a_body() {
        let head = parse_request_head(b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello").unwrap();
        assert_eq!(head.method, Method::Other);
        assert!(head.has_body);
        assert_eq!(head.head_length, 48);
    }

    #[test]
    fn host_forms() {
        for (header, host) in [("a.b", "a.b"), ("[fe80::1]:8080", "[fe80::1]"), ("homemx.lan:80", "homemx.lan")] {
            let request = std::format!("GET / HTTP/1.1\r\nHost: {header}\r\n\r\n");
            assert_eq!(parse_request_head(request.as_bytes()).unwrap().host, host);
        }
        assert_eq!(parse_request_head(b"GET / HTTP/1.1\r\nHost: a:b\r\n\r\n"), Err(ParseError::Malformed));
        assert_eq!(parse_request_head(b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n"), Err(ParseError::Malformed));
    }

    proptest! {
        #[test]
        fn never_panics(input in proptest::collection::vec(any::<u8>(), 0..3000)) {
            let _ = parse_request_head(&input);
        }

        #[test]
        fn prefixes_of_a_valid_head_are_incomplete(cut in 0usize..40) {
            let full = b"GET /health HTTP/1.1\r\nHost: homemx\r\n\r\n";
            let cut = cut.min(full.len() - 1);
            prop_assert_eq!(parse_request_head(&full[..cut]), Err(ParseError::Incomplete));
        }
    }
}
