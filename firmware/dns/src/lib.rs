#![doc = include_str!("../README.md")]
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod error;
pub mod message;
pub mod name;
pub mod resolver;
pub mod sntp;

#[cfg(test)]
mod test_encoder;

pub use error::DnsError;
pub use message::{build_query, matches_query, parse_response, AddressRecord, Answer, MxRecord, RecordType, TlsaRecord, TxtRecord};
pub use name::{is_valid_host_name, HostName};
pub use resolver::{source_port, DatagramOutcome, Lookup};
pub use sntp::{KissCode, LeapIndicator, NtpTimestamp, ServerTime, SntpError, WallClock};
