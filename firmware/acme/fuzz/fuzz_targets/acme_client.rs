//! Fuzz target: the issuance state machine fed arbitrary answers. The input is split into
//! answers at `\0`; each answer's first two bytes choose the status (from a table of the ones
//! ACME uses) and the headers given, the rest is the body, optionally after a valid answer
//! for the request's step (so the fuzzer reaches the later steps). The client must never
//! panic, end within the answers given, and never report a chain that was not checked.
#![no_main]

use homemx_acme::client::{Action, Client, Config, Response};
use homemx_acme::url;
use homemx_tls::identity::{DeviceKey, HostName};
use libfuzzer_sys::fuzz_target;

const STATUSES: [u16; 8] = [200, 201, 204, 400, 403, 404, 429, 500];

/// Plausible bodies per request path, so mutations start from something the client accepts.
fn template(path: &str) -> &'static str {
    match path {
        "/dir" => r#"{"newNonce":"https://ca.test/nonce","newAccount":"https://ca.test/acct","newOrder":"https://ca.test/order"}"#,
        "/acct" => r#"{"status":"valid"}"#,
        "/order" | "/order/1" => {
            r#"{"status":"pending","identifiers":[{"type":"dns","value":"mx.example.test"}],"authorizations":["https://ca.test/authz/1"],"finalize":"https://ca.test/finalize/1"}"#
        }
        "/authz/1" => {
            r#"{"status":"pending","identifier":{"type":"dns","value":"mx.example.test"},"challenges":[{"type":"http-01","url":"https://ca.test/chall/1","token":"evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA","status":"pending"}]}"#
        }
        "/chall/1" => r#"{"type":"http-01","url":"https://ca.test/chall/1","token":"evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA","status":"processing"}"#,
        _ => "",
    }
}

fuzz_target!(|data: &[u8]| {
    let account_key = DeviceKey::from_stored(&[1u8; 32]).unwrap();
    let device_key = DeviceKey::from_stored(&[2u8; 32]).unwrap();
    let mut config = Config::new(url::parse("https://ca.test/dir").unwrap(), HostName::new("mx.example.test").unwrap(), true);
    config.poll_interval_ms = 0;
    let mut client = Client::new(config, &account_key, &device_key);
    let mut answers = data.split(|&byte| byte == 0);
    for _ in 0..64 {
        let request = match client.poll() {
            Action::Send { request, .. } => request,
            Action::Done => {
                assert!(client.issued().is_some());
                return;
            }
            Action::Failed => {
                assert!(client.error().is_some() && client.issued().is_none() && client.pending_challenge().is_none());
                return;
            }
        };
        let Some(answer) = answers.next() else { return };
        let (choice, rest) = match answer {
            [status, flags, rest @ ..] => ((*status, *flags), rest),
            _ => ((0, 0xff), answer),
        };
        let mut body = Vec::new();
        if choice.1 & 0x10 != 0 {
            body.extend_from_slice(template(request.url.path_and_query()).as_bytes());
        }
        body.extend_from_slice(rest);
        let body_text = std::str::from_utf8(rest).unwrap_or("");
        let response = Response {
            status: STATUSES[usize::from(choice.0) % STATUSES.len()],
            replay_nonce: (choice.1 & 1 != 0).then_some("nonce_1"),
            location: (choice.1 & 2 != 0).then_some(if choice.1 & 0x20 != 0 { body_text } else { "https://ca.test/order/1" }),
            retry_after: (choice.1 & 4 != 0).then_some(body_text),
            content_type: None,
            body: &body,
        };
        client.receive(&response, 1_796_425_550);
    }
});
