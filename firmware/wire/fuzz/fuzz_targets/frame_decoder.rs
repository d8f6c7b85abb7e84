//! Fuzz target: the frame receiver and decoder on arbitrary bytes never panic, and whatever
//! they accept re-encodes to the same payload.
#![no_main]

use homemx_wire::frame::{decode_frame, encode_frame, FrameReceiver, Received};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut receiver = FrameReceiver::new();
    let mut input = data;
    while !input.is_empty() {
        let (consumed, received) = receiver.push(input);
        assert!(consumed >= 1 && consumed <= input.len());
        input = &input[consumed..];
        if let Received::Frame(length) = received {
            if let Ok(payload) = decode_frame(receiver.frame(length)) {
                let payload = payload.to_vec();
                let mut encoded = [0u8; homemx_wire::MAX_ENCODED_FRAME];
                let written = encode_frame(&payload, &mut encoded).expect("an accepted payload re-encodes");
                let mut again = encoded[..written - 1].to_vec();
                assert_eq!(decode_frame(&mut again).expect("round trip"), &payload[..]);
            }
        }
    }
});
