//! The status page: CSP hash of the inline style, verdicts, escaping of hostile names, size
//! bounds, windows, and the committed sample page.

mod common;

use homemx_status::html::{REFRESH_SECONDS, STYLE};
use homemx_status::{
    page_length, render_page, render_page_window, AlertKind, LockState, Overflow, StatusSnapshot,
    CONTENT_SECURITY_POLICY, PAGE_BUFFER_SIZE,
};
use sha2::{Digest, Sha256};

fn render(snapshot: &StatusSnapshot) -> String {
    let mut buffer = vec![0u8; PAGE_BUFFER_SIZE];
    let length = render_page(snapshot, &mut buffer).expect("fits");
    String::from_utf8(buffer[..length].to_vec()).expect("UTF-8")
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let value = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for index in 0..4 {
            if index <= chunk.len() {
                out.push(ALPHABET[(value >> (18 - 6 * index) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn base64_known_answers() {
    assert_eq!(base64(b""), "");
    assert_eq!(base64(b"f"), "Zg==");
    assert_eq!(base64(b"fo"), "Zm8=");
    assert_eq!(base64(b"foo"), "Zm9v");
    assert_eq!(base64(b"foobar"), "Zm9vYmFy");
}

#[test]
fn the_csp_allows_exactly_the_inline_style() {
    let hash = base64(&Sha256::digest(STYLE.as_bytes()));
    let expected = format!(
        "default-src 'none'; style-src 'sha256-{hash}'; img-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    );
    assert_eq!(
        CONTENT_SECURITY_POLICY, expected,
        "STYLE changed: update CONTENT_SECURITY_POLICY"
    );
    for snapshot in [common::empty(), common::busy(), common::hostile()] {
        let page = render(&snapshot);
        assert_eq!(page.matches("<style>").count(), 1);
        assert!(page.contains(&format!("<style>{STYLE}</style>")));
        assert!(
            !page.contains("style="),
            "style attributes are not covered by the hash"
        );
    }
}

#[test]
fn no_script_no_third_party_resources() {
    for snapshot in [
        common::empty(),
        common::locked(),
        common::quiet(),
        common::busy(),
        common::every_alert(),
    ] {
        let page = render(&snapshot);
        let lower = page.to_ascii_lowercase();
        for forbidden in [
            "<script",
            "javascript:",
            "http://",
            "https://",
            "src=",
            "<img",
            "<link",
            "<form",
            "<iframe",
            "cookie",
            "//",
        ] {
            assert!(!lower.contains(forbidden), "{forbidden} in page");
        }
        assert!(page.starts_with("<!DOCTYPE html>\n<html lang=\"en\">"));
        assert!(page.contains(&format!(
            "<meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\">"
        )));
        assert!(page.contains("<meta charset=\"utf-8\">"));
        assert!(page.contains("<a href=\"/status.json\">"));
        assert!(page.ends_with("</body></html>\n"));
        for tag in [
            "section", "dl", "dd", "dt", "ul", "li", "p", "h1", "h2", "header", "main", "footer",
            "time", "span",
        ] {
            assert_eq!(
                page.matches(&format!("<{tag}>")).count()
                    + page.matches(&format!("<{tag} ")).count(),
                page.matches(&format!("</{tag}>")).count(),
                "<{tag}> unbalanced"
            );
        }
    }
}

fn headline(page: &str) -> (&str, &str) {
    let class = page
        .split("<header class=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap();
    let h1 = page
        .split("<h1>")
        .nth(1)
        .and_then(|rest| rest.split("</h1>").next())
        .unwrap();
    (class, h1)
}

#[test]
fn the_verdict_heads_the_page() {
    assert_eq!(
        headline(&render(&common::quiet())),
        ("v-ok", "Mail flows — no alerts")
    );
    assert_eq!(headline(&render(&common::busy())), ("v-bad", "3 alerts"));
    assert_eq!(
        headline(&render(&common::locked())),
        ("v-warn", "Locked — unlock with the CLI")
    );
    assert_eq!(
        headline(&render(&common::empty())),
        ("v-warn", "Not set up — provision with the CLI")
    );
    let mut down = common::busy();
    down.mailbox.failing_since_ms = Some(down.system.uptime_ms - 20 * 60_000);
    down.mailbox.failure = Some(homemx_status::MailboxFailure::Unreachable);
    down.now_unix = None;
    let page = render(&down);
    assert_eq!(
        headline(&page),
        ("v-bad", "Mailbox host unreachable since boot + 3 d 3 h")
    );
    assert!(
        page.contains(
            "<p><strong>Clock not set: no time server answered</strong> · 3 alerts · homemx "
        ),
        "{page}"
    );
    let mut no_clock = common::quiet();
    no_clock.now_unix = None;
    assert_eq!(
        headline(&render(&no_clock)),
        ("v-warn", "Clock not set: no time server answered")
    );
    let mut one = common::quiet();
    one.alerts.raise(AlertKind::FlashNearlyFull, 0);
    assert_eq!(headline(&render(&one)), ("v-bad", "1 alert"));
    let mut locked = common::busy();
    locked.lock = LockState::Locked;
    let page = render(&locked);
    assert_eq!(headline(&page), ("v-warn", "Locked — unlock with the CLI"));
    assert!(page.contains("3 alerts · "));
    assert!(
        page.contains("<title>homemx: 3 alerts</title>")
            || render(&common::busy()).contains("<title>homemx: 3 alerts</title>")
    );
}

#[test]
fn the_facts_are_on_the_page() {
    let page = render(&common::busy());
    for fact in [
        "<b>1284</b>received",
        "<b>1279</b>delivered",
        "<b>5</b>queued",
        "<div class=\"warn\"><b>2</b>deferred",
        "<div class=\"warn\"><b>1</b>bounced",
        "waiting 2 h 14 min",
        "smtp.mailbox.example",
        "TLS 1.3",
        "pinned key",
        ">4 min ago<",
        "pop.backup-mx.example",
        "ok, 2 messages",
        "203.0.113.47",
        "198.51.100.7 <span class=\"bad\">✗ differs</span>",
        "10 mx.familie-beispiel.de<br>20 backup-mx.mailbox.example",
        "<dd class=\"good\">good",
        "Spool: <span class=\"good\">1.5 MiB free</span> of 2.0 MiB (75 %)",
        "200.0 KiB of 256.0 KiB",
        "homemx 0.1.0 · up 3 d 4 h",
        "2026-05-14 09:41 UTC",
        "Unlock failed",
        "3× · first 2 d ago · last 5 h ago",
        "STARTTLS stripping suspected",
        "Mail bounced (NDN sent)",
    ] {
        assert!(page.contains(fact), "missing {fact:?}");
    }
    let page = render(&common::locked());
    assert!(page.contains("not set yet"));
    assert!(page.contains("Spool: free space unknown while locked."));
    assert!(page.contains("not readable while locked"));
    assert!(page.contains("unknown while locked"));
    assert!(render(&common::empty()).contains("not configured"));
    // Unlocked without a smarthost: the page says the appliance is an inbound-only MX.
    let mut inbound_only = common::quiet();
    inbound_only.smarthost = Default::default();
    let page = render(&inbound_only);
    assert!(
        page.contains(
            "<dt>Host</dt><dd>none: an inbound-only MX (outbound mail is not configured)</dd>"
        ),
        "{page}"
    );
    assert!(!render(&common::quiet()).contains("inbound-only"));
    assert!(
        !render(&common::locked()).contains("inbound-only"),
        "locked, the configuration is not known"
    );
}

#[test]
fn hostile_names_are_escaped() {
    let page = render(&common::hostile());
    assert!(!page.contains("<script"));
    assert!(!page.contains("<img"));
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(page.contains("&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"));
    assert!(page.contains("a&amp;b&#39;c&quot;d&lt;e&gt;\\f\u{fffd}\u{fffd}\u{2028}"));
    assert!(page.contains("0 &lt;/dd&gt;&lt;/dl&gt;&lt;style&gt;*{}&lt;/style&gt;"));
    assert!(page.contains("<title>homemx: 3 alerts</title>"));
    assert!(page.contains("homemx 1.0&quot;&lt;/title&gt;&lt;script&gt;"));
}

#[test]
fn the_acme_card_shows_the_last_attempt_its_error_and_the_next() {
    let page = render(&common::acme_failing());
    for fact in [
        "<h2>Certificate renewal (ACME)</h2>",
        "<dt>Last attempt</dt><dd><time datetime=\"2026-05-14T09:34:20Z\" title=\"2026-05-14 09:34 UTC\">7 min ago</time>",
        "<dd class=\"bad\">failed: the certificate in use stays",
        "<dt>Failures in a row</dt><dd class=\"bad\">2</dd>",
        "<dt>Last error</dt><dd class=\"bad\">the challenge failed: urn:ietf:params:acme:error:connection: Connection refused &lt;port 80&gt;</dd>",
        "<dt>Next attempt</dt><dd><time datetime=\"2026-05-14T09:54:20Z\">2026-05-14 09:54 UTC</time> <span>(in 13 min)</span>",
        "<dt>Certificate expires</dt><dd><time datetime=\"2026-05-26T09:41:20Z\">2026-05-26 09:41 UTC</time> <span>(in 12 d)</span>",
    ] {
        assert!(page.contains(fact), "missing {fact:?}: {page}");
    }
    let page = render(&common::quiet());
    assert!(page.contains("<dd class=\"good\">certificate installed</dd><dt>Failures in a row</dt><dd>0</dd><dt>Next attempt</dt>"), "{page}");
    assert!(!page.contains("Last error"));
    // Without [tls.acme] (or locked) there is no card.
    let mut manual = common::quiet();
    manual.acme = None;
    assert!(!render(&manual).contains("ACME"));
    // A time already passed, and nothing known yet.
    let mut overdue = common::acme_failing();
    let now = overdue.now_unix.unwrap();
    if let Some(acme) = &mut overdue.acme {
        acme.next_attempt_unix = Some(now - 5);
        acme.certificate_expiry_unix = None;
        acme.last_attempt_unix = None;
        acme.last_succeeded = None;
    }
    let page = render(&overdue);
    assert!(page.contains("<span>(passed)</span></dd><dt>Certificate expires</dt><dd>—</dd>"), "{page}");
    assert!(page.contains("<dt>Last attempt</dt><dd>never</dd><dt>Result</dt><dd>—</dd>"), "{page}");
    // The CA's text is escaped.
    let page = render(&common::hostile());
    assert!(page.contains("urn:ietf:params:acme:error:malformed: &lt;/dd&gt;&lt;script&gt;alert(1)&lt;/script&gt;&quot;"), "{page}");
}

#[test]
fn the_certificate_expiry_is_red_while_its_alert_is_active() {
    // A 6-day ACME certificate 3 days before its end: renewed in time, no alert, not red.
    let mut short_lived = common::quiet();
    let now = short_lived.now_unix.unwrap();
    if let Some(certificate) = &mut short_lived.certificate {
        certificate.not_after_unix = now + 3 * 86_400;
    }
    assert!(render(&short_lived).contains("<span class=\"good\">(in 3 days)</span>"));
    let uptime_ms = short_lived.system.uptime_ms;
    short_lived.alerts.raise(AlertKind::CertificateExpiring, uptime_ms);
    assert!(render(&short_lived).contains("<span class=\"bad\">(in 3 days)</span>"));
    if let Some(certificate) = &mut short_lived.certificate {
        certificate.not_after_unix = now - 1;
    }
    short_lived.alerts = Default::default();
    assert!(render(&short_lived).contains("<span class=\"bad\">(expired)</span>"));
}

#[test]
fn pages_stay_small_and_the_largest_fits_the_buffer() {
    let busy = render(&common::busy()).len();
    let quiet = render(&common::quiet()).len();
    println!("busy page {busy} bytes, quiet page {quiet} bytes");
    assert!(busy < 8 * 1024, "{busy}");
    let mut largest = 0;
    for fill in ['"', '\u{0}'] {
        for kinds in common::combinations(homemx_status::MAX_ALERTS) {
            largest = largest.max(page_length(&common::largest(fill, &kinds)));
        }
    }
    println!("largest page {largest} bytes (buffer {PAGE_BUFFER_SIZE})");
    // Room for eight counts of u32::MAX (the test snapshots count to 257).
    assert!(largest + 8 * 7 <= PAGE_BUFFER_SIZE, "{largest}");
    let snapshot = common::largest('"', &AlertKind::ALL[..8]);
    let length = page_length(&snapshot);
    let mut exact = vec![0u8; length];
    assert_eq!(render_page(&snapshot, &mut exact), Ok(length));
    assert_eq!(
        render_page(&snapshot, &mut exact[..length - 1]),
        Err(Overflow)
    );
}

#[test]
fn windows_fit_together() {
    let snapshot = common::busy();
    let whole = render(&snapshot);
    assert_eq!(page_length(&snapshot), whole.len());
    for window in [1, 3, 536, 1024] {
        let mut joined = Vec::new();
        let mut chunk = vec![0u8; window];
        loop {
            let count = render_page_window(&snapshot, joined.len(), &mut chunk);
            joined.extend_from_slice(&chunk[..count]);
            if count < window {
                break;
            }
        }
        assert_eq!(joined, whole.as_bytes());
    }
    assert_eq!(
        render_page_window(&snapshot, whole.len() + 10, &mut [0u8; 16]),
        0
    );
}

#[test]
fn the_committed_sample_is_the_current_rendering() {
    // `cargo run -p homemx-status --example sample` rewrites it.
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/sample/status.html");
    let committed = std::fs::read_to_string(path).expect("sample/status.html exists");
    assert!(
        committed == render(&common::busy()),
        "sample/status.html is stale: run the sample example"
    );
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn text() -> impl Strategy<Value = String> {
        proptest::string::string_regex("[a-z<>&\"'\\\\\u{0}-\u{1f}é😀-]{0,80}").unwrap()
    }

    proptest! {
        #[test]
        fn any_snapshot_renders_within_the_buffer(
            smarthost in text(), pop3 in text(), dyndns in text(), mx in proptest::collection::vec((any::<u16>(), text()), 0..5),
            now in proptest::option::of(any::<u64>()), uptime in any::<u64>(), numbers in any::<[u32; 5]>(),
            kinds in proptest::collection::vec((0..homemx_status::ALERT_KIND_COUNT, any::<u64>()), 0..40),
            lock in 0..3u8,
        ) {
            let mut snapshot = common::quiet();
            snapshot.now_unix = now;
            snapshot.system.uptime_ms = uptime;
            snapshot.lock = [LockState::Unprovisioned, LockState::Locked, LockState::Unlocked][lock as usize];
            snapshot.smarthost.host = Some(homemx_status::host_name(&smarthost));
            snapshot.pop3.host = Some(homemx_status::host_name(&pop3));
            snapshot.dyndns.host = Some(homemx_status::host_name(&dyndns));
            snapshot.dyndns.mx.clear();
            for (preference, host) in mx.iter().take(4) {
                let _ = snapshot.dyndns.mx.push(homemx_status::MxRecord { preference: *preference, host: homemx_status::host_name(host) });
            }
            snapshot.mail.received = numbers[0];
            snapshot.mail.queued = numbers[1];
            snapshot.mail.deferred = numbers[2];
            snapshot.pop3.messages_fetched = Some(numbers[3]);
            snapshot.system.ram_high_water_bytes = Some(numbers[4]);
            for (kind, at) in kinds {
                snapshot.alerts.raise(AlertKind::ALL[kind], at);
            }
            let page = render(&snapshot);
            prop_assert_eq!(page.matches("<style>").count(), 1);
            prop_assert!(!page.contains("<script"));
            let mut buffer = vec![0u8; homemx_status::JSON_BUFFER_SIZE];
            let length = homemx_status::render_json(&snapshot, &mut buffer).unwrap();
            let document: serde_json::Value = serde_json::from_slice(&buffer[..length]).unwrap();
            prop_assert_eq!(document["smarthost"]["host"].as_str(), snapshot.smarthost.host.as_deref());
        }
    }
}
