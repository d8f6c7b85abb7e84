//! `homemx tls`: the device's TLS identity. `csr` fetches the certificate request the device
//! signed with its own key (the key never leaves the device), `install` sends a CA-issued
//! chain in PEM chunks (the device checks it against its key, host name and clock, and keeps
//! its old certificate when it refuses), `tlsa` the DANE record for the key in use (the device
//! reports the SPKI digests; homemx-dyndns's `TlsaLine` writes the record, the same module the
//! device's DNS check judges published records with), `status` lines for `homemx status`.

use std::path::Path;

use homemx_wire::message::{
    CertificateRefusal, CertificateReport, ChainChunk, Command as Wire, ErrorCode, Response, MAX_CHAIN_CHUNK, MAX_CHAIN_PEM,
};

use crate::console::{unexpected, Console};
use crate::error::{CliError, ExitCode, Result};

/// The request as PEM text (RFC 7468: 64-column base64 between the labels).
pub fn request_pem(der: &[u8]) -> String {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(der);
    let mut text = String::from("-----BEGIN CERTIFICATE REQUEST-----\n");
    for line in encoded.as_bytes().chunks(64) {
        text.push_str(std::str::from_utf8(line).unwrap_or_default());
        text.push('\n');
    }
    text.push_str("-----END CERTIFICATE REQUEST-----\n");
    text
}

/// Asks the device for its certificate request (DER).
pub fn certificate_request(console: &mut Console) -> Result<Vec<u8>> {
    match console.call(&Wire::TlsCertificateRequest)? {
        Response::CertificateRequest(der) => Ok(der.to_vec()),
        Response::Error(ErrorCode::NotFound) => Err(CliError::new(ExitCode::Refused, "the device has no host name to make a request for")
            .hint("provision a configuration first (`homemx config set`): the request is for its host name")),
        Response::Error(code) => Err(CliError::refused("tls csr", code)),
        other => Err(unexpected("tls csr", &other)),
    }
}

/// The commands that send `chain` (PEM text) in order.
pub fn install_commands(chain: &[u8]) -> Result<Vec<Wire>> {
    if chain.len() > MAX_CHAIN_PEM {
        return Err(CliError::new(ExitCode::Usage, format!("the chain file is {} bytes; the device takes at most {MAX_CHAIN_PEM}", chain.len()))
            .hint("leave out the root certificate and anything but the leaf and its intermediates"));
    }
    if chain.is_empty() {
        return Err(CliError::new(ExitCode::Usage, "the chain file is empty"));
    }
    Ok(chain
        .chunks(MAX_CHAIN_CHUNK)
        .enumerate()
        .map(|(index, bytes)| {
            Wire::TlsInstall(ChainChunk {
                total_length: chain.len() as u16,
                offset: (index * MAX_CHAIN_CHUNK) as u16,
                bytes: heapless::Vec::from_slice(bytes).unwrap_or_default(),
            })
        })
        .collect())
}

/// Sends the chain in `path`; the device's refusal becomes an error saying what to do.
pub fn install(console: &mut Console, path: &Path) -> Result<()> {
    let chain = std::fs::read(path)
        .map_err(|error| CliError::new(ExitCode::Failure, format!("cannot read the chain file {}: {error}", path.display())))?;
    for command in install_commands(&chain)? {
        match console.call(&command)? {
            Response::Done => {}
            Response::Error(ErrorCode::CertificateRefused(refusal)) => {
                return Err(CliError::new(ExitCode::Refused, format!("the device refused the chain: {}", explain(&refusal)))
                    .hint("the device keeps its current certificate; `homemx status` shows it"))
            }
            Response::Error(ErrorCode::TimeUnknown) => {
                return Err(CliError::refused("tls install", ErrorCode::TimeUnknown))
            }
            Response::Error(ErrorCode::NotFound) => {
                return Err(CliError::new(ExitCode::Refused, "the device has no TLS key or host name yet")
                    .hint("provision a configuration and unlock the device, then run `homemx tls csr`"))
            }
            Response::Error(code) => return Err(CliError::refused("tls install", code)),
            other => return Err(unexpected("tls install", &other)),
        }
    }
    Ok(())
}

/// The device's certificate; `None` from a device that is locked, has none yet, or has
/// firmware older than the command (`homemx status` still works with it).
pub fn certificate(console: &mut Console) -> Result<Option<CertificateReport>> {
    match console.call(&Wire::TlsStatus)? {
        Response::Certificate(report) => Ok(report),
        Response::Error(ErrorCode::Locked | ErrorCode::UndecodableCommand) => Ok(None),
        Response::Error(code) => Err(CliError::refused("tls status", code)),
        other => Err(unexpected("tls status", &other)),
    }
}

/// The certificate report as JSON for `homemx status --json`: the digests in hex, as in the
/// TLSA record, not as arrays of numbers.
pub fn certificate_json(report: Option<&CertificateReport>) -> serde_json::Value {
    let Some(report) = report else {
        return serde_json::Value::Null;
    };
    serde_json::json!({
        "subject": report.subject.as_deref(),
        "issuer": report.issuer.as_deref(),
        "self_signed": report.self_signed,
        "not_after_unix": report.not_after_unix,
        "days_until_expiry": report.days_until_expiry,
        "host_name": report.host_name.as_str(),
        "key_sha256": hex::encode(report.key_sha256),
        "issuer_key_sha256": report.issuer_key_sha256.map(hex::encode),
    })
}

/// The TLSA record for the device's key (usage 3), or its issuing CA's key (usage 2, `issuer`):
/// the usage, the digest and the zone-file line.
pub fn tlsa_record(report: Option<&CertificateReport>, issuer: bool) -> Result<(u8, [u8; 32], String)> {
    use homemx_dyndns::dane::{TlsaLine, USAGE_DANE_EE, USAGE_DANE_TA};
    let Some(report) = report else {
        return Err(CliError::new(ExitCode::Refused, "the device has no certificate yet (or is locked)")
            .hint("provision a configuration, unlock the device and let its clock be set; `homemx status` shows the certificate"));
    };
    let (usage, digest) = match (issuer, report.issuer_key_sha256) {
        (false, _) => (USAGE_DANE_EE, report.key_sha256),
        (true, Some(digest)) => (USAGE_DANE_TA, digest),
        (true, None) => {
            return Err(CliError::new(ExitCode::Refused, "the device's certificate is self-signed: there is no issuing CA to name")
                .hint("publish the record without --issuer (3 1 1), or install a CA-issued chain first (`homemx tls install`)"))
        }
    };
    Ok((usage, digest, TlsaLine { host: report.host_name.as_str(), usage, digest: &digest }.to_string()))
}

/// The certificate's lines for `homemx status`.
pub fn certificate_text(report: Option<&CertificateReport>) -> String {
    let Some(report) = report else {
        return "certificate  none yet (made once the device is configured, unlocked and its clock is set)".into();
    };
    let name = |name: &Option<heapless::String<64>>| name.as_ref().map_or("(no common name)".to_string(), |name| name.to_string());
    let issuer = if report.self_signed { "self-signed".to_string() } else { format!("issuer {}", name(&report.issuer)) };
    let expiry = homemx_smtp::clock::Rfc5322Date(report.not_after_unix);
    let days = match report.days_until_expiry {
        Some(days) if days < 0 => " (EXPIRED)".to_string(),
        Some(days) => format!(" (in {days} days)"),
        None => String::new(),
    };
    format!("certificate  {} ({issuer}), expires {expiry}{days}", name(&report.subject))
}

/// What is wrong with a refused chain and what to do, for people.
pub fn explain(refusal: &CertificateRefusal) -> String {
    match refusal {
        CertificateRefusal::Empty => "the chain file is empty".into(),
        CertificateRefusal::NotPem => "the chain file is not PEM text (-----BEGIN CERTIFICATE-----)".into(),
        CertificateRefusal::NoCertificate => "the chain file holds no CERTIFICATE block".into(),
        CertificateRefusal::UnexpectedBlock => {
            "the chain file holds a block other than CERTIFICATE: never include a private key (the device's key never leaves it)".into()
        }
        CertificateRefusal::TooLong => "the chain is longer than the device keeps (8 certificates, about 6 KB)".into(),
        CertificateRefusal::Malformed { index } => format!("certificate {index} is not a readable X.509 certificate"),
        CertificateRefusal::IssuerMissing => "only the leaf certificate: append the issuing CA's certificate (the full chain file)".into(),
        CertificateRefusal::WrongKey => {
            "the certificate is not for this device's key: have the CA sign the request from `homemx tls csr`".into()
        }
        CertificateRefusal::WrongName => {
            "the certificate is not valid for the device's host name (its SubjectAltName must name it)".into()
        }
        CertificateRefusal::NotYetValid { index, not_before } => {
            format!("certificate {index} is not valid before {not_before} (Unix time): check the device's clock or wait")
        }
        CertificateRefusal::Expired { index, not_after } => {
            format!("certificate {index} expired at {not_after} (Unix time): get a new certificate")
        }
        CertificateRefusal::WrongIssuer { index } => {
            format!("certificate {index} was not issued by certificate {}: wrong order (leaf first) or wrong intermediate", index + 1)
        }
        CertificateRefusal::BadSignature { index } => {
            format!("certificate {index}'s signature does not verify with certificate {}'s key", index + 1)
        }
        CertificateRefusal::NotForServers => "the certificate is not for TLS servers (extendedKeyUsage without serverAuth)".into(),
        CertificateRefusal::PathRefused => {
            "the chain breaks an RFC 5280 path rule (`homemx logs` names it): an issuer that is not a CA, a path length or name constraint".into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(issuer_key_sha256: Option<[u8; 32]>) -> CertificateReport {
        CertificateReport {
            subject: None,
            issuer: None,
            self_signed: issuer_key_sha256.is_none(),
            not_after_unix: 0,
            days_until_expiry: None,
            host_name: heapless::String::try_from("home.example.net").unwrap(),
            key_sha256: [0xAB; 32],
            issuer_key_sha256,
        }
    }

    #[test]
    fn the_status_json_gives_the_digests_in_hex() {
        let json = certificate_json(Some(&report(Some([0x01; 32]))));
        assert_eq!(json["key_sha256"], "ab".repeat(32));
        assert_eq!(json["issuer_key_sha256"], "01".repeat(32));
        assert_eq!(json["host_name"], "home.example.net");
        assert_eq!(certificate_json(Some(&report(None)))["issuer_key_sha256"], serde_json::Value::Null);
        assert_eq!(certificate_json(None), serde_json::Value::Null);
    }

    #[test]
    fn the_record_names_the_key_or_with_issuer_the_ca() {
        let (usage, digest, line) = tlsa_record(Some(&report(Some([0x01; 32]))), false).unwrap();
        assert_eq!((usage, digest), (3, [0xAB; 32]));
        assert_eq!(line, format!("_25._tcp.home.example.net. IN TLSA 3 1 1 {}", "ab".repeat(32)));
        let (usage, _, line) = tlsa_record(Some(&report(Some([0x01; 32]))), true).unwrap();
        assert_eq!(usage, 2);
        assert_eq!(line, format!("_25._tcp.home.example.net. IN TLSA 2 1 1 {}", "01".repeat(32)));
        // Self-signed: no issuer to name; no certificate: nothing to print.
        assert!(tlsa_record(Some(&report(None)), true).is_err());
        assert!(tlsa_record(None, false).is_err());
    }
}
