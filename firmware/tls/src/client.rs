//! A TLS client connection (TLS 1.3, and TLS 1.2 with ECDHE + AEAD when the configuration
//! allows it) as a sans-I/O state machine over rustls's unbuffered API: the caller owns the
//! sockets and the record buffers, feeds received bytes in, sends what [`TlsClient::output`]
//! holds, and reads and writes plaintext. Nothing here blocks or sleeps; the heap holds rustls's
//! state (about 4 KB during the handshake) and one record's plaintext in rustls while it is
//! handed over; the decrypted data waits for the caller in the incoming record buffer. The
//! record pump is [`crate::connection`]'s, shared with the server.
//!
//! Order of use: after [`TlsClient::new`] and after every call that may produce records
//! (`received`, `write`, `close`), send all of [`TlsClient::output`] before waiting for input.

use alloc::sync::Arc;

use rustls::client::UnbufferedClientConnection;
use rustls::pki_types::ServerName;
use rustls::{AlertDescription, CertificateError, ClientConfig, Error};

use crate::connection::TlsConnection;
pub use crate::connection::{TlsError, RECORD_BUFFER};

/// Broad classes of failure, for alerts and logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// The server's certificate chain or key was refused (or none was presented).
    Certificate,
    /// The wall-clock time was needed and not known.
    TimeUnknown,
    /// No common TLS parameters, or the server broke the protocol.
    Handshake,
    /// The server sent a fatal alert.
    PeerAlert,
    /// Local limits (buffers, state).
    Local,
}

impl TlsError {
    /// The class of the failure.
    pub fn kind(&self) -> FailureKind {
        match self {
            TlsError::Protocol(Error::InvalidCertificate(_) | Error::NoCertificatesPresented) => FailureKind::Certificate,
            TlsError::Protocol(Error::InappropriateHandshakeMessage { .. } | Error::InappropriateMessage { .. }) => {
                // A server that skips Certificate/CertificateVerify is caught here.
                FailureKind::Certificate
            }
            TlsError::Protocol(Error::FailedToGetCurrentTime) => FailureKind::TimeUnknown,
            TlsError::Protocol(Error::AlertReceived(_)) => FailureKind::PeerAlert,
            TlsError::Protocol(_) => FailureKind::Handshake,
            TlsError::InvalidServerName | TlsError::BufferTooSmall | TlsError::NotOpen => FailureKind::Local,
        }
    }

    /// A short explanation for the owner's log.
    pub fn describe(&self) -> &'static str {
        match self {
            TlsError::Protocol(Error::InvalidCertificate(error)) => match error {
                CertificateError::UnknownIssuer => "certificate not from the provisioned anchor, or not the pinned key",
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => "certificate expired",
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => "certificate not valid yet",
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                    "certificate does not name the server"
                }
                CertificateError::BadSignature => "certificate signature invalid",
                CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
                    "certificate not for server authentication"
                }
                CertificateError::BadEncoding => "certificate unreadable",
                _ => "certificate refused",
            },
            TlsError::Protocol(Error::NoCertificatesPresented) => "server presented no certificate",
            TlsError::Protocol(Error::InappropriateHandshakeMessage { .. }) => {
                "server skipped a required handshake message (no certificate or no signature)"
            }
            TlsError::Protocol(Error::InappropriateMessage { .. }) => "unexpected message during the handshake",
            TlsError::Protocol(Error::FailedToGetCurrentTime) => "wall-clock time unknown",
            TlsError::Protocol(Error::AlertReceived(AlertDescription::ProtocolVersion)) => "server does not speak TLS 1.3 (or 1.2, if allowed)",
            TlsError::Protocol(Error::AlertReceived(AlertDescription::HandshakeFailure)) => {
                "server refused the handshake (no common parameters)"
            }
            TlsError::Protocol(Error::AlertReceived(_)) => "server sent a TLS alert",
            TlsError::Protocol(Error::PeerIncompatible(_)) => "no common TLS parameters",
            TlsError::Protocol(Error::DecryptError) => "record failed authentication",
            TlsError::Protocol(Error::InvalidMessage(_) | Error::PeerMisbehaved(_)) => "server broke the TLS protocol",
            TlsError::Protocol(_) => "TLS failure",
            TlsError::InvalidServerName => "invalid server name",
            TlsError::BufferTooSmall => "TLS record larger than the buffers",
            TlsError::NotOpen => "TLS connection not open",
        }
    }
}

/// One TLS client connection.
pub type TlsClient<'b> = TlsConnection<'b, UnbufferedClientConnection>;

impl<'b> TlsConnection<'b, UnbufferedClientConnection> {
    /// Starts a handshake with `server_name` (SNI, and the name a CA-anchored certificate must
    /// carry). `incoming` should hold [`RECORD_BUFFER`] octets; `outgoing` a few KB (records
    /// are split to fit). The ClientHello is in [`Self::output`] on return. Never inlined: the
    /// connection's making is one of the deepest calls of the firmware (rustls builds the
    /// ClientHello and sorts its extensions with a 4 KiB buffer on the stack), and inlined its
    /// temporaries sat in the caller's frame beside the configuration's.
    #[inline(never)]
    pub fn new(
        config: Arc<ClientConfig>,
        server_name: &str,
        incoming: &'b mut [u8],
        outgoing: &'b mut [u8],
    ) -> Result<Self, TlsError> {
        let name = ServerName::try_from(server_name).map_err(|_| TlsError::InvalidServerName)?.to_owned();
        let connection = UnbufferedClientConnection::new(config, name)?;
        TlsConnection::start(connection, incoming, outgoing, crate::connection::MAXIMUM_FRAGMENT)
    }
}
