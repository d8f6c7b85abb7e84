//! Trust anchors from files: a CA certificate in PEM (sent as DER), or a SHA-256 pin of the
//! SubjectPublicKeyInfo of a server certificate (derived here, so only 32 bytes go to the
//! device).

use base64::Engine;
use sha2::{Digest, Sha256};

/// Extracts the DER of every `CERTIFICATE` block in a PEM text (or takes the bytes as DER).
pub fn certificates(bytes: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    if bytes.first() == Some(&0x30) {
        return Ok(vec![bytes.to_vec()]);
    }
    let text = std::str::from_utf8(bytes).map_err(|_| "neither PEM text nor DER".to_string())?;
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN CERTIFICATE-----") {
        let body_start = start + "-----BEGIN CERTIFICATE-----".len();
        let end = rest[body_start..].find("-----END CERTIFICATE-----").ok_or("unterminated PEM block")?;
        let body: String = rest[body_start..body_start + end].chars().filter(|c| !c.is_whitespace()).collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(|error| format!("bad base64 in PEM: {error}"))?;
        found.push(der);
        rest = &rest[body_start + end..];
    }
    if found.is_empty() {
        return Err("no -----BEGIN CERTIFICATE----- block".into());
    }
    Ok(found)
}

/// One DER element: (tag, header length, content length).
fn element(bytes: &[u8]) -> Option<(u8, usize, usize)> {
    let tag = *bytes.first()?;
    let first = *bytes.get(1)? as usize;
    let (header, length) = if first < 0x80 {
        (2, first)
    } else {
        let count = first & 0x7f;
        if count == 0 || count > 3 {
            return None;
        }
        let mut length = 0usize;
        for index in 0..count {
            length = (length << 8) | *bytes.get(2 + index)? as usize;
        }
        (2 + count, length)
    };
    (header + length <= bytes.len()).then_some((tag, header, length))
}

/// The DER of the SubjectPublicKeyInfo of an X.509 certificate.
pub fn subject_public_key_info(certificate: &[u8]) -> Result<&[u8], String> {
    let bad = || "not an X.509 certificate (DER)".to_string();
    let (tag, header, _) = element(certificate).ok_or_else(bad)?;
    if tag != 0x30 {
        return Err(bad());
    }
    let tbs = &certificate[header..];
    let (tag, header, length) = element(tbs).ok_or_else(bad)?;
    if tag != 0x30 {
        return Err(bad());
    }
    let mut fields = &tbs[header..header + length];
    // [0] version (optional), serial, signature, issuer, validity, subject, then the SPKI.
    let mut index = 0;
    loop {
        let (tag, header, length) = element(fields).ok_or_else(bad)?;
        if tag == 0xa0 && index == 0 {
            fields = &fields[header + length..];
            continue;
        }
        if index == 5 {
            if tag != 0x30 {
                return Err(bad());
            }
            return Ok(&fields[..header + length]);
        }
        fields = &fields[header + length..];
        index += 1;
    }
}

/// SHA-256 of the certificate's SubjectPublicKeyInfo: the pin.
pub fn spki_pin(certificate: &[u8]) -> Result<[u8; 32], String> {
    Ok(Sha256::digest(subject_public_key_info(certificate)?).into())
}
