//! Sans-I/O POP3 client session (RFC 1939, CAPA, STLS) for fetching the backup MX.
//!
//! (Being written; see the crate's README when it lands.)
#![cfg_attr(not(test), no_std)]
