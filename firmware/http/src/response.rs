//! HTTP/1.1 response writing: status line, the strict headers every homemx answer carries
//! (no caching, no framing, no sniffing, a CSP that allows nothing from elsewhere, no
//! cookies), `Content-Length`, `Connection: close`, and the body.

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

const STRICT_HEADERS: &[u8] = b"Cache-Control: no-store\r\n\
Content-Security-Policy: default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'\r\n\
X-Content-Type-Options: nosniff\r\n\
X-Frame-Options: DENY\r\n\
Referrer-Policy: no-referrer\r\n\
Connection: close\r\n";

/// Writes `response` into `buffer`; returns the bytes written, or `None` if it does not fit.
pub fn write_response(response: &Response<'_>, buffer: &mut [u8]) -> Option<usize> {
    let mut cursor = Cursor { buffer, length: 0 };
    cursor.put(b"HTTP/1.1 ")?;
    cursor.put_number(response.status.code() as usize)?;
    cursor.put(b" ")?;
    cursor.put(response.status.reason().as_bytes())?;
    cursor.put(b"\r\nContent-Type: ")?;
    cursor.put(response.content_type.as_bytes())?;
    cursor.put(b"\r\nContent-Length: ")?;
    cursor.put_number(response.body.len())?;
    cursor.put(b"\r\n")?;
    cursor.put(STRICT_HEADERS)?;
    cursor.put(b"\r\n")?;
    if !response.omit_body {
        cursor.put(response.body)?;
    }
    Some(cursor.length)
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
}
