//! RFC 5321 paths and mailboxes: checked, zero-copy parsing of `<…>` reverse and forward paths.
//!
//! The grammar is the one of RFC 5321 section 4.1.2: `Path = "<" [ A-d-l ":" ] Mailbox ">"`,
//! `Mailbox = Local-part "@" ( Domain / address-literal )`, with quoted local parts, source
//! routes (parsed, reported, never followed) and address literals. Only ASCII is accepted (the
//! server does not offer SMTPUTF8). Length limits of section 4.5.3.1 are enforced: local part
//! 64 octets, domain 255 octets, whole path 256 octets.

use core::net::{Ipv4Addr, Ipv6Addr};
use core::str::FromStr;

/// Longest local part in octets (RFC 5321 4.5.3.1.1).
pub const LOCAL_PART_LENGTH_MAX: usize = 64;
/// Longest domain in octets (RFC 5321 4.5.3.1.2).
pub const DOMAIN_LENGTH_MAX: usize = 255;
/// Longest path including the angle brackets (RFC 5321 4.5.3.1.3).
pub const PATH_LENGTH_MAX: usize = 256;

/// Why a path could not be parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressError {
    /// The path does not start with `<` or has no closing `>`.
    MissingAngleBrackets,
    /// `<>` where a mailbox is required, or an empty local part.
    Empty,
    /// A byte outside printable US-ASCII.
    NotAscii,
    /// The local part is neither a dot-string nor a quoted string.
    LocalPartSyntax,
    /// The local part is longer than 64 octets.
    LocalPartTooLong,
    /// No `@domain` after the local part.
    MissingDomain,
    /// The domain is not a valid RFC 5321 domain.
    DomainSyntax,
    /// The domain is longer than 255 octets.
    DomainTooLong,
    /// A `[…]` address literal that is not a valid IPv4, IPv6 or general literal.
    AddressLiteralSyntax,
    /// A malformed `@a,@b:` source route.
    SourceRouteSyntax,
    /// The path is longer than 256 octets.
    PathTooLong,
}

/// The domain part of a mailbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Domain<'a> {
    /// A host name such as `example.org` (as sent; compare without regard to case).
    Name(&'a str),
    /// An address literal; the text between the brackets, e.g. `192.0.2.1` or `IPv6:2001:db8::1`.
    AddressLiteral(&'a str),
}

impl<'a> Domain<'a> {
    /// The domain as it appears on the wire (address literals with their brackets removed).
    pub fn as_str(&self) -> &'a str {
        match self {
            Domain::Name(name) => name,
            Domain::AddressLiteral(literal) => literal,
        }
    }
}

/// The local part of a mailbox, either a dot-string or a quoted string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalPart<'a> {
    raw: &'a str,
}

impl<'a> LocalPart<'a> {
    /// The local part as sent, with quotes and backslashes if it was quoted.
    pub fn raw(&self) -> &'a str {
        self.raw
    }

    /// Whether the local part was sent as a quoted string.
    pub fn is_quoted(&self) -> bool {
        self.raw.starts_with('"')
    }

    /// The octets the local part stands for: quotes removed and quoted pairs resolved.
    pub fn content(&self) -> LocalPartContent<'a> {
        let bytes = self.raw.as_bytes();
        if self.is_quoted() {
            LocalPartContent { bytes: &bytes[1..bytes.len() - 1], quoted: true }
        } else {
            LocalPartContent { bytes, quoted: false }
        }
    }

    /// Whether the content (after unquoting) contains `byte`.
    pub fn contains(&self, byte: u8) -> bool {
        self.content().any(|b| b == byte)
    }

    /// Whether the content equals `other`, ignoring ASCII case.
    pub fn eq_ignore_ascii_case(&self, other: &str) -> bool {
        let mut content = self.content();
        for expected in other.bytes() {
            match content.next() {
                Some(actual) if actual.eq_ignore_ascii_case(&expected) => {}
                _ => return false,
            }
        }
        content.next().is_none()
    }

    /// Whether the content would also be a valid dot-string (so quoting changed nothing).
    pub fn content_is_dot_string(&self) -> bool {
        let mut previous_dot = true;
        let mut count = 0;
        for byte in self.content() {
            count += 1;
            if byte == b'.' {
                if previous_dot {
                    return false;
                }
                previous_dot = true;
            } else if is_atext(byte) {
                previous_dot = false;
            } else {
                return false;
            }
        }
        count > 0 && !previous_dot
    }
}

/// Iterator over the octets a local part stands for.
#[derive(Clone, Debug)]
pub struct LocalPartContent<'a> {
    bytes: &'a [u8],
    quoted: bool,
}

impl Iterator for LocalPartContent<'_> {
    type Item = u8;

    fn next(&mut self) -> Option<u8> {
        let (&first, rest) = self.bytes.split_first()?;
        if self.quoted && first == b'\\' {
            // The parser guarantees a quoted pair is complete.
            let (&second, rest) = rest.split_first()?;
            self.bytes = rest;
            return Some(second);
        }
        self.bytes = rest;
        Some(first)
    }
}

/// A mailbox `local-part@domain`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mailbox<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Mailbox<'a> {
    /// The mailbox as sent, `local-part@domain`.
    pub fn as_str(&self) -> &'a str {
        self.text
    }

    /// The local part.
    pub fn local_part(&self) -> LocalPart<'a> {
        LocalPart { raw: &self.text[..self.at] }
    }

    /// The domain or address literal.
    pub fn domain(&self) -> Domain<'a> {
        let domain = &self.text[self.at + 1..];
        if domain.starts_with('[') {
            Domain::AddressLiteral(&domain[1..domain.len() - 1])
        } else {
            Domain::Name(domain)
        }
    }
}

/// A path: a mailbox with an optional (obsolete) source route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Path<'a> {
    /// The mailbox the path ends in.
    pub mailbox: Mailbox<'a>,
    /// The source route `@a,@b` without the colon, if one was sent (RFC 5321 says: ignore it).
    pub source_route: Option<&'a str>,
}

/// The argument of `MAIL FROM:`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReversePath<'a> {
    /// The null reverse path `<>` (notifications, bounces).
    Null,
    /// A sender mailbox.
    Path(Path<'a>),
}

/// The argument of `RCPT TO:`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForwardPath<'a> {
    /// `<postmaster>` without a domain (RFC 5321 4.5.1), in any case.
    Postmaster,
    /// A recipient mailbox.
    Path(Path<'a>),
}

/// Whether `byte` is an RFC 5322 `atext` character.
pub fn is_atext(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&byte)
}

/// Parses `<reverse-path>` at the start of `input`; returns it and the rest of the input.
pub fn parse_reverse_path(input: &[u8]) -> Result<(ReversePath<'_>, &[u8]), AddressError> {
    let (inner, rest) = split_path(input)?;
    if inner.is_empty() {
        return Ok((ReversePath::Null, rest));
    }
    Ok((ReversePath::Path(parse_path_inner(inner)?), rest))
}

/// Parses `<forward-path>` at the start of `input`; returns it and the rest of the input.
pub fn parse_forward_path(input: &[u8]) -> Result<(ForwardPath<'_>, &[u8]), AddressError> {
    let (inner, rest) = split_path(input)?;
    if inner.is_empty() {
        return Err(AddressError::Empty);
    }
    if inner.eq_ignore_ascii_case("postmaster") {
        return Ok((ForwardPath::Postmaster, rest));
    }
    Ok((ForwardPath::Path(parse_path_inner(inner)?), rest))
}

/// Parses a bare mailbox `local@domain` (no brackets) that must span all of `input`.
pub fn parse_mailbox(input: &str) -> Result<Mailbox<'_>, AddressError> {
    let (mailbox, consumed) = parse_mailbox_prefix(input.as_bytes(), input)?;
    if consumed != input.len() {
        return Err(AddressError::DomainSyntax);
    }
    Ok(mailbox)
}

/// Finds the closing `>` of a path (respecting quoted strings) and checks length and ASCII.
fn split_path(input: &[u8]) -> Result<(&str, &[u8]), AddressError> {
    if input.first() != Some(&b'<') {
        return Err(AddressError::MissingAngleBrackets);
    }
    let mut index = 1;
    let mut in_quotes = false;
    while index < input.len() {
        let byte = input[index];
        if !(0x20..0x7f).contains(&byte) {
            return Err(AddressError::NotAscii);
        }
        if in_quotes {
            match byte {
                b'\\' => index += 1,
                b'"' => in_quotes = false,
                _ => {}
            }
        } else {
            match byte {
                b'"' => in_quotes = true,
                b'>' => {
                    if index + 1 > PATH_LENGTH_MAX {
                        return Err(AddressError::PathTooLong);
                    }
                    // Checked above: every byte is printable ASCII, so this is valid UTF-8.
                    let inner = core::str::from_utf8(&input[1..index])
                        .map_err(|_| AddressError::NotAscii)?;
                    return Ok((inner, &input[index + 1..]));
                }
                _ => {}
            }
        }
        index += 1;
    }
    if index > PATH_LENGTH_MAX {
        return Err(AddressError::PathTooLong);
    }
    Err(AddressError::MissingAngleBrackets)
}

/// Parses `[A-d-l ":"] Mailbox` spanning all of `inner`.
fn parse_path_inner(inner: &str) -> Result<Path<'_>, AddressError> {
    let bytes = inner.as_bytes();
    let mut source_route = None;
    let mut mailbox_start = 0;
    if bytes.first() == Some(&b'@') {
        let colon = bytes.iter().position(|&b| b == b':').ok_or(AddressError::SourceRouteSyntax)?;
        let route = &inner[..colon];
        for at_domain in route.split(',') {
            let domain = at_domain.strip_prefix('@').ok_or(AddressError::SourceRouteSyntax)?;
            if parse_domain(domain.as_bytes()) != Ok(domain.len()) {
                return Err(AddressError::SourceRouteSyntax);
            }
        }
        source_route = Some(route);
        mailbox_start = colon + 1;
    }
    let text = &inner[mailbox_start..];
    let (mailbox, consumed) = parse_mailbox_prefix(text.as_bytes(), text)?;
    if consumed != text.len() {
        return Err(AddressError::DomainSyntax);
    }
    Ok(Path { mailbox, source_route })
}

/// Parses a mailbox at the start of `bytes` (`text` is the same data as `str`).
fn parse_mailbox_prefix<'a>(bytes: &[u8], text: &'a str) -> Result<(Mailbox<'a>, usize), AddressError> {
    if bytes.iter().any(|b| !b.is_ascii()) {
        return Err(AddressError::NotAscii);
    }
    let local_length = parse_local_part(bytes)?;
    if local_length > LOCAL_PART_LENGTH_MAX {
        return Err(AddressError::LocalPartTooLong);
    }
    if bytes.get(local_length) != Some(&b'@') {
        return Err(AddressError::MissingDomain);
    }
    let domain_bytes = &bytes[local_length + 1..];
    let domain_length = if domain_bytes.first() == Some(&b'[') {
        parse_address_literal(domain_bytes)?
    } else {
        parse_domain(domain_bytes)?
    };
    let end = local_length + 1 + domain_length;
    Ok((Mailbox { text: &text[..end], at: local_length }, end))
}

/// Length of the dot-string or quoted string at the start of `bytes`.
fn parse_local_part(bytes: &[u8]) -> Result<usize, AddressError> {
    match bytes.first() {
        None | Some(b'@') => Err(AddressError::Empty),
        Some(b'"') => {
            let mut index = 1;
            while index < bytes.len() {
                match bytes[index] {
                    b'"' => return if index == 1 { Err(AddressError::Empty) } else { Ok(index + 1) },
                    b'\\' => {
                        match bytes.get(index + 1) {
                            Some(&pair) if (0x20..0x7f).contains(&pair) => index += 2,
                            _ => return Err(AddressError::LocalPartSyntax),
                        }
                    }
                    byte if (0x20..0x7f).contains(&byte) => index += 1,
                    _ => return Err(AddressError::LocalPartSyntax),
                }
            }
            Err(AddressError::LocalPartSyntax)
        }
        Some(_) => {
            let mut index = 0;
            loop {
                let atom_start = index;
                while index < bytes.len() && is_atext(bytes[index]) {
                    index += 1;
                }
                if index == atom_start {
                    return Err(AddressError::LocalPartSyntax);
                }
                if bytes.get(index) == Some(&b'.') {
                    index += 1;
                } else {
                    return Ok(index);
                }
            }
        }
    }
}

/// Length of the RFC 5321 `Domain` at the start of `bytes`; labels of letters, digits and
/// inner hyphens, at most 63 octets each, 255 in all. A trailing dot is a syntax error.
pub fn parse_domain(bytes: &[u8]) -> Result<usize, AddressError> {
    let mut index = 0;
    loop {
        let label_start = index;
        while index < bytes.len() && (bytes[index].is_ascii_alphanumeric() || bytes[index] == b'-') {
            index += 1;
        }
        let label = &bytes[label_start..index];
        if label.is_empty() || label.len() > 63 || label[0] == b'-' || label[label.len() - 1] == b'-' {
            return Err(AddressError::DomainSyntax);
        }
        if bytes.get(index) == Some(&b'.') {
            index += 1;
        } else {
            break;
        }
    }
    if index > DOMAIN_LENGTH_MAX {
        return Err(AddressError::DomainTooLong);
    }
    Ok(index)
}

/// Length of the `[…]` address literal at the start of `bytes`.
fn parse_address_literal(bytes: &[u8]) -> Result<usize, AddressError> {
    let close = bytes.iter().position(|&b| b == b']').ok_or(AddressError::AddressLiteralSyntax)?;
    let inner = core::str::from_utf8(&bytes[1..close]).map_err(|_| AddressError::AddressLiteralSyntax)?;
    if close + 1 > DOMAIN_LENGTH_MAX {
        return Err(AddressError::DomainTooLong);
    }
    if address_literal_is_valid(inner) {
        Ok(close + 1)
    } else {
        Err(AddressError::AddressLiteralSyntax)
    }
}

/// Whether the text between the brackets of an address literal is valid (RFC 5321 4.1.3).
pub(crate) fn address_literal_is_valid(inner: &str) -> bool {
    if let Some(ipv6) = strip_prefix_ignore_case(inner, "IPv6:") {
        return Ipv6Addr::from_str(ipv6).is_ok();
    }
    if inner.bytes().next().is_some_and(|b| b.is_ascii_digit()) {
        return inner.split('.').count() == 4 && Ipv4Addr::from_str(inner).is_ok();
    }
    // General-address-literal = Standardized-tag ":" 1*dcontent
    match inner.split_once(':') {
        Some((tag, content)) => {
            let tag_valid = !tag.is_empty()
                && tag.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !tag.ends_with('-');
            let content_valid = !content.is_empty()
                && content.bytes().all(|b| (33..=90).contains(&b) || (94..=126).contains(&b));
            tag_valid && content_valid
        }
        None => false,
    }
}

/// `text` without `prefix` when it starts with it in any case.
pub(crate) fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    if text.len() >= prefix.len() && text.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes()) {
        Some(&text[prefix.len()..])
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forward(text: &str) -> Result<ForwardPath<'_>, AddressError> {
        parse_forward_path(text.as_bytes()).map(|(path, rest)| {
            assert!(rest.is_empty());
            path
        })
    }

    fn mailbox_of(path: ForwardPath<'_>) -> Mailbox<'_> {
        match path {
            ForwardPath::Path(path) => path.mailbox,
            ForwardPath::Postmaster => panic!("postmaster"),
        }
    }

    #[test]
    fn simple_mailbox() {
        let mailbox = mailbox_of(forward("<john.doe@example.org>").unwrap());
        assert_eq!(mailbox.as_str(), "john.doe@example.org");
        assert_eq!(mailbox.local_part().raw(), "john.doe");
        assert_eq!(mailbox.domain(), Domain::Name("example.org"));
    }

    #[test]
    fn null_reverse_path_and_rest() {
        let (path, rest) = parse_reverse_path(b"<> SIZE=10").unwrap();
        assert_eq!(path, ReversePath::Null);
        assert_eq!(rest, b" SIZE=10");
        assert_eq!(forward("<>"), Err(AddressError::Empty));
    }

    #[test]
    fn postmaster_without_domain_any_case() {
        assert_eq!(forward("<postmaster>"), Ok(ForwardPath::Postmaster));
        assert_eq!(forward("<PostMaster>"), Ok(ForwardPath::Postmaster));
        assert_eq!(forward("<john>"), Err(AddressError::MissingDomain));
        assert!(parse_reverse_path(b"<postmaster>").is_err());
    }

    #[test]
    fn quoted_local_part() {
        let mailbox = mailbox_of(forward(r#"<"john \"q\" doe"@example.org>"#).unwrap());
        let local = mailbox.local_part();
        assert!(local.is_quoted());
        assert!(local.eq_ignore_ascii_case(r#"JOHN "Q" DOE"#));
        assert!(!local.content_is_dot_string());
        let plain = mailbox_of(forward(r#"<"john"@example.org>"#).unwrap());
        assert!(plain.local_part().content_is_dot_string());
        assert!(plain.local_part().eq_ignore_ascii_case("john"));
        let with_at = mailbox_of(forward(r#"<"user@foreign"@example.org>"#).unwrap());
        assert!(with_at.local_part().contains(b'@'));
        assert_eq!(with_at.domain(), Domain::Name("example.org"));
    }

    #[test]
    fn source_route_parsed_and_reported() {
        match forward("<@a.example,@b.example:user@c.example>").unwrap() {
            ForwardPath::Path(path) => {
                assert_eq!(path.source_route, Some("@a.example,@b.example"));
                assert_eq!(path.mailbox.as_str(), "user@c.example");
            }
            ForwardPath::Postmaster => panic!(),
        }
        assert_eq!(forward("<@a.example user@c.example>"), Err(AddressError::SourceRouteSyntax));
        assert_eq!(forward("<@a..b:user@c.example>"), Err(AddressError::SourceRouteSyntax));
    }

    #[test]
    fn address_literals() {
        let v4 = mailbox_of(forward("<user@[192.0.2.1]>").unwrap());
        assert_eq!(v4.domain(), Domain::AddressLiteral("192.0.2.1"));
        let v6 = mailbox_of(forward("<user@[IPv6:2001:db8::1]>").unwrap());
        assert_eq!(v6.domain(), Domain::AddressLiteral("IPv6:2001:db8::1"));
        assert!(forward("<user@[x-tag:stuff]>").is_ok());
        assert_eq!(forward("<user@[192.0.2]>"), Err(AddressError::AddressLiteralSyntax));
        assert_eq!(forward("<user@[300.0.2.1]>"), Err(AddressError::AddressLiteralSyntax));
        assert_eq!(forward("<user@[IPv6:zz]>"), Err(AddressError::AddressLiteralSyntax));
    }

    #[test]
    fn syntax_errors() {
        assert_eq!(forward("user@example.org"), Err(AddressError::MissingAngleBrackets));
        assert_eq!(forward("<user@example.org"), Err(AddressError::MissingAngleBrackets));
        assert_eq!(forward("<user@example.org.>"), Err(AddressError::DomainSyntax));
        assert_eq!(forward("<user@foreign@example.org>"), Err(AddressError::DomainSyntax));
        assert_eq!(forward("<user@-bad.example>"), Err(AddressError::DomainSyntax));
        assert_eq!(forward("<user@bad-.example>"), Err(AddressError::DomainSyntax));
        assert_eq!(forward("<user@under_score.example>"), Err(AddressError::DomainSyntax));
        assert_eq!(forward("<.user@example.org>"), Err(AddressError::LocalPartSyntax));
        assert_eq!(forward("<us..er@example.org>"), Err(AddressError::LocalPartSyntax));
        assert_eq!(forward("<user.@example.org>"), Err(AddressError::LocalPartSyntax));
        assert_eq!(forward("<@example.org>"), Err(AddressError::SourceRouteSyntax));
        assert_eq!(forward("<\"\"@example.org>"), Err(AddressError::Empty));
        assert_eq!(forward("<us\u{e9}r@example.org>"), Err(AddressError::NotAscii));
        assert_eq!(forward("<user@exa\tmple.org>"), Err(AddressError::NotAscii));
    }

    #[test]
    fn length_limits() {
        let local: std::string::String = "a".repeat(65);
        assert_eq!(forward(&format!("<{local}@example.org>")), Err(AddressError::LocalPartTooLong));
        let label: std::string::String = "a".repeat(64);
        assert_eq!(forward(&format!("<u@{label}.org>")), Err(AddressError::DomainSyntax));
        let long_domain = vec!["a".repeat(60); 5].join(".");
        assert_eq!(forward(&format!("<u@{long_domain}>")), Err(AddressError::PathTooLong));
        let fits = vec!["a".repeat(60); 4].join(".");
        assert!(forward(&format!("<u@{fits}>")).is_ok());
    }

    #[test]
    fn bare_mailbox() {
        assert!(parse_mailbox("abuse@example.org").is_ok());
        assert!(parse_mailbox("abuse@example.org ").is_err());
        assert!(parse_mailbox("abuse").is_err());
    }
}
