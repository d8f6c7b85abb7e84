//! Makes the device-side inputs of the identity fixtures (`tests/fixtures/identity/generate.sh`
//! runs it): a test device key, and from it the certificate request or a self-signed
//! certificate, through the same `homemx_tls::identity` code the firmware uses.
//!
//! - `key`: a new key from the OS's random source; prints its stored form (the raw scalar) in
//!   hex. A test key only: real keys are made on the device and never leave it.
//! - `csr KEY_HEX HOST`: prints the PEM certificate request.
//! - `self-signed KEY_HEX HOST NOT_BEFORE DAYS`: prints a PEM self-signed certificate.

use homemx_tls::identity::{certificate_request, pem, self_signed_certificate, DeviceKey, HostName};

fn key_from_hex(hex: &str) -> DeviceKey {
    let hex = hex.trim();
    let bytes: Vec<u8> = (0..hex.len() / 2).map(|index| u8::from_str_radix(&hex[2 * index..2 * index + 2], 16).expect("hex key")).collect();
    DeviceKey::from_stored(&bytes).expect("a stored P-256 key")
}

fn main() {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let arguments: Vec<&str> = arguments.iter().map(String::as_str).collect();
    match arguments[..] {
        ["key"] => {
            let key = DeviceKey::generate(&mut rand_core::OsRng);
            let hex: String = key.to_stored().iter().map(|byte| format!("{byte:02x}")).collect();
            println!("{hex}");
        }
        ["csr", key, host] => {
            let key = key_from_hex(key);
            let host = HostName::new(host).expect("host name");
            print!("{}", pem::encode(pem::CERTIFICATE_REQUEST, &certificate_request(&key, &host).expect("request")));
        }
        ["self-signed", key, host, not_before, days] => {
            let key = key_from_hex(key);
            let host = HostName::new(host).expect("host name");
            let certificate = self_signed_certificate(&key, &host, not_before.parse().expect("seconds"), days.parse().expect("days"), &mut rand_core::OsRng)
                .expect("certificate");
            print!("{}", pem::encode(pem::CERTIFICATE, &certificate));
        }
        _ => {
            eprintln!("usage: identity_fixture key | csr KEY_HEX HOST | self-signed KEY_HEX HOST NOT_BEFORE DAYS");
            std::process::exit(2);
        }
    }
}
