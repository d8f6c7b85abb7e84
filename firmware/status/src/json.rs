//! `/status.json`: the page's facts for scripts, one JSON object whose every field is
//! documented in `status.schema.json` (JSON Schema 2020-12, `additionalProperties: false`
//! throughout; a host test validates rendered documents against it). Every field is always
//! present; unknown values are `null`. Strings from configuration or DNS are escaped.

use core::fmt::{self, Write};

use crate::output::{render_into, render_window, rendered_length, JsonString, Overflow, Sink};
use crate::snapshot::StatusSnapshot;

/// The `schema` member: bumped when a field changes meaning or goes away.
pub const SCHEMA_VERSION: &str = "homemx-status/1";

/// A buffer this large holds any document [`render_json`] can produce (checked by a test that
/// renders the largest snapshot).
pub const JSON_BUFFER_SIZE: usize = 10 * 1024;

/// Renders `/status.json` into `out`; returns its length, or [`Overflow`].
pub fn render_json(snapshot: &StatusSnapshot, out: &mut [u8]) -> Result<usize, Overflow> {
    render_into(out, |sink| document(sink, snapshot))
}

/// Length of the document in bytes.
pub fn json_length(snapshot: &StatusSnapshot) -> usize {
    rendered_length(|sink| document(sink, snapshot))
}

/// Renders bytes `offset..` of the document into `out` (see `html::render_page_window`).
pub fn render_json_window(snapshot: &StatusSnapshot, offset: usize, out: &mut [u8]) -> usize {
    render_window(out, offset, |sink| document(sink, snapshot))
}

/// `null` or the value.
struct Nullable<T>(Option<T>);

impl<T: fmt::Display> fmt::Display for Nullable<T> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(value) => value.fmt(formatter),
            None => formatter.write_str("null"),
        }
    }
}

/// `null` or the string literal.
fn string(text: Option<&str>) -> Nullable<JsonString<'_>> {
    Nullable(text.map(JsonString))
}

/// An address as a JSON string (addresses never need escaping).
struct Quoted<T>(T);

impl<T: fmt::Display> fmt::Display for Quoted<T> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "\"{}\"", self.0)
    }
}

fn document(sink: &mut Sink<'_>, snapshot: &StatusSnapshot) -> fmt::Result {
    let system = &snapshot.system;
    write!(
        sink,
        "{{\"schema\":\"{SCHEMA_VERSION}\",\"generated_unix\":{},\"verdict\":\"{}\",\"lock\":\"{}\",",
        Nullable(snapshot.now_unix),
        snapshot.verdict().name(),
        snapshot.lock.name()
    )?;
    // The headline's words come from this crate only: nothing in them needs escaping.
    write!(
        sink,
        "\"headline\":\"{}\",\"problems\":[",
        snapshot.headline_line()
    )?;
    for (index, problem) in snapshot.problems().iter().enumerate() {
        let comma = if index > 0 { "," } else { "" };
        write!(sink, "{comma}\"{}\"", problem.name())?;
    }
    let mailbox = &snapshot.mailbox;
    write!(
        sink,
        "],\"mailbox\":{{\"configured\":{},\"last_success_unix\":{},\"last_success_age_seconds\":{},\
         \"failing_since_unix\":{},\"failing_since_age_seconds\":{},\"failure\":{}}},",
        mailbox.configured,
        Nullable(mailbox.last_success_ms.and_then(|at| snapshot.unix_of(at))),
        Nullable(mailbox.last_success_ms.map(|at| snapshot.age_seconds(at))),
        Nullable(mailbox.failing_since_ms.and_then(|at| snapshot.unix_of(at))),
        Nullable(mailbox.failing_since_ms.map(|at| snapshot.age_seconds(at))),
        string(mailbox.failure.map(|failure| failure.name()))
    )?;
    let mail = &snapshot.mail;
    write!(
        sink,
        "\"mail\":{{\"received\":{},\"delivered\":{},\"queued\":{},\"deferred\":{},\"bounced\":{},\"oldest_queued_age_seconds\":{}}},",
        mail.received,
        mail.delivered,
        mail.queued,
        mail.deferred,
        mail.bounced,
        Nullable(mail.oldest_queued_age_seconds)
    )?;
    let smarthost = &snapshot.smarthost;
    write!(
        sink,
        "\"smarthost\":{{\"host\":{},\"last_success_unix\":{},\"last_failure_unix\":{},\"tls_version\":{},\"verified_by\":{}}},",
        string(smarthost.host.as_deref()),
        Nullable(smarthost.last_success_unix),
        Nullable(smarthost.last_failure_unix),
        string(smarthost.tls_version.map(|version| version.name())),
        string(smarthost.verified_by.map(|verification| verification.name()))
    )?;
    let pop3 = &snapshot.pop3;
    write!(
        sink,
        "\"pop3\":{{\"host\":{},\"last_attempt_unix\":{},\"last_result\":{},\"messages_fetched\":{},\"last_success_unix\":{}}},",
        string(pop3.host.as_deref()),
        Nullable(pop3.last_attempt_unix),
        string(pop3.last_result.map(|result| result.name())),
        Nullable(pop3.messages_fetched),
        Nullable(pop3.last_success_unix)
    )?;
    let dyndns = &snapshot.dyndns;
    write!(
        sink,
        "\"dyndns\":{{\"host\":{},\"public_ip\":{},\"a_record\":{},\"a_record_matches\":{},\"mx\":[",
        string(dyndns.host.as_deref()),
        Nullable(dyndns.public_ip.map(Quoted)),
        Nullable(dyndns.a_record.map(Quoted)),
        Nullable(dyndns.a_record_matches())
    )?;
    for (index, record) in dyndns.mx.iter().enumerate() {
        let comma = if index > 0 { "," } else { "" };
        write!(
            sink,
            "{comma}{{\"preference\":{},\"host\":{}}}",
            record.preference,
            JsonString(&record.host)
        )?;
    }
    write!(
        sink,
        "],\"last_update_unix\":{},\"last_answer\":{}}},\"spool\":",
        Nullable(dyndns.last_update_unix),
        string(dyndns.last_answer.map(|answer| answer.name()))
    )?;
    match snapshot.spool {
        Some(space) => write!(
            sink,
            "{{\"free_bytes\":{},\"total_bytes\":{}}},",
            space.free_bytes, space.total_bytes
        )?,
        None => sink.write_str("null,")?,
    }
    sink.write_str("\"alerts\":[")?;
    for (index, alert) in snapshot.alerts.alerts().iter().enumerate() {
        let comma = if index > 0 { "," } else { "" };
        write!(
            sink,
            "{comma}{{\"kind\":\"{}\",\"title\":{},\"count\":{},\"first_seen_age_seconds\":{},\"last_seen_age_seconds\":{},\
             \"first_seen_unix\":{},\"last_seen_unix\":{}}}",
            alert.kind.name(),
            JsonString(alert.kind.title()),
            alert.count,
            snapshot.age_seconds(alert.first_seen_ms),
            snapshot.age_seconds(alert.last_seen_ms),
            Nullable(snapshot.unix_of(alert.first_seen_ms)),
            Nullable(snapshot.unix_of(alert.last_seen_ms))
        )?;
    }
    write!(
        sink,
        "],\"alerts_dropped\":{},\"system\":{{\"uptime_seconds\":{},\"firmware_version\":{},\"ram_high_water_bytes\":{},\"ram_size_bytes\":{},\"tamper_loop\":\"{}\"}}",
        snapshot.alerts.dropped(),
        snapshot.uptime_seconds(),
        JsonString(&system.firmware_version),
        Nullable(system.ram_high_water_bytes),
        Nullable(system.ram_size_bytes),
        system.tamper_loop.name()
    )?;
    sink.write_str(",\"certificate\":")?;
    match &snapshot.certificate {
        Some(certificate) => write!(
            sink,
            "{{\"subject\":{},\"issuer\":{},\"self_signed\":{},\"not_after_unix\":{},\"days_until_expiry\":{}}}",
            string(certificate.subject.as_deref()),
            string(certificate.issuer.as_deref()),
            certificate.self_signed,
            certificate.not_after_unix,
            Nullable(snapshot.now_unix.map(|now| certificate.days_until_expiry(now)))
        )?,
        None => sink.write_str("null")?,
    }
    sink.write_str(",\"acme\":")?;
    match &snapshot.acme {
        Some(acme) => write!(
            sink,
            "{{\"last_attempt_unix\":{},\"last_result\":{},\"last_error\":{},\"next_attempt_unix\":{},\"certificate_expiry_unix\":{},\"failures\":{}}}}}",
            Nullable(acme.last_attempt_unix),
            string(acme.last_succeeded.map(|ok| if ok { "ok" } else { "failed" })),
            string(acme.last_error.as_deref()),
            Nullable(acme.next_attempt_unix),
            Nullable(acme.certificate_expiry_unix),
            acme.failures
        ),
        None => sink.write_str("null}"),
    }
}
