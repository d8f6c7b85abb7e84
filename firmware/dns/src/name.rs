//! Domain names: the host-name rule for the names we ask about, their wire encoding, and
//! reading (possibly compressed) names out of a received message with loop-proof pointer rules.

use crate::error::DnsError;

/// The longest host name in text form (without a trailing dot).
pub const MAX_NAME_LEN: usize = 253;
/// The longest name in wire form (length octets, labels and the terminating zero).
pub const MAX_WIRE_LEN: usize = 255;
/// The longest label.
pub const MAX_LABEL_LEN: usize = 63;
/// How many compression pointers one name may follow.
pub const MAX_POINTER_HOPS: usize = 16;

/// A host name in text form: lower case, no trailing dot; the empty string is the root.
pub type HostName = heapless::String<MAX_NAME_LEN, u8>;

/// True for the bytes a label may hold: letters, digits, `-` and `_` (for `_dmarc` and
/// `selector._domainkey` names).
const fn is_label_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_'
}

/// The name without one trailing dot, if it is a host name: 1–253 characters, labels of
/// 1–63 letters, digits, `-` or `_`.
pub fn normalise(name: &str) -> Result<&str, DnsError> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(DnsError::InvalidName);
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > MAX_LABEL_LEN || !label.bytes().all(is_label_byte) {
            return Err(DnsError::InvalidName);
        }
    }
    Ok(name)
}

/// True if `name` is a host name we can look up (see [`normalise`]).
pub fn is_valid_host_name(name: &str) -> bool {
    normalise(name).is_ok()
}

/// An uncompressed name in wire form without its terminating zero, lower-cased, so that two
/// names are equal (case-insensitively, RFC 4343) exactly when their bytes are.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct WireName {
    bytes: [u8; MAX_WIRE_LEN - 1],
    len: u8,
}

impl core::fmt::Debug for WireName {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(formatter, "WireName({:?})", self.as_bytes())
    }
}

impl WireName {
    /// The root name (no labels).
    pub(crate) const fn root() -> WireName {
        WireName { bytes: [0; MAX_WIRE_LEN - 1], len: 0 }
    }

    /// The wire form of a host name (which is checked by [`normalise`] first).
    pub(crate) fn from_host_name(name: &str) -> Result<WireName, DnsError> {
        let mut wire = WireName::root();
        for label in normalise(name)?.split('.') {
            wire.push_label(label.as_bytes()).map_err(|_| DnsError::InvalidName)?;
        }
        Ok(wire)
    }

    /// The labels with their length octets, without the terminating zero.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or(&[])
    }

    /// Appends a label (lower-cased); fails if the label is empty or too long, or if the whole
    /// name would pass 255 octets with its terminating zero.
    fn push_label(&mut self, label: &[u8]) -> Result<(), DnsError> {
        let start = usize::from(self.len);
        let end = start + 1 + label.len();
        if label.is_empty() || label.len() > MAX_LABEL_LEN || end > self.bytes.len() {
            return Err(DnsError::Malformed);
        }
        let destination = self.bytes.get_mut(start..end).ok_or(DnsError::Malformed)?;
        let (length, text) = destination.split_at_mut(1);
        length[0] = label.len() as u8;
        for (to, from) in text.iter_mut().zip(label) {
            *to = from.to_ascii_lowercase();
        }
        self.len = end as u8;
        Ok(())
    }

    /// Writes the wire form with its terminating zero into `out`; returns the length.
    pub(crate) fn write(&self, out: &mut [u8]) -> Result<usize, DnsError> {
        let bytes = self.as_bytes();
        let destination = out.get_mut(..bytes.len() + 1).ok_or(DnsError::BufferTooSmall)?;
        let (labels, terminator) = destination.split_at_mut(bytes.len());
        labels.copy_from_slice(bytes);
        terminator[0] = 0;
        Ok(bytes.len() + 1)
    }

    /// The name as text (dot-separated, no trailing dot, the root as ""), if every label is
    /// a host-name label; otherwise [`DnsError::InvalidRecord`].
    pub(crate) fn to_host_name(&self) -> Result<HostName, DnsError> {
        let mut text = HostName::new();
        let mut rest = self.as_bytes();
        while let Some((&length, after)) = rest.split_first() {
            let (label, tail) = after.split_at_checked(usize::from(length)).ok_or(DnsError::InvalidRecord)?;
            if !label.iter().all(|&byte| is_label_byte(byte)) {
                return Err(DnsError::InvalidRecord);
            }
            if !text.is_empty() {
                text.push('.').map_err(|_| DnsError::InvalidRecord)?;
            }
            // Label bytes are ASCII (checked above), so this is valid UTF-8.
            let label = core::str::from_utf8(label).map_err(|_| DnsError::InvalidRecord)?;
            text.push_str(label).map_err(|_| DnsError::InvalidRecord)?;
            rest = tail;
        }
        Ok(text)
    }
}

/// Reads the name starting at `start` in `message`, following compression pointers, and
/// returns it with the offset just after it (after the first pointer, if there is one). The
/// checks are [`walk_name`]'s.
pub(crate) fn read_name(message: &[u8], start: usize) -> Result<(WireName, usize), DnsError> {
    let mut name = WireName::root();
    let after = walk_name(message, start, |label| name.push_label(label))?;
    Ok((name, after))
}

/// Whether the name at `start` in `message` is `name` (case-insensitively, RFC 4343), and the
/// offset after it: [`read_name`] and a comparison, without a 255-octet copy of the name (the
/// DNS parsing is on the deepest stack path measured, the DynDNS check's lookups). The whole
/// name is checked as [`read_name`] checks it, whether it matches or not.
pub(crate) fn name_is(message: &[u8], start: usize, name: &WireName) -> Result<(bool, usize), DnsError> {
    let mut rest = name.as_bytes();
    let mut same = true;
    let after = walk_name(message, start, |label| {
        let expected = rest.split_first().and_then(|(&length, tail)| {
            let (text, tail) = tail.split_at_checked(usize::from(length))?;
            Some((text, tail))
        });
        match expected {
            Some((text, tail)) if same && text.len() == label.len() && text.iter().zip(label).all(|(a, b)| *a == b.to_ascii_lowercase()) => {
                rest = tail;
            }
            _ => same = false,
        }
        Ok(())
    })?;
    Ok((same && rest.is_empty(), after))
}

/// Checks the name at `start` in `message` as [`read_name`] does and returns the offset after
/// it, without reading it anywhere.
pub(crate) fn skip_name(message: &[u8], start: usize) -> Result<usize, DnsError> {
    walk_name(message, start, |_| Ok(()))
}

/// Walks the name starting at `start` in `message`, following compression pointers, calling
/// `label` with each label as sent, and returns the offset just after the name (after the first
/// pointer, if there is one).
///
/// Loop-proof: every pointer must point strictly before the start of the stretch of labels it
/// ends (the name's start, or the previous pointer's target), so targets strictly decrease;
/// at most [`MAX_POINTER_HOPS`] pointers are followed anyway. Label types 01 and 10 (RFC 6891
/// extended labels) are refused, and so is a name longer than 255 octets in wire form.
fn walk_name(message: &[u8], start: usize, mut label: impl FnMut(&[u8]) -> Result<(), DnsError>) -> Result<usize, DnsError> {
    let mut position = start;
    let mut stretch_start = start;
    let mut after_name = None;
    let mut hops = 0;
    // The labels with their length octets so far (the terminating zero not counted).
    let mut wire_length = 0;
    loop {
        let length = *message.get(position).ok_or(DnsError::Malformed)?;
        match length & 0xC0 {
            0x00 if length == 0 => return Ok(after_name.unwrap_or(position + 1)),
            0x00 => {
                let end = position + 1 + usize::from(length);
                let text = message.get(position + 1..end).ok_or(DnsError::Malformed)?;
                wire_length += 1 + text.len();
                if wire_length > MAX_WIRE_LEN - 1 {
                    return Err(DnsError::Malformed);
                }
                label(text)?;
                position = end;
            }
            0xC0 => {
                let low = *message.get(position + 1).ok_or(DnsError::Malformed)?;
                let target = usize::from(length & 0x3F) << 8 | usize::from(low);
                hops += 1;
                if target >= stretch_start || hops > MAX_POINTER_HOPS {
                    return Err(DnsError::BadPointer);
                }
                after_name.get_or_insert(position + 2);
                position = target;
                stretch_start = target;
            }
            _ => return Err(DnsError::Malformed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names() {
        let long_label = "a".repeat(63);
        let too_long_label = "a".repeat(64);
        let name_253 = ["a".repeat(63), "b".repeat(63), "c".repeat(63), "d".repeat(61)].join(".");
        assert_eq!(name_253.len(), 253);
        let name_254 = format!("{name_253}x");
        let table: &[(&str, bool)] = &[
            ("example.org", true),
            ("example.org.", true),
            ("MX1.Example.ORG", true),
            ("_dmarc.example.org", true),
            ("sel1._domainkey.example.org", true),
            ("xn--bcher-kva.example", true),
            ("localhost", true),
            (&long_label, true),
            (&too_long_label, false),
            (&name_253, true),
            (&name_254, false),
            ("", false),
            (".", false),
            ("example..org", false),
            (".example.org", false),
            ("example.org..", false),
            ("exa mple.org", false),
            ("exa\0mple.org", false),
            ("bücher.example", false),
            ("a/b.example", false),
            ("*.example.org", false),
        ];
        for (name, valid) in table {
            assert_eq!(is_valid_host_name(name), *valid, "{name:?}");
        }
    }

    #[test]
    fn wire_round_trip_lowercases() {
        let wire = WireName::from_host_name("Mail.Example.ORG.").unwrap();
        assert_eq!(wire.as_bytes(), b"\x04mail\x07example\x03org");
        assert_eq!(wire.to_host_name().unwrap().as_str(), "mail.example.org");
        let mut out = [0u8; 32];
        assert_eq!(wire.write(&mut out), Ok(18));
        assert_eq!(out[17], 0);
        assert_eq!(wire.write(&mut out[..17]), Err(DnsError::BufferTooSmall));
        assert_eq!(WireName::root().to_host_name().unwrap().as_str(), "");
    }

    #[test]
    fn read_plain_and_compressed() {
        // "example.org" at 2, "mail" + pointer to 2 at 15.
        let message = b"\xff\xff\x07example\x03org\x00\x04mail\xc0\x02\x01";
        let (name, next) = read_name(message, 2).unwrap();
        assert_eq!(name.to_host_name().unwrap().as_str(), "example.org");
        assert_eq!(next, 15);
        let (name, next) = read_name(message, 15).unwrap();
        assert_eq!(name.to_host_name().unwrap().as_str(), "mail.example.org");
        assert_eq!(next, 22);
    }

    #[test]
    fn pointers_must_go_strictly_backwards() {
        // Pointer to itself.
        assert_eq!(read_name(b"\xc0\x00", 0).map(|_| ()), Err(DnsError::BadPointer));
        // Pointer forwards.
        assert_eq!(read_name(b"\xc0\x02\x00", 0).map(|_| ()), Err(DnsError::BadPointer));
        // Two pointers pointing at each other: 2 -> 0 is backwards, 0 -> 2 is not.
        assert_eq!(read_name(b"\xc0\x02\xc0\x00", 2).map(|_| ()), Err(DnsError::BadPointer));
        // A label that swallows a later pointer which jumps back into the label's stretch.
        let message = b"\x00\x00\x03abc\xc0\x02";
        assert_eq!(read_name(message, 2).map(|_| ()), Err(DnsError::BadPointer));
        // Pointer cut in half, reserved label types.
        assert_eq!(read_name(b"\x00\xc0", 1).map(|_| ()), Err(DnsError::Malformed));
        assert_eq!(read_name(b"\x41a\x00", 0).map(|_| ()), Err(DnsError::Malformed));
        assert_eq!(read_name(b"\x81a\x00", 0).map(|_| ()), Err(DnsError::Malformed));
    }

    #[test]
    fn long_pointer_chains_stop() {
        // 20 names, each "a" + pointer to the previous one (the first to the root): 20 hops > 16.
        let mut message = vec![0u8];
        let mut previous = 0usize;
        for _ in 0..20 {
            let here = message.len();
            message.extend_from_slice(&[1, b'a', 0xC0, previous as u8]);
            previous = here;
        }
        assert_eq!(read_name(&message, previous).map(|_| ()), Err(DnsError::BadPointer));
        let (name, _) = read_name(&message, 4 * 10 + 1).unwrap();
        assert_eq!(name.as_bytes().len(), 2 * 11);
    }

    #[test]
    fn names_longer_than_255_octets_are_refused() {
        let mut message = Vec::new();
        for _ in 0..5 {
            message.push(63);
            message.extend_from_slice(&[b'x'; 63]);
        }
        message.push(0);
        assert_eq!(read_name(&message, 0).map(|_| ()), Err(DnsError::Malformed));
        // 4 labels of 63 = 256 octets with the zero: one too many.
        let mut message = Vec::new();
        for _ in 0..4 {
            message.push(63);
            message.extend_from_slice(&[b'x'; 63]);
        }
        message.push(0);
        assert_eq!(read_name(&message, 0).map(|_| ()), Err(DnsError::Malformed));
        // 3 x 63 + 61 = 254 + 1 = 255: the longest name.
        let mut message = Vec::new();
        for length in [63usize, 63, 63, 61] {
            message.push(length as u8);
            message.extend(std::iter::repeat_n(b'y', length));
        }
        message.push(0);
        let (name, next) = read_name(&message, 0).unwrap();
        assert_eq!(next, 255);
        assert_eq!(name.to_host_name().unwrap().len(), 253);
    }

    #[test]
    fn odd_bytes_are_read_but_are_not_host_names() {
        let (name, _) = read_name(b"\x03a b\x03org\x00", 0).unwrap();
        assert_eq!(name.to_host_name(), Err(DnsError::InvalidRecord));
        let (name, _) = read_name(b"\x03a.b\x00", 0).unwrap();
        assert_eq!(name.to_host_name(), Err(DnsError::InvalidRecord));
    }

    #[test]
    fn names_are_compared_in_place_as_read_name_reads_them() {
        let owner = WireName::from_host_name("mx.Example.org").unwrap();
        // "example.org" at 0, then "MX" + pointer to it at 13, "mx.example.org.evil" at 18.
        let message = b"\x07example\x03org\x00\x02MX\xC0\x00\x02mx\x07example\x03org\x04evil\x00";
        assert_eq!(name_is(message, 13, &owner), Ok((true, 18)), "compressed, other case");
        assert_eq!(skip_name(message, 13), Ok(18));
        assert_eq!(name_is(message, 0, &owner), Ok((false, 13)), "a suffix of the name");
        assert_eq!(name_is(message, 18, &owner), Ok((false, message.len())), "the name with more labels");
        assert_eq!(name_is(message, 0, &WireName::from_host_name("example.org").unwrap()), Ok((true, 13)));
        assert_eq!(name_is(b"\x02mz\x07example\x03org\x00", 0, &owner), Ok((false, 16)), "one octet differs");
        // Whatever the comparison, the name's checks are read_name's.
        for message in [&b"\x02mx\xC0\x00"[..], b"\x02mx\x07exam", b"\x02mx\x80\x00"] {
            assert_eq!(name_is(message, 0, &owner).map(|_| ()), read_name(message, 0).map(|_| ()));
            assert_eq!(skip_name(message, 0), read_name(message, 0).map(|(_, after)| after));
            assert!(name_is(message, 0, &owner).is_err());
        }
        let mut long = Vec::new();
        for _ in 0..4 {
            long.push(63);
            long.extend_from_slice(&[b'x'; 63]);
        }
        long.push(0);
        assert_eq!(name_is(&long, 0, &owner), Err(DnsError::Malformed));
    }
}
