//! Fuzz target: the HTTP client's `ResponseParser` fed arbitrary server bytes in arbitrary
//! chunks with a small body buffer; it must never panic, never report a body larger than the
//! buffer, and give the same result as when fed everything at once. The second byte may put a
//! valid status line or head in front (libFuzzer without a sanitizer cannot see through the
//! `HTTP/1.1` comparison on its own), so the header, framing and chunk code is reached too.
#![no_main]

use homemx_http::client::{Progress, ResponseError, ResponseParser};
use libfuzzer_sys::fuzz_target;

fn run(input: &[u8], chunk: usize, capacity: usize) -> (Result<u16, ResponseError>, Vec<u8>) {
    let mut body = vec![0u8; capacity];
    let mut parser = ResponseParser::new(&mut body);
    for piece in input.chunks(chunk.max(1)) {
        match parser.feed(piece) {
            Ok(Progress::Complete) => break,
            Ok(Progress::NeedMore) => {}
            Err(error) => return (Err(error), Vec::new()),
        }
    }
    match parser.connection_closed() {
        Ok(response) => {
            assert!(response.body.len() <= capacity);
            assert!(response.status >= 200 && response.status <= 599);
            (Ok(response.status), response.body.to_vec())
        }
        Err(error) => (Err(error), Vec::new()),
    }
}

const PREFIXES: &[&[u8]] = &[
    b"",
    b"HTTP/1.1 200 OK\r\n",
    b"HTTP/1.0 200 OK\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\n",
    b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 7\r\n",
];

fuzz_target!(|data: &[u8]| {
    let Some((&settings, rest)) = data.split_first() else { return };
    let Some((&prefix, rest)) = rest.split_first() else { return };
    let mut input = PREFIXES[usize::from(prefix) % PREFIXES.len()].to_vec();
    input.extend_from_slice(rest);
    let input = &input[..];
    let chunk = usize::from(settings & 0x1f) + 1;
    let capacity = [0, 16, 64, 1024][usize::from(settings >> 5 & 3)];
    let whole = run(input, input.len(), capacity);
    let pieces = run(input, chunk, capacity);
    assert_eq!(whole, pieces, "chunking changed the result");
});
