//! The HTTP/1.1 bytes of the client's requests and the reading of the server's responses,
//! with homemx-http: [`write_head`] writes a [`Request`]'s head (its body, if any, follows as
//! is); [`response_parser`] makes a response parser over caller buffers that keeps the headers
//! ACME needs ([`HEADERS`]), and [`response`] turns the complete parse into a
//! [`Response`] for [`crate::client::Client::receive`].
//!
//! Sizes: a body up to [`MAX_BODY`] (JSON objects are at most [`crate::json::MAX_DOCUMENT`];
//! a PEM chain of eight certificates of 2 KB fits), kept headers up to [`HEADER_STORE`]
//! bytes in all.

use alloc::vec;
use alloc::vec::Vec;

use homemx_http::client::{write_request_head, RequestHeadOut, RequestMethod, ResponseParser, WriteError};

use crate::client::{Request, Response};

/// Largest response body read.
pub const MAX_BODY: usize = 24 * 1024;
/// Bytes for the kept header values (a nonce, a location, a retry time and the content type).
pub const HEADER_STORE: usize = 1024;
/// The headers kept from every response.
pub const HEADERS: &[&str] = &["Replay-Nonce", "Location", "Retry-After", "Content-Type"];
/// The `User-Agent` the client sends (RFC 8555 section 6.1 asks for one).
pub const USER_AGENT: &str = "homemx-acme/0.1";
/// The body type of every POST (RFC 8555 section 6.2).
pub const JOSE_JSON: &str = "application/jose+json";

/// Writes the head of `request` into `out` and returns its length; the body
/// ([`Request::body`]) follows it.
pub fn write_head(request: &Request, out: &mut [u8]) -> Result<usize, WriteError> {
    let head = RequestHeadOut {
        method: if request.body.is_some() { RequestMethod::Post } else { RequestMethod::Get },
        host: request.url.authority(),
        path_and_query: request.url.path_and_query(),
        user_agent: USER_AGENT,
        accept: request.accept,
        content: request.body.as_ref().map(|body| (JOSE_JSON, body.len())),
    };
    write_request_head(out, &head)
}

/// The whole request (head and body) as bytes.
pub fn request_bytes(request: &Request) -> Result<Vec<u8>, WriteError> {
    let body = request.body.as_deref().unwrap_or("");
    let mut out = vec![0u8; 1024 + request.url.as_str().len()];
    let length = write_head(request, &mut out)?;
    out.truncate(length);
    out.extend_from_slice(body.as_bytes());
    Ok(out)
}

/// A response parser writing the body into `body` (its length is the limit) and keeping
/// [`HEADERS`] in `store`.
pub fn response_parser<'b>(body: &'b mut [u8], store: &'b mut [u8]) -> ResponseParser<'b> {
    ResponseParser::new(body).capture_headers(HEADERS, store)
}

/// The complete response of `parser`, or `None` while it is not complete. A kept header that
/// is not UTF-8 is left out (and then missing for the client).
pub fn response<'p>(parser: &'p ResponseParser<'_>) -> Option<Response<'p>> {
    let complete = parser.response()?;
    let text = |name: &str| parser.header(name).and_then(|value| core::str::from_utf8(value).ok());
    Some(Response {
        status: complete.status,
        replay_nonce: text("Replay-Nonce"),
        location: text("Location"),
        retry_after: text("Retry-After"),
        content_type: text("Content-Type"),
        body: complete.body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base64url;
    use crate::client::tests::{answer, config, keys, next_path, DIRECTORY};
    use crate::client::{Action, Client};
    use alloc::format;

    #[test]
    fn request_bytes_carry_the_jws() {
        let (account_key, device_key) = keys();
        let mut client = Client::new(config(), &account_key, &device_key);
        next_path(&mut client);
        answer(&mut client, 200, None, None, DIRECTORY);
        let Action::Send { request, .. } = client.poll() else { panic!() };
        let bytes = request_bytes(&request).unwrap();
        let text = core::str::from_utf8(&bytes).unwrap();
        let body = request.body.as_deref().unwrap();
        assert!(text.starts_with("POST /acct HTTP/1.1\r\nHost: ca.example.test\r\nUser-Agent: homemx-acme/0.1\r\nAccept: application/json\r\n"));
        assert!(text.contains(&format!("Content-Type: application/jose+json\r\nContent-Length: {}\r\n", body.len())));
        assert!(text.ends_with(&format!("\r\n\r\n{body}")));
        let payload = crate::json::parse(body.as_bytes()).unwrap();
        let payload = base64url::decode(payload.get("payload").unwrap().as_str().unwrap()).unwrap();
        assert_eq!(payload, br#"{"termsOfServiceAgreed":true,"contact":[]}"#);
    }
}
