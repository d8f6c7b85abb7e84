//! TLS 1.3 and 1.2 (ECDHE + AEAD only) for the appliance on rustls and rustls-webpki, with no
//! `std`: the connections to its provider (smarthost, backup MX's POP3 server, DynDNS and
//! check-IP services), each of which is usable only after the server's certificate chain (or
//! pinned key) *and* its signature over the handshake were verified; and the server side for
//! inbound STARTTLS and implicit TLS with the device's own P-256 key.
//!
//! - [`crypto`]: the rustls crypto provider assembled from RustCrypto (X25519/P-256,
//!   ChaCha20-Poly1305/AES-GCM for TLS 1.3 and 1.2, RSA/ECDSA/Ed25519 verification, ECDSA P-256
//!   signing) over the board's random source.
//! - [`trust`]: the owner's trust decision (CA anchor or pinned key) and the oldest TLS version
//!   accepted, as a rustls client configuration, with the RFC 5280 checks webpki leaves out.
//! - [`client`], [`server`]: sans-I/O connections over rustls's unbuffered API, sharing the
//!   record pump of [`connection`].
//! - [`der`]: the few DER reads rustls and webpki do not offer.
//! - [`identity`]: the device's own key, self-signed certificate, certificate request and the
//!   checks of a CA-issued chain, sans I/O.
//!
//! TLS is never optional and never unverified here: there is no "accept anything" mode.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod client;
pub mod connection;
pub mod crypto;
pub mod identity;
pub mod der;
pub mod server;
pub mod trust;

pub use client::{FailureKind, TlsClient, TlsError, RECORD_BUFFER};
pub use crypto::signing::{EcdsaP256SigningKey, KeyError};
pub use server::{server_config, tls_alpn_01_server_config, InboundFailure, ServerConfigError, TlsServer, ACME_TLS_ALPN, SERVER_OUTGOING_BUFFER};
pub use trust::{client_config, client_config_with_minimum, spki_sha256, MinimumTls, Trust, TrustError, WallClock};
