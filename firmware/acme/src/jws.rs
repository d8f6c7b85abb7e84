//! The JSON Web Signatures ACME requests are made of (RFC 8555 section 6.2): the account key's
//! JWK (RFC 7517/7518) and its RFC 7638 thumbprint, flattened JWS serialization signed ES256
//! (ECDSA P-256 with SHA-256, the raw 64-byte `r || s`, RFC 7518 section 3.4) with the
//! protected header `{alg, jwk | kid, nonce, url}`, the External Account Binding of a new
//! account (section 7.3.4: an HS256 JWS over the account's JWK, keyed by the CA's MAC key),
//! key authorizations (section 8.1) and the TLS-ALPN-01 digest (RFC 8737 section 3).
//!
//! The account key is a [`DeviceKey`] of its own (not the TLS key): P-256, generated and kept
//! by the device like the TLS key. Calls homemx-tls's key, sha2 and hmac.

use alloc::string::String;

use hmac::{Hmac, Mac as _};
use homemx_tls::identity::DeviceKey;
use sha2::{Digest as _, Sha256};

use crate::base64url;
use crate::json::push_string;

/// The account's public key as a JWK in the member order and without white space RFC 7638
/// section 3.2 prescribes (`crv`, `kty`, `x`, `y`): the same text serves in the `jwk` header
/// and as the thumbprint's input.
pub fn jwk(key: &DeviceKey) -> String {
    let point = key.public_point();
    let mut out = String::with_capacity(120);
    out.push_str("{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"");
    base64url::encode_into(point.get(1..33).unwrap_or(&[]), &mut out);
    out.push_str("\",\"y\":\"");
    base64url::encode_into(point.get(33..65).unwrap_or(&[]), &mut out);
    out.push_str("\"}");
    out
}

/// The RFC 7638 thumbprint of the account key: base64url(SHA-256(JWK)).
pub fn thumbprint(key: &DeviceKey) -> String {
    base64url::encode(&Sha256::digest(jwk(key).as_bytes()))
}

/// Who signs: a new account names its key (`jwk`); every later request names the account URL
/// (`kid`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signer<'a> {
    Jwk,
    Kid(&'a str),
}

/// The flattened JWS of `payload` (`None`: the empty payload of a POST-as-GET) for `url`
/// with the server's `nonce`, signed ES256 by `key`.
pub fn sign(key: &DeviceKey, signer: Signer<'_>, nonce: &str, url: &str, payload: Option<&str>) -> String {
    let mut protected = String::with_capacity(256);
    protected.push_str("{\"alg\":\"ES256\",");
    match signer {
        Signer::Jwk => {
            protected.push_str("\"jwk\":");
            protected.push_str(&jwk(key));
        }
        Signer::Kid(account) => {
            protected.push_str("\"kid\":");
            push_string(&mut protected, account);
        }
    }
    protected.push_str(",\"nonce\":");
    push_string(&mut protected, nonce);
    protected.push_str(",\"url\":");
    push_string(&mut protected, url);
    protected.push('}');
    let signing_input = signing_input(&protected, payload.unwrap_or(""));
    let signature = key.sign_fixed(signing_input.as_bytes());
    flattened(&signing_input, &signature)
}

/// `base64url(protected) "." base64url(payload)`.
fn signing_input(protected: &str, payload: &str) -> String {
    let mut input = String::with_capacity(base64url::encoded_length(protected.len()) + 1 + base64url::encoded_length(payload.len()));
    base64url::encode_into(protected.as_bytes(), &mut input);
    input.push('.');
    base64url::encode_into(payload.as_bytes(), &mut input);
    input
}

/// `{"protected":…,"payload":…,"signature":…}` from the signing input and signature.
fn flattened(signing_input: &str, signature: &[u8]) -> String {
    let (protected, payload) = signing_input.split_once('.').unwrap_or((signing_input, ""));
    let mut out = String::with_capacity(signing_input.len() + 128);
    out.push_str("{\"protected\":\"");
    out.push_str(protected);
    out.push_str("\",\"payload\":\"");
    out.push_str(payload);
    out.push_str("\",\"signature\":\"");
    base64url::encode_into(signature, &mut out);
    out.push_str("\"}");
    out
}

/// The `externalAccountBinding` member of a new-account request (RFC 8555 section 7.3.4): a
/// flattened JWS with protected header `{"alg":"HS256","kid":key_id,"url":new_account_url}`
/// over the account key's JWK, MACed with HMAC-SHA256 under `mac_key` (the CA's key, already
/// decoded from its base64url form).
pub fn external_account_binding(key: &DeviceKey, key_id: &str, mac_key: &[u8], new_account_url: &str) -> String {
    let mut protected = String::with_capacity(128);
    protected.push_str("{\"alg\":\"HS256\",\"kid\":");
    push_string(&mut protected, key_id);
    protected.push_str(",\"url\":");
    push_string(&mut protected, new_account_url);
    protected.push('}');
    let signing_input = signing_input(&protected, &jwk(key));
    // HMAC accepts keys of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(mac_key).unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(signing_input.as_bytes());
    flattened(&signing_input, &mac.finalize().into_bytes())
}

/// The key authorization for a challenge `token` (RFC 8555 section 8.1): `token "."
/// thumbprint`. HTTP-01 serves it as the body of `/.well-known/acme-challenge/<token>`.
pub fn key_authorization(token: &str, thumbprint: &str) -> String {
    let mut out = String::with_capacity(token.len() + 1 + thumbprint.len());
    out.push_str(token);
    out.push('.');
    out.push_str(thumbprint);
    out
}

/// The TLS-ALPN-01 digest (RFC 8737 section 3): SHA-256 of the key authorization, which the
/// validation certificate carries in its critical acmeIdentifier extension.
pub fn tls_alpn_digest(key_authorization: &str) -> [u8; 32] {
    Sha256::digest(key_authorization.as_bytes()).into()
}

/// The DER of the acmeIdentifier extension's value (OID 1.3.6.1.5.5.7.1.31): an OCTET STRING
/// of the 32-byte digest.
pub fn acme_identifier_value(key_authorization: &str) -> [u8; 34] {
    let mut value = [0u8; 34];
    value[0] = 0x04;
    value[1] = 0x20;
    value[2..].copy_from_slice(&tls_alpn_digest(key_authorization));
    value
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Verifier as _;

    /// A fixed account key (the scalar `jpsQnnGQ…` in base64url). The expected JWK,
    /// thumbprint, key authorization, digest and EAB below were computed independently with
    /// Python (`cryptography` for the public point, `json`, `hashlib`, `hmac`, `base64`), and
    /// the ES256 JWS was verified with Python `cryptography`'s ECDSA verify.
    fn fixed_key() -> DeviceKey {
        DeviceKey::from_stored(&base64url::decode("jpsQnnGQmL-YBIffH1136cLNYJs2FbR2-NUzqbe7lUM").unwrap()).unwrap()
    }

    const JWK: &str =
        r#"{"crv":"P-256","kty":"EC","x":"waHuwno_YWeM8CXYGtJKJcHI75ac-T4ce_gDuuIlZdo","y":"Vf_HO3bvzaK1by9YALHep4JOjWQ6iQ1gY-CSwTOupKw"}"#;
    const THUMBPRINT: &str = "SyhXq3ppo8XsawUxsqV9kl7RUJTyYq8gP_Lq5ALSxCg";
    const TOKEN: &str = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA";

    #[test]
    fn jwk_and_thumbprint_match_an_independent_computation() {
        let key = fixed_key();
        assert_eq!(jwk(&key), JWK);
        assert_eq!(thumbprint(&key), THUMBPRINT);
        // The JWK is valid JSON with exactly the four members.
        let parsed = crate::json::parse(JWK.as_bytes()).unwrap();
        assert_eq!(parsed.get("crv").unwrap().as_str(), Some("P-256"));
    }

    #[test]
    fn key_authorization_and_tls_alpn_digest() {
        let authorization = key_authorization(TOKEN, THUMBPRINT);
        assert_eq!(authorization, "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA.SyhXq3ppo8XsawUxsqV9kl7RUJTyYq8gP_Lq5ALSxCg");
        let digest = tls_alpn_digest(&authorization);
        let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
        assert_eq!(hex, "34097d7f959183c9df4a7f3fcabd76cb7ec69adccb04d50c9a4c4faa363aa5c1");
        let value = acme_identifier_value(&authorization);
        assert_eq!(value[..2], [0x04, 0x20]);
        assert_eq!(value[2..], digest);
    }

    #[test]
    fn external_account_binding_matches_an_independent_hmac() {
        // Pebble's example EAB key "kid-1".
        let mac_key = base64url::decode("zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W").unwrap();
        let binding = external_account_binding(&fixed_key(), "kid-1", &mac_key, "https://127.0.0.1:14000/sign-me-up");
        assert_eq!(
            binding,
            concat!(
                r#"{"protected":"eyJhbGciOiJIUzI1NiIsImtpZCI6ImtpZC0xIiwidXJsIjoiaHR0cHM6Ly8xMjcuMC4wLjE6MTQwMDAvc2lnbi1tZS11cCJ9","#,
                r#""payload":"eyJjcnYiOiJQLTI1NiIsImt0eSI6IkVDIiwieCI6IndhSHV3bm9fWVdlTThDWFlHdEpLSmNISTc1YWMtVDRjZV9nRHV1SWxaZG8iLCJ5IjoiVmZfSE8zYnZ6YUsxYnk5WUFMSGVwNEpPaldRNmlRMWdZLUNTd1RPdXBLdyJ9","#,
                r#""signature":"tiSbD5SZr1HzZZQZle7c-A2VZcAFQ1rjNS8HpX5lExo"}"#
            )
        );
    }

    /// Splits a flattened JWS, checks its ES256 signature with p256 against `key`, and returns
    /// the decoded protected header and payload.
    fn open(jws: &str, key: &DeviceKey) -> (crate::json::Value, Vec<u8>) {
        let value = crate::json::parse(jws.as_bytes()).unwrap();
        let protected = value.get("protected").unwrap().as_str().unwrap();
        let payload = value.get("payload").unwrap().as_str().unwrap();
        let signature = base64url::decode(value.get("signature").unwrap().as_str().unwrap()).unwrap();
        assert_eq!(signature.len(), 64);
        let verifying = p256::ecdsa::VerifyingKey::from_sec1_bytes(&key.public_point()).unwrap();
        let signature = p256::ecdsa::Signature::from_slice(&signature).unwrap();
        verifying.verify(format!("{protected}.{payload}").as_bytes(), &signature).unwrap();
        let header = crate::json::parse(&base64url::decode(protected).unwrap()).unwrap();
        (header, base64url::decode(payload).unwrap())
    }

    #[test]
    fn es256_jws_with_jwk_and_with_kid() {
        let key = fixed_key();
        let url = "https://127.0.0.1:14000/sign-me-up";
        let jws = sign(&key, Signer::Jwk, "zincNonce_1", url, Some(r#"{"termsOfServiceAgreed":true}"#));
        // RFC 6979 makes the signature deterministic; this exact text was verified with Python.
        assert_eq!(
            jws,
            concat!(
                r#"{"protected":"eyJhbGciOiJFUzI1NiIsImp3ayI6eyJjcnYiOiJQLTI1NiIsImt0eSI6IkVDIiwieCI6IndhSHV3bm9fWVdlTThDWFlHdEpLSmNISTc1YWMtVDRjZV9nRHV1SWxaZG8iLCJ5IjoiVmZfSE8zYnZ6YUsxYnk5WUFMSGVwNEpPaldRNmlRMWdZLUNTd1RPdXBLdyJ9LCJub25jZSI6InppbmNOb25jZV8xIiwidXJsIjoiaHR0cHM6Ly8xMjcuMC4wLjE6MTQwMDAvc2lnbi1tZS11cCJ9","#,
                r#""payload":"eyJ0ZXJtc09mU2VydmljZUFncmVlZCI6dHJ1ZX0","#,
                r#""signature":"rQcHd95CV7XKacJSbjdFiRSm2BkAogSSYn3MGJYlKuhb8pZjL2wuFPFkGtrroz3Gv7kgE_gNehXOmW4G4uihJg"}"#
            )
        );
        let (header, payload) = open(&jws, &key);
        assert_eq!(header.get("alg").unwrap().as_str(), Some("ES256"));
        assert_eq!(header.get("nonce").unwrap().as_str(), Some("zincNonce_1"));
        assert_eq!(header.get("url").unwrap().as_str(), Some(url));
        assert!(header.get("kid").is_none());
        assert_eq!(header.get("jwk").unwrap(), &crate::json::parse(JWK.as_bytes()).unwrap());
        assert_eq!(payload, br#"{"termsOfServiceAgreed":true}"#);

        let account = "https://127.0.0.1:14000/my-account/1";
        let jws = sign(&key, Signer::Kid(account), "n2", "https://127.0.0.1:14000/order/\"x", None);
        let (header, payload) = open(&jws, &key);
        assert_eq!(header.get("kid").unwrap().as_str(), Some(account));
        assert!(header.get("jwk").is_none());
        assert_eq!(header.get("url").unwrap().as_str(), Some("https://127.0.0.1:14000/order/\"x"));
        assert!(payload.is_empty());
        assert!(jws.contains(r#""payload":"""#));

        // Another key's signature does not verify.
        let other = DeviceKey::generate(&mut rand_core::OsRng);
        let result = std::panic::catch_unwind(|| open(&jws, &other));
        assert!(result.is_err());
    }
}
