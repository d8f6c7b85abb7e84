//! What must hold after every run, checked on the peers' records: every message the MX
//! answered `250` was delivered to the mailbox host exactly once, byte for byte but for the
//! `Received:` header the device prepends; nothing arrived that no sender wrote.
//!
//! Owns: nothing. Calls: `peers`.

use crate::peers::{Offered, Records};

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

/// The violations of the invariants, one sentence each (empty: the run is good).
pub fn violations(offered: &[Offered], records: &Records) -> Vec<String> {
    let mut problems = Vec::new();
    let mut delivered_count = vec![0usize; offered.len()];
    for (recipient, content) in &records.delivered {
        let body = without_received(content);
        match offered.iter().position(|message| message.recipient == *recipient && message.content == body) {
            Some(index) => delivered_count[index] += 1,
            None => problems.push(format!(
                "a delivery to {recipient} matches no message any sender wrote ({} bytes, starts {:?})",
                content.len(),
                String::from_utf8_lossy(&content[..content.len().min(200)])
            )),
        }
    }
    for &index in &records.accepted {
        match delivered_count[index] {
            1 => {}
            0 => problems.push(format!("message {index} was answered 250 but never delivered")),
            count => problems.push(format!("message {index} was delivered {count} times")),
        }
    }
    for (index, count) in delivered_count.iter().enumerate() {
        if *count > 1 && !records.accepted.contains(&index) {
            problems.push(format!("message {index} (not answered 250) was delivered {count} times"));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offered(content: &str) -> Offered {
        Offered { recipient: "a@b.example".into(), content: content.as_bytes().to_vec() }
    }

    #[test]
    fn the_received_field_and_its_folded_lines_are_skipped() {
        let content = b"Received: from x\r\n\tby y; date\r\nSubject: s\r\n\r\nbody\r\n";
        assert_eq!(without_received(content), b"Subject: s\r\n\r\nbody\r\n");
        assert_eq!(without_received(b"Subject: s\r\n"), b"Subject: s\r\n");
    }

    #[test]
    fn a_lost_duplicated_or_altered_message_is_a_violation() {
        let messages = [offered("Subject: 1\r\n\r\none\r\n"), offered("Subject: 2\r\n\r\ntwo\r\n")];
        let delivered = |text: &str| ("a@b.example".to_string(), format!("Received: from x\r\n{text}").into_bytes());
        let mut records = Records { accepted: vec![0, 1], ..Records::default() };
        records.delivered = vec![delivered("Subject: 1\r\n\r\none\r\n"), delivered("Subject: 2\r\n\r\ntwo\r\n")];
        assert!(violations(&messages, &records).is_empty());
        records.delivered.pop();
        assert_eq!(violations(&messages, &records), ["message 1 was answered 250 but never delivered"]);
        records.delivered.push(delivered("Subject: 1\r\n\r\none\r\n"));
        assert_eq!(violations(&messages, &records).len(), 2);
        records.delivered = vec![delivered("Subject: 1\r\n\r\none\r\n"), delivered("Subject: 2\r\n\r\ntw0\r\n")];
        assert_eq!(violations(&messages, &records).len(), 2, "altered and therefore also lost");
    }
}
