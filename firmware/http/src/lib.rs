//! Sans-I/O HTTP/1.1 for the appliance's LAN services (`/health` now, the status page later).
//!
//! [`request`] parses a request head from bytes with hard limits and no allocation;
//! [`response`] writes a complete response with the strict headers every answer carries.
//! No sockets here: the firmware feeds bytes in and writes the bytes out.
#![cfg_attr(not(test), no_std)]

pub mod client;
pub mod request;
pub mod response;

pub use request::{parse_request_head, Method, ParseError, RequestHead, MAX_HEAD_LENGTH};
pub use response::{write_response, Response, Status};
