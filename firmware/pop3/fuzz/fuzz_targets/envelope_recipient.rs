//! Fuzz target: `envelope_recipient` on arbitrary header blocks must never panic, and what it
//! returns is a bounded addr-spec with a lowercase domain.
#![no_main]

use homemx_pop3::envelope_recipient;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let names = ["Delivered-To", "X-Original-To", "Envelope-To"];
    for candidate in [envelope_recipient(data, &names), envelope_recipient(data, &["X-Original-To", ""])] {
        if let Some(address) = candidate {
            assert!(address.len() <= 254);
            let at = address.rfind('@').expect("an address has an @");
            let domain = &address[at + 1..];
            assert!(!domain.is_empty() && !domain.bytes().any(|b| b.is_ascii_uppercase()));
            assert!(!address.bytes().any(|b| b == b'\r' || b == b'\n'));
        }
    }
});
