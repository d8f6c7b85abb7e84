//! ACME Renewal Information (RFC 9773): the certificate's ARI identifier, the unsigned GET
//! of its renewal information, and [`advice`]: the answer's window (read by
//! [`crate::objects::RenewalInfo`], for [`crate::renewal::next_attempt`]) and when to ask again.
//!
//! Calls homemx-tls's DER reader (authorityKeyIdentifier, serial number).

use alloc::string::String;

use homemx_tls::der;

use crate::base64url;
use crate::client::{parse_retry_after, Request, Response};
use crate::objects::{Directory, RenewalInfo};
use crate::url::{self, Url};

/// The ARI certificate identifier (RFC 9773 section 4.1): base64url of the leaf's
/// authorityKeyIdentifier keyIdentifier, `.`, base64url of its serial number's DER contents.
/// `None` if the certificate has no keyIdentifier or is malformed.
pub fn certificate_id(leaf_der: &[u8]) -> Option<String> {
    let key_identifier = der::authority_key_identifier(leaf_der).filter(|identifier| !identifier.is_empty())?;
    let serial = der::serial_number(leaf_der).filter(|serial| !serial.is_empty())?;
    let mut id = base64url::encode(key_identifier);
    id.push('.');
    base64url::encode_into(serial, &mut id);
    Some(id)
}

/// The URL of the renewal information of `leaf_der`: the directory's `renewalInfo`, `/`, the
/// certificate identifier.
pub fn renewal_info_url(renewal_info: &Url, leaf_der: &[u8]) -> Option<Url> {
    let base = renewal_info.as_str().trim_end_matches('/');
    url::parse(&alloc::format!("{base}/{}", certificate_id(leaf_der)?))
}

/// The GET of the renewal information of `leaf_der`, if the directory offers ARI.
pub fn renewal_info_request(directory: &Directory, leaf_der: &[u8]) -> Option<Request> {
    let url = renewal_info_url(directory.renewal_info.as_ref()?, leaf_der)?;
    Some(Request { url, body: None, accept: "application/json" })
}

/// How long an answer holds when the server gives no usable `Retry-After` (Let's Encrypt sends
/// six hours; RFC 9773 section 4.3 wants a client to look again at least once a day).
pub const DEFAULT_RECHECK: u64 = 6 * 60 * 60;
/// The bounds put on the server's `Retry-After` for the next look.
pub const MIN_RECHECK: u64 = 60 * 60;
pub const MAX_RECHECK: u64 = 24 * 60 * 60;

/// What an answer to the renewal-info GET says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RenewalAdvice {
    /// The suggested window (start, end), Unix seconds; `None`: the answer was not a usable
    /// renewal information (another status, a malformed or inconsistent window).
    pub window: Option<(u64, u64)>,
    /// When to ask again (its `Retry-After`, bounded by [`MIN_RECHECK`] and [`MAX_RECHECK`]).
    pub next_check: u64,
}

/// Reads the answer to [`renewal_info_request`] received at `now`.
pub fn advice(response: &Response<'_>, now: u64) -> RenewalAdvice {
    let recheck = response.retry_after.and_then(|value| parse_retry_after(value, now)).unwrap_or(DEFAULT_RECHECK).clamp(MIN_RECHECK, MAX_RECHECK);
    let window = if response.status == 200 { RenewalInfo::parse(response.body).ok() } else { None };
    RenewalAdvice { window: window.map(|info| (info.window_start, info.window_end)), next_check: now.saturating_add(recheck) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A certificate skeleton with the given serial and authorityKeyIdentifier: only the
    /// fields the reader walks (DER by hand, short lengths).
    fn certificate(serial: &[u8], key_identifier: &[u8]) -> alloc::vec::Vec<u8> {
        fn tlv(tag: u8, contents: &[u8]) -> alloc::vec::Vec<u8> {
            let mut out = alloc::vec![tag, contents.len() as u8];
            out.extend_from_slice(contents);
            out
        }
        let aki = tlv(0x30, &tlv(0x80, key_identifier));
        let extension = tlv(0x30, &[tlv(0x06, der::AUTHORITY_KEY_IDENTIFIER_OID), tlv(0x04, &aki)].concat());
        let extensions = tlv(0xa3, &tlv(0x30, &extension));
        let empty = tlv(0x30, &[]);
        let tbs = tlv(
            0x30,
            &[tlv(0xa0, &tlv(0x02, &[2])), tlv(0x02, serial), empty.clone(), empty.clone(), empty.clone(), empty.clone(), empty.clone(), extensions]
                .concat(),
        );
        tlv(0x30, &[tbs, empty, tlv(0x03, &[0])].concat())
    }

    #[test]
    fn rfc9773_example_identifier() {
        // RFC 9773 section 4.1's example (checked with Python's base64 as well).
        let key_identifier = [
            0x69, 0x88, 0x5b, 0x6b, 0x87, 0x46, 0x40, 0x41, 0xe1, 0xb3, 0x7b, 0x84, 0x7b, 0xa0, 0xae, 0x2c, 0xde, 0x01, 0xc8, 0xd4,
        ];
        let leaf = certificate(&[0x00, 0x87, 0x65, 0x43, 0x21], &key_identifier);
        assert_eq!(certificate_id(&leaf).as_deref(), Some("aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"));
        let base = url::parse("https://ca.example.test/renewal-info/").unwrap();
        assert_eq!(renewal_info_url(&base, &leaf).unwrap().as_str(), "https://ca.example.test/renewal-info/aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE");
    }

    fn answer<'a>(status: u16, retry_after: Option<&'a str>, body: &'a str) -> Response<'a> {
        Response { status, replay_nonce: None, location: None, retry_after, content_type: None, body: body.as_bytes() }
    }

    #[test]
    fn advice_from_the_answer() {
        const NOW: u64 = 1_796_425_550;
        let window = r#"{"suggestedWindow": {"start": "2027-01-01T00:00:00Z", "end": "2027-01-02T00:00:00Z"}}"#;
        let read = advice(&answer(200, Some("21600"), window), NOW);
        assert_eq!(read.window, Some((1_798_761_600, 1_798_848_000)));
        assert_eq!(read.next_check, NOW + 21_600);
        // No Retry-After: six hours; one too short or too long is bounded.
        assert_eq!(advice(&answer(200, None, window), NOW).next_check, NOW + DEFAULT_RECHECK);
        assert_eq!(advice(&answer(200, Some("5"), window), NOW).next_check, NOW + MIN_RECHECK);
        assert_eq!(advice(&answer(200, Some("999999999"), window), NOW).next_check, NOW + MAX_RECHECK);
        // Not a usable window: another status, an end before the start, no window at all.
        assert_eq!(advice(&answer(404, None, window), NOW).window, None);
        let backwards = r#"{"suggestedWindow": {"start": "2027-01-02T00:00:00Z", "end": "2027-01-01T00:00:00Z"}}"#;
        assert_eq!(advice(&answer(200, None, backwards), NOW).window, None);
        assert_eq!(advice(&answer(200, None, "{}"), NOW).window, None);
        assert_eq!(advice(&answer(200, None, "not json"), NOW).window, None);
    }

    #[test]
    fn refuses_certificates_without_an_identifier() {
        assert_eq!(certificate_id(&certificate(&[1], &[])), None);
        assert_eq!(certificate_id(&[0x30, 0x00]), None);
        let leaf = certificate(&[1], &[2]);
        for end in 0..leaf.len() {
            assert_eq!(certificate_id(&leaf[..end]), None);
        }
    }
}
