//! The `Received:` trace header (RFC 5321 4.4, protocol names of RFC 3848) and a small
//! fixed-buffer formatter.

use core::fmt::{self, Write};
use core::net::IpAddr;

use crate::address::{address_literal_is_valid, parse_domain};
use crate::clock::Rfc5322Date;

/// TLS parameters of a session, for the `Received:` header and the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TlsDetails {
    /// The protocol version, e.g. `TLSv1.3`.
    pub protocol: &'static str,
    /// The cipher suite, e.g. `TLS_AES_128_GCM_SHA256`.
    pub cipher: &'static str,
}

/// Writes formatted text into a byte slice; fails instead of overflowing.
pub struct SliceWriter<'a> {
    buffer: &'a mut [u8],
    length: usize,
}

impl<'a> SliceWriter<'a> {
    /// A writer appending to `buffer` after `length` bytes already in it.
    pub fn new(buffer: &'a mut [u8], length: usize) -> SliceWriter<'a> {
        SliceWriter { buffer, length }
    }

    /// Bytes in the buffer now.
    pub fn length(&self) -> usize {
        self.length
    }

    /// Appends raw bytes.
    pub fn write_bytes(&mut self, bytes: &[u8]) -> fmt::Result {
        let end = self.length.checked_add(bytes.len()).ok_or(fmt::Error)?;
        self.buffer.get_mut(self.length..end).ok_or(fmt::Error)?.copy_from_slice(bytes);
        self.length = end;
        Ok(())
    }
}

impl Write for SliceWriter<'_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        self.write_bytes(text.as_bytes())
    }
}

/// An IP address as an RFC 5321 address literal: `[192.0.2.1]` or `[IPv6:2001:db8::1]`
/// (IPv4-mapped IPv6 addresses are shown as IPv4).
#[derive(Clone, Copy, Debug)]
pub struct AddressLiteral(pub IpAddr);

impl fmt::Display for AddressLiteral {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => write!(formatter, "[{v4}]"),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => write!(formatter, "[{v4}]"),
                None => write!(formatter, "[IPv6:{v6}]"),
            },
        }
    }
}

/// What goes into one `Received:` header.
#[derive(Clone, Copy, Debug)]
pub struct ReceivedFields<'a> {
    /// The HELO/EHLO argument; written only if it is a valid domain or address literal.
    pub helo: &'a str,
    /// The client's address.
    pub client: IpAddr,
    /// This server's host name.
    pub hostname: &'a str,
    /// Whether the client said EHLO (ESMTP) rather than HELO.
    pub extended: bool,
    /// TLS parameters when the session is inside TLS.
    pub tls: Option<TlsDetails>,
    /// Whether the client authenticated (AUTH accepted).
    pub authenticated: bool,
    /// The trace id (also in the `250` reply).
    pub id: TransactionId,
    /// Seconds since the Unix epoch.
    pub unix_seconds: u64,
}

/// The id of one mail transaction: the session id and the transaction's number in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransactionId {
    /// The id the caller gave the session.
    pub session: u64,
    /// The transaction's number within the session, from 1.
    pub transaction: u32,
}

impl fmt::Display for TransactionId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{:016X}{:08X}", self.session, self.transaction)
    }
}

/// Whether `helo` is fit for a header: a valid domain or `[address literal]`.
fn helo_is_presentable(helo: &str) -> bool {
    if let Some(literal) = helo.strip_prefix('[').and_then(|rest| rest.strip_suffix(']')) {
        return address_literal_is_valid(literal);
    }
    parse_domain(helo.as_bytes()) == Ok(helo.len())
}

/// Writes the complete header (folded, CRLF-terminated) into `buffer`; returns its length.
pub fn write_received(fields: &ReceivedFields<'_>, buffer: &mut [u8]) -> Result<usize, fmt::Error> {
    let mut writer = SliceWriter::new(buffer, 0);
    let from = if helo_is_presentable(fields.helo) { fields.helo } else { "unknown" };
    // RFC 3848: S for TLS, A for AUTH (AUTH is an ESMTP extension, so A implies ESMTP).
    let protocol = match (fields.extended, fields.tls.is_some(), fields.authenticated) {
        (_, true, true) => "ESMTPSA",
        (_, false, true) => "ESMTPA",
        (_, true, false) => "ESMTPS",
        (true, false, false) => "ESMTP",
        (false, false, false) => "SMTP",
    };
    write!(writer, "Received: from {from} ({})\r\n\tby {} with {protocol}", AddressLiteral(fields.client), fields.hostname)?;
    if let Some(tls) = fields.tls {
        write!(writer, "\r\n\t(using {} with cipher {})", tls.protocol, tls.cipher)?;
    }
    write!(writer, "\r\n\tid {};\r\n\t{}\r\n", fields.id, Rfc5322Date(fields.unix_seconds))?;
    Ok(writer.length())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(helo: &'static str, tls: Option<TlsDetails>) -> ReceivedFields<'static> {
        ReceivedFields {
            helo,
            client: "203.0.113.7".parse().unwrap(),
            hostname: "mx.example.org",
            extended: true,
            tls,
            authenticated: false,
            id: TransactionId { session: 0xABCDEF, transaction: 2 },
            unix_seconds: 1_700_000_000,
        }
    }

    fn render(fields: &ReceivedFields<'_>) -> std::string::String {
        let mut buffer = [0u8; 768];
        let length = write_received(fields, &mut buffer).unwrap();
        std::string::String::from_utf8(buffer[..length].to_vec()).unwrap()
    }

    #[test]
    fn plain_and_tls_forms() {
        assert_eq!(
            render(&fields("client.example", None)),
            "Received: from client.example ([203.0.113.7])\r\n\tby mx.example.org with ESMTP\r\n\t\
             id 0000000000ABCDEF00000002;\r\n\tTue, 14 Nov 2023 22:13:20 +0000\r\n"
        );
        let tls = TlsDetails { protocol: "TLSv1.3", cipher: "TLS_AES_128_GCM_SHA256" };
        let text = render(&fields("client.example", Some(tls)));
        assert!(text.contains("with ESMTPS\r\n\t(using TLSv1.3 with cipher TLS_AES_128_GCM_SHA256)\r\n\tid "));
        let authenticated = ReceivedFields { authenticated: true, ..fields("client.example", Some(tls)) };
        assert!(render(&authenticated).contains("by mx.example.org with ESMTPSA\r\n\t(using TLSv1.3 "));
        let authenticated_in_clear = ReceivedFields { authenticated: true, ..fields("client.example", None) };
        assert!(render(&authenticated_in_clear).contains("with ESMTPA\r\n"));
    }

    #[test]
    fn bad_helo_is_not_copied() {
        assert!(render(&fields("bad_name;x", None)).starts_with("Received: from unknown ([203.0.113.7])"));
        assert!(render(&fields("[192.0.2.1]", None)).starts_with("Received: from [192.0.2.1] ("));
        assert!(render(&fields("[nonsense]", None)).starts_with("Received: from unknown ("));
        let mut v6 = fields("x.example", None);
        v6.client = "2001:db8::5".parse().unwrap();
        assert!(render(&v6).starts_with("Received: from x.example ([IPv6:2001:db8::5])"));
    }

    #[test]
    fn overflow_is_an_error() {
        let mut small = [0u8; 40];
        assert!(write_received(&fields("client.example", None), &mut small).is_err());
    }
}
