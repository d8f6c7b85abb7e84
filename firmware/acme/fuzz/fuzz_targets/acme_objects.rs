//! Fuzz target: the JSON reader and every ACME object reader on arbitrary bodies, plus the
//! RFC 3339, URL, base64url and Retry-After readers on the same bytes as text; none may panic,
//! an accepted document must be within the limits, and base64url must round-trip.
#![no_main]

use homemx_acme::json::{self, Value};
use homemx_acme::objects::{Account, Authorization, Challenge, Directory, Order, Problem, RenewalInfo};
use homemx_acme::{base64url, client, time, url};
use libfuzzer_sys::fuzz_target;

fn depth(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(members) => 1 + members.iter().map(|(_, value)| depth(value)).max().unwrap_or(0),
        _ => 0,
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = json::parse(data) {
        assert!(data.len() <= json::MAX_DOCUMENT);
        assert!(depth(&value) <= json::MAX_DEPTH);
    }
    let _ = Directory::parse(data);
    let _ = Account::parse(data);
    let _ = Order::parse(data, "mx.example.test");
    let _ = Authorization::parse(data, "mx.example.test");
    let _ = Challenge::parse(data);
    let _ = Problem::parse(data);
    let _ = RenewalInfo::parse(data);
    if let Ok(text) = core::str::from_utf8(data) {
        let _ = time::parse_rfc3339(text);
        let _ = url::parse(text);
        let _ = client::parse_retry_after(text, 1_796_425_550);
        let _ = time::parse_http_date(text);
        if let Some(bytes) = base64url::decode(text) {
            assert_eq!(base64url::encode(&bytes), text);
        }
    }
});
