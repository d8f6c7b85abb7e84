//! The certificate request the owner takes to a CA (`homemx tls csr`): PKCS#10 (RFC 2986),
//! subject `CN=host`, the device's public key, an extensionRequest for SubjectAltName
//! `dNSName=host`, signed ecdsa-with-SHA256 by the device key (which proves possession).

use alloc::vec::Vec;

use der::TagNumber;

use super::encode;
use super::host::HostName;
use super::key::DeviceKey;
use super::EncodeError;

/// The request (DER) for `host`; [`super::pem::encode`] with
/// [`super::pem::CERTIFICATE_REQUEST`] makes the text a CA takes.
pub fn certificate_request(key: &DeviceKey, host: &HostName) -> Result<Vec<u8>, EncodeError> {
    let extensions = encode::sequence(&[&encode::subject_alt_name(host)?])?;
    let extension_request = encode::sequence(&[&encode::oid(&encode::EXTENSION_REQUEST)?, &encode::set_of_one(&extensions)?])?;
    // attributes [0] IMPLICIT SET OF Attribute: the SET's tag replaced by [0].
    let attributes = encode::context_constructed(TagNumber::N0, &extension_request)?;
    let info = encode::sequence(&[&encode::unsigned(&[0])?, &encode::name(host)?, &key.public_key_der(), &attributes])?;
    encode::signed(&info, key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_key_and_name_give_the_same_request() {
        // RFC 6979 nonces: no randomness, so a request can be made again byte for byte.
        let key = DeviceKey::generate(&mut rand_core::OsRng);
        let host = HostName::new("mx.example.org").unwrap();
        assert_eq!(certificate_request(&key, &host).unwrap(), certificate_request(&key, &host).unwrap());
    }
}
