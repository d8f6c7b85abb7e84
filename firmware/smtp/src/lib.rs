#![doc = include_str!("../README.md")]
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod address;
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
pub mod server;

/// The SMTP port (RFC 5321): mail from the world.
pub const SMTP_PORT: u16 = 25;
/// The message submission port (RFC 6409).
pub const SUBMISSION_PORT: u16 = 587;

pub use address::{Domain, ForwardPath, LocalPart, Mailbox, Path, ReversePath};
pub use client::{
    ClientConfig, ClientEvent, ClientProtocol, ClientSession, Credentials, Envelope, Outcome, RecipientResult,
    ResultReason, TlsProblem, TlsRequirement,
};
pub use clock::Now;
pub use command::{BodyType, MailParameters};
pub use connection::{ConnectionCounter, ConnectionRefusal};
pub use limits::Limits;
pub use policy::{ClientInfo, RecipientDecision, RelayTrick, SenderDecision, SessionPolicy};
pub use quota::{HourlyQuota, QuotaDecision};
pub use received::{TlsDetails, TransactionId};
pub use relay::{IpPrefix, RelayConfig, StandardPolicy};
pub use server::{
    AbortReason, CommitResult, ConnectionInfo, Event, Refusal, RefusalReason, ServerConfig, ServerSession,
};
