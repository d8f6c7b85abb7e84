//! TLS 1.3 client trust for the appliance's connections to its provider (smarthost, backup
//! MX, DynDNS): which server is the right one, decided by the owner at provisioning.
//!
//! - [`der`]: the few DER steps needed to find a certificate's SubjectPublicKeyInfo.
//! - [`pin`]: a [`embedded_tls::TlsVerifier`] that accepts exactly one server key (the
//!   SHA-256 of its SPKI) and checks the handshake signature with it.
//! - [`provider`]: the [`embedded_tls::CryptoProvider`] the firmware hands to embedded-tls:
//!   AES-128-GCM-SHA256 (the suite every TLS 1.3 server must offer, RFC 8446 9.1), P-256, and
//!   one of two verifiers: a CA anchor with host name and validity dates, or a pinned key.
//!
//! TLS is never optional and never unverified here: there is no "accept anything" mode.
#![cfg_attr(not(test), no_std)]

pub mod der;
pub mod pin;
pub mod provider;

pub use pin::{spki_sha256, PinVerifier};
pub use provider::{Provider, Trust, TrustVerifier};
