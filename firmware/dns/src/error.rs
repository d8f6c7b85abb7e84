//! `DnsError`: every way a DNS query can fail to be built, a response can be refused, or a
//! lookup can end without an answer.

/// Why a query could not be built, a response was refused, or a lookup gave up.
///
/// "No such name" (NXDOMAIN) and "no records of that type" (NODATA) are not errors: they are
/// [`Answer::NameError`](crate::Answer::NameError) and [`Answer::NoData`](crate::Answer::NoData).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DnsError {
    /// The name to look up is not a host name (labels of 1–63 letters, digits, `-`, `_`;
    /// at most 253 characters).
    InvalidName,
    /// The output buffer is too small for the query.
    BufferTooSmall,
    /// The message is cut short or its structure is broken (a count promises more than there
    /// is, a length runs past the end, reserved label types, an RDATA of the wrong size).
    Malformed,
    /// A name compression pointer that does not point strictly backwards, or too many of them.
    BadPointer,
    /// The response's ID is not the one we sent.
    IdMismatch,
    /// The message is a query (QR = 0), not a response.
    NotAResponse,
    /// The response's opcode is not 0 (standard query).
    UnexpectedOpcode(u8),
    /// The response does not carry exactly our question (name, type, class IN).
    QuestionMismatch,
    /// The server set TC: the answer did not fit in a UDP datagram (no TCP fallback here).
    Truncated,
    /// RCODE 1: the server could not understand our query.
    FormatError,
    /// RCODE 2 (SERVFAIL): the server failed to get an answer.
    ServerFailure,
    /// RCODE 4: the server does not implement this kind of query.
    NotImplemented,
    /// RCODE 5: the server refused to answer us.
    Refused,
    /// Any other non-zero RCODE.
    OtherRcode(u8),
    /// The CNAME chain in the answer is longer than [`MAX_CNAME_HOPS`](crate::message::MAX_CNAME_HOPS)
    /// (or loops).
    CnameChainTooLong,
    /// A record we need holds a name that is not a host name (e.g. an MX exchange with a space).
    InvalidRecord,
    /// A lookup was started without any server to ask.
    NoServers,
    /// No server answered before the last retransmission timed out.
    Timeout,
}
