//! Fuzz target: the check-IP and dyndns2 answer parsers on arbitrary bodies; they must never
//! panic, an accepted address must be written in the body, and every answer has a class.
#![no_main]

use homemx_dyndns::checkip::{parse_public_address, write_address};
use homemx_dyndns::dyndns2::{parse_update_answer, parse_update_response, UpdateAnswer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(ip) = parse_public_address(data) {
        let mut text = [0u8; 15];
        let length = write_address(ip, &mut text).expect("15 bytes fit any address");
        assert!(data.windows(length).any(|window| window == &text[..length]), "address not in body");
    }
    let answer = parse_update_answer(data);
    let _ = answer.class();
    if let UpdateAnswer::Good(Some(ip)) | UpdateAnswer::NoChange(Some(ip)) = answer {
        let mut text = [0u8; 15];
        let length = write_address(ip, &mut text).expect("15 bytes fit any address");
        assert!(data.windows(length).any(|window| window == &text[..length]));
    }
    if let Some((status, body)) = data.split_first_chunk::<2>() {
        let status = u16::from_le_bytes(*status) % 1000;
        let _ = parse_update_response(status, body).class();
    }
});
