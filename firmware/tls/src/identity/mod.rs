//! The appliance's own TLS identity, sans I/O: its P-256 key, the self-signed certificate it
//! starts with, the certificate request (CSR) the owner takes to a CA, the checks a CA-issued
//! chain passes before it replaces the self-signed certificate, and the summary the status page
//! shows (subject, issuer, expiry, renewal alert 21 days ahead).
//!
//! The caller supplies the randomness (a `rand_core` RNG over the board's entropy source), the
//! wall-clock time and the host name, and stores what comes out (the key encrypted, the
//! certificates in the clear); nothing here does I/O or reads a clock.
//!
//! - [`key`]: the key, generated from the caller's RNG, stored as its raw 32-byte scalar.
//! - [`host`]: the host name the certificates are for.
//! - [`certificate`]: the self-signed X.509 v3 certificate.
//! - [`request`]: the PKCS#10 certificate request.
//! - [`install`]: the checks of a PEM chain (key, name, dates, signatures).
//! - [`summary`]: subject, issuer, validity and the renewal alert.
//! - [`pem`]: PEM text for the DER this module makes.
//!
//! Calls `p256`, `der` (encoding primitives), rustls-webpki (name and path checks) and the
//! crate's [`crate::der`] reader and signature algorithms; called by the firmware's
//! provisioning and status code and by the CLI's `tls csr` / `tls install`.

pub mod certificate;
mod encode;
pub mod host;
pub mod install;
pub mod key;
mod parse;
pub mod pem;
pub mod request;
pub mod summary;

pub use certificate::{self_signed_certificate, tls_alpn_01_certificate, DEFAULT_VALIDITY_DAYS};
pub use host::{HostName, HostNameError};
pub use install::{check_chain, InstallError};
pub use key::{DeviceKey, KeyError, STORED_KEY_LENGTH};
pub use request::certificate_request;
pub use summary::{CertificateSummary, ACME_ALERT_DAYS, RENEWAL_ALERT_DAYS};

/// Why a certificate or request could not be encoded: only a date outside what X.509 can say
/// (after the year 9999), since host names are checked when a [`HostName`] is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncodeError {
    /// A validity date X.509 cannot encode.
    DateOutOfRange,
    /// The DER encoder refused an element (a length beyond what DER allows).
    Encoding,
}

impl From<der::Error> for EncodeError {
    fn from(_: der::Error) -> Self {
        EncodeError::Encoding
    }
}
