//! The dyndns2 update protocol: the request path ([`update_path`]) and the whole request
//! ([`write_update_request`], always sent over HTTPS by the firmware: never the clear-text
//! update), the answer ([`parse_update_answer`], [`parse_update_response`]), how to react to
//! it ([`UpdateAnswer::class`]) and the retry delay ([`backoff_delay_s`]).
//!
//! Classes:
//! - Success: `good <ip>`, `nochg <ip>`.
//! - Fatal — stop all updates and alert until the owner acts (the dyndns2 specification says a
//!   client must not repeat these requests unchanged: the provider blocks clients that do):
//!   `badauth` and HTTP 401/403, `!donator`, `notfqdn`, `nohost`, `numhost`, `abuse`, `badagent`.
//! - Backoff — retry later with a growing delay: `911` (the specification asks clients to wait
//!   at least 30 minutes), `dnserr`, any other HTTP status, an unknown answer, a transport
//!   failure. Delay: 30 min after the first failure, doubling after each further consecutive
//!   failure, at most 24 h (30 min, 1 h, 2 h, 4 h, 8 h, 16 h, 24 h, 24 h, ...).

use crate::checkip::{parse_dotted_quad, write_address, Ipv4};
use homemx_http::client::{write_get, WriteError};

/// The `User-Agent` every dyndns2 and check-IP request carries (dyndns2 asks for a
/// "company-model-version" agent so the provider can tell clients apart).
pub const USER_AGENT: &str = "homemx/0.1 (owner-built appliance)";

/// First retry delay after a Backoff answer (the dyndns2 `911` minimum).
pub const BACKOFF_INITIAL_S: u64 = 30 * 60;
/// Longest retry delay.
pub const BACKOFF_MAX_S: u64 = 24 * 60 * 60;

fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"-._~".contains(&byte)
}

/// Writes `/nic/update?hostname=<host_name>&myip=<ip>` into `out` (host name percent-encoded
/// outside the RFC 3986 unreserved set); returns the length, or `None` if `host_name` is empty
/// or the path does not fit.
pub fn update_path(host_name: &str, ip: Ipv4, out: &mut [u8]) -> Option<usize> {
    if host_name.is_empty() {
        return None;
    }
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut length = 0;
    let mut put = |bytes: &[u8], length: &mut usize| -> Option<()> {
        let end = length.checked_add(bytes.len())?;
        out.get_mut(*length..end)?.copy_from_slice(bytes);
        *length = end;
        Some(())
    };
    put(b"/nic/update?hostname=", &mut length)?;
    for byte in host_name.bytes() {
        if is_unreserved(byte) {
            put(&[byte], &mut length)?;
        } else {
            put(&[b'%', HEX[usize::from(byte >> 4)], HEX[usize::from(byte & 15)]], &mut length)?;
        }
    }
    put(b"&myip=", &mut length)?;
    let mut address = [0u8; 15];
    let address_length = write_address(ip, &mut address)?;
    put(address.get(..address_length)?, &mut length)?;
    Some(length)
}

/// Why [`write_update_request`] wrote nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestError {
    /// The host name is empty or the path does not fit in the scratch space.
    InvalidHostName,
    /// The HTTP request writer refused (buffer, server host, user name).
    Http(WriteError),
}

/// Longest update path [`write_update_request`] builds (host names are at most 253 bytes,
/// percent-encoding can triple them).
pub const MAX_UPDATE_PATH: usize = 800;

/// Writes the complete update request `GET /nic/update?... HTTP/1.1` for `server_host`
/// with Basic authentication and [`USER_AGENT`]; returns its length.
pub fn write_update_request(
    out: &mut [u8],
    server_host: &str,
    host_name: &str,
    ip: Ipv4,
    user: &str,
    password: &[u8],
) -> Result<usize, RequestError> {
    let mut path = [0u8; MAX_UPDATE_PATH];
    let length = update_path(host_name, ip, &mut path).ok_or(RequestError::InvalidHostName)?;
    let path = path.get(..length).and_then(|p| core::str::from_utf8(p).ok()).ok_or(RequestError::InvalidHostName)?;
    write_get(out, server_host, path, USER_AGENT, Some((user, password))).map_err(RequestError::Http)
}

/// A dyndns2 answer (plus the HTTP and transport failures that stand in for one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpdateAnswer {
    /// `good [ip]`: the record was updated.
    Good(Option<Ipv4>),
    /// `nochg [ip]`: the record already had this address.
    NoChange(Option<Ipv4>),
    /// `badauth` (or HTTP 401/403): wrong user name or password.
    BadAuth,
    /// `!donator`: an option the account does not have.
    NotDonator,
    /// `notfqdn`: the host name is not a fully qualified domain name.
    NotFqdn,
    /// `nohost`: the host name does not exist in this account.
    NoHost,
    /// `numhost`: too many host names in one request.
    NumHost,
    /// `abuse`: the host name is blocked for update abuse.
    Abuse,
    /// `badagent`: the user agent is blocked or the request is malformed.
    BadAgent,
    /// `911`: a problem at the provider; wait (at least 30 minutes).
    ServerError,
    /// `dnserr`: a DNS error at the provider.
    DnsError,
    /// Another HTTP status than 2xx (401/403 become [`UpdateAnswer::BadAuth`]).
    HttpStatus(u16),
    /// The request did not complete (TLS, connection, timeout, malformed HTTP): set by the
    /// firmware, never parsed.
    TransportError,
    /// Anything else.
    Unknown,
}

/// What to do after an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnswerClass {
    /// The record holds the address.
    Success,
    /// Stop all updates and alert until the owner acts.
    Fatal,
    /// Retry later, after [`backoff_delay_s`].
    Backoff,
}

impl UpdateAnswer {
    /// The class of this answer (see the module documentation).
    pub fn class(self) -> AnswerClass {
        match self {
            UpdateAnswer::Good(_) | UpdateAnswer::NoChange(_) => AnswerClass::Success,
            UpdateAnswer::BadAuth
            | UpdateAnswer::NotDonator
            | UpdateAnswer::NotFqdn
            | UpdateAnswer::NoHost
            | UpdateAnswer::NumHost
            | UpdateAnswer::Abuse
            | UpdateAnswer::BadAgent => AnswerClass::Fatal,
            UpdateAnswer::ServerError
            | UpdateAnswer::DnsError
            | UpdateAnswer::HttpStatus(_)
            | UpdateAnswer::TransportError
            | UpdateAnswer::Unknown => AnswerClass::Backoff,
        }
    }

    /// The answer's protocol word, for logs and the status page.
    pub fn as_str(self) -> &'static str {
        match self {
            UpdateAnswer::Good(_) => "good",
            UpdateAnswer::NoChange(_) => "nochg",
            UpdateAnswer::BadAuth => "badauth",
            UpdateAnswer::NotDonator => "!donator",
            UpdateAnswer::NotFqdn => "notfqdn",
            UpdateAnswer::NoHost => "nohost",
            UpdateAnswer::NumHost => "numhost",
            UpdateAnswer::Abuse => "abuse",
            UpdateAnswer::BadAgent => "badagent",
            UpdateAnswer::ServerError => "911",
            UpdateAnswer::DnsError => "dnserr",
            UpdateAnswer::HttpStatus(_) => "http-status",
            UpdateAnswer::TransportError => "transport-error",
            UpdateAnswer::Unknown => "unknown",
        }
    }
}

/// Parses a dyndns2 answer body: its first non-empty line, `code [ip]` (codes compared
/// without regard to ASCII case; surrounding whitespace ignored). An address that is present
/// but not a strict dotted quad, extra words, or an unknown code give
/// [`UpdateAnswer::Unknown`].
pub fn parse_update_answer(body: &[u8]) -> UpdateAnswer {
    let line = body.split(|&b| b == b'\n').map(|line| line.trim_ascii()).find(|line| !line.is_empty()).unwrap_or(&[]);
    let mut words = line.split(|&b| b == b' ' || b == b'\t').filter(|word| !word.is_empty());
    let Some(code) = words.next() else { return UpdateAnswer::Unknown };
    let argument = words.next();
    if words.next().is_some() {
        return UpdateAnswer::Unknown;
    }
    let address = match argument.map(parse_dotted_quad) {
        None => None,
        Some(Some(address)) => Some(address),
        Some(None) => return UpdateAnswer::Unknown,
    };
    let is = |word: &[u8]| code.eq_ignore_ascii_case(word);
    if is(b"good") {
        return UpdateAnswer::Good(address);
    }
    if is(b"nochg") {
        return UpdateAnswer::NoChange(address);
    }
    if address.is_some() {
        return UpdateAnswer::Unknown;
    }
    const CODES: &[(&[u8], UpdateAnswer)] = &[
        (b"badauth", UpdateAnswer::BadAuth),
        (b"!donator", UpdateAnswer::NotDonator),
        (b"notfqdn", UpdateAnswer::NotFqdn),
        (b"nohost", UpdateAnswer::NoHost),
        (b"numhost", UpdateAnswer::NumHost),
        (b"abuse", UpdateAnswer::Abuse),
        (b"badagent", UpdateAnswer::BadAgent),
        (b"911", UpdateAnswer::ServerError),
        (b"dnserr", UpdateAnswer::DnsError),
    ];
    CODES.iter().find(|(word, _)| is(word)).map_or(UpdateAnswer::Unknown, |&(_, answer)| answer)
}

/// The answer for an HTTP response: 401 and 403 are [`UpdateAnswer::BadAuth`], other non-2xx
/// statuses [`UpdateAnswer::HttpStatus`], a 2xx body is parsed by [`parse_update_answer`].
pub fn parse_update_response(status: u16, body: &[u8]) -> UpdateAnswer {
    match status {
        401 | 403 => UpdateAnswer::BadAuth,
        200..=299 => parse_update_answer(body),
        _ => UpdateAnswer::HttpStatus(status),
    }
}

/// The wait before the next try after `consecutive_failures` Backoff answers in a row (1 =
/// the first): 30 min doubling up to 24 h; 0 for no failure.
pub fn backoff_delay_s(consecutive_failures: u32) -> u64 {
    if consecutive_failures == 0 {
        return 0;
    }
    let doublings = (consecutive_failures - 1).min(16);
    BACKOFF_INITIAL_S.saturating_mul(1 << doublings).min(BACKOFF_MAX_S)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn path(host: &str, ip: Ipv4) -> Option<String> {
        let mut out = [0u8; 256];
        update_path(host, ip, &mut out).map(|n| String::from_utf8(out[..n].to_vec()).unwrap())
    }

    #[test]
    fn update_paths() {
        assert_eq!(
            path("mx.example.org", [203, 0, 113, 5]).as_deref(),
            Some("/nic/update?hostname=mx.example.org&myip=203.0.113.5")
        );
        assert_eq!(
            path("a b&c=d/%?#", [0, 0, 0, 0]).as_deref(),
            Some("/nic/update?hostname=a%20b%26c%3Dd%2F%25%3F%23&myip=0.0.0.0")
        );
        assert_eq!(path("h\u{e9}", [1, 2, 3, 4]).as_deref(), Some("/nic/update?hostname=h%C3%A9&myip=1.2.3.4"));
        assert_eq!(path("", [1, 2, 3, 4]), None);
        let full = path("mx.example.org", [255, 255, 255, 255]).unwrap();
        for size in 0..full.len() {
            assert_eq!(update_path("mx.example.org", [255; 4], &mut vec![0u8; size]), None);
        }
    }

    #[test]
    fn writes_the_update_request() {
        let mut out = [0u8; 512];
        let length =
            write_update_request(&mut out, "dyn.example.net", "mx.example.org", [203, 0, 113, 5], "owner", b"secret")
                .unwrap();
        let text = core::str::from_utf8(&out[..length]).unwrap();
        assert!(text.starts_with("GET /nic/update?hostname=mx.example.org&myip=203.0.113.5 HTTP/1.1\r\n"));
        assert!(text.contains("\r\nUser-Agent: homemx/0.1 (owner-built appliance)\r\n"));
        assert!(text.contains("\r\nAuthorization: Basic b3duZXI6c2VjcmV0\r\n"));
        assert_eq!(
            write_update_request(&mut out, "dyn.example.net", "", [1, 2, 3, 4], "u", b"p"),
            Err(RequestError::InvalidHostName)
        );
        assert_eq!(
            write_update_request(&mut out, "dyn.example.net\r\n", "h", [1, 2, 3, 4], "u", b"p"),
            Err(RequestError::Http(WriteError::InvalidHost))
        );
        let long_name = "x".repeat(400);
        assert_eq!(
            write_update_request(&mut out, "d", &long_name, [1, 2, 3, 4], "u", b"p"),
            Err(RequestError::Http(WriteError::BufferTooSmall))
        );
    }

    #[test]
    fn answer_table() {
        use AnswerClass::*;
        let table: &[(&str, UpdateAnswer, AnswerClass)] = &[
            ("good 203.0.113.5", UpdateAnswer::Good(Some([203, 0, 113, 5])), Success),
            ("good 203.0.113.5\r\n", UpdateAnswer::Good(Some([203, 0, 113, 5])), Success),
            ("\n  GOOD   203.0.113.5  \n", UpdateAnswer::Good(Some([203, 0, 113, 5])), Success),
            ("good", UpdateAnswer::Good(None), Success),
            ("nochg 203.0.113.5", UpdateAnswer::NoChange(Some([203, 0, 113, 5])), Success),
            ("nochg", UpdateAnswer::NoChange(None), Success),
            ("badauth", UpdateAnswer::BadAuth, Fatal),
            ("!donator", UpdateAnswer::NotDonator, Fatal),
            ("notfqdn", UpdateAnswer::NotFqdn, Fatal),
            ("nohost\n", UpdateAnswer::NoHost, Fatal),
            ("numhost", UpdateAnswer::NumHost, Fatal),
            ("abuse", UpdateAnswer::Abuse, Fatal),
            ("badagent", UpdateAnswer::BadAgent, Fatal),
            ("911", UpdateAnswer::ServerError, Backoff),
            ("dnserr", UpdateAnswer::DnsError, Backoff),
            ("", UpdateAnswer::Unknown, Backoff),
            ("goodbye", UpdateAnswer::Unknown, Backoff),
            ("good 1.2.3", UpdateAnswer::Unknown, Backoff),
            ("good 01.2.3.4", UpdateAnswer::Unknown, Backoff),
            ("good 1.2.3.4 extra", UpdateAnswer::Unknown, Backoff),
            ("badauth 1.2.3.4", UpdateAnswer::Unknown, Backoff),
            ("<html>error</html>", UpdateAnswer::Unknown, Backoff),
            ("good\u{0}", UpdateAnswer::Unknown, Backoff),
        ];
        for (body, answer, class) in table {
            assert_eq!(parse_update_answer(body.as_bytes()), *answer, "{body:?}");
            assert_eq!(answer.class(), *class, "{body:?}");
        }
    }

    #[test]
    fn http_status_table() {
        assert_eq!(parse_update_response(200, b"good 1.2.3.4"), UpdateAnswer::Good(Some([1, 2, 3, 4])));
        assert_eq!(parse_update_response(401, b"good 1.2.3.4"), UpdateAnswer::BadAuth);
        assert_eq!(parse_update_response(403, b""), UpdateAnswer::BadAuth);
        assert_eq!(UpdateAnswer::BadAuth.class(), AnswerClass::Fatal);
        assert_eq!(parse_update_response(500, b"good 1.2.3.4"), UpdateAnswer::HttpStatus(500));
        assert_eq!(parse_update_response(302, b""), UpdateAnswer::HttpStatus(302));
        assert_eq!(UpdateAnswer::HttpStatus(503).class(), AnswerClass::Backoff);
        assert_eq!(UpdateAnswer::TransportError.class(), AnswerClass::Backoff);
    }

    #[test]
    fn backoff_schedule() {
        let minutes: Vec<u64> = (0..10).map(|n| backoff_delay_s(n) / 60).collect();
        assert_eq!(minutes, [0, 30, 60, 120, 240, 480, 960, 1440, 1440, 1440]);
        assert_eq!(backoff_delay_s(u32::MAX), BACKOFF_MAX_S);
    }

    proptest! {
        #[test]
        fn paths_decode_back(host in "[ -~]{1,60}", ip in any::<[u8; 4]>()) {
            let encoded = path(&host, ip).unwrap();
            let query = encoded.strip_prefix("/nic/update?hostname=").unwrap();
            let (name, address) = query.split_once("&myip=").unwrap();
            prop_assert!(name.bytes().all(|b| is_unreserved(b) || b == b'%'));
            let mut decoded = Vec::new();
            let bytes = name.as_bytes();
            let mut i = 0;
            while i < bytes.len() {
                if bytes[i] == b'%' {
                    decoded.push(u8::from_str_radix(&name[i + 1..i + 3], 16).unwrap());
                    i += 3;
                } else {
                    decoded.push(bytes[i]);
                    i += 1;
                }
            }
            prop_assert_eq!(decoded, host.as_bytes());
            prop_assert_eq!(parse_dotted_quad(address.as_bytes()), Some(ip));
        }

        #[test]
        fn arbitrary_answers_never_panic(body in proptest::collection::vec(any::<u8>(), 0..100), status in 0u16..1000) {
            let answer = parse_update_response(status, &body);
            let _ = answer.class();
            prop_assert!(!answer.as_str().is_empty());
        }
    }
}
