//! What must hold after every run, checked on the peers' records: every message the MX
//! answered `250` was delivered exactly once where it belongs (the mailbox host for the
//! device's domain, the smarthost for an outside recipient a LAN client submitted), byte for
//! byte but for the `Received:` header the device prepends; nothing arrived that no sender
//! wrote, and nothing arrived at the wrong one of the two. One repeat is
//! allowed, and counted: a delivery whose connection ended before the device showed it had
//! read the mailbox host's `250` (the duplicate of RFC 1047 that SMTP accepts rather than a
//! loss, RFC 5321 section 6.1); and a delivery in the session a power cut interrupted, or
//! that ended just before it ([`crate::peers::RECORDING_GRACE_MS`]): the device had no time to
//! record the outcome. Any other repeat, of a confirmed delivery, is a violation.
//!
//! And on the flash, at every power cut and at the end: no message is stored in clear (no
//! message's `Message-ID` line or any 48-byte piece of its body is found in the image). What
//! must not be on the wire in clear is `crate::wiretap`'s (with the same pieces of a message).
//! And once provisioned, the key store's record is bound to the simulated chip key (record byte 5
//! is 1): the simulator's board has one, so the bound path is the one that runs.
//!
//! Owns: nothing. Calls: `peers`.

use crate::peers::{Offered, Records};

/// The invariants' verdict.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// The broken invariants, one sentence each.
    pub violations: Vec<String>,
    /// Repeats of deliveries the device could not know had arrived (allowed).
    pub unconfirmed_repeats: usize,
    /// The subjects of the device's own alert reports to the postmaster (allowed: they are
    /// the device's, not a sender's; which ones may come is the caller's to judge).
    pub alert_reports: Vec<String>,
}

/// The subject of `delivery` if it is one of the device's alert reports: to the postmaster,
/// from `"homemx" <MAILER-DAEMON@…>`, subject `[homemx] …`.
fn alert_report(delivery: &crate::peers::Delivery) -> Option<String> {
    if !delivery.recipient.starts_with("postmaster@") || delivery.destination != crate::peers::Destination::Mailbox {
        return None;
    }
    let text = String::from_utf8_lossy(without_received(&delivery.content));
    let header = text.split("\r\n\r\n").next()?;
    header.lines().find(|line| line.starts_with("From: \"homemx\" <MAILER-DAEMON@"))?;
    header.lines().find_map(|line| line.strip_prefix("Subject: [homemx] ")).map(str::to_string)
}

/// The content without the leading `Received:` field (and its folded lines) the device adds.
pub fn without_received(content: &[u8]) -> &[u8] {
    let mut rest = content;
    let mut in_received = false;
    loop {
        let Some(end) = rest.windows(2).position(|pair| pair == b"\r\n") else { return rest };
        let line = &rest[..end];
        let folded = line.first().is_some_and(|byte| *byte == b' ' || *byte == b'\t');
        if line.len() >= 9 && line[..9].eq_ignore_ascii_case(b"received:") {
            in_received = true;
        } else if !(in_received && folded) {
            return rest;
        }
        rest = &rest[end + 2..];
    }
}

/// Pieces of a message that must not be found on the flash (or on the wire to the
/// smarthost): its `Message-ID` line (first) and a 48-byte piece of its body every 2 KB.
pub fn needles(message: &Offered) -> Vec<&[u8]> {
    let content = message.content.as_slice();
    let mut needles = Vec::new();
    if let Some(start) = content.windows(12).position(|window| window == b"Message-ID: ") {
        let end = content[start..].windows(2).position(|pair| pair == b"\r\n").map_or(content.len(), |end| start + end);
        needles.push(&content[start..end]);
    }
    let body = content.windows(4).position(|window| window == b"\r\n\r\n").map_or(0, |end| end + 4);
    let last_start = content.len().saturating_sub(48);
    needles.extend((body..=last_start).step_by(2048).filter(|_| content.len() >= 48).map(|start| &content[start..start + 48]));
    needles
}

/// The valid key records in the first `key_store_bytes` of `flash` (one may start each sector
/// of `sector_size`; torn ones are skipped) must say "bound to the chip" (byte 5 = 1), and there
/// must be one once the device is provisioned.
pub fn key_record_bound(flash: &[u8], key_store_bytes: usize, sector_size: usize) -> Vec<String> {
    use homemx_keystore::record::KeyRecord;
    use homemx_keystore::Binding;
    let records: Vec<KeyRecord> = flash[..key_store_bytes].chunks(sector_size).filter_map(KeyRecord::decode).collect();
    if records.is_empty() {
        return vec!["the device was provisioned but its key store holds no valid record".into()];
    }
    records
        .iter()
        .filter(|record| record.binding == Binding::NotBound)
        .map(|record| format!("key record {} is not bound to the simulated chip key", record.sequence))
        .collect()
}

/// The messages found in clear on `flash`, one sentence each.
pub fn plaintext_on_flash(offered: &[Offered], flash: &[u8], when: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for (index, message) in offered.iter().enumerate() {
        for needle in needles(message) {
            if let Some(at) = flash.windows(needle.len()).position(|window| window == needle) {
                problems.push(format!("{when}: message {index} is on the flash in clear at {at:#x}: {:?}", String::from_utf8_lossy(needle)));
                break;
            }
        }
    }
    problems
}

/// Free spool bytes that an empty queue may lack against the spool after provisioning (two
/// 4 KiB sectors: the counter mark's and the newest record's sector stay in use).
pub const SPACE_TOLERANCE: u32 = 2 * 4096;

/// Whether the spool gave its space back once the queue was empty: `before` free bytes after
/// provisioning, `after` with the queue empty at the end.
pub fn space_given_back(before: u32, after: u32) -> Option<String> {
    (after.saturating_add(SPACE_TOLERANCE) < before)
        .then(|| format!("the empty spool has {} bytes fewer free than after provisioning ({after} of {before})", before - after))
}

/// The index of the offered message `content` for `recipient` is, if any.
pub fn offered_index(offered: &[Offered], recipient: &str, content: &[u8]) -> Option<usize> {
    let body = without_received(content);
    offered.iter().position(|message| message.recipient == recipient && message.content == body)
}

/// Checks the records against the invariants.
pub fn verdict(offered: &[Offered], records: &Records) -> Verdict {
    let mut verdict = Verdict::default();
    // Per message: (deliveries, confirmed deliveries that may not be repeated, whether one
    // came after such a one).
    let mut counts = vec![(0usize, 0usize, false); offered.len()];
    for delivery in &records.delivered {
        let cut_short = records.cuts.iter().any(|cut| cut.boot == delivery.boot && cut.interrupted.contains(&delivery.connection));
        match offered_index(offered, &delivery.recipient, &delivery.content) {
            Some(index) if offered[index].destination != delivery.destination => verdict.violations.push(format!(
                "message {index} for {} arrived at the {:?} instead of the {:?}",
                delivery.recipient, delivery.destination, offered[index].destination
            )),
            Some(index) => {
                let (total, confirmed, after_confirmed) = &mut counts[index];
                *after_confirmed |= *confirmed > 0;
                *total += 1;
                *confirmed += usize::from(delivery.confirmed && !cut_short);
            }
            None if let Some(subject) = alert_report(delivery) => verdict.alert_reports.push(subject),
            None => verdict.violations.push(format!(
                "a delivery to {} matches no message any sender wrote ({} bytes, starts {:?})",
                delivery.recipient,
                delivery.content.len(),
                String::from_utf8_lossy(&delivery.content[..delivery.content.len().min(200)])
            )),
        }
    }
    for (index, &(total, confirmed, after_confirmed)) in counts.iter().enumerate() {
        if total == 0 && records.accepted.contains(&index) {
            verdict.violations.push(format!("message {index} was answered 250 but never delivered"));
        } else if confirmed > 1 || after_confirmed {
            verdict.violations.push(format!("message {index} was delivered {total} times, {confirmed} of them confirmed"));
        } else if total > 1 {
            verdict.unconfirmed_repeats += total - 1;
        }
    }
    verdict
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peers::{Delivery, Destination};

    fn offered(content: &str) -> Offered {
        Offered { recipient: "a@b.example".into(), content: content.as_bytes().to_vec(), destination: Destination::Mailbox }
    }

    #[test]
    fn the_received_field_and_its_folded_lines_are_skipped() {
        let content = b"Received: from x\r\n\tby y; date\r\nSubject: s\r\n\r\nbody\r\n";
        assert_eq!(without_received(content), b"Subject: s\r\n\r\nbody\r\n");
        assert_eq!(without_received(b"Subject: s\r\n"), b"Subject: s\r\n");
    }

    fn delivered(text: &str, confirmed: bool) -> Delivery {
        Delivery {
            recipient: "a@b.example".into(),
            content: format!("Received: from x\r\n{text}").into_bytes(),
            confirmed,
            boot: 1,
            connection: 1,
            destination: Destination::Mailbox,
        }
    }

    #[test]
    fn a_lost_duplicated_or_altered_message_is_a_violation() {
        let (one, two) = ("Subject: 1\r\n\r\none\r\n", "Subject: 2\r\n\r\ntwo\r\n");
        let messages = [offered(one), offered(two)];
        let mut records = Records { accepted: vec![0, 1], ..Records::default() };
        records.delivered = vec![delivered(one, true), delivered(two, true)];
        assert_eq!(verdict(&messages, &records), Verdict::default());
        records.delivered.pop();
        assert_eq!(verdict(&messages, &records).violations, ["message 1 was answered 250 but never delivered"]);
        records.delivered.push(delivered(one, false));
        assert_eq!(verdict(&messages, &records).violations.len(), 2, "lost, and repeated after a confirmed delivery");
        records.delivered = vec![delivered(one, true), delivered(&two.replace("two", "tw0"), true)];
        assert_eq!(verdict(&messages, &records).violations.len(), 2, "altered and therefore also lost");
    }

    #[test]
    fn a_message_in_clear_on_the_flash_is_found() {
        let mut content = b"Subject: s\r\nMessage-ID: <1.2@sim>\r\n\r\n".to_vec();
        content.extend((0..2000).map(|index| b'a' + (index % 26) as u8));
        let messages = [Offered { recipient: "a@b.example".into(), content: content.clone(), destination: Destination::Mailbox }];
        let mut flash = vec![0xFFu8; 8192];
        assert!(plaintext_on_flash(&messages, &flash, "end").is_empty());
        let body = content.len() - 2000;
        flash[100..100 + 600].copy_from_slice(&content[body..body + 600]);
        assert_eq!(plaintext_on_flash(&messages, &flash, "end").len(), 1, "a piece of the body");
        let mut flash = vec![0xFFu8; 8192];
        flash[4000..4000 + 25].copy_from_slice(b"Message-ID: <1.2@sim>\r\n\r\n");
        assert_eq!(plaintext_on_flash(&messages, &flash, "end").len(), 1, "the Message-ID line");
    }

    #[test]
    fn an_empty_spool_must_give_its_space_back() {
        assert_eq!(space_given_back(100_000, 100_000), None);
        assert_eq!(space_given_back(100_000, 100_000 - SPACE_TOLERANCE), None);
        assert!(space_given_back(100_000, 100_000 - SPACE_TOLERANCE - 1).is_some());
    }

    #[test]
    fn only_a_delivery_the_device_could_not_know_of_may_be_repeated() {
        let one = "Subject: 1\r\n\r\none\r\n";
        let messages = [offered(one)];
        let records = Records { accepted: vec![0], delivered: vec![delivered(one, false), delivered(one, true)], ..Records::default() };
        assert_eq!(verdict(&messages, &records), Verdict { unconfirmed_repeats: 1, ..Verdict::default() });
        let mut records = Records { accepted: vec![0], delivered: vec![delivered(one, true), delivered(one, true)], ..Records::default() };
        assert_eq!(verdict(&messages, &records).violations.len(), 1);
        records.delivered[1].boot = 2;
        records.cuts.push(crate::peers::PowerCut { boot: 1, interrupted: vec![1] });
        assert_eq!(verdict(&messages, &records).unconfirmed_repeats, 1, "the session a power cut interrupted");
        records.cuts[0].interrupted = vec![2];
        assert_eq!(verdict(&messages, &records).violations.len(), 1, "a cut long after the session");
    }

    #[test]
    fn the_device_alert_reports_are_told_apart_from_unknown_deliveries() {
        let report = "From: \"homemx\" <MAILER-DAEMON@b.example>\r\nTo: <postmaster@b.example>\r\nSubject: [homemx] TLS certificate rejected\r\n\r\ntext\r\n";
        let mut delivery = delivered(report, true);
        delivery.recipient = "postmaster@b.example".into();
        let records = Records { delivered: vec![delivery.clone()], ..Records::default() };
        let judged = verdict(&[], &records);
        assert_eq!((judged.violations.len(), judged.alert_reports), (0, vec!["TLS certificate rejected".to_string()]));
        delivery.recipient = "anna@b.example".into();
        let records = Records { delivered: vec![delivery.clone()], ..Records::default() };
        assert_eq!(verdict(&[], &records).violations.len(), 1, "not to the postmaster: no report");
        delivery.recipient = "postmaster@b.example".into();
        delivery.content = delivery.content.iter().copied().map(|byte| if byte == b'[' { b'(' } else { byte }).collect();
        let records = Records { delivered: vec![delivery], ..Records::default() };
        assert_eq!(verdict(&[], &records).violations.len(), 1, "not the device's subject");
    }

    #[test]
    fn a_message_must_arrive_where_it_belongs() {
        let one = "Subject: 1\r\n\r\none\r\n";
        let messages = [Offered { destination: Destination::Smarthost, ..offered(one) }];
        let mut records = Records { accepted: vec![0], delivered: vec![delivered(one, true)], ..Records::default() };
        assert_eq!(verdict(&messages, &records).violations, ["message 0 for a@b.example arrived at the Mailbox instead of the Smarthost", "message 0 was answered 250 but never delivered"]);
        records.delivered[0].destination = Destination::Smarthost;
        assert_eq!(verdict(&messages, &records), Verdict::default());
    }
}
