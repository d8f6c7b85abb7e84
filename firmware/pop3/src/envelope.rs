//! `envelope_recipient`: the envelope recipient the provider's backup MX recorded in a fetched
//! message's header (`Delivered-To`, `X-Original-To`, `Envelope-To`, …), as an addr-spec.
//!
//! Rules: only the header section counts (it ends at the first empty line; a block without
//! one is all header). Field names compare case-insensitively (whitespace before the colon,
//! RFC 5322 obsolete syntax, is accepted). The configured names are tried in order, each
//! from the top of the header down (the topmost field was added last, by the backup MX);
//! the first value holding a valid address wins. Values are unfolded; comments are removed;
//! the address is taken from inside `<>` when present (a source route `@a,@b:` is dropped),
//! else from the first element of a comma-separated list (a group's `name:` is skipped).
//! The local part keeps its case and quoting; the domain is lowercased (ASCII) and a
//! trailing root dot dropped. Lines may end in CRLF or bare LF here: this reads stored
//! header octets, it does not decide message boundaries.

use heapless::String;

/// The longest address returned (RFC 5321 4.5.3.1.3 path limit minus the brackets).
pub const ADDRESS_MAX: usize = 254;
/// The longest unfolded field value looked at; longer fields are skipped.
const VALUE_MAX: usize = 998;

/// The first configured envelope header's address in `header_block`, or `None`.
pub fn envelope_recipient(header_block: &[u8], header_names: &[&str]) -> Option<String<ADDRESS_MAX>> {
    for name in header_names {
        for (field_name, raw_value) in Fields::new(header_block) {
            if !field_name.eq_ignore_ascii_case(name.as_bytes()) {
                continue;
            }
            let mut value = [0u8; VALUE_MAX];
            let Some(length) = unfold(raw_value, &mut value) else { continue };
            if let Some(address) = extract_address(&value[..length]) {
                return Some(address);
            }
        }
    }
    None
}

/// The header fields of a block: (name, raw value with its folding), up to the first empty
/// line.
struct Fields<'a> {
    rest: &'a [u8],
}

impl<'a> Fields<'a> {
    fn new(block: &'a [u8]) -> Fields<'a> {
        Fields { rest: block }
    }

    /// Splits off the next physical line: (line without its end, rest).
    fn line(bytes: &[u8]) -> (&[u8], &[u8]) {
        match bytes.iter().position(|&b| b == b'\n') {
            Some(newline) => {
                let line = &bytes[..newline];
                (line.strip_suffix(b"\r").unwrap_or(line), &bytes[newline + 1..])
            }
            None => (bytes, &[]),
        }
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.rest.is_empty() {
                return None;
            }
            let start = self.rest;
            let (line, mut rest) = Self::line(start);
            if line.is_empty() {
                self.rest = &[];
                return None;
            }
            // Continuation lines belong to the field before.
            while matches!(rest.first(), Some(b' ' | b'\t')) {
                rest = Self::line(rest).1;
            }
            self.rest = rest;
            let field = &start[..start.len() - rest.len()];
            if matches!(line.first(), Some(b' ' | b'\t')) {
                continue; // a continuation with no field before it
            }
            let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
            let name = trim(&line[..colon]);
            if name.is_empty() || !name.iter().all(|&b| (33..=126).contains(&b)) {
                continue; // e.g. an mbox "From " line
            }
            return Some((name, &field[colon + 1..]));
        }
    }
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| !matches!(b, b' ' | b'\t')).unwrap_or(bytes.len());
    let end = bytes.iter().rposition(|&b| !matches!(b, b' ' | b'\t')).map_or(start, |end| end + 1);
    &bytes[start..end.max(start)]
}

/// Copies `raw` without its line breaks (RFC 5322 2.2.3 unfolding); `None` if too long.
fn unfold(raw: &[u8], out: &mut [u8; VALUE_MAX]) -> Option<usize> {
    let mut length = 0;
    for &byte in raw.iter().filter(|&&b| b != b'\r' && b != b'\n') {
        *out.get_mut(length)? = byte;
        length += 1;
    }
    Some(length)
}

/// The value with comments replaced by a space (outside quoted strings); `None` if a quoted
/// string is not closed.
fn strip_comments(value: &[u8], out: &mut [u8; VALUE_MAX]) -> Option<usize> {
    let mut length = 0;
    let mut depth = 0usize;
    let mut quoted = false;
    let mut escaped = false;
    for &byte in value {
        if escaped {
            escaped = false;
            if depth == 0 {
                *out.get_mut(length)? = byte;
                length += 1;
            }
            continue;
        }
        match byte {
            b'\\' if quoted || depth > 0 => escaped = true,
            b'"' if depth == 0 => quoted = !quoted,
            b'(' if !quoted => depth += 1,
            b')' if !quoted && depth > 0 => {
                depth -= 1;
                if depth == 0 {
                    *out.get_mut(length)? = b' ';
                    length += 1;
                }
                continue;
            }
            _ => {}
        }
        // An opening parenthesis already raised the depth: it is not copied.
        if depth == 0 {
            *out.get_mut(length)? = byte;
            length += 1;
        }
    }
    if quoted {
        return None;
    }
    Some(length)
}

/// Positions of `wanted` outside quoted strings.
fn find_unquoted(bytes: &[u8], wanted: u8) -> impl Iterator<Item = usize> + '_ {
    let mut quoted = false;
    let mut escaped = false;
    bytes.iter().enumerate().filter_map(move |(index, &byte)| {
        if escaped {
            escaped = false;
            return None;
        }
        match byte {
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            _ if byte == wanted && !quoted => return Some(index),
            _ => {}
        }
        None
    })
}

/// The addr-spec in a (comment-free or not) unfolded value.
fn extract_address(value: &[u8]) -> Option<String<ADDRESS_MAX>> {
    let mut stripped = [0u8; VALUE_MAX];
    let length = strip_comments(value, &mut stripped)?;
    let text = &stripped[..length];
    let candidate = if let Some(open) = find_unquoted(text, b'<').next() {
        let inner = &text[open + 1..];
        let close = find_unquoted(inner, b'>').next()?;
        &inner[..close]
    } else {
        let first = match find_unquoted(text, b',').next() {
            Some(comma) => &text[..comma],
            None => text,
        };
        // A group `name: a@b, c@d;` (the name has no `@`).
        match find_unquoted(first, b':').next() {
            Some(colon) if !first[..colon].contains(&b'@') => {
                let members = &first[colon + 1..];
                members.strip_suffix(b";").unwrap_or(members)
            }
            _ => first,
        }
    };
    let mut compact = [0u8; VALUE_MAX];
    let length = compact_spaces(trim(candidate), &mut compact)?;
    let mut address = &compact[..length];
    if address.first() == Some(&b'@') {
        let colon = find_unquoted(address, b':').next()?;
        address = &address[colon + 1..];
    }
    build(address)
}

/// Drops whitespace outside quotes where it only separates tokens around `@` or `.`
/// (`user @ example.org`, obsolete but seen); any other whitespace means this is not a
/// single address (`None`).
fn compact_spaces(candidate: &[u8], out: &mut [u8; VALUE_MAX]) -> Option<usize> {
    let mut length: usize = 0;
    let mut quoted = false;
    let mut escaped = false;
    let mut index = 0;
    while let Some(&byte) = candidate.get(index) {
        index += 1;
        if escaped {
            escaped = false;
        } else if quoted && byte == b'\\' {
            escaped = true;
        } else if byte == b'"' {
            quoted = !quoted;
        } else if !quoted && matches!(byte, b' ' | b'\t') {
            while matches!(candidate.get(index), Some(b' ' | b'\t')) {
                index += 1;
            }
            let before = length.checked_sub(1).and_then(|last| out.get(last)).copied();
            let after = candidate.get(index).copied();
            if matches!(before, Some(b'@' | b'.')) || matches!(after, Some(b'@' | b'.')) {
                continue;
            }
            return None;
        }
        *out.get_mut(length)? = byte;
        length += 1;
    }
    Some(length)
}

fn is_atext(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&byte) || byte >= 0x80
}

/// The index of the quote closing the quoted string that starts `bytes`.
fn quoted_string_end(bytes: &[u8]) -> Option<usize> {
    let mut escaped = false;
    for (index, &byte) in bytes.iter().enumerate().skip(1) {
        match byte {
            _ if escaped => escaped = false,
            b'\\' => escaped = true,
            b'"' => return Some(index),
            b'\r' | b'\n' => return None,
            _ => {}
        }
    }
    None
}

/// Validates `local@domain` and builds the result with the domain lowercased.
fn build(address: &[u8]) -> Option<String<ADDRESS_MAX>> {
    let at = find_unquoted(address, b'@').last()?;
    let (local, domain) = (&address[..at], &address[at + 1..]);
    let domain = domain.strip_suffix(b".").unwrap_or(domain);
    let local_ok = if local.first() == Some(&b'"') {
        quoted_string_end(local) == Some(local.len() - 1)
    } else {
        !local.is_empty()
            && local.iter().all(|&b| is_atext(b) || b == b'.')
            && local.first() != Some(&b'.')
            && local.last() != Some(&b'.')
    };
    let domain_ok = if let Some(literal) = domain.strip_prefix(b"[") {
        literal.strip_suffix(b"]").is_some_and(|inner| {
            !inner.is_empty() && inner.iter().all(|&b| (33..=126).contains(&b) && !b"[]\\".contains(&b))
        })
    } else {
        !domain.is_empty()
            && domain.split(|&b| b == b'.').all(|label| {
                !label.is_empty() && label.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b >= 0x80)
            })
    };
    if !local_ok || !domain_ok || local.len() + 1 + domain.len() > ADDRESS_MAX {
        return None;
    }
    let mut bytes = [0u8; ADDRESS_MAX];
    let length = local.len() + 1 + domain.len();
    bytes[..local.len()].copy_from_slice(local);
    bytes[local.len()] = b'@';
    bytes[local.len() + 1..length].copy_from_slice(domain);
    bytes[local.len() + 1..length].make_ascii_lowercase();
    let text = core::str::from_utf8(&bytes[..length]).ok()?;
    let mut result = String::new();
    result.push_str(text).ok()?;
    Some(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_are_stripped() {
        let mut out = [0u8; VALUE_MAX];
        let length = strip_comments(b"a(b(c)d)e \"(q)\" (\\)x)", &mut out).unwrap();
        assert_eq!(&out[..length], b"a e \"(q)\"  ");
        assert_eq!(strip_comments(b"\"open", &mut out), None);
    }

    #[test]
    fn quoted_at_signs_are_not_separators() {
        assert_eq!(find_unquoted(b"\"a@b\"@c", b'@').collect::<Vec<_>>(), [5]);
        assert_eq!(find_unquoted(b"\"a\\\"@b\"@c", b'@').collect::<Vec<_>>(), [7]);
    }
}
