//! Session limits: the configurable bounds of a server session and their defaults.

/// Bounds a server session enforces; every one has its own reply code (see the README).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest command line including CRLF (RFC 5321 4.5.3.1.4: 512). Over it: `500 5.5.6`.
    /// Clamped to the session's input buffer.
    pub command_line_length: usize,
    /// Longest text line in DATA including CRLF (RFC 5321 4.5.3.1.6: 1000). Over it the
    /// message is refused after its end with `554 5.6.0`.
    pub text_line_length: usize,
    /// Most recipients per message (RFC 5321 4.5.3.1.8: at least 100). Over it: `452 4.5.3`.
    pub recipients_per_message: usize,
    /// Largest message body in octets, advertised as `SIZE`. Declared or actual over it:
    /// `552 5.3.4`.
    pub message_size: u64,
    /// Longest wait for the next command in milliseconds (RFC 5321 4.5.3.2.7: 5 minutes).
    /// Then: `421 4.4.2` and close.
    pub command_timeout_milliseconds: u64,
    /// Longest wait for more message data in milliseconds. Then: `421 4.4.2` and close.
    pub data_timeout_milliseconds: u64,
    /// Refused commands (4xx/5xx replies) a session may collect; reaching it: `421 4.7.0`
    /// and close.
    pub errors_per_session: u32,
}

impl Limits {
    /// The defaults: 512, 1000, 100 recipients, 10 MiB, 5 min, 5 min, 10 errors.
    pub const DEFAULT: Limits = Limits {
        command_line_length: 512,
        text_line_length: 1000,
        recipients_per_message: 100,
        message_size: 10 * 1024 * 1024,
        command_timeout_milliseconds: 5 * 60 * 1000,
        data_timeout_milliseconds: 5 * 60 * 1000,
        errors_per_session: 10,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}
