//! Fuzz target: the whole device session fed arbitrary bytes never panics, always answers a
//! complete frame with one response frame, and never enrols a key or changes state without a
//! valid signature (impossible for the fuzzer to forge).
#![no_main]

use homemx_wire::device::ConsoleSession;
use homemx_wire::testing::{CountingEntropy, MemoryHandler};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut entropy = CountingEntropy::default();
    let mut handler = MemoryHandler::with_log(3);
    handler.admin_key = Some([0x42; 32]);
    let mut session = ConsoleSession::new(*b"homemx-device-01", handler.admin_key, &mut entropy);
    let before = handler.clone();
    let mut input = data;
    while !input.is_empty() {
        let reply = futures::executor::block_on(session.receive(input, &mut handler, &mut entropy));
        if let Some(frame) = reply.frame {
            assert_eq!(frame.last(), Some(&0));
        }
        input = &input[reply.consumed..];
    }
    assert_eq!(handler, before);
});
