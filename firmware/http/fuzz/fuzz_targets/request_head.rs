//! Fuzz target: the request-head parser on arbitrary bytes. It must never panic; a head it
//! accepts must be the first CRLF CRLF-terminated block within the limit, with the path,
//! query and host borrowed from it and well formed; the same request arriving in pieces must
//! only ever be "incomplete" before its last byte; bytes after the head must not matter.
#![no_main]

use homemx_http::{parse_request_head, ParseError, MAX_HEAD_LENGTH};
use libfuzzer_sys::fuzz_target;

fn within(outer: &[u8], inner: &str) -> bool {
    let start = outer.as_ptr() as usize;
    let inner_start = inner.as_ptr() as usize;
    inner_start >= start && inner_start + inner.len() <= start + outer.len()
}

fuzz_target!(|data: &[u8]| {
    let result = parse_request_head(data);
    assert_eq!(result, parse_request_head(data), "deterministic");
    let first_end = data.windows(4).position(|window| window == b"\r\n\r\n").map(|position| position + 4);
    match result {
        Ok(head) => {
            assert_eq!(Some(head.head_length), first_end);
            assert!(head.head_length <= MAX_HEAD_LENGTH && head.head_length <= data.len());
            let block = &data[..head.head_length];
            assert!(within(block, head.path) && within(block, head.host));
            assert!(head.path.starts_with('/') && !head.path.contains('?'));
            assert!(head.path.bytes().all(|byte| (0x21..0x7f).contains(&byte)));
            if let Some(query) = head.query {
                assert!(within(block, query));
                assert!(query.bytes().all(|byte| (0x21..0x7f).contains(&byte)));
            }
            assert!(!head.host.is_empty());
            assert!(head.host.bytes().all(|byte| byte.is_ascii_alphanumeric() || b".-[]:".contains(&byte)));
            // Bytes after the head (a pipelined request, a body) do not change it.
            assert_eq!(parse_request_head(block), Ok(head));
            // The same request cut by the network is "incomplete" until its last byte.
            for cut in [1, head.head_length / 2, head.head_length - 3, head.head_length - 2, head.head_length - 1] {
                if cut < head.head_length {
                    assert_eq!(parse_request_head(&data[..cut]), Err(ParseError::Incomplete), "cut at {cut}");
                }
            }
        }
        Err(ParseError::Incomplete) => {
            assert!(first_end.is_none());
            assert!(data.len() < MAX_HEAD_LENGTH);
        }
        Err(ParseError::HeadTooLarge) => {
            assert!(first_end.is_none_or(|end| end > MAX_HEAD_LENGTH) || data.split(|&b| b == b'\n').count() > 32);
        }
        Err(ParseError::Malformed) | Err(ParseError::UnsupportedVersion) => {}
    }
});
