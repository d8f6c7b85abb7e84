//! Fuzz target: the DATA decoder fed arbitrary bytes in arbitrary chunks; the body it gives
//! never contains a bare CR or LF, and chunking never changes where the message ends,
//! whether it is refused, or (if it is not) its body.
#![no_main]

use homemx_smtp::data::{DataDecoder, DataStep};
use libfuzzer_sys::fuzz_target;

fn decode(input: &[u8], chunk: usize) -> (Vec<u8>, bool, Option<homemx_smtp::data::DataFault>, usize) {
    let mut decoder = DataDecoder::new(1000, 1 << 16);
    let mut pending: Vec<u8> = Vec::new();
    let mut body = Vec::new();
    let mut fed = 0;
    loop {
        let outcome = decoder.step(&pending);
        assert!(outcome.consumed <= pending.len());
        match outcome.step {
            DataStep::Body { start, end } => body.extend_from_slice(&pending[start..end]),
            DataStep::End => {
                pending.drain(..outcome.consumed);
                return (body, true, decoder.fault(), fed - pending.len());
            }
            DataStep::NeedMore => {
                assert!(pending.len() <= 2, "the decoder holds back at most two bytes");
                if fed == input.len() {
                    return (body, false, decoder.fault(), fed - pending.len());
                }
                let next = (fed + chunk).min(input.len());
                pending.extend_from_slice(&input[fed..next]);
                fed = next;
            }
            DataStep::Skipped | DataStep::Fault(_) => {}
        }
        pending.drain(..outcome.consumed);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, input)) = data.split_first() else { return };
    let whole = decode(input, input.len().max(1));
    let chunked = decode(input, usize::from(chunk % 16) + 1);
    // A refused message's partial body is discarded by the caller, so it may differ.
    assert_eq!((whole.1, whole.2, whole.3), (chunked.1, chunked.2, chunked.3));
    if whole.2.is_none() {
        assert_eq!(whole.0, chunked.0);
    }
    let (body, _, fault, _) = whole;
    if fault.is_none() {
        for (index, &byte) in body.iter().enumerate() {
            if byte == b'\r' {
                assert_eq!(body.get(index + 1), Some(&b'\n'), "bare CR in a clean body");
            }
            if byte == b'\n' {
                assert!(index > 0 && body[index - 1] == b'\r', "bare LF in a clean body");
            }
        }
    }
});
