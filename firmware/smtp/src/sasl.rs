//! The SASL side of `AUTH` (RFC 4954): base64 decoding of client responses, the PLAIN message
//! (RFC 4616) and the LOGIN prompts, and the credentials a server session hands its caller.
//! No state of its own; called by the server session only.

use core::fmt;

use crate::command::AuthMechanism;

/// Octets of decoded credentials a session holds (PLAIN's `authzid NUL authcid NUL passwd`,
/// or LOGIN's user name and password together): as much as an AUTH line of the session's
/// 1024-octet input buffer can carry. Responses that decode to more are refused with
/// `500 5.5.6` (RFC 4954 allows 12288-octet lines; a home server's users have short names and
/// passwords, and every octet here is RAM of each session).
pub const CREDENTIALS_BUFFER_SIZE: usize = 768;
/// Longest user name a session keeps as its authenticated user (octets of UTF-8). The caller
/// provisions no longer names; a longer one is refused like a wrong password.
pub const USER_NAME_LENGTH_MAX: usize = 64;
/// The LOGIN prompt for the user name: `Username:` in base64.
pub const LOGIN_USERNAME_PROMPT: &str = "VXNlcm5hbWU6";
/// The LOGIN prompt for the password: `Password:` in base64.
pub const LOGIN_PASSWORD_PROMPT: &str = "UGFzc3dvcmQ6";

/// Why a client response could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Not base64 (or not a valid PLAIN message): `501 5.5.2`.
    Malformed,
    /// It decodes to more than the buffer holds: `500 5.5.6`.
    TooLong,
}

/// What the client sent to authenticate, handed to the caller to verify (the session never
/// verifies a password: that is a slow, salted hash and the caller's job). `Debug` never shows
/// the password.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct AuthCredentials<'a> {
    /// The mechanism used.
    pub mechanism: AuthMechanism,
    /// PLAIN's authorization identity (empty: the same as the user name; always empty for
    /// LOGIN). No proxy authorization is offered: the caller refuses when it is not empty and
    /// differs from the user name ([`Self::asks_for_another_identity`]).
    pub authorization_identity: &'a [u8],
    /// The user name (PLAIN's authentication identity).
    pub username: &'a [u8],
    /// The password.
    pub password: &'a [u8],
}

impl AuthCredentials<'_> {
    /// Whether the client asks to act as someone other than the user it authenticates as.
    pub fn asks_for_another_identity(&self) -> bool {
        !self.authorization_identity.is_empty() && self.authorization_identity != self.username
    }
}

impl fmt::Debug for AuthCredentials<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("AuthCredentials")
            .field("mechanism", &self.mechanism)
            .field("authorization_identity", &core::str::from_utf8(self.authorization_identity).unwrap_or("<not UTF-8>"))
            .field("username", &core::str::from_utf8(self.username).unwrap_or("<not UTF-8>"))
            .field("password", &"<withheld>")
            .finish()
    }
}

/// Decodes a base64 response (RFC 4648 alphabet, padded, no line breaks; `=` alone is the
/// empty response of RFC 4954) into `out`; returns the decoded length.
pub fn decode_base64(text: &[u8], out: &mut [u8]) -> Result<usize, DecodeError> {
    if text == b"=" {
        return Ok(0);
    }
    if text.is_empty() || !text.len().is_multiple_of(4) {
        return Err(DecodeError::Malformed);
    }
    let padding = text.iter().rev().take_while(|&&b| b == b'=').count();
    if padding > 2 {
        return Err(DecodeError::Malformed);
    }
    let length = text.len() / 4 * 3 - padding;
    if length > out.len() {
        return Err(DecodeError::TooLong);
    }
    let mut written = 0;
    for (index, quad) in text.chunks_exact(4).enumerate() {
        let last = index == text.len() / 4 - 1;
        let mut bits = 0u32;
        for (position, &character) in quad.iter().enumerate() {
            let value = match character {
                b'A'..=b'Z' => character - b'A',
                b'a'..=b'z' => character - b'a' + 26,
                b'0'..=b'9' => character - b'0' + 52,
                b'+' => 62,
                b'/' => 63,
                b'=' if last && position >= 4 - padding => 0,
                _ => return Err(DecodeError::Malformed),
            };
            bits = bits << 6 | u32::from(value);
        }
        let octets = [(bits >> 16) as u8, (bits >> 8) as u8, bits as u8];
        let take = if last { 3 - padding } else { 3 };
        // Bits under the padding must be zero (one encoding per value).
        if last && octets[take..].iter().any(|&octet| octet != 0) {
            return Err(DecodeError::Malformed);
        }
        out[written..written + take].copy_from_slice(&octets[..take]);
        written += take;
    }
    Ok(written)
}

/// Splits a PLAIN message `[authzid] NUL authcid NUL passwd` (RFC 4616 section 2): returns
/// the lengths of the authorization identity and the user name. The user name and the
/// password must not be empty, and no third NUL may appear.
pub fn split_plain(message: &[u8]) -> Result<(usize, usize), DecodeError> {
    let first = message.iter().position(|&b| b == 0).ok_or(DecodeError::Malformed)?;
    let rest = &message[first + 1..];
    let second = rest.iter().position(|&b| b == 0).ok_or(DecodeError::Malformed)?;
    let password = &rest[second + 1..];
    if second == 0 || password.is_empty() || password.contains(&0) {
        return Err(DecodeError::Malformed);
    }
    Ok((first, second))
}

/// Overwrites `buffer` with zeros in a way the optimiser does not remove as a dead store.
pub fn wipe(buffer: &mut [u8]) {
    buffer.fill(0);
    core::hint::black_box(buffer);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(text: &str) -> Result<std::vec::Vec<u8>, DecodeError> {
        let mut out = [0u8; 16];
        decode_base64(text.as_bytes(), &mut out).map(|length| out[..length].to_vec())
    }

    #[test]
    fn base64() {
        assert_eq!(decode("AHVzZXIAc2VjcmV0"), Ok(b"\0user\0secret".to_vec()));
        assert_eq!(decode("dXNlcg=="), Ok(b"user".to_vec()));
        assert_eq!(decode("dXNlcjE="), Ok(b"user1".to_vec()));
        assert_eq!(decode("="), Ok(std::vec::Vec::new()));
        assert_eq!(decode(""), Err(DecodeError::Malformed));
        assert_eq!(decode("dXNlcg="), Err(DecodeError::Malformed), "not a multiple of 4");
        assert_eq!(decode("dX=lcg=="), Err(DecodeError::Malformed), "padding inside");
        assert_eq!(decode("dXNlcg!="), Err(DecodeError::Malformed));
        assert_eq!(decode("dXNlch=="), Err(DecodeError::Malformed), "bits under the padding");
        assert_eq!(decode("===="), Err(DecodeError::Malformed));
        assert_eq!(decode("QUFBQUFBQUFBQUFBQUFBQUFB"), Err(DecodeError::TooLong), "18 octets into 16");
    }

    #[test]
    fn plain_message() {
        assert_eq!(split_plain(b"\0user\0secret"), Ok((0, 4)));
        assert_eq!(split_plain(b"admin\0user\0secret"), Ok((5, 4)));
        assert_eq!(split_plain(b"\0\0secret"), Err(DecodeError::Malformed), "empty user");
        assert_eq!(split_plain(b"\0user\0"), Err(DecodeError::Malformed), "empty password");
        assert_eq!(split_plain(b"\0user\0se\0cret"), Err(DecodeError::Malformed));
        assert_eq!(split_plain(b"usersecret"), Err(DecodeError::Malformed));
    }

    #[test]
    fn debug_withholds_the_password() {
        let credentials = AuthCredentials {
            mechanism: AuthMechanism::Plain,
            authorization_identity: b"",
            username: b"alice",
            password: b"hunter2",
        };
        let text = std::format!("{credentials:?}");
        assert!(text.contains("alice") && !text.contains("hunter2"), "{text}");
        assert!(!credentials.asks_for_another_identity());
        assert!(AuthCredentials { authorization_identity: b"bob", ..credentials }.asks_for_another_identity());
        assert!(!AuthCredentials { authorization_identity: b"alice", ..credentials }.asks_for_another_identity());
    }
}
