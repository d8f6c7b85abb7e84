//! Non-delivery reports for outbound mail (a permanent 5xx from the smarthost, or five days
//! in the queue): a short plain-text report from `MAILER-DAEMON@` our domain, queued in the
//! spool with the null reverse path (so it can never bounce back) and delivered like inbound
//! mail. Reports go only to a sender in one of our own domains: the appliance never sends
//! mail to a foreign address on its own (no backscatter). Every report is counted and
//! alerted (BSI M 5.56: NDNs rare and watched).
//!
//! Owns: nothing (a report is built and queued per call). Calls: `alerts`, `channels`, `local_mail`,
//! `mail_settings`, `mail_status`, `network`, `wall_clock`.

use core::fmt::Write as _;

use homemx_smtp::client::RecipientResult;
use homemx_spool::Envelope;
use homemx_status::alert::AlertKind;

use super::{Attempt, Route};

/// Largest report (headers and text for up to a dozen recipients).
const REPORT_CAPACITY: usize = 2048;

/// Queues a report about `failed` (envelope index, result) of `attempt` to its sender.
pub async fn report(attempt: &Attempt, failed: &[(usize, RecipientResult)], expired: bool) {
    let sender = attempt.sender.as_str();
    let sender_is_ours = !sender.is_empty() && super::route_of(sender) == Route::Mailbox;
    if !sender_is_ours {
        crate::alerts::raise(
            AlertKind::NdnGenerated,
            format_args!("message {}: {} recipients failed; the sender is not local, so no report is sent", attempt.id.0, failed.len()),
        );
        return;
    }
    let Some((domain, host_name)) = crate::mail_settings::read(|current| {
        current.map(|settings| (settings.postmaster_domain.clone(), settings.host_name.clone()))
    }) else {
        return;
    };
    let mut text: heapless::String<REPORT_CAPACITY> = heapless::String::new();
    let date = homemx_smtp::clock::Rfc5322Date(crate::network::mail_clock().unix_seconds);
    let _ = write!(
        text,
        "From: Mail Delivery System <MAILER-DAEMON@{domain}>\r\nTo: <{sender}>\r\nSubject: Undelivered Mail Returned to Sender\r\nDate: {date}\r\nMessage-ID: <ndn.{}.{}@{host_name}>\r\nAuto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nThis is the mail system at host {host_name}.\r\n\r\nYour message could not be delivered to the recipients below{}.\r\n\r\n",
        attempt.id.0,
        crate::network::uptime_seconds(),
        if expired { " within 5 days; delivery was given up" } else { ": the provider's mail server refused them" },
    );
    for (index, result) in failed {
        let address = attempt.recipients(Route::Smarthost).find(|(candidate, _)| candidate == index).map_or("?", |(_, address)| address);
        let _ = match result.enhanced {
            Some(code) => write!(text, "  <{address}>: {} {}.{}.{}\r\n", result.code, code.class, code.subject, code.detail),
            None if result.code != 0 => write!(text, "  <{address}>: {}\r\n", result.code),
            None => write!(text, "  <{address}>: not delivered in time\r\n"),
        };
    }
    let _ = write!(text, "\r\n-- \r\nhomemx\r\n");
    let recipients: [&[u8]; 1] = [sender.as_bytes()];
    let Some(envelope) = Envelope::new(b"", &recipients) else {
        return;
    };
    let envelope = envelope.with_queued_at(crate::wall_clock::unix_seconds().unwrap_or(0));
    let queued = crate::local_mail::queue(&envelope, text.as_bytes()).await;
    crate::mail_status::update(|status| status.ndns += 1);
    crate::alerts::raise(
        AlertKind::NdnGenerated,
        format_args!("message {}: non-delivery report for {} recipients to the local sender ({})", attempt.id.0, failed.len(), if queued { "queued" } else { "could not be queued" }),
    );
    crate::channels::DELIVERY_DUE.signal(());
}
