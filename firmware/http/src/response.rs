//! HTTP/1.1 response writing: status line, the strict headers every homemx answer carries
//! (no caching, no framing, no sniffing, a Content-Security-Policy, no cookies),
//! `Content-Length`, `Connection: close`, and the body — whole ([`write_response`]) or the head
//! alone for a body the caller streams after it ([`write_head`]). The CSP is
//! [`DEFAULT_CONTENT_SECURITY_POLICY`] (nothing may load) unless the caller passes its own, as
//! the status page does to allow its one inline style by hash.

/// The status codes the LAN services answer with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// 200 OK
    Ok,
    /// 400 Bad Request
    BadRequest,
    /// 403 Forbidden
    Forbidden,
    /// 404 Not Found
    NotFound,
    /// 405 Method Not Allowed
    MethodNotAllowed,
    /// 421 Misdirected Request (wrong `Host:`, DNS-rebinding defence)
    MisdirectedRequest,
    /// 431 Request Header Fields Too Large
    HeaderFieldsTooLarge,
    /// 505 HTTP Version Not Supported
    VersionNotSupported,
}

impl Status {
    /// The numeric code.
    pub fn code(self) -> u16 {
        match self {
            Status::Ok => 200,
            Status::BadRequest => 400,
            Status::Forbidden => 403,
            Status::NotFound => 404,
            Status::MethodNotAllowed => 405,
            Status::MisdirectedRequest => 421,
            Status::HeaderFieldsTooLarge => 431,
            Status::VersionNotSupported => 505,
        }
    }

    /// The reason phrase.
    pub fn reason(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::BadRequest => "Bad Request",
            Status::Forbidden => "Forbidden",
            Status::NotFound => "Not Found",
            Status::MethodNotAllowed => "Method Not Allowed",
            Status::MisdirectedRequest => "Misdirected Request",
            Status::HeaderFieldsTooLarge => "Request Header Fields Too Large",
            Status::VersionNotSupported => "HTTP Version Not Supported",
        }
    }
}

/// A response to write.
pub struct Response<'a> {
    /// Status code.
    pub status: Status,
    /// `Content-Type` of the body.
    pub content_type: &'a str,
    /// The body; not written for `HEAD` (`omit_body`).
    pub body: &'a [u8],
    /// Write the headers only (answer to `HEAD`).
    pub omit_body: bool,
}

struct Cursor<'a> {
    buffer: &'a mut [u8],
    length: usize,
}

impl Cursor<'_> {
    fn put(&mut self, bytes: &[u8]) -> Option<()> {
        let end = self.length.checked_add(bytes.len())?;
        self.buffer.get_mut(self.length..end)?.copy_from_slice(bytes);
        self.length = end;
        Some(())
    }

    fn put_number(&mut self, mut value: usize) -> Option<()> {
        let mut digits = [0u8; 20];
        let mut index = digits.len();
        loop {
            index -= 1;
            digits[index] = b'0' + (value % 10) as u8;
            value /= 10;
            if value == 0 {
                break;
            }
        }
        self.put(&digits[index..])
    }
}

/// The CSP of every answer that does not bring its own: nothing may load, nothing may frame it.
pub const DEFAULT_CONTENT_SECURITY_POLICY: &str =
    "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const STRICT_HEADERS: &[u8] = b"Cache-Control: no-store\r\n\
X-Content-Type-Options: nosniff\r\n\
X-Frame-Options: DENY\r\n\
Referrer-Policy: no-referrer\r\n\
Connection: close\r\n";

/// A response head without its body: for a body the caller writes (streams) after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResponseHead<'a> {
    /// Status code.
    pub status: Status,
    /// `Content-Type` of the body.
    pub content_type: &'a str,
    /// `Content-Length`: the exact number of body bytes that will follow (also for `HEAD`).
    pub content_length: usize,
    /// The `Content-Security-Policy` ([`DEFAULT_CONTENT_SECURITY_POLICY`] unless the body needs
    /// more, e.g. a hash-allowed inline style).
    pub content_security_policy: &'a str,
}

/// Header values must be visible ASCII and spaces: no CR or LF can split a header.
fn is_header_value(value: &str) -> bool {
    value.bytes().all(|byte| byte == b' ' || byte.is_ascii_graphic())
}

/// Writes the status line and headers, ending with the blank line; returns the bytes written,
/// or `None` if they do not fit or a header value contains a control character.
pub fn write_head(head: &ResponseHead<'_>, buffer: &mut [u8]) -> Option<usize> {
    if !is_header_value(head.content_type) || !is_header_value(head.content_security_policy) {
        return None;
    }
    let mut cursor = Cursor { buffer, length: 0 };
    cursor.put(b"HTTP/1.1 ")?;
    cursor.put_number(head.status.code() as usize)?;
    cursor.put(b" ")?;
    cursor.put(head.status.reason().as_bytes())?;
    cursor.put(b"\r\nContent-Type: ")?;
    cursor.put(head.content_type.as_bytes())?;
    cursor.put(b"\r\nContent-Length: ")?;
    cursor.put_number(head.content_length)?;
    cursor.put(b"\r\nContent-Security-Policy: ")?;
    cursor.put(head.content_security_policy.as_bytes())?;
    cursor.put(b"\r\n")?;
    cursor.put(STRICT_HEADERS)?;
    cursor.put(b"\r\n")?;
    Some(cursor.length)
}

/// Writes `response` into `buffer` with [`DEFAULT_CONTENT_SECURITY_POLICY`]; returns the bytes
/// written, or `None` if it does not fit.
pub fn write_response(response: &Response<'_>, buffer: &mut [u8]) -> Option<usize> {
    write_response_with_policy(response, DEFAULT_CONTENT_SECURITY_POLICY, buffer)
}

/// Writes `response` into `buffer` with the given `Content-Security-Policy`; returns the bytes
/// written, or `None` if it does not fit or the policy contains a control character.
pub fn write_response_with_policy(
    response: &Response<'_>,
    content_security_policy: &str,
    buffer: &mut [u8],
) -> Option<usize> {
    let head = ResponseHead {
        status: response.status,
        content_type: response.content_type,
        content_length: response.body.len(),
        content_security_policy,
    };
    let head_length = write_head(&head, buffer)?;
    if response.omit_body {
        return Some(head_length);
    }
    let end = head_length.checked_add(response.body.len())?;
    buffer.get_mut(head_length..end)?.copy_from_slice(response.body);
    Some(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_status_headers_and_body() {
        let mut buffer = [0u8; 1024];
        let response = Response { status: Status::Ok, content_type: "application/json", body: b"{}", omit_body: false };
        let length = write_response(&response, &mut buffer).unwrap();
        let text = core::str::from_utf8(&buffer[..length]).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"));
        assert!(text.contains("Content-Security-Policy: default-src 'none'"));
        assert!(!text.to_ascii_lowercase().contains("set-cookie"));
        assert!(text.ends_with("\r\n\r\n{}"));
    }

    #[test]
    fn head_omits_the_body_but_keeps_its_length() {
        let mut buffer = [0u8; 1024];
        let response = Response { status: Status::Ok, content_type: "text/plain", body: b"hello", omit_body: true };
        let length = write_response(&response, &mut buffer).unwrap();
        let text = core::str::from_utf8(&buffer[..length]).unwrap();
        assert!(text.contains("Content-Length: 5\r\n"));
        assert!(text.ends_with("\r\n\r\n"));
    }

    #[test]
    fn refuses_to_overflow() {
        let mut buffer = [0u8; 64];
        let response = Response { status: Status::NotFound, content_type: "text/plain", body: b"x", omit_body: false };
        assert_eq!(write_response(&response, &mut buffer), None);
    }
    #[test]
    fn the_default_policy_allows_nothing() {
        let mut buffer = [0u8; 1024];
        let response = Response { status: Status::Ok, content_type: "text/plain", body: b"x", omit_body: false };
        let length = write_response(&response, &mut buffer).unwrap();
        let text = core::str::from_utf8(&buffer[..length]).unwrap();
        assert!(text.contains(
            "\r\nContent-Security-Policy: default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'\r\n"
        ));
        assert!(!text.contains("unsafe-inline"));
        assert_eq!(text.matches("Content-Security-Policy").count(), 1);
    }

    #[test]
    fn a_caller_policy_replaces_the_default() {
        let mut buffer = [0u8; 1024];
        let response = Response { status: Status::Ok, content_type: "text/html; charset=utf-8", body: b"<p>", omit_body: false };
        let policy = "default-src 'none'; style-src 'sha256-AAAA'";
        let length = write_response_with_policy(&response, policy, &mut buffer).unwrap();
        let text = core::str::from_utf8(&buffer[..length]).unwrap();
        assert!(text.contains("\r\nContent-Security-Policy: default-src 'none'; style-src 'sha256-AAAA'\r\n"));
        assert_eq!(text.matches("Content-Security-Policy").count(), 1);
        assert!(text.ends_with("\r\n\r\n<p>"));
    }

    #[test]
    fn the_head_alone_announces_the_streamed_length() {
        let mut buffer = [0u8; 1024];
        let head = ResponseHead {
            status: Status::Ok,
            content_type: "text/html; charset=utf-8",
            content_length: 5564,
            content_security_policy: DEFAULT_CONTENT_SECURITY_POLICY,
        };
        let length = write_head(&head, &mut buffer).unwrap();
        let text = core::str::from_utf8(&buffer[..length]).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: 5564\r\n"));
        assert!(text.ends_with("Connection: close\r\n\r\n"));
        assert_eq!(text.matches("\r\n\r\n").count(), 1);
    }

    #[test]
    fn header_values_cannot_inject_headers() {
        let mut buffer = [0u8; 1024];
        let response = Response { status: Status::Ok, content_type: "text/plain\r\nSet-Cookie: a=b", body: b"", omit_body: false };
        assert_eq!(write_response(&response, &mut buffer), None);
        let response = Response { status: Status::Ok, content_type: "text/plain", body: b"", omit_body: false };
        assert_eq!(write_response_with_policy(&response, "default-src 'none'\nX: y", &mut buffer), None);
    }

    proptest::proptest! {
        #[test]
        fn whole_response_is_head_then_body(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600), size in 0usize..1200) {
            let response = Response { status: Status::Ok, content_type: "application/json", body: &body, omit_body: false };
            let mut buffer = std::vec![0u8; size];
            let mut head = [0u8; 512];
            let head_length = write_head(
                &ResponseHead { status: Status::Ok, content_type: "application/json", content_length: body.len(), content_security_policy: DEFAULT_CONTENT_SECURITY_POLICY },
                &mut head,
            ).unwrap();
            match write_response(&response, &mut buffer) {
                Some(length) => {
                    proptest::prop_assert_eq!(length, head_length + body.len());
                    proptest::prop_assert_eq!(&buffer[..head_length], &head[..head_length]);
                    proptest::prop_assert_eq!(&buffer[head_length..length], &body[..]);
                }
                None => proptest::prop_assert!(size < head_length + body.len()),
            }
        }
    }
}
