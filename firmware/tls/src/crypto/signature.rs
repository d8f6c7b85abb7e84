//! The signatures the appliance checks, in certificate chains and in the TLS 1.3
//! CertificateVerify: RSA (2048 to 4096 bits; PKCS#1 v1.5 in chains, PSS in both), ECDSA over
//! P-256 and P-384 with SHA-256 or SHA-384, and Ed25519. All RustCrypto.

use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{alg_id, AlgorithmIdentifier, InvalidSignature, SignatureVerificationAlgorithm};
use rustls::SignatureScheme;
use sha2::Digest as _;

/// Smallest RSA modulus accepted (NIST SP 800-131A: 112-bit security).
pub const RSA_MINIMUM_BITS: usize = 2048;
/// Largest RSA modulus accepted (bounds the verification cost: about 4x a 2048-bit key).
pub const RSA_MAXIMUM_BITS: usize = 4096;

/// Everything webpki and rustls may check with.
pub static ALGORITHMS: WebPkiSupportedAlgorithms = WebPkiSupportedAlgorithms {
    all: &[
        ECDSA_P256_SHA256,
        ECDSA_P256_SHA384,
        ECDSA_P384_SHA256,
        ECDSA_P384_SHA384,
        ED25519,
        RSA_PSS_SHA256,
        RSA_PSS_SHA384,
        RSA_PSS_SHA512,
        RSA_PKCS1_SHA256,
        RSA_PKCS1_SHA384,
        RSA_PKCS1_SHA512,
    ],
    mapping: &[
        (SignatureScheme::ECDSA_NISTP256_SHA256, &[ECDSA_P256_SHA256, ECDSA_P384_SHA256]),
        (SignatureScheme::ECDSA_NISTP384_SHA384, &[ECDSA_P384_SHA384, ECDSA_P256_SHA384]),
        (SignatureScheme::ED25519, &[ED25519]),
        (SignatureScheme::RSA_PSS_SHA256, &[RSA_PSS_SHA256]),
        (SignatureScheme::RSA_PSS_SHA384, &[RSA_PSS_SHA384]),
        (SignatureScheme::RSA_PSS_SHA512, &[RSA_PSS_SHA512]),
        (SignatureScheme::RSA_PKCS1_SHA256, &[RSA_PKCS1_SHA256]),
        (SignatureScheme::RSA_PKCS1_SHA384, &[RSA_PKCS1_SHA384]),
        (SignatureScheme::RSA_PKCS1_SHA512, &[RSA_PKCS1_SHA512]),
    ],
};

static ECDSA_P256_SHA256: &dyn SignatureVerificationAlgorithm = &Ecdsa { curve: Curve::P256, digest: Digest::Sha256 };
static ECDSA_P256_SHA384: &dyn SignatureVerificationAlgorithm = &Ecdsa { curve: Curve::P256, digest: Digest::Sha384 };
static ECDSA_P384_SHA256: &dyn SignatureVerificationAlgorithm = &Ecdsa { curve: Curve::P384, digest: Digest::Sha256 };
static ECDSA_P384_SHA384: &dyn SignatureVerificationAlgorithm = &Ecdsa { curve: Curve::P384, digest: Digest::Sha384 };
static ED25519: &dyn SignatureVerificationAlgorithm = &Ed25519;
static RSA_PSS_SHA256: &dyn SignatureVerificationAlgorithm = &Rsa { padding: Padding::Pss, digest: Digest::Sha256 };
static RSA_PSS_SHA384: &dyn SignatureVerificationAlgorithm = &Rsa { padding: Padding::Pss, digest: Digest::Sha384 };
static RSA_PSS_SHA512: &dyn SignatureVerificationAlgorithm = &Rsa { padding: Padding::Pss, digest: Digest::Sha512 };
static RSA_PKCS1_SHA256: &dyn SignatureVerificationAlgorithm = &Rsa { padding: Padding::Pkcs1, digest: Digest::Sha256 };
static RSA_PKCS1_SHA384: &dyn SignatureVerificationAlgorithm = &Rsa { padding: Padding::Pkcs1, digest: Digest::Sha384 };
static RSA_PKCS1_SHA512: &dyn SignatureVerificationAlgorithm = &Rsa { padding: Padding::Pkcs1, digest: Digest::Sha512 };

#[derive(Clone, Copy, Debug)]
enum Digest {
    Sha256,
    Sha384,
    Sha512,
}

/// A message digest of up to 64 bytes.
struct Hashed {
    bytes: [u8; 64],
    length: usize,
}

impl Hashed {
    fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.length]
    }
}

impl Digest {
    fn hash(self, message: &[u8]) -> Hashed {
        let mut bytes = [0u8; 64];
        let length = match self {
            Digest::Sha256 => {
                bytes[..32].copy_from_slice(&sha2::Sha256::digest(message));
                32
            }
            Digest::Sha384 => {
                bytes[..48].copy_from_slice(&sha2::Sha384::digest(message));
                48
            }
            Digest::Sha512 => {
                bytes.copy_from_slice(&sha2::Sha512::digest(message));
                64
            }
        };
        Hashed { bytes, length }
    }
}

#[derive(Clone, Copy, Debug)]
enum Curve {
    P256,
    P384,
}

#[derive(Debug)]
struct Ecdsa {
    curve: Curve,
    digest: Digest,
}

impl SignatureVerificationAlgorithm for Ecdsa {
    fn public_key_alg_id(&self) -> AlgorithmIdentifier {
        match self.curve {
            Curve::P256 => alg_id::ECDSA_P256,
            Curve::P384 => alg_id::ECDSA_P384,
        }
    }

    fn signature_alg_id(&self) -> AlgorithmIdentifier {
        match self.digest {
            Digest::Sha256 => alg_id::ECDSA_SHA256,
            Digest::Sha384 | Digest::Sha512 => alg_id::ECDSA_SHA384,
        }
    }

    fn verify_signature(&self, public_key: &[u8], message: &[u8], signature: &[u8]) -> Result<(), InvalidSignature> {
        use p256::ecdsa::signature::hazmat::PrehashVerifier as _;
        let hashed = self.digest.hash(message);
        // The keys are SEC1 points (checked on the curve); signatures are DER (r, s).
        match self.curve {
            Curve::P256 => {
                let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(public_key).map_err(|_| InvalidSignature)?;
                let signature = p256::ecdsa::Signature::from_der(signature).map_err(|_| InvalidSignature)?;
                key.verify_prehash(hashed.as_slice(), &signature).map_err(|_| InvalidSignature)
            }
            Curve::P384 => {
                let key = p384::ecdsa::VerifyingKey::from_sec1_bytes(public_key).map_err(|_| InvalidSignature)?;
                let signature = p384::ecdsa::Signature::from_der(signature).map_err(|_| InvalidSignature)?;
                key.verify_prehash(hashed.as_slice(), &signature).map_err(|_| InvalidSignature)
            }
        }
    }
}

#[derive(Debug)]
struct Ed25519;

impl SignatureVerificationAlgorithm for Ed25519 {
    fn public_key_alg_id(&self) -> AlgorithmIdentifier {
        alg_id::ED25519
    }

    fn signature_alg_id(&self) -> AlgorithmIdentifier {
        alg_id::ED25519
    }

    fn verify_signature(&self, public_key: &[u8], message: &[u8], signature: &[u8]) -> Result<(), InvalidSignature> {
        let key: &[u8; 32] = public_key.try_into().map_err(|_| InvalidSignature)?;
        let key = ed25519_dalek::VerifyingKey::from_bytes(key).map_err(|_| InvalidSignature)?;
        let signature = ed25519_dalek::Signature::from_slice(signature).map_err(|_| InvalidSignature)?;
        key.verify_strict(message, &signature).map_err(|_| InvalidSignature)
    }
}

#[derive(Clone, Copy, Debug)]
enum Padding {
    Pkcs1,
    Pss,
}

#[derive(Debug)]
struct Rsa {
    padding: Padding,
    digest: Digest,
}

impl SignatureVerificationAlgorithm for Rsa {
    fn public_key_alg_id(&self) -> AlgorithmIdentifier {
        alg_id::RSA_ENCRYPTION
    }

    fn signature_alg_id(&self) -> AlgorithmIdentifier {
        match (self.padding, self.digest) {
            (Padding::Pkcs1, Digest::Sha256) => alg_id::RSA_PKCS1_SHA256,
            (Padding::Pkcs1, Digest::Sha384) => alg_id::RSA_PKCS1_SHA384,
            (Padding::Pkcs1, Digest::Sha512) => alg_id::RSA_PKCS1_SHA512,
            (Padding::Pss, Digest::Sha256) => alg_id::RSA_PSS_SHA256,
            (Padding::Pss, Digest::Sha384) => alg_id::RSA_PSS_SHA384,
            (Padding::Pss, Digest::Sha512) => alg_id::RSA_PSS_SHA512,
        }
    }

    fn verify_signature(&self, public_key: &[u8], message: &[u8], signature: &[u8]) -> Result<(), InvalidSignature> {
        let key = rsa_public_key(public_key)?;
        let hashed = self.digest.hash(message);
        let scheme_result = match (self.padding, self.digest) {
            (Padding::Pkcs1, Digest::Sha256) => key.verify(rsa::Pkcs1v15Sign::new::<sha2::Sha256>(), hashed.as_slice(), signature),
            (Padding::Pkcs1, Digest::Sha384) => key.verify(rsa::Pkcs1v15Sign::new::<sha2::Sha384>(), hashed.as_slice(), signature),
            (Padding::Pkcs1, Digest::Sha512) => key.verify(rsa::Pkcs1v15Sign::new::<sha2::Sha512>(), hashed.as_slice(), signature),
            // TLS and X.509 PSS: MGF1 with the same digest, salt as long as the digest.
            (Padding::Pss, Digest::Sha256) => key.verify(rsa::Pss::new_with_salt::<sha2::Sha256>(32), hashed.as_slice(), signature),
            (Padding::Pss, Digest::Sha384) => key.verify(rsa::Pss::new_with_salt::<sha2::Sha384>(48), hashed.as_slice(), signature),
            (Padding::Pss, Digest::Sha512) => key.verify(rsa::Pss::new_with_salt::<sha2::Sha512>(64), hashed.as_slice(), signature),
        };
        scheme_result.map_err(|_| InvalidSignature)
    }
}

/// An RSAPublicKey (PKCS#1: SEQUENCE { modulus, publicExponent }) of an accepted size.
fn rsa_public_key(der_bytes: &[u8]) -> Result<rsa::RsaPublicKey, InvalidSignature> {
    use der::Reader as _;
    use rsa::traits::PublicKeyParts as _;
    let mut reader = der::SliceReader::new(der_bytes).map_err(|_| InvalidSignature)?;
    let [modulus, exponent]: [der::asn1::UintRef<'_>; 2] = reader.decode().map_err(|_| InvalidSignature)?;
    reader.finish(()).map_err(|_| InvalidSignature)?;
    let key = rsa::RsaPublicKey::new_with_max_size(
        rsa::BigUint::from_bytes_be(modulus.as_bytes()),
        rsa::BigUint::from_bytes_be(exponent.as_bytes()),
        RSA_MAXIMUM_BITS,
    )
    .map_err(|_| InvalidSignature)?;
    if key.n().bits() < RSA_MINIMUM_BITS {
        return Err(InvalidSignature);
    }
    Ok(key)
}
