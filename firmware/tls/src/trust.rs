//! Which server the appliance talks to, as the owner decided at provisioning, turned into a
//! rustls client configuration: a CA anchor (RFC 5280 path rules through rustls-webpki, plus
//! the checks webpki leaves out) or a pinned server key. In both modes a connection is usable
//! only after the server's key signed the handshake (TLS 1.3 CertificateVerify, TLS 1.2
//! ServerKeyExchange); rustls refuses a handshake without a Certificate or that signature.
//! The oldest protocol version accepted is chosen per service ([`MinimumTls`]): TLS 1.2 means
//! its ECDHE + AEAD suites only (the provider has no others).
//!
//! CA anchor mode, beyond webpki's chain building, signatures, validity dates, basicConstraints
//! (CA:TRUE for every issuer, path length honoured), the serverAuth EKU when an EKU is present,
//! and names matched against the SANs only (never the CN, as browsers do):
//! - every issuer on the path, and the anchor, must allow keyCertSign when it has a keyUsage;
//! - the anchor's own validity dates are checked (webpki trusts anchors without dates).
//!
//! Pinned-key mode names the key (SHA-256 of the SubjectPublicKeyInfo): issuer, names and dates
//! are not looked at, so it works before the wall clock is known.

use alloc::sync::Arc;
use alloc::vec::Vec;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::time_provider::TimeProvider;
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, Error, SignatureScheme};
use sha2::{Digest as _, Sha256};

use crate::crypto::signature::ALGORITHMS;
use crate::der;

/// How the server is recognised; chosen by the owner at provisioning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trust<'a> {
    /// A CA certificate (DER): the server's chain must lead to it, the leaf must name the host,
    /// and every certificate must be valid at the wall-clock time (which must be known).
    CaAnchor(&'a [u8]),
    /// The SHA-256 of the server's SubjectPublicKeyInfo.
    PinnedKey([u8; 32]),
}

/// The wall clock as the appliance knows it (SNTP): seconds since the Unix epoch, or `None`
/// while it is not known.
pub trait WallClock: core::fmt::Debug + Send + Sync {
    /// The time now, if known.
    fn unix_seconds(&self) -> Option<u64>;
}

/// Why no configuration could be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrustError {
    /// The CA anchor is not a certificate webpki can use as a trust anchor.
    AnchorUnreadable,
    /// A CA anchor needs the wall-clock time, and it is not known yet.
    TimeUnknown,
}

/// The SHA-256 of a certificate's SubjectPublicKeyInfo (what `openssl x509 -pubkey | openssl
/// pkey -pubin -outform der | sha256sum` prints); `None` if the certificate does not parse.
pub fn spki_sha256(certificate_der: &[u8]) -> Option<[u8; 32]> {
    let spki = der::subject_public_key_info(certificate_der)?;
    Some(Sha256::digest(spki.whole).into())
}

/// The oldest TLS version a service accepts (`min_tls = "1.2" | "1.3"`). TLS 1.3 is preferred
/// either way; TLS 1.2 is only ever ECDHE with an AEAD.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MinimumTls {
    /// TLS 1.2 or 1.3 (the default: providers on older stacks still work).
    #[default]
    Tls12,
    /// TLS 1.3 only.
    Tls13,
}

impl MinimumTls {
    /// The protocol versions a configuration enables, newest first.
    pub(crate) fn versions(self) -> &'static [&'static rustls::SupportedProtocolVersion] {
        static TLS12_AND_13: [&rustls::SupportedProtocolVersion; 2] = [&rustls::version::TLS13, &rustls::version::TLS12];
        static TLS13_ONLY: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
        match self {
            MinimumTls::Tls12 => &TLS12_AND_13,
            MinimumTls::Tls13 => &TLS13_ONLY,
        }
    }
}

/// A TLS 1.3-only client configuration that trusts what `trust` says and nothing else:
/// [`client_config_with_minimum`] with [`MinimumTls::Tls13`] (what the services use until they
/// choose a minimum per service).
pub fn client_config(
    provider: &Arc<CryptoProvider>,
    clock: &'static dyn WallClock,
    trust: Trust<'_>,
) -> Result<Arc<ClientConfig>, TrustError> {
    client_config_with_minimum(provider, clock, trust, MinimumTls::Tls13)
}

/// A client configuration that trusts what `trust` says and nothing else, accepting TLS
/// versions from `minimum` up to 1.3. Never inlined: its temporaries (the builder's states,
/// the anchor's parse) are gone before the connection is made in the caller's frame.
#[inline(never)]
pub fn client_config_with_minimum(
    provider: &Arc<CryptoProvider>,
    clock: &'static dyn WallClock,
    trust: Trust<'_>,
    minimum: MinimumTls,
) -> Result<Arc<ClientConfig>, TrustError> {
    let (verifier, time): (Arc<dyn ServerCertVerifier>, Arc<dyn TimeProvider>) = match trust {
        Trust::CaAnchor(anchor) => {
            if clock.unix_seconds().is_none() {
                return Err(TrustError::TimeUnknown);
            }
            (Arc::new(Verifier(AnchorCheck::new(provider, anchor)?)), Arc::new(ClockTime { clock, required: true }))
        }
        Trust::PinnedKey(pin) => (Arc::new(Verifier(PinCheck { pin })), Arc::new(ClockTime { clock, required: false })),
    };
    let config = ClientConfig::builder_with_details(provider.clone(), time)
        .with_protocol_versions(minimum.versions())
        .map_err(|_| TrustError::AnchorUnreadable)?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    let mut config = config;
    // No resumption state kept (rustls's default without `std`; with it, a test build, a
    // 256-name session cache).
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

/// rustls's time source: the wall clock; for a pinned key (which ignores dates) the epoch
/// while the clock is unknown, so pinning works before SNTP has answered.
#[derive(Debug)]
pub(crate) struct ClockTime {
    clock: &'static dyn WallClock,
    required: bool,
}

impl ClockTime {
    /// The wall clock, or the epoch while it is unknown.
    pub(crate) fn lenient(clock: &'static dyn WallClock) -> Self {
        ClockTime { clock, required: false }
    }
}

impl TimeProvider for ClockTime {
    fn current_time(&self) -> Option<UnixTime> {
        match self.clock.unix_seconds() {
            Some(seconds) => Some(UnixTime::since_unix_epoch(core::time::Duration::from_secs(seconds))),
            None if !self.required => Some(UnixTime::since_unix_epoch(core::time::Duration::ZERO)),
            None => None,
        }
    }
}

/// The certificate half of a trust decision; [`Verifier`] adds the handshake signature check
/// that both modes share.
trait CertificateCheck: core::fmt::Debug + Send + Sync {
    /// Whether the server's certificate (chain) is the one the owner trusts.
    fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        now: UnixTime,
    ) -> Result<(), Error>;
}

/// A rustls verifier: the mode's certificate check, then (rustls calls it next, and refuses a
/// handshake without it) the server's handshake signature with that certificate's key: TLS 1.3
/// CertificateVerify, or the TLS 1.2 ServerKeyExchange over the ECDHE share and both randoms.
#[derive(Debug)]
struct Verifier<Check>(Check);

impl<Check: CertificateCheck> ServerCertVerifier for Verifier<Check> {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        self.0.check(end_entity, intermediates, server_name, now)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(message, certificate, signature, &ALGORITHMS)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(message, certificate, signature, &ALGORITHMS)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        ALGORITHMS.supported_schemes()
    }
}

/// CA anchor mode: webpki's path validation plus the anchor's dates and keyCertSign.
#[derive(Debug)]
struct AnchorCheck {
    webpki: Arc<WebPkiServerVerifier>,
    anchor_validity: (u64, u64),
}

impl AnchorCheck {
    fn new(provider: &Arc<CryptoProvider>, anchor: &[u8]) -> Result<Self, TrustError> {
        let anchor_validity = der::validity(anchor).ok_or(TrustError::AnchorUnreadable)?;
        if der::key_usage_allows_certificate_signing(anchor) == Some(false) {
            return Err(TrustError::AnchorUnreadable);
        }
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from(anchor.to_vec())).map_err(|_| TrustError::AnchorUnreadable)?;
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|_| TrustError::AnchorUnreadable)?;
        Ok(Self { webpki, anchor_validity })
    }
}

impl CertificateCheck for AnchorCheck {
    fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        now: UnixTime,
    ) -> Result<(), Error> {
        let seconds = now.as_secs();
        let (not_before, not_after) = self.anchor_validity;
        if seconds < not_before {
            return Err(CertificateError::NotValidYet.into());
        }
        if seconds > not_after {
            return Err(CertificateError::Expired.into());
        }
        // Chain to the anchor, signatures, dates, basicConstraints and path length, the
        // serverAuth EKU when present, and the name against the SANs.
        self.webpki.verify_server_cert(end_entity, intermediates, server_name, &[], now)?;
        // webpki ignores keyUsage. An intermediate the server sent that may have issued part of
        // the path (every one, since webpki does not say which it used) must allow keyCertSign
        // if it restricts its key's use at all.
        for intermediate in intermediates {
            if der::key_usage_allows_certificate_signing(intermediate) == Some(false) {
                return Err(CertificateError::UnknownIssuer.into());
            }
        }
        Ok(())
    }
}

/// Pinned-key mode: the leaf's SubjectPublicKeyInfo must hash to the pin.
#[derive(Debug)]
struct PinCheck {
    pin: [u8; 32],
}

impl CertificateCheck for PinCheck {
    fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _now: UnixTime,
    ) -> Result<(), Error> {
        let digest = spki_sha256(end_entity).ok_or(CertificateError::BadEncoding)?;
        if !constant_time_equal(&digest, &self.pin) {
            return Err(CertificateError::UnknownIssuer.into());
        }
        Ok(())
    }
}

fn constant_time_equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |difference, (x, y)| difference | (x ^ y)) == 0
}
