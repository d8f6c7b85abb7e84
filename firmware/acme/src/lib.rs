//! Sans-I/O ACME (RFC 8555) client for the appliance's publicly trusted certificate.
//!
//! The caller (the firmware's ACME task, or a host test) owns the sockets, TLS, the clock and
//! the randomness; this crate says which HTTP request to send next and reads each answer.
//!
//! - [`base64url`]: base64url without padding (RFC 7515 section 2).
//! - [`jws`]: the account key's JWK and RFC 7638 thumbprint, flattened ES256 JWS, External
//!   Account Binding (HS256), key authorizations and the TLS-ALPN-01 digest.
//! - [`json`]: a strict, bounded JSON reader (and the string escaping the writers use).
//! - [`time`]: RFC 3339 timestamps to Unix seconds.
//! - [`objects`]: directory, account, order, authorization, challenge, problem document and
//!   ARI renewal information, each read from JSON with hard limits and consistency checks.
//! - [`url`]: the `https://` URLs the server hands out, split for the HTTP request.
//! - [`client`]: the issuance state machine (account, order, challenge, finalize, download,
//!   chain check with homemx-tls).
//! - [`exchange`]: HTTP/1.1 bytes for a [`client::Request`] and the reading of a response with
//!   homemx-http.
//! - [`ari`]: the ARI (RFC 9773) certificate identifier and renewal-information request.
//! - [`renewal`]: when to try next (two thirds of the lifetime with jitter, ARI window,
//!   exponential backoff, `Retry-After`), a pure function.
//!
//! Calls homemx-http (request heads, response parsing), homemx-tls (the P-256 keys, the CSR,
//! the chain checks), sha2 and hmac; called by the firmware's ACME task (not yet written).
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod ari;
pub mod base64url;
pub mod client;
pub mod exchange;
pub mod json;
pub mod jws;
pub mod objects;
pub mod renewal;
pub mod time;
pub mod url;
pub mod wan_http;
