//! The alert mail to `postmaster@` the own domain: [`AlertMailer`] decides when one is due
//! (rate-limited) and [`compose`] writes the complete RFC 5322 message.
//!
//! Rate limit: a kind is mailed at most once per [`PER_KIND_INTERVAL_MS`] (6 hours), and at
//! most [`DAILY_LIMIT`] (6) mails go out in any 24 hours. Why: the mail is for a person, not a
//! log. Each mail lists *every* active alert, so a mail held back loses nothing: the next one
//! (and the status page) carries it. Six hours lets a condition that persists remind the owner
//! about four times a day at most, and an alert that flaps (a link going up and down) costs one
//! mail, not hundreds. The daily cap bounds the total even when many kinds flap in turn, and
//! keeps the appliance from filling its own spool or the postmaster's mailbox. The state is in
//! RAM (monotonic time since boot): it starts over at reboot, as the alert board does.
//!
//! The message carries no secrets and no mail contents: only the alerts' titles, advice,
//! counts and times. It is 7-bit ASCII with CRLF line endings, so it passes any relay without
//! 8BITMIME; body lines are wrapped at 78 characters (only a word longer than that, a domain
//! name of up to 253 bytes, makes a longer line; every line stays far below RFC 5322's 998). Send it with the null reverse path
//! (`MAIL FROM:<>`, RFC 3834 section 3.3: an automatic message must not be answered).

use core::fmt::{self, Write};

use homemx_smtp::clock::Rfc5322Date;

use crate::alert::{Alert, AlertBoard, AlertKind, ALERT_KIND_COUNT, MAX_ALERTS};
use crate::output::{render_into, Overflow, Sink};
use crate::units::{Ago, Utc};

const HOUR_MS: u64 = 3_600_000;
/// At most one mail per alert kind in this many milliseconds (6 hours).
pub const PER_KIND_INTERVAL_MS: u64 = 6 * HOUR_MS;
/// At most this many mails in any 24 hours.
pub const DAILY_LIMIT: usize = 6;
/// The window of [`DAILY_LIMIT`] in milliseconds.
pub const DAY_MS: u64 = 24 * HOUR_MS;
/// A buffer this large holds any alert mail (checked by a test with eight alerts and the
/// longest domain name).
pub const MAIL_BUFFER_SIZE: usize = 4 * 1024;
/// The `Date:` used while the wall clock is unknown (no SNTP answer yet): 2026-01-01 00:00:00
/// UTC, earlier than any firmware build, so the mail never claims to come from the future. The
/// body then says that the date is not the real time.
pub const CLOCK_FLOOR_UNIX: u64 = 1_767_225_600;

/// One alert in a mail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MailedAlert {
    /// The alert as on the board.
    pub alert: Alert,
    /// New (or raised again) since it was last mailed: the reason for this mail.
    pub fresh: bool,
}

/// A mail that is due: every active alert, the fresh ones marked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlertMail {
    /// Monotonic milliseconds when it was found due (the alerts' ages count to here).
    pub now_ms: u64,
    /// The active alerts, at least one of them fresh.
    pub alerts: heapless::Vec<MailedAlert, MAX_ALERTS>,
    /// Alerts the board dropped because it was full (since boot).
    pub dropped: u32,
}

impl AlertMail {
    /// Number of fresh alerts.
    pub fn fresh_count(&self) -> usize {
        self.alerts.iter().filter(|mailed| mailed.fresh).count()
    }
}

/// The rate limiter's memory: when each kind was last mailed and when the last mails went.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AlertMailer {
    last_mailed_ms: [Option<u64>; ALERT_KIND_COUNT],
    recent_ms: [Option<u64>; DAILY_LIMIT],
}

impl AlertMailer {
    /// Nothing mailed yet.
    pub const fn new() -> AlertMailer {
        AlertMailer {
            last_mailed_ms: [None; ALERT_KIND_COUNT],
            recent_ms: [None; DAILY_LIMIT],
        }
    }

    /// Whether an alert is fresh: never mailed, or raised again since its last mail and that
    /// mail is at least [`PER_KIND_INTERVAL_MS`] old.
    fn is_fresh(&self, alert: &Alert, now_ms: u64) -> bool {
        match self
            .last_mailed_ms
            .get(alert.kind.index())
            .copied()
            .flatten()
        {
            None => true,
            Some(mailed) => {
                now_ms.saturating_sub(mailed) >= PER_KIND_INTERVAL_MS && alert.last_seen_ms > mailed
            }
        }
    }

    /// Mails sent in the 24 hours before `now_ms`.
    pub fn sent_in_last_day(&self, now_ms: u64) -> usize {
        self.recent_ms
            .iter()
            .flatten()
            .filter(|&&sent| now_ms.saturating_sub(sent) < DAY_MS)
            .count()
    }

    /// The mail to send now, if any: some active alert is fresh and the daily limit allows.
    /// Does not change the state; call [`AlertMailer::sent`] once the mail is queued.
    pub fn due(&self, board: &AlertBoard, now_ms: u64) -> Option<AlertMail> {
        if !board
            .alerts()
            .iter()
            .any(|alert| self.is_fresh(alert, now_ms))
        {
            return None;
        }
        if self.sent_in_last_day(now_ms) >= DAILY_LIMIT {
            return None;
        }
        let mut alerts = heapless::Vec::new();
        for alert in board.alerts() {
            let _ = alerts.push(MailedAlert {
                alert: *alert,
                fresh: self.is_fresh(alert, now_ms),
            });
        }
        Some(AlertMail {
            now_ms,
            alerts,
            dropped: board.dropped(),
        })
    }

    /// Records that `mail` was queued at `now_ms`: its fresh kinds count as mailed.
    pub fn sent(&mut self, mail: &AlertMail, now_ms: u64) {
        for mailed in mail.alerts.iter().filter(|mailed| mailed.fresh) {
            if let Some(slot) = self.last_mailed_ms.get_mut(mailed.alert.kind.index()) {
                *slot = Some(now_ms);
            }
        }
        if let Some(oldest) = self
            .recent_ms
            .iter_mut()
            // An empty slot first, else the oldest (a mail at 0 ms is not an empty slot).
            .min_by_key(|slot| slot.map_or((false, 0), |sent| (true, sent)))
        {
            *oldest = Some(now_ms);
        }
    }

    /// When `kind` was last mailed (monotonic milliseconds).
    pub fn last_mailed(&self, kind: AlertKind) -> Option<u64> {
        self.last_mailed_ms.get(kind.index()).copied().flatten()
    }
}

/// Why [`compose`] wrote nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ComposeError {
    /// `out` is too small ([`MAIL_BUFFER_SIZE`] always suffices).
    Overflow,
    /// The domain is not a plain DNS name (LDH labels of 1–63 bytes, at most 253 bytes).
    InvalidDomain,
    /// The mail lists no alert.
    NoAlerts,
}

impl From<Overflow> for ComposeError {
    fn from(_: Overflow) -> ComposeError {
        ComposeError::Overflow
    }
}

/// Whether `domain` is a plain DNS name (letters, digits, hyphens, dots), safe in a header.
pub fn is_valid_domain(domain: &str) -> bool {
    !domain.is_empty()
        && domain.len() <= 253
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-')
        })
}

const WIDTH: usize = 78;
const CRLF: &str = "\r\n";

/// Writes the alert mail for `mail` into `out`; returns its length.
///
/// `date_unix` is the wall clock (`None` before SNTP: the `Date:` is then
/// [`CLOCK_FLOOR_UNIX`] and the body says so). `message_id_token` makes the `Message-ID`
/// unique (a random number or a counter kept across reboots).
pub fn compose(
    domain: &str,
    mail: &AlertMail,
    date_unix: Option<u64>,
    message_id_token: u64,
    out: &mut [u8],
) -> Result<usize, ComposeError> {
    if !is_valid_domain(domain) {
        return Err(ComposeError::InvalidDomain);
    }
    if mail.alerts.is_empty() {
        return Err(ComposeError::NoAlerts);
    }
    Ok(render_into(out, |sink| {
        message(sink, domain, mail, date_unix, message_id_token)
    })?)
}

fn message(
    sink: &mut Sink<'_>,
    domain: &str,
    mail: &AlertMail,
    date_unix: Option<u64>,
    token: u64,
) -> fmt::Result {
    let count = mail.alerts.len();
    let fresh = mail.fresh_count();
    let lead = mail
        .alerts
        .iter()
        .find(|mailed| mailed.fresh)
        .or(mail.alerts.first());
    write!(
        sink,
        "Date: {}{CRLF}",
        Rfc5322Date(date_unix.unwrap_or(CLOCK_FLOOR_UNIX))
    )?;
    write!(
        sink,
        "From: \"homemx\" <MAILER-DAEMON@{domain}>{CRLF}To: <postmaster@{domain}>{CRLF}"
    )?;
    sink.write_str("Subject: [homemx] ")?;
    match (count, lead) {
        (1, Some(lead)) => sink.write_str(lead.alert.kind.title())?,
        (_, Some(lead)) => write!(
            sink,
            "{count} alerts: {} and {} more",
            lead.alert.kind.title(),
            count - 1
        )?,
        (_, None) => write!(sink, "{count} alerts")?,
    }
    write!(
        sink,
        "{CRLF}Message-ID: <alert.{token:016x}@{domain}>{CRLF}"
    )?;
    write!(
        sink,
        "Auto-Submitted: auto-generated{CRLF}MIME-Version: 1.0{CRLF}"
    )?;
    write!(
        sink,
        "Content-Type: text/plain; charset=utf-8{CRLF}Content-Transfer-Encoding: 7bit{CRLF}{CRLF}"
    )?;

    wrapped(
        sink,
        0,
        format_args!(
            "The homemx mail exchanger of {domain} reports {count} active alert{} ({fresh} new since the last alert mail).",
            if count == 1 { "" } else { "s" }
        ),
    )?;
    for mailed in &mail.alerts {
        let alert = &mailed.alert;
        sink.write_str(CRLF)?;
        wrapped(
            sink,
            0,
            format_args!(
                "* {}{}",
                if mailed.fresh { "NEW: " } else { "" },
                alert.kind.title()
            ),
        )?;
        let first = mail.now_ms.saturating_sub(alert.first_seen_ms) / 1000;
        let last = mail.now_ms.saturating_sub(alert.last_seen_ms) / 1000;
        let at = LastAt(date_unix.map(|date| date.saturating_sub(last)));
        if alert.count > 1 {
            wrapped(
                sink,
                2,
                format_args!(
                    "Seen {} times, first {}, last {}{at}.",
                    alert.count,
                    Ago(first),
                    Ago(last)
                ),
            )?;
        } else {
            wrapped(sink, 2, format_args!("Seen once, {}{at}.", Ago(last)))?;
        }
        wrapped(sink, 2, format_args!("{}", alert.kind.advice()))?;
    }
    if mail.dropped > 0 {
        sink.write_str(CRLF)?;
        wrapped(
            sink,
            0,
            format_args!(
                "{} older alert(s) did not fit the list and were dropped.",
                mail.dropped
            ),
        )?;
    }
    sink.write_str(CRLF)?;
    wrapped(
        sink,
        0,
        format_args!("The status page on the appliance's LAN address shows the details. An alert ends by itself when its cause goes away."),
    )?;
    if date_unix.is_none() {
        sink.write_str(CRLF)?;
        wrapped(
            sink,
            0,
            format_args!(
                "The appliance's clock is not set yet (no answer from the time server): the Date of this mail is a placeholder, not the time it was sent."
            ),
        )?;
    }
    sink.write_str(CRLF)?;
    wrapped(
        sink,
        0,
        format_args!(
            "At most one mail per alert kind every {} hours and at most {DAILY_LIMIT} a day are sent. This mail contains no message contents, addresses or keys.",
            PER_KIND_INTERVAL_MS / HOUR_MS
        ),
    )
}

/// ` (at 2026-05-01 12:00 UTC)` when the wall clock is known.
struct LastAt(Option<u64>);

impl fmt::Display for LastAt {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(at) => write!(formatter, " (at {})", Utc(at)),
            None => Ok(()),
        }
    }
}

/// Writes one paragraph word-wrapped at [`WIDTH`] columns, each line indented by `indent`
/// spaces and ended with CRLF. Paragraphs here are short (an advice sentence is at most 200
/// bytes); a longer one fails rather than being cut.
fn wrapped(sink: &mut Sink<'_>, indent: usize, arguments: fmt::Arguments<'_>) -> fmt::Result {
    let mut text = heapless::String::<PARAGRAPH_CAPACITY>::new();
    text.write_fmt(arguments)?;
    let mut column = 0;
    for word in text.split(' ').filter(|word| !word.is_empty()) {
        if column > indent && column + 1 + word.len() > WIDTH {
            sink.write_str(CRLF)?;
            column = 0;
        }
        if column == 0 {
            for _ in 0..indent {
                sink.write_char(' ')?;
            }
            column = indent;
        } else {
            sink.write_char(' ')?;
            column += 1;
        }
        sink.write_str(word)?;
        column += word.len();
    }
    if column > 0 {
        sink.write_str(CRLF)?;
    }
    Ok(())
}

const PARAGRAPH_CAPACITY: usize = 512;
