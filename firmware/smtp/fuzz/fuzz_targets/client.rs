//! Fuzz target: a client session fed arbitrary server bytes in arbitrary chunks; it must never
//! panic, never send AUTH or MAIL before TLS when TLS is required, and end with a result for
//! every recipient once the connection closes.
#![no_main]

use homemx_smtp::{ClientConfig, ClientEvent, ClientProtocol, ClientSession, Credentials, Envelope, Now, TlsRequirement};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&settings, input)) = data.split_first() else { return };
    let config = ClientConfig {
        hostname: "mx.example.org",
        protocol: if settings & 1 != 0 { ClientProtocol::Lmtp } else { ClientProtocol::Smtp },
        tls: match settings >> 1 & 3 {
            0 => TlsRequirement::Disabled,
            1 => TlsRequirement::Opportunistic,
            _ => TlsRequirement::Required,
        },
        credentials: if settings & 8 != 0 { Some(Credentials { username: "u", password: "p" }) } else { None },
    };
    let recipients = ["a@x.example", "b@x.example", "c@x.example"];
    let envelope = Envelope { sender: "s@example.org", recipients: &recipients, size: Some(100), eight_bit: false };
    let now = Now::new(0, 0);
    let mut client = ClientSession::new(&config, envelope, false, now).unwrap();
    let chunk = usize::from(settings >> 4) + 1;
    let mut results = [false; 3];
    let mut sent = Vec::new();
    let mut rest = input;
    loop {
        while let Some(event) = client.poll(now) {
            match event {
                ClientEvent::StartTls => client.tls_established(now),
                ClientEvent::SendBody => {
                    client.send_body(b"body\r\n.\r\n");
                    client.end_body(now);
                }
                ClientEvent::RecipientResult(result) => {
                    assert!(!results[result.index], "two results for one recipient");
                    results[result.index] = true;
                }
                _ => {}
            }
            let output = client.output();
            if config.tls == TlsRequirement::Required && !client.tls_active() {
                assert!(!output.windows(4).any(|w| w == b"AUTH" || w == b"MAIL"), "sent in clear");
            }
            sent.extend_from_slice(output);
            let length = output.len();
            client.output_sent(length);
        }
        if rest.is_empty() || client.is_finished() {
            break;
        }
        let take = chunk.min(rest.len());
        let taken = client.receive(&rest[..take], now);
        rest = &rest[taken.max(take)..];
    }
    client.connection_closed();
    while let Some(event) = client.poll(now) {
        if let ClientEvent::RecipientResult(result) = event {
            assert!(!results[result.index]);
            results[result.index] = true;
        }
    }
    assert!(results.iter().all(|&r| r), "every recipient gets a result");
});
