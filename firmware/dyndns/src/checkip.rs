//! Learning the public IPv4 address: parsing a check-IP answer ([`parse_public_address`]),
//! judging whether an address can be an MX's address ([`is_public`]), and combining the
//! answers of several check-IP sources ([`agree`]).
//!
//! Rules:
//! - An answer is either a plain address (surrounding whitespace/newlines allowed) or the
//!   classic dyndns check-IP HTML page containing `Current IP Address: a.b.c.d`. Exactly one
//!   dotted quad may appear in the whole body; two, or one malformed (`01.2.3.4`, `256.1.1.1`,
//!   `1.2.3.4.5`, digits glued to letters), give `None`. Strict dotted quad: four decimal
//!   octets 0..=255, no leading zeros (no octal reading), no signs, no spaces inside.
//! - [`is_public`] refuses what cannot receive mail from the internet: 0/8, 10/8, 100.64/10
//!   (carrier-grade NAT: a line behind CGNAT has no public address of its own, port 25 can
//!   never be forwarded to the appliance, so registering it would make the MX unreachable —
//!   the owner must get a public address from the provider), 127/8, 169.254/16, 172.16/12,
//!   192.168/16, 198.18/15 (benchmarking), 224/4 (multicast) and everything above it
//!   (240/4 reserved, 255.255.255.255).
//! - The documentation ranges 192.0.2.0/24, 198.51.100.0/24 and 203.0.113.0/24 (RFC 5737) are
//!   ACCEPTED on purpose: the project's isolated test network uses them as its "public
//!   internet". No real provider hands them out, so accepting them costs nothing in the field.
//! - [`agree`]: the answers are keyed by the source's host name, and a host listed more than
//!   once counts once (its first entry): the same service asked twice is one witness, not two.
//!   At least two distinct hosts must give the same address and no valid answer may differ (a
//!   disagreement is reported, never resolved by majority: it means a source is wrong or lying,
//!   and the owner should know). One distinct source is never enough: the answer decides where
//!   the domain's mail goes, so no single service may decide it alone.

use crate::name::same_name;

/// An IPv4 address as four octets.
pub type Ipv4 = [u8; 4];

const MARKER: &[u8] = b"current ip address:";

/// Parses one strict dotted quad (the whole of `text`).
pub fn parse_dotted_quad(text: &[u8]) -> Option<Ipv4> {
    let mut octets = [0u8; 4];
    let mut parts = text.split(|&b| b == b'.');
    for octet in octets.iter_mut() {
        let part = parts.next()?;
        if part.is_empty() || part.len() > 3 || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        if part.len() > 1 && part.first() == Some(&b'0') {
            return None;
        }
        let value = part.iter().fold(0u16, |value, &digit| value * 10 + u16::from(digit - b'0'));
        *octet = u8::try_from(value).ok()?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(octets)
}

/// Writes `ip` as a dotted quad into `out`; returns the length, or `None` if it does not fit.
pub fn write_address(ip: Ipv4, out: &mut [u8]) -> Option<usize> {
    let mut length = 0;
    for (index, octet) in ip.iter().enumerate() {
        if index > 0 {
            *out.get_mut(length)? = b'.';
            length += 1;
        }
        let digits = [octet / 100, octet / 10 % 10, octet % 10];
        let skip = if *octet >= 100 {
            0
        } else if *octet >= 10 {
            1
        } else {
            2
        };
        for digit in digits.iter().skip(skip) {
            *out.get_mut(length)? = b'0' + digit;
            length += 1;
        }
    }
    Some(length)
}

/// Finds the single dotted quad in `body`: `Err(())` if an address-like run is malformed or
/// there are several, `Ok(None)` if there is none.
fn single_address(body: &[u8]) -> Result<Option<(Ipv4, usize, usize)>, ()> {
    let mut found = None;
    let mut index = 0;
    while index < body.len() {
        let is_run_byte = |b: &u8| b.is_ascii_digit() || *b == b'.';
        if !body.get(index).is_some_and(u8::is_ascii_digit) {
            index += 1;
            continue;
        }
        let start = index;
        let length = body.get(start..).map_or(0, |rest| rest.iter().take_while(|b| is_run_byte(b)).count());
        let end = start + length;
        index = end;
        // Trailing dots end a sentence ("... is 1.2.3.4."), they are not part of the run.
        let run = body.get(start..end).unwrap_or(&[]);
        let trimmed_length = run.iter().rposition(u8::is_ascii_digit).map_or(0, |p| p + 1);
        let run = run.get(..trimmed_length).unwrap_or(&[]);
        let dots = run.iter().filter(|&&b| b == b'.').count();
        if dots < 3 {
            // A version number or a count ("HTTP/1.1", "200"): not an address.
            continue;
        }
        let glued = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_');
        if dots > 3 || glued(start.checked_sub(1).and_then(|p| body.get(p))) || glued(body.get(start + run.len())) {
            return Err(());
        }
        let address = parse_dotted_quad(run).ok_or(())?;
        if found.is_some() {
            return Err(());
        }
        found = Some((address, start, start + run.len()));
    }
    Ok(found)
}

fn is_space(byte: &u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\r' | b'\n')
}

/// The public address from a check-IP answer body: a plain address (with whitespace) or the
/// classic `Current IP Address: a.b.c.d` HTML page. Exactly one address must be present.
pub fn parse_public_address(body: &[u8]) -> Option<Ipv4> {
    let (address, start, end) = single_address(body).ok()??;
    let before = body.get(..start)?;
    let after = body.get(end..)?;
    if before.iter().all(is_space) && after.iter().all(is_space) {
        return Some(address);
    }
    // The HTML form: the marker, optional spaces, then the address.
    let prefix = before.iter().rposition(|b| !is_space(b)).map_or(&[][..], |p| before.get(..=p).unwrap_or(&[]));
    let marker_start = prefix.len().checked_sub(MARKER.len())?;
    if prefix.get(marker_start..)?.eq_ignore_ascii_case(MARKER) {
        Some(address)
    } else {
        None
    }
}

fn in_prefix(ip: Ipv4, network: Ipv4, length: u32) -> bool {
    let mask = if length == 0 { 0 } else { u32::MAX << (32 - length) };
    u32::from_be_bytes(ip) & mask == u32::from_be_bytes(network) & mask
}

/// Ranges that can never be the MX's public address (see the module documentation).
pub const NON_PUBLIC_RANGES: &[(Ipv4, u32)] = &[
    ([0, 0, 0, 0], 8),
    ([10, 0, 0, 0], 8),
    ([100, 64, 0, 0], 10),
    ([127, 0, 0, 0], 8),
    ([169, 254, 0, 0], 16),
    ([172, 16, 0, 0], 12),
    ([192, 168, 0, 0], 16),
    ([198, 18, 0, 0], 15),
    ([224, 0, 0, 0], 3),
];

/// Whether `ip` can be the appliance's public address. The RFC 5737 documentation ranges are
/// accepted (the test network's "internet"); 100.64/10 (CGNAT) is not.
pub fn is_public(ip: Ipv4) -> bool {
    !NON_PUBLIC_RANGES.iter().any(|&(network, length)| in_prefix(ip, network, length))
}

/// The combined verdict of the check-IP sources.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Agreement {
    /// The address the sources agree on.
    Agreed(Ipv4),
    /// Two valid answers differ (the first two different addresses seen).
    Disagreement(Ipv4, Ipv4),
    /// Fewer than two distinct hosts gave the same answer.
    NoAnswer,
    /// Fewer than two distinct hosts are configured: no agreement is possible.
    TooFewSources,
}

/// Combines the answers of one check, one `(host name, answer)` per configured check-IP source
/// (`None` = no or unusable answer). Each distinct host counts once (its first entry; names
/// compare without regard to ASCII case, a trailing dot ignored). Two or more distinct hosts
/// must give the same address and none may give another.
pub fn agree(results: &[(&str, Option<Ipv4>)]) -> Agreement {
    let distinct = results
        .iter()
        .enumerate()
        .filter(|(index, (host, _))| !results.iter().take(*index).any(|(earlier, _)| same_name(earlier, host)))
        .map(|(_, (_, answer))| *answer);
    let mut sources = 0;
    let mut first = None;
    let mut votes = 0;
    for answer in distinct {
        sources += 1;
        let Some(address) = answer else { continue };
        match first {
            None => first = Some(address),
            Some(first) if first != address => return Agreement::Disagreement(first, address),
            Some(_) => {}
        }
        votes += 1;
    }
    match first {
        _ if sources < 2 => Agreement::TooFewSources,
        Some(address) if votes >= 2 => Agreement::Agreed(address),
        _ => Agreement::NoAnswer,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn dotted_quad_table() {
        let good: &[(&str, Ipv4)] = &[
            ("0.0.0.0", [0, 0, 0, 0]),
            ("1.2.3.4", [1, 2, 3, 4]),
            ("255.255.255.255", [255; 4]),
            ("203.0.113.5", [203, 0, 113, 5]),
            ("10.100.200.250", [10, 100, 200, 250]),
        ];
        for (text, ip) in good {
            assert_eq!(parse_dotted_quad(text.as_bytes()), Some(*ip), "{text}");
        }
        let bad = [
            "",
            "1.2.3",
            "1.2.3.4.5",
            "01.2.3.4",
            "1.2.3.04",
            "1.2.3.00",
            "256.1.1.1",
            "1.2.3.1000",
            "1..3.4",
            ".1.2.3",
            "1.2.3.",
            "+1.2.3.4",
            "1.2.3.4 ",
            " 1.2.3.4",
            "1.2.3.a",
            "0x1.2.3.4",
            "1.2.3.４",
        ];
        for text in bad {
            assert_eq!(parse_dotted_quad(text.as_bytes()), None, "{text:?}");
        }
    }

    #[test]
    fn check_ip_bodies() {
        let table: &[(&str, Option<Ipv4>)] = &[
            ("203.0.113.5", Some([203, 0, 113, 5])),
            ("203.0.113.5\n", Some([203, 0, 113, 5])),
            ("  \r\n203.0.113.5\r\n\t ", Some([203, 0, 113, 5])),
            (
                "<html><head><title>Current IP Check</title></head><body>Current IP Address: 198.51.100.7</body></html>\r\n",
                Some([198, 51, 100, 7]),
            ),
            ("<body>current ip address:198.51.100.7</body>", Some([198, 51, 100, 7])),
            ("Current IP Address: 1.2.3.4.", Some([1, 2, 3, 4])),
            ("", None),
            ("\n", None),
            ("no address here", None),
            ("1.2.3.4 5.6.7.8", None),
            ("Current IP Address: 1.2.3.4 (was 5.6.7.8)", None),
            ("Current IP Address: 1.2.3.4<br>Current IP Address: 1.2.3.4", None),
            ("Current IP Address: 01.2.3.4", None),
            ("Current IP Address: 256.2.3.4", None),
            ("Current IP Address: 1.2.3.4.5", None),
            ("Current IP Address: 1.2.3.4x", None),
            ("Current IP Address: x1.2.3.4", None),
            ("Error 502 from upstream 1.2.3.4", None),
            ("Your address is 1.2.3.4", None),
            ("1.2.3", None),
            ("HTTP/1.1 proxy says Current IP Address: 9.9.9.9", Some([9, 9, 9, 9])),
        ];
        for (body, expected) in table {
            assert_eq!(parse_public_address(body.as_bytes()), *expected, "{body:?}");
        }
    }

    #[test]
    fn public_address_table() {
        let table: &[(Ipv4, bool)] = &[
            ([0, 1, 2, 3], false),
            ([10, 0, 0, 1], false),
            ([100, 63, 255, 255], true),
            ([100, 64, 0, 1], false),
            ([100, 127, 255, 255], false),
            ([100, 128, 0, 0], true),
            ([127, 0, 0, 1], false),
            ([169, 254, 1, 1], false),
            ([172, 15, 255, 255], true),
            ([172, 16, 0, 1], false),
            ([172, 31, 255, 255], false),
            ([172, 32, 0, 0], true),
            ([192, 168, 1, 1], false),
            ([198, 18, 0, 1], false),
            ([198, 19, 255, 255], false),
            ([198, 20, 0, 0], true),
            ([224, 0, 0, 1], false),
            ([239, 255, 255, 255], false),
            ([240, 0, 0, 1], false),
            ([255, 255, 255, 255], false),
            ([223, 255, 255, 254], true),
            ([8, 8, 8, 8], true),
            ([192, 0, 2, 1], true),
            ([198, 51, 100, 1], true),
            ([203, 0, 113, 5], true),
        ];
        for (ip, public) in table {
            assert_eq!(is_public(*ip), *public, "{ip:?}");
        }
    }

    #[test]
    fn agreement_table() {
        let a = Some([203, 0, 113, 5]);
        let b = Some([198, 51, 100, 7]);
        type Row<'a> = (&'a [(&'a str, Option<Ipv4>)], Agreement);
        let table: &[Row] = &[
            (&[], Agreement::TooFewSources),
            (&[("one.example", None)], Agreement::TooFewSources),
            (&[("one.example", a)], Agreement::TooFewSources),
            (&[("one.example", a), ("two.example", None)], Agreement::NoAnswer),
            (&[("one.example", None), ("two.example", a)], Agreement::NoAnswer),
            (&[("one.example", a), ("two.example", a)], Agreement::Agreed([203, 0, 113, 5])),
            (&[("one.example", a), ("two.example", b)], Agreement::Disagreement([203, 0, 113, 5], [198, 51, 100, 7])),
            (&[("one.example", a), ("two.example", None), ("three.example", a)], Agreement::Agreed([203, 0, 113, 5])),
            (&[("one.example", a), ("two.example", a), ("three.example", b)], Agreement::Disagreement([203, 0, 113, 5], [198, 51, 100, 7])),
            (&[("one.example", None), ("two.example", None), ("three.example", b)], Agreement::NoAnswer),
        ];
        for (results, expected) in table {
            assert_eq!(agree(results), *expected, "{results:?}");
        }
    }

    #[test]
    fn a_source_listed_twice_counts_once() {
        // The fake quorum of the review: one service asked twice "agrees" with itself.
        let a = Some([203, 0, 113, 5]);
        let b = Some([198, 51, 100, 7]);
        assert_eq!(agree(&[("checkip.example", a), ("checkip.example", a)]), Agreement::TooFewSources);
        assert_eq!(agree(&[("checkip.example", a), ("CheckIP.Example.", a)]), Agreement::TooFewSources);
        // A duplicate adds no vote: one distinct agreeing host and one silent one is no quorum.
        assert_eq!(agree(&[("evil.example", a), ("evil.example", a), ("honest.example", None)]), Agreement::NoAnswer);
        // Only the first entry of a host counts; its later entries cannot outvote or contradict.
        assert_eq!(agree(&[("one.example", a), ("one.example", b), ("two.example", a)]), Agreement::Agreed([203, 0, 113, 5]));
    }

    proptest! {
        #[test]
        fn every_address_round_trips(ip in any::<[u8; 4]>()) {
            let mut text = [0u8; 15];
            let length = write_address(ip, &mut text).unwrap();
            prop_assert_eq!(parse_dotted_quad(&text[..length]), Some(ip));
            prop_assert_eq!(parse_public_address(&text[..length]), Some(ip));
            let html = format!("<p>Current IP Address: {}</p>\n", core::str::from_utf8(&text[..length]).unwrap());
            prop_assert_eq!(parse_public_address(html.as_bytes()), Some(ip));
        }

        #[test]
        fn arbitrary_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Some(ip) = parse_public_address(&body) {
                // Whatever is accepted was written in the body.
                let mut text = [0u8; 15];
                let length = write_address(ip, &mut text).unwrap();
                prop_assert!(body.windows(length).any(|w| w == &text[..length]));
            }
        }

        #[test]
        fn agreement_never_invents_an_address(results in proptest::collection::vec((0usize..3, proptest::option::of(0u8..3)), 0..6)) {
            let hosts = ["one.example", "two.example", "ONE.example."];
            let results: Vec<(&str, Option<Ipv4>)> = results.into_iter().map(|(h, r)| (hosts[h], r.map(|x| [203, 0, 113, x]))).collect();
            // The first entry of each distinct host, as `agree` must see them.
            let mut distinct: Vec<(&str, Option<Ipv4>)> = Vec::new();
            for &(host, answer) in &results {
                if !distinct.iter().any(|(seen, _)| same_name(seen, host)) {
                    distinct.push((host, answer));
                }
            }
            match agree(&results) {
                Agreement::Agreed(ip) => {
                    let voters: Vec<_> = distinct.iter().filter_map(|(_, answer)| *answer).collect();
                    prop_assert!(voters.iter().all(|&x| x == ip));
                    prop_assert!(voters.len() >= 2, "two distinct hosts: {:?}", results);
                }
                Agreement::Disagreement(x, y) => prop_assert_ne!(x, y),
                Agreement::NoAnswer => prop_assert!(distinct.len() >= 2),
                Agreement::TooFewSources => prop_assert!(distinct.len() < 2),
            }
        }
    }
}
