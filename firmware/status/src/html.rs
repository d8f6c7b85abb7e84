//! The status page (`/`): one HTML document a person reads in five seconds — a coloured
//! verdict line, the alerts (if any), then compact cards for mail flow and spool space,
//! smarthost TLS, the POP3 fetch, DynDNS, the own certificate and its ACME renewal (when
//! configured), and the system. Inline CSS only (allowed by the hash in
//! [`CONTENT_SECURITY_POLICY`]), no script, no images, no third-party resources; it reloads
//! itself every [`REFRESH_SECONDS`] with `<meta http-equiv="refresh">`. Every string that
//! comes from configuration or DNS is HTML-escaped.
//!
//! Size: the busy sample page (every card filled, three alerts; `sample/status.html`) is
//! 6,488 B, a quiet one 5,726 B; the largest possible page (eight alerts, every host name and
//! the ACME error at their limits and made of characters that escape to six bytes, every number
//! at its maximum) is 13,664 B, below [`PAGE_BUFFER_SIZE`] (14 KiB). [`render_page_window`] renders
//! any part of the page into a small buffer, so the firmware can stream it through its 1 KiB
//! socket buffer after [`page_length`] gave the `Content-Length`.

use core::fmt::{self, Write};

use crate::alert::Alert;
use crate::headline::{Verdict, VerdictText};
use crate::output::{render_into, render_window, rendered_length, Html, Overflow, Sink};
use crate::snapshot::{LockState, StatusSnapshot, TamperLoop};
use crate::units::{Ago, Bytes, Iso, Span, Utc};

/// Seconds between reloads.
pub const REFRESH_SECONDS: u32 = 30;

/// A buffer this large holds any page [`render_page`] can produce (checked by a test that
/// renders the largest snapshot).
pub const PAGE_BUFFER_SIZE: usize = 14 * 1024;

/// The exact content of the page's one `<style>` element; [`CONTENT_SECURITY_POLICY`] allows
/// it by its SHA-256 hash (a test recomputes the hash, so the two cannot drift apart).
pub const STYLE: &str = concat!(
    ":root{color-scheme:light dark;--ok:#1b7a3a;--bad:#c0262d;--warn:#9a5b00;--bg:#f2f3f5;--card:#fff;",
    "--text:#1d1f23;--muted:#626873;--line:#e1e4e8}",
    "@media(prefers-color-scheme:dark){:root{--ok:#2f9a55;--bad:#d9434a;--warn:#c07a14;--bg:#121417;",
    "--card:#1c1f24;--text:#e7e9ec;--muted:#9aa1ab;--line:#2d3139}}",
    "*{box-sizing:border-box}",
    "body{margin:0;background:var(--bg);color:var(--text);",
    "font:15px/1.45 system-ui,-apple-system,\"Segoe UI\",Roboto,sans-serif}",
    "header{color:#fff;padding:22px max(16px,calc(50% - 464px))}",
    ".v-ok{background:var(--ok)}.v-bad{background:var(--bad)}.v-warn{background:var(--warn)}",
    "h1{margin:0;font-size:30px;line-height:1.2}",
    "header p{margin:6px 0 0;opacity:.9}",
    "main,footer{max-width:960px;margin:0 auto;padding:16px}",
    ".grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(100%,400px),1fr));gap:12px}",
    "section{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:14px 16px}",
    ".wide{grid-column:1/-1}",
    "h2{margin:0 0 10px;font-size:12px;font-weight:600;letter-spacing:.08em;text-transform:uppercase;",
    "color:var(--muted)}",
    "dl{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px;margin:0}",
    "dt{color:var(--muted);white-space:nowrap}dd{margin:0;text-align:right;overflow-wrap:anywhere}",
    "dd span,.when{white-space:nowrap}",
    ".foot{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(100%,300px),1fr));gap:8px 24px;",
    "align-items:start;margin-top:12px;color:var(--muted)}",
    ".foot p{margin:0}",
    ".stats{display:grid;grid-template-columns:repeat(5,1fr);gap:8px;text-align:center;color:var(--muted)}",
    ".stats b{display:block;font-size:30px;font-weight:600;color:var(--text);font-variant-numeric:tabular-nums}",
    ".stats .warn b{color:var(--warn)}",
    ".alerts{border:2px solid var(--bad);margin-bottom:12px}",
    ".alerts ul{list-style:none;margin:0;padding:0}",
    ".alerts li{padding:8px 0;border-top:1px solid var(--line)}",
    ".alerts li:first-child{border-top:0;padding-top:0}",
    ".alerts strong{color:var(--bad)}",
    ".alerts p{margin:2px 0 0;color:var(--muted);font-size:14px}",
    ".alerts li div{display:flex;flex-wrap:wrap;justify-content:space-between;align-items:baseline;gap:0 12px}",
    ".when{color:var(--muted);font-size:13px}",
    ".good{color:var(--ok)}.bad{color:var(--bad)}.warn{color:var(--warn)}",
    "p.note{margin:10px 0 0;color:var(--muted)}",
    "meter{display:block;width:100%;height:14px;margin-top:4px}",
    "footer{padding-top:0;color:var(--muted);font-size:13px}",
    "a{color:inherit}",
    "@media(max-width:560px){.stats{grid-template-columns:repeat(3,1fr)}h1{font-size:24px}}",
);

/// The `Content-Security-Policy` for the page: nothing but its own inline style.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'sha256-lLHSnzwwKEcnjCZW0zcgIBT82SSZdFEo2nwxNU7Zgl4='; img-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Renders the page into `out`; returns its length, or [`Overflow`] if `out` is too small
/// (a buffer of [`PAGE_BUFFER_SIZE`] bytes always suffices).
pub fn render_page(snapshot: &StatusSnapshot, out: &mut [u8]) -> Result<usize, Overflow> {
    render_into(out, |sink| page(sink, snapshot))
}

/// Length of the page in bytes (for `Content-Length` before streaming with
/// [`render_page_window`]).
pub fn page_length(snapshot: &StatusSnapshot) -> usize {
    rendered_length(|sink| page(sink, snapshot))
}

/// Renders bytes `offset..` of the page into `out`; returns how many were written (fewer than
/// `out.len()` only at the end). Rendering is deterministic: the same snapshot gives the same
/// bytes, so windows of one snapshot fit together.
pub fn render_page_window(snapshot: &StatusSnapshot, offset: usize, out: &mut [u8]) -> usize {
    render_window(out, offset, |sink| page(sink, snapshot))
}

fn page(sink: &mut Sink<'_>, snapshot: &StatusSnapshot) -> fmt::Result {
    let verdict = snapshot.verdict();
    let class = match verdict {
        Verdict::Unprovisioned | Verdict::Locked => "v-warn",
        Verdict::Problem(problem) if !problem.stops_mail() => "v-warn",
        Verdict::Problem(_) | Verdict::Alerts(_) => "v-bad",
        Verdict::MailFlows => "v-ok",
    };
    sink.write_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">")?;
    sink.write_str("<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">")?;
    write!(
        sink,
        "<meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\">"
    )?;
    // The headline's words come from this crate only (no configured name in them).
    write!(
        sink,
        "<meta name=\"robots\" content=\"noindex\"><title>homemx: {}</title><style>{STYLE}</style></head>\n\
         <body>\n<header class=\"{class}\"><h1>{}</h1><p>",
        VerdictText(snapshot, verdict),
        VerdictText(snapshot, verdict)
    )?;
    match verdict {
        Verdict::Locked => sink.write_str(
            "Incoming mail is deferred (senders retry) until the appliance is unlocked. · ",
        )?,
        Verdict::Unprovisioned => {
            sink.write_str("Nothing is received or sent until it is provisioned. · ")?
        }
        Verdict::Problem(_) => {
            // The other problems, below the most important one.
            for problem in snapshot.problems().iter().skip(1) {
                write!(
                    sink,
                    "<strong>{}</strong> · ",
                    snapshot.problem_text(*problem)
                )?;
            }
        }
        _ => {}
    }
    if matches!(verdict, Verdict::Locked | Verdict::Problem(_)) && !snapshot.alerts.is_empty() {
        let count = snapshot.alerts.len();
        write!(sink, "{count} alert{} · ", plural(count))?;
    }
    write!(
        sink,
        "homemx {} · up {}",
        Html(&snapshot.system.firmware_version),
        Span(snapshot.uptime_seconds())
    )?;
    if let Some(now) = snapshot.now_unix {
        write!(
            sink,
            " · as of <time datetime=\"{}\">{}</time>",
            Iso(now),
            Utc(now)
        )?;
    }
    sink.write_str("</p></header>\n<main>\n")?;
    alerts(sink, snapshot)?;
    sink.write_str("<div class=\"grid\">\n")?;
    mail(sink, snapshot)?;
    smarthost(sink, snapshot)?;
    pop3(sink, snapshot)?;
    dyndns(sink, snapshot)?;
    certificate(sink, snapshot)?;
    acme(sink, snapshot)?;
    system(sink, snapshot)?;
    write!(
        sink,
        "</div>\n</main>\n<footer>Read-only view · reloads every {REFRESH_SECONDS} s · for scripts: \
         <a href=\"/status.json\">/status.json</a></footer>\n</body></html>\n"
    )
}

fn plural(count: usize) -> &'static str {
    if count == 1 {
        ""
    } else {
        "s"
    }
}

/// A wall-clock moment: relative ("5 min ago") when the clock is known, with the exact time
/// in the `title`; `never` when it never happened.
fn when(sink: &mut Sink<'_>, snapshot: &StatusSnapshot, at: Option<u64>) -> fmt::Result {
    let Some(at) = at else {
        return sink.write_str("never");
    };
    match snapshot.now_unix {
        Some(now) if at <= now => write!(
            sink,
            "<time datetime=\"{}\" title=\"{}\">{}</time>",
            Iso(at),
            Utc(at),
            Ago(now - at)
        ),
        _ => write!(sink, "<time datetime=\"{}\">{}</time>", Iso(at), Utc(at)),
    }
}

fn alerts(sink: &mut Sink<'_>, snapshot: &StatusSnapshot) -> fmt::Result {
    if snapshot.alerts.is_empty() {
        return Ok(());
    }
    sink.write_str("<section class=\"alerts\"><h2>Alerts</h2><ul>\n")?;
    for alert in snapshot.alerts.alerts() {
        alert_item(sink, snapshot, alert)?;
    }
    sink.write_str("</ul>")?;
    let dropped = snapshot.alerts.dropped();
    if dropped > 0 {
        write!(
            sink,
            "<p class=\"note\">{dropped} older alert{} did not fit and {} dropped.</p>",
            plural(dropped as usize),
            if dropped == 1 { "was" } else { "were" }
        )?;
    }
    sink.write_str("</section>\n")
}

fn alert_item(sink: &mut Sink<'_>, snapshot: &StatusSnapshot, alert: &Alert) -> fmt::Result {
    write!(
        sink,
        "<li><div><strong>{}</strong> <span class=\"when\">",
        alert.kind.title()
    )?;
    if alert.count > 1 {
        write!(
            sink,
            "{}× · first {} · last {}",
            alert.count,
            Ago(snapshot.age_seconds(alert.first_seen_ms)),
            Ago(snapshot.age_seconds(alert.last_seen_ms))
        )?;
    } else {
        write!(sink, "{}", Ago(snapshot.age_seconds(alert.last_seen_ms)))?;
    }
    writeln!(sink, "</span></div><p>{}</p></li>", alert.kind.advice())
}

fn mail(sink: &mut Sink<'_>, snapshot: &StatusSnapshot) -> fmt::Result {
    let mail = &snapshot.mail;
    sink.write_str("<section class=\"wide\"><h2>Mail since boot</h2><div class=\"stats\">")?;
    let stats = [
        (mail.received, "received", false),
        (mail.delivered, "delivered", false),
        (mail.queued, "queued", false),
        (mail.deferred, "deferred", mail.deferred > 0),
        (mail.bounced, "bounced", mail.bounced > 0),
    ];
    for (count, label, warn) in stats {
        let class = if warn { " class=\"warn\"" } else { "" };
        write!(sink, "<div{class}><b>{count}</b>{label}</div>")?;
    }
    sink.write_str("</div><div class=\"foot\"><p>")?;
    match (snapshot.lock, mail.oldest_queued_age_seconds) {
        (_, Some(age)) => write!(sink, "Oldest queued message: waiting {}.", Span(age))?,
        (LockState::Unlocked, None) => sink.write_str("The queue is empty.")?,
        _ => sink.write_str("The queue is not readable while locked.")?,
    }
    sink.write_str("</p>")?;
    spool(sink, snapshot)?;
    sink.write_str("</div></section>\n")
}

/// A configured host name; while locked the configuration is unreadable, so no name is not
/// "not configured".
fn host(sink: &mut Sink<'_>, snapshot: &StatusSnapshot, host: Option<&str>) -> fmt::Result {
    match (host, snapshot.lock) {
        (Some(host), _) => write!(sink, "{}", Html(host)),
        (None, LockState::Locked) => sink.write_str("unknown while locked"),
        (None, _) => sink.write_str("not configured"),
    }
}

fn smarthost(sink: &mut Sink<'_>, snapshot: &StatusSnapshot) -> fmt::Result {
    let smarthost = &snapshot.smarthost;
    sink.write_str("<section><h2>Smarthost TLS</h2><dl><dt>Host</dt><dd>")?;
    match (smarthost.host.as_deref(), snapshot.lock) {
        // Unlocked, the configuration is known: no smarthost is an inbound-only MX.
        (None, LockState::Unlocked) => {
            sink.write_str("none: an inbound-only MX (outbound mail is not configured)")?
        }
        (name, _) => host(sink, snapshot, name)?,
    }
    sink.write_str("</dd><dt>Last success</dt><dd>")?;
    when(sink, snapshot, smarthost.last_success_unix)?;
    sink.write_str("</dd><dt>TLS</dt><dd>")?;
    match smarthost.tls_version {
        Some(version) => write!(sink, "TLS {}", version.name())?,
        None => sink.write_str("—")?,
    }
    sink.write_str("</dd><dt>Verified by</dt><dd>")?;
    match smarthost.verified_by {
        Some(verification) => sink.write_str(verification.text())?,
        None => sink.write_str("—")?,
    }
    let failing = match (smarthost.last_failure_unix, smarthost.last_success_unix) {
        (Some(failure), Some(success)) => failure > success,
        (Some(_), None) => true,
        _ => false,
    };
    write!(
        sink,
        "</dd><dt>Last failure</dt><dd{}>",
        if failing { " class=\"bad\"" } else { "" }
    )?;
    when(sink, snapshot, smarthost.last_failure_unix)?;
    sink.write_str("</dd></dl></section>\n")
}

fn pop3(sink: &mut Sink<'_>, snapshot: &StatusSnapshot) -> fmt::Result {
    let pop3 = &snapshot.pop3;
    sink.write_str("<section><h2>Backup MX fetch (POP3)</h2><dl><dt>Host</dt><dd>")?;
    host(sink, snapshot, pop3.host.as_deref())?;
    sink.write_str("</dd><dt>Last fetch</dt><dd>")?;
    when(sink, snapshot, pop3.last_attempt_unix)?;
    sink.write_str("</dd><dt>Result</dt>")?;
    match pop3.last_result {
        Some(result) => {
            let class = if result == crate::snapshot::FetchResult::Ok {
                "good"
            } else {
                "bad"
            };
            write!(sink, "<dd class=\"{class}\">{}", result.text())?;
        }
        None => sink.write_str("<dd>—")?,
    }
    if let Some(count) = pop3.messages_fetched {
        write!(sink, ", {count} message{}", plural(count as usize))?;
    }
    sink.write_str("</dd><dt>Last success</dt><dd>")?;
    when(sink, snapshot, pop3.last_success_unix)?;
    sink.write_str("</dd></dl></section>\n")
}

fn dyndns(sink: &mut Sink<'_>, snapshot: &StatusSnapshot) -> fmt::Result {
    let dyndns = &snapshot.dyndns;
    sink.write_str("<section><h2>DynDNS</h2><dl><dt>Host</dt><dd>")?;
    host(sink, snapshot, dyndns.host.as_deref())?;
    sink.write_str("</dd><dt>Public IP</dt><dd>")?;
    match dyndns.public_ip {
        Some(address) => write!(sink, "{address}")?,
        None => sink.write_str("unknown")?,
    }
    sink.write_str("</dd><dt>A record</dt><dd>")?;
    match dyndns.a_record {
        Some(address) => write!(sink, "{address}")?,
        None => sink.write_str("unknown")?,
    }
    match dyndns.a_record_matches() {
        Some(true) => sink.write_str(" <span class=\"good\">✓ matches</span>")?,
        Some(false) => sink.write_str(" <span class=\"bad\">✗ differs</span>")?,
        None => {}
    }
    sink.write_str("</dd><dt>MX</dt><dd>")?;
    if dyndns.mx.is_empty() {
        sink.write_str("unknown")?;
    }
    for (index, record) in dyndns.mx.iter().enumerate() {
        if index > 0 {
            sink.write_str("<br>")?;
        }
        write!(sink, "{} {}", record.preference, Html(&record.host))?;
    }
    sink.write_str("</dd><dt>Last update</dt><dd>")?;
    when(sink, snapshot, dyndns.last_update_unix)?;
    sink.write_str("</dd><dt>Answer</dt>")?;
    match dyndns.last_answer {
        Some(answer) => write!(
            sink,
            "<dd class=\"{}\">{}",
            if answer.is_success() { "good" } else { "bad" },
            answer.name()
        )?,
        None => sink.write_str("<dd>—")?,
    }
    sink.write_str("</dd></dl></section>\n")
}

fn spool(sink: &mut Sink<'_>, snapshot: &StatusSnapshot) -> fmt::Result {
    match snapshot.spool {
        Some(space) if space.total_bytes > 0 => {
            let free = space.free_bytes.min(space.total_bytes);
            let percent = (u128::from(free) * 100 / u128::from(space.total_bytes)) as u64;
            let class = if percent < 10 { "bad" } else { "good" };
            write!(
                sink,
                "<p>Spool: <span class=\"{class}\">{} free</span> of {} ({percent} %)\
                 <meter min=\"0\" max=\"100\" low=\"10\" optimum=\"100\" value=\"{percent}\">{percent} %</meter></p>",
                Bytes(free),
                Bytes(space.total_bytes)
            )
        }
        _ => sink.write_str("<p>Spool: free space unknown while locked.</p>"),
    }
}

/// The appliance's own TLS certificate: subject, issuer, expiry (in red while the
/// `certificate_expiring` alert is active: from 21 days before, or for one ACME renews from 14
/// days or a quarter of its lifetime before; and once expired).
fn certificate(sink: &mut Sink<'_>, snapshot: &StatusSnapshot) -> fmt::Result {
    sink.write_str("<section><h2>Own TLS certificate</h2><dl>")?;
    let Some(certificate) = &snapshot.certificate else {
        let why = match snapshot.lock {
            LockState::Unlocked => "not made yet (it is made once the clock is set)",
            _ => "unknown while locked",
        };
        return writeln!(sink, "<dt>Certificate</dt><dd>{why}</dd></dl></section>");
    };
    write!(sink, "<dt>Subject</dt><dd>{}</dd><dt>Issuer</dt><dd>", Html(certificate.subject.as_deref().unwrap_or("(no common name)")))?;
    if certificate.self_signed {
        sink.write_str("self-signed by the appliance")?;
    } else {
        write!(sink, "{}", Html(certificate.issuer.as_deref().unwrap_or("(no common name)")))?;
    }
    write!(sink, "</dd><dt>Expires</dt><dd><time datetime=\"{}\">{}</time>", Iso(certificate.not_after_unix), Utc(certificate.not_after_unix))?;
    if let Some(now) = snapshot.now_unix {
        let days = certificate.days_until_expiry(now);
        let expiring = snapshot.alerts.get(crate::alert::AlertKind::CertificateExpiring).is_some();
        let class = if expiring || days < 0 { "bad" } else { "good" };
        if days < 0 {
            write!(sink, " <span class=\"{class}\">(expired)</span>")?;
        } else {
            write!(sink, " <span class=\"{class}\">(in {days} days)</span>")?;
        }
    }
    sink.write_str("</dd></dl></section>\n")
}

/// The certificate's renewal by ACME (only when `[tls.acme]` is configured): the last attempt
/// and its outcome, the failures in a row and the last error (the CA's problem detail, escaped),
/// the next attempt, the expiry.
fn acme(sink: &mut Sink<'_>, snapshot: &StatusSnapshot) -> fmt::Result {
    let Some(acme) = &snapshot.acme else {
        return Ok(());
    };
    sink.write_str("<section><h2>Certificate renewal (ACME)</h2><dl><dt>Last attempt</dt><dd>")?;
    when(sink, snapshot, acme.last_attempt_unix)?;
    sink.write_str("</dd><dt>Result</dt>")?;
    match acme.last_succeeded {
        Some(true) => sink.write_str("<dd class=\"good\">certificate installed")?,
        Some(false) => sink.write_str("<dd class=\"bad\">failed: the certificate in use stays")?,
        None => sink.write_str("<dd>—")?,
    }
    let class = if acme.failures > 0 { " class=\"bad\"" } else { "" };
    write!(sink, "</dd><dt>Failures in a row</dt><dd{class}>{}</dd>", acme.failures)?;
    if let Some(error) = &acme.last_error {
        write!(sink, "<dt>Last error</dt><dd class=\"bad\">{}</dd>", Html(error))?;
    }
    sink.write_str("<dt>Next attempt</dt><dd>")?;
    moment(sink, snapshot, acme.next_attempt_unix)?;
    sink.write_str("</dd><dt>Certificate expires</dt><dd>")?;
    moment(sink, snapshot, acme.certificate_expiry_unix)?;
    sink.write_str("</dd></dl></section>\n")
}

/// A wall-clock moment that may lie ahead: its time, and how far ahead (`in 3 d 4 h`) or
/// `(passed)`; `—` when unknown.
fn moment(sink: &mut Sink<'_>, snapshot: &StatusSnapshot, at: Option<u64>) -> fmt::Result {
    let Some(at) = at else {
        return sink.write_str("—");
    };
    write!(sink, "<time datetime=\"{}\">{}</time>", Iso(at), Utc(at))?;
    match snapshot.now_unix {
        Some(now) if at > now => write!(sink, " <span>(in {})</span>", Span(at - now)),
        Some(_) => sink.write_str(" <span>(passed)</span>"),
        None => Ok(()),
    }
}

fn system(sink: &mut Sink<'_>, snapshot: &StatusSnapshot) -> fmt::Result {
    let system = &snapshot.system;
    write!(
        sink,
        "<section><h2>System</h2><dl><dt>Uptime</dt><dd>{}</dd><dt>Firmware</dt><dd>{}</dd><dt>RAM high-water</dt><dd>",
        Span(snapshot.uptime_seconds()),
        Html(&system.firmware_version)
    )?;
    match (system.ram_high_water_bytes, system.ram_size_bytes) {
        (Some(used), Some(size)) => {
            write!(sink, "{} of {}", Bytes(used.into()), Bytes(size.into()))?
        }
        (Some(used), None) => write!(sink, "{}", Bytes(used.into()))?,
        (None, _) => sink.write_str("unknown")?,
    }
    sink.write_str("</dd><dt>Clock</dt><dd>")?;
    match snapshot.now_unix {
        Some(_) => sink.write_str("set (SNTP)")?,
        None => sink.write_str("<span class=\"warn\">not set yet</span>")?,
    }
    sink.write_str("</dd><dt>Tamper loop</dt><dd>")?;
    sink.write_str(match system.tamper_loop {
        TamperLoop::Closed => "closed",
        TamperLoop::Open => "<span class=\"bad\">open: the device is locked until it is closed</span>",
        TamperLoop::NotFitted => "no tamper loop fitted",
    })?;
    sink.write_str("</dd></dl></section>\n")
}
