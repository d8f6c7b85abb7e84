#![doc = include_str!("../README.md")]
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod address;
pub mod auth_throttle;
pub mod client;
pub mod clock;
pub mod command;
pub mod connection;
pub mod data;
pub mod limits;
pub mod policy;
pub mod quota;
pub mod received;
pub mod relay;
pub mod sasl;
pub mod server;

/// The SMTP port (RFC 5321): mail from the world.
pub const SMTP_PORT: u16 = 25;
/// The message submission port (RFC 6409).
pub const SUBMISSION_PORT: u16 = 587;
/// The submission port with implicit TLS (RFC 8314).
pub const SUBMISSIONS_PORT: u16 = 465;

pub use address::{Domain, ForwardPath, LocalPart, Mailbox, Path, ReversePath};
pub use auth_throttle::{AuthAdmission, AuthThrottle, FailureResponse, ThrottleSettings};
pub use client::{
    ClientConfig, ClientEvent, ClientProtocol, ClientSession, Credentials, Envelope, Outcome, RecipientResult,
    ResultReason, TlsProblem, TlsRequirement,
};
pub use clock::Now;
pub use command::{AuthMechanism, BodyType, MailParameters};
pub use connection::{ConnectionCounter, ConnectionRefusal};
pub use limits::Limits;
pub use policy::{ClientInfo, RecipientDecision, RelayTrick, SenderDecision, SessionPolicy};
pub use quota::{HourlyQuota, QuotaDecision, SubmissionQuota};
pub use received::{TlsDetails, TransactionId};
pub use relay::{IpPrefix, RelayConfig, StandardPolicy};
pub use sasl::AuthCredentials;
pub use server::{
    AbortReason, AuthResult, CommitResult, ConnectionInfo, Event, Refusal, RefusalReason, ServerConfig, ServerSession,
};
