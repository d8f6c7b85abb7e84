//! The URLs an ACME server hands out (directory, nonce, account, order, authorization,
//! challenge, finalize, certificate): `https://` only (RFC 8555 section 6.1), split into what
//! an HTTP request needs. Refused: other schemes, user info, fragments, an empty or odd host,
//! a port outside 1..=65535, bytes outside printable ASCII (no space, `"`, `\`), and URLs
//! longer than [`MAX_URL`].

use alloc::string::String;

/// Longest URL accepted.
pub const MAX_URL: usize = 512;

/// A checked `https://` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    text: String,
    /// End of `host[:port]` in `text`.
    authority_end: usize,
    /// End of the host name in `text` (before `:port`).
    host_end: usize,
    port: u16,
}

const SCHEME: &str = "https://";

impl Url {
    /// Checks `text`.
    pub fn parse(text: &str) -> Option<Self> {
        if text.len() > MAX_URL || !text.bytes().all(|byte| (0x21..0x7f).contains(&byte) && byte != b'"' && byte != b'\\') {
            return None;
        }
        let rest = text.strip_prefix(SCHEME)?;
        let authority_length = rest.find(['/', '?']).unwrap_or(rest.len());
        let authority = rest.get(..authority_length)?;
        if text.contains('#') || authority.contains('@') {
            return None;
        }
        let split = if authority.ends_with(']') { None } else { authority.rsplit_once(':') };
        let (host, port) = match split {
            Some((host, port)) => {
                if port.is_empty() || port.len() > 5 || !port.bytes().all(|byte| byte.is_ascii_digit()) {
                    return None;
                }
                (host, port.parse::<u16>().ok().filter(|&port| port != 0)?)
            }
            None => (authority, 443),
        };
        let valid_host = !host.is_empty()
            && (host.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'.')
                || (host.starts_with('[') && host.ends_with(']') && host.len() > 2));
        if !valid_host {
            return None;
        }
        Some(Url { text: String::from(text), authority_end: SCHEME.len() + authority_length, host_end: SCHEME.len() + host.len(), port })
    }

    /// The whole URL (what a JWS's `url` header carries).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The host name or address, without port.
    pub fn host(&self) -> &str {
        self.text.get(SCHEME.len()..self.host_end).unwrap_or("")
    }

    /// The port (443 unless given).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `host` or `host:port` as the URL has it: the `Host` header.
    pub fn authority(&self) -> &str {
        self.text.get(SCHEME.len()..self.authority_end).unwrap_or("")
    }

    /// The path and query (`/` when the URL has none): the request target.
    pub fn path_and_query(&self) -> &str {
        match self.text.get(self.authority_end..) {
            Some("") | None => "/",
            Some(rest) => rest,
        }
    }

    /// Whether the path (or query) begins right after the authority with `/` (a `?` alone is
    /// not a request target).
    fn has_path(&self) -> bool {
        self.path_and_query().starts_with('/')
    }
}

/// [`Url::parse`], also requiring a path that is a valid request target.
pub fn parse(text: &str) -> Option<Url> {
    Url::parse(text).filter(Url::has_path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_urls() {
        let url = parse("https://127.0.0.1:14000/my-order/abc?x=1").unwrap();
        assert_eq!((url.host(), url.port(), url.authority(), url.path_and_query()), ("127.0.0.1", 14000, "127.0.0.1:14000", "/my-order/abc?x=1"));
        let url = parse("https://acme-v02.api.letsencrypt.org/directory").unwrap();
        assert_eq!((url.host(), url.port(), url.authority()), ("acme-v02.api.letsencrypt.org", 443, "acme-v02.api.letsencrypt.org"));
        let url = parse("https://example.org").unwrap();
        assert_eq!(url.path_and_query(), "/");
        let url = parse("https://[::1]:8443/dir").unwrap();
        assert_eq!((url.host(), url.port()), ("[::1]", 8443));
        assert_eq!(parse("https://[::1]/").unwrap().port(), 443);
    }

    #[test]
    fn refuses_other_urls() {
        for text in [
            "http://example.org/dir",
            "HTTPS://example.org/",
            "https://",
            "https:///dir",
            "https://user@example.org/",
            "https://example.org/#frag",
            "https://example.org:0/",
            "https://example.org:65536/",
            "https://example.org:/",
            "https://example.org:44a/",
            "https://exa mple.org/",
            "https://example.org/a b",
            "https://example.org/\"",
            "https://example.org/\\",
            "https://example.org/\u{e9}",
            "https://ex_ample.org/",
            "https://example.org?x",
        ] {
            assert_eq!(parse(text), None, "{text}");
        }
        assert!(parse(&format!("https://example.org/{}", "a".repeat(MAX_URL))).is_none());
    }
}
