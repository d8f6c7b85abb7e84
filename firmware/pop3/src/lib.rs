#![doc = include_str!("../README.md")]
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod body;
pub mod capability;
pub mod envelope;
pub mod listing;
pub mod seen;
pub mod session;
pub mod status;

pub use envelope::{envelope_recipient, ADDRESS_MAX};
pub use listing::{ListEntry, ListingSummary, LISTING_MAX, UIDL_MAX};
pub use seen::{record_holds, Inserted, SeenRing, SEEN_CAPACITY, SEEN_PAGES, SEEN_PAGE_MAX};
pub use session::{
    AbortReason, ConfigError, Failure, LoginRefusal, MessageCommand, Pop3Config, Pop3Event, Pop3Session, RequestError,
    Stage, TlsMode, TlsProblem, DEFAULT_REPLY_TIMEOUT_MS,
};
