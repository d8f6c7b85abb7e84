//! A TLS server connection (inbound STARTTLS and implicit TLS) as a sans-I/O state machine over
//! rustls's unbuffered API, the mirror of [`crate::client::TlsClient`]: the caller owns the
//! socket and the two record buffers, feeds received bytes in with [`TlsServer::received`],
//! sends what [`TlsServer::output`] holds, and reads and writes plaintext. The record pump is
//! [`crate::connection`]'s, shared with the client; the configuration is [`server_config`]'s.
//!
//! The configuration: TLS 1.3 and TLS 1.2 (ECDHE + AEAD suites only: the provider has no
//! others), the server's order of preference (ChaCha20-Poly1305 first, cheapest in software;
//! AES-GCM only for a client that offers nothing else), no session tickets and no session
//! cache (every connection is a full handshake, no resumption state kept), no 0-RTT, no client
//! certificates, and the device's certificate chain with its P-256 key.
//! [`tls_alpn_01_server_config`] is the same for the ACME TLS-ALPN-01 validation: ALPN
//! `acme-tls/1` only, the validation certificate only for handshakes that offer it.
//!
//! A handshake that fails (garbage, an unsupported version, no common suite, the client's
//! alert, a record that does not authenticate) is returned as a [`TlsError`]; when rustls
//! chose an alert for the client it is in [`TlsServer::output`], to be sent before the socket
//! is closed. [`TlsError::inbound_kind`] classifies it for logs and counters.
//!
//! Order of use: after [`TlsServer::new`] wait for the ClientHello; after every call that may
//! produce records (`received`, `write`, `close`) send all of [`TlsServer::output`] before
//! waiting for input.

use alloc::sync::Arc;
use alloc::vec::Vec;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateDer;
use rustls::server::{ClientHello, NoServerSessionStorage, ResolvesServerCert, UnbufferedServerConnection};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{AlertDescription, Error, PeerIncompatible, ServerConfig};

use crate::connection::{TlsConnection, RECORD_OVERHEAD};
pub use crate::connection::{TlsError, RECORD_BUFFER};
use crate::crypto::signing::EcdsaP256SigningKey;
use crate::trust::{ClockTime, MinimumTls, WallClock};

/// The server's outgoing record buffer: its records are capped to fit it (rustls's
/// `max_fragment_size`), so the first flight, whatever the chain's size, goes out one record
/// at a time ([`crate::connection`]), and application data (SMTP replies) in records of this
/// size at most. Smaller records cost 22 octets each more on the wire and nothing else.
pub const SERVER_OUTGOING_BUFFER: usize = 2048;
/// Plaintext of one outgoing record: a sealed record (header, TLS 1.2 explicit nonce, tag)
/// fills [`SERVER_OUTGOING_BUFFER`] at most.
const SERVER_FRAGMENT: usize = SERVER_OUTGOING_BUFFER - RECORD_OVERHEAD;
/// rustls's `max_fragment_size` for it: rustls counts the record header in it.
const SERVER_MAX_FRAGMENT_SIZE: usize = SERVER_FRAGMENT + 5;

/// Why no server configuration could be made.
#[derive(Clone, Debug, PartialEq)]
pub enum ServerConfigError {
    /// No certificate was given.
    EmptyChain,
    /// The first certificate does not parse.
    CertificateUnreadable,
    /// The first certificate is not for this key.
    KeyMismatch,
    /// rustls refused the protocol versions (the provider lacks their suites).
    Versions(Error),
}

/// A server configuration presenting `chain` (leaf first, then any intermediates, DER) with
/// `key`, for TLS 1.3 and 1.2; `clock` is rustls's time source (it is not needed for anything
/// a connection here does: no tickets, no client certificates; while it is unknown the epoch
/// is used).
pub fn server_config(
    provider: &Arc<CryptoProvider>,
    clock: &'static dyn WallClock,
    chain: Vec<CertificateDer<'static>>,
    key: EcdsaP256SigningKey,
) -> Result<Arc<ServerConfig>, ServerConfigError> {
    if chain.is_empty() {
        return Err(ServerConfigError::EmptyChain);
    }
    let certified = CertifiedKey::new(chain, Arc::new(key));
    match certified.keys_match() {
        Ok(()) => {}
        Err(Error::InconsistentKeys(_)) => return Err(ServerConfigError::KeyMismatch),
        Err(_) => return Err(ServerConfigError::CertificateUnreadable),
    }
    configured(provider, clock, Arc::new(SingleCertAndKey::from(certified))).map(Arc::new)
}

/// The settings every server configuration here shares, with `resolver` choosing the
/// certificate.
fn configured(
    provider: &Arc<CryptoProvider>,
    clock: &'static dyn WallClock,
    resolver: Arc<dyn ResolvesServerCert>,
) -> Result<ServerConfig, ServerConfigError> {
    let mut config = ServerConfig::builder_with_details(provider.clone(), Arc::new(ClockTime::lenient(clock)))
        .with_protocol_versions(MinimumTls::Tls12.versions())
        .map_err(ServerConfigError::Versions)?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    // The provider's order (ChaCha20-Poly1305 first), not the client's.
    config.ignore_client_order = true;
    // No resumption: no TLS 1.3 tickets, no TLS 1.2 session IDs (also when a test build
    // enables rustls's `std`, which would default to a session cache).
    config.send_tls13_tickets = 0;
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.max_early_data_size = 0;
    // Records that fit the outgoing buffer (`SERVER_OUTGOING_BUFFER`).
    config.max_fragment_size = Some(SERVER_MAX_FRAGMENT_SIZE);
    Ok(config)
}

/// The ALPN protocol of the ACME TLS-ALPN-01 validation (RFC 8737 section 6.2).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// Presents the validation certificate only to handshakes offering `acme-tls/1`.
#[derive(Debug)]
struct AcmeValidationOnly(Arc<CertifiedKey>);

impl ResolvesServerCert for AcmeValidationOnly {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let mut protocols = client_hello.alpn()?;
        protocols.any(|protocol| protocol == ACME_TLS_ALPN).then(|| self.0.clone())
    }
}

/// A server configuration for the ACME TLS-ALPN-01 validation (RFC 8737): negotiates only
/// `acme-tls/1` and presents `certificate` (from
/// [`crate::identity::tls_alpn_01_certificate`]) with `key` only to a client that offers it;
/// any other handshake fails without a certificate. Otherwise the settings of
/// [`server_config`]. The certificate is not matched against the key here: rustls's check
/// parses it with webpki, which refuses the critical acmeIdentifier extension; the caller
/// makes both together.
pub fn tls_alpn_01_server_config(
    provider: &Arc<CryptoProvider>,
    clock: &'static dyn WallClock,
    certificate: CertificateDer<'static>,
    key: EcdsaP256SigningKey,
) -> Result<Arc<ServerConfig>, ServerConfigError> {
    let certified = CertifiedKey::new(alloc::vec![certificate], Arc::new(key));
    let mut config = configured(provider, clock, Arc::new(AcmeValidationOnly(Arc::new(certified))))?;
    config.alpn_protocols = alloc::vec![ACME_TLS_ALPN.to_vec()];
    Ok(Arc::new(config))
}

/// Broad classes of inbound failure, for logs and counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InboundFailure {
    /// No common parameters: an old protocol version (SSL 3, TLS 1.0/1.1), only suites without
    /// AEAD or forward secrecy, no common group or signature scheme.
    Incompatible,
    /// The client sent a fatal alert (e.g. it refused the certificate).
    ClientAlert,
    /// Not TLS, or a client that broke the protocol (bad messages, records that do not
    /// authenticate).
    Malformed,
    /// Local limits (buffers, state) or a local fault.
    Local,
}

impl TlsError {
    /// The class of a server-side failure.
    pub fn inbound_kind(&self) -> InboundFailure {
        match self {
            TlsError::Protocol(Error::PeerIncompatible(_)) => InboundFailure::Incompatible,
            TlsError::Protocol(Error::AlertReceived(_)) => InboundFailure::ClientAlert,
            TlsError::Protocol(
                Error::InvalidMessage(_)
                | Error::PeerMisbehaved(_)
                | Error::InappropriateMessage { .. }
                | Error::InappropriateHandshakeMessage { .. }
                | Error::DecryptError
                | Error::PeerSentOversizedRecord
                | Error::General(_),
            ) => InboundFailure::Malformed,
            TlsError::Protocol(_) | TlsError::InvalidServerName | TlsError::BufferTooSmall | TlsError::NotOpen => InboundFailure::Local,
        }
    }

    /// A short explanation of a server-side failure for the owner's log.
    pub fn describe_inbound(&self) -> &'static str {
        match self {
            TlsError::Protocol(Error::PeerIncompatible(reason)) => match reason {
                PeerIncompatible::Tls12NotOffered
                | PeerIncompatible::Tls12NotOfferedOrEnabled
                | PeerIncompatible::SupportedVersionsExtensionRequired => "client offers neither TLS 1.3 nor TLS 1.2",
                // Mandatory since TLS 1.2: what a TLS 1.0/1.1 client is refused for first.
                PeerIncompatible::SignatureAlgorithmsExtensionRequired => "client offers neither TLS 1.3 nor TLS 1.2 (no signature_algorithms)",
                PeerIncompatible::NoCipherSuitesInCommon => "client offers no ECDHE + AEAD cipher suite",
                PeerIncompatible::NoKxGroupsInCommon => "client offers neither X25519 nor P-256",
                PeerIncompatible::NoSignatureSchemesInCommon => "client does not accept ECDSA P-256 signatures",
                _ => "no common TLS parameters",
            },
            TlsError::Protocol(Error::AlertReceived(AlertDescription::BadCertificate | AlertDescription::UnknownCA)) => {
                "client refused the certificate"
            }
            TlsError::Protocol(Error::AlertReceived(_)) => "client sent a TLS alert",
            TlsError::Protocol(Error::DecryptError) => "record failed authentication",
            TlsError::Protocol(Error::InvalidMessage(_)) => "not a valid TLS message",
            TlsError::Protocol(Error::PeerMisbehaved(_) | Error::InappropriateMessage { .. } | Error::InappropriateHandshakeMessage { .. }) => {
                "client broke the TLS protocol"
            }
            TlsError::Protocol(_) => "TLS failure",
            TlsError::InvalidServerName => "invalid server name",
            TlsError::BufferTooSmall => "TLS record larger than the buffers",
            TlsError::NotOpen => "TLS connection not open",
        }
    }
}

/// One TLS server connection.
pub type TlsServer<'b> = TlsConnection<'b, UnbufferedServerConnection>;

impl<'b> TlsConnection<'b, UnbufferedServerConnection> {
    /// Waits for a ClientHello. `incoming` should hold [`RECORD_BUFFER`] octets; `outgoing`
    /// at least [`SERVER_OUTGOING_BUFFER`] (the flight goes out a record at a time, larger
    /// writes are split). `config` is [`server_config`]'s or [`tls_alpn_01_server_config`]'s:
    /// one whose records may be larger than `outgoing` is refused
    /// ([`TlsError::BufferTooSmall`]).
    pub fn new(config: Arc<ServerConfig>, incoming: &'b mut [u8], outgoing: &'b mut [u8]) -> Result<Self, TlsError> {
        if outgoing.len() < SERVER_OUTGOING_BUFFER || config.max_fragment_size.is_none_or(|size| size > SERVER_MAX_FRAGMENT_SIZE) {
            return Err(TlsError::BufferTooSmall);
        }
        let connection = UnbufferedServerConnection::new(config)?;
        TlsConnection::start(connection, incoming, outgoing, SERVER_FRAGMENT)
    }
}
