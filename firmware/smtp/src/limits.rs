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
    /// Longest a whole session may last in milliseconds, however busy (a client must not hold
    /// a session slot for ever). Then: `421 4.4.2` and close.
    pub session_time_milliseconds: u64,
    /// Slowest average rate of message data in octets per second, measured from DATA once
    /// [`Self::data_rate_grace_milliseconds`] have passed (a client trickling a byte before
    /// each data timeout must not hold a slot). Below it: `421 4.4.2` and close. 0: no minimum.
    pub minimum_data_octets_per_second: u64,
    /// How long after DATA the data rate is not yet checked, in milliseconds.
    pub data_rate_grace_milliseconds: u64,
    /// Refused commands (4xx/5xx replies) a session may collect; reaching it: `421 4.7.0`
    /// and close.
    pub errors_per_session: u32,
}

impl Limits {
    /// The defaults: 512, 1000, 100 recipients, 10 MiB, 5 min, 5 min, a 15-minute session
    /// (RFC 5321 4.5.3.2 allows 10 minutes for the data termination alone), 1 KiB/s of data
    /// after 1 minute, 10 errors.
    pub const DEFAULT: Limits = Limits {
        command_line_length: 512,
        text_line_length: 1000,
        recipients_per_message: 100,
        message_size: 10 * 1024 * 1024,
        command_timeout_milliseconds: 5 * 60 * 1000,
        data_timeout_milliseconds: 5 * 60 * 1000,
        session_time_milliseconds: 15 * 60 * 1000,
        minimum_data_octets_per_second: 1024,
        data_rate_grace_milliseconds: 60 * 1000,
        errors_per_session: 10,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}
