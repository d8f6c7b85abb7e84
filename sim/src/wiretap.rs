//! An eavesdropper on the simulated Ethernet: it sees every frame sent (`Segment::observe`,
//! before the faults), reassembles each TCP connection's byte stream per direction from the
//! sequence numbers (retransmissions, duplicates and reorders fall into place), keeps UDP
//! payloads, and at the end of a boot says what it could read in clear where TLS is required:
//!
//! - the smarthost's or the backup MX's password, anywhere on the wire: raw, or base64 as AUTH
//!   PLAIN or LOGIN would carry it (at each of the three alignments inside a longer base64 text);
//! - any piece of an outbound message (its `Message-ID` line, 48-byte pieces of the body) on a
//!   connection with the smarthost, or of a backup-MX message on a connection with the backup
//!   MX ([`Wiretap::messages_seen_with`]).
//!
//! So that a broken tap cannot pass for a quiet wire, it must also find what is legitimately
//! in clear: the `Message-ID` line of every outbound message the device answered `250` to on the
//! LAN client's submission connection (the LAN side carries no TLS; [`blind_spots`]), and a
//! piece of every backup-MX message on its delivery to the mailbox host.
//!
//! Owns: the captured streams. Calls: `invariants` (the needles of a message), `peers`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::rc::Rc;

use base64::Engine as _;
use homemx_bsp_sim::ethernet::Segment;

use crate::peers::Offered;

/// One end of a TCP connection.
type Endpoint = (Ipv4Addr, u16);

/// One direction of one TCP connection.
struct Flow {
    from: Endpoint,
    to: Endpoint,
    /// The sequence number of the stream's first byte.
    base: u32,
    /// The stream; bytes never seen stay zero.
    data: Vec<u8>,
}

/// What the tap captured in this boot.
#[derive(Default)]
pub struct Wiretap {
    flows: Vec<Flow>,
    /// The flow now running per (from, to).
    current: HashMap<(Endpoint, Endpoint), usize>,
    /// UDP payloads with their ends.
    datagrams: Vec<(Endpoint, Endpoint, Vec<u8>)>,
    frames: u64,
}

/// The largest stream offset taken (a segment beyond it is not of this connection).
const MAXIMUM_STREAM: usize = 64 << 20;

impl Wiretap {
    /// Taps `segment` from now on.
    pub fn attach(segment: &Segment) -> Rc<RefCell<Wiretap>> {
        let tap: Rc<RefCell<Wiretap>> = Rc::default();
        let observer = tap.clone();
        segment.observe(move |frame| observer.borrow_mut().frame(frame));
        tap
    }

    /// Frames seen.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Takes one Ethernet frame as sent.
    fn frame(&mut self, frame: &[u8]) {
        self.frames += 1;
        // IPv4 only (the simulation has no IPv6 peers); ARP and the rest carry no payload.
        if frame.len() < 14 + 20 || frame[12..14] != [0x08, 0x00] {
            return;
        }
        let ip = &frame[14..];
        let header_length = usize::from(ip[0] & 0xF) * 4;
        let total_length = usize::from(u16::from_be_bytes([ip[2], ip[3]])).min(ip.len());
        if ip[0] >> 4 != 4 || header_length < 20 || total_length < header_length {
            return;
        }
        let source = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
        let destination = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
        let transport = &ip[header_length..total_length];
        match ip[9] {
            6 if transport.len() >= 20 => {
                let from = (source, u16::from_be_bytes([transport[0], transport[1]]));
                let to = (destination, u16::from_be_bytes([transport[2], transport[3]]));
                let sequence = u32::from_be_bytes([transport[4], transport[5], transport[6], transport[7]]);
                let offset = usize::from(transport[12] >> 4) * 4;
                let syn = transport[13] & 0x02 != 0;
                let payload = transport.get(offset..).unwrap_or_default();
                self.segment(from, to, sequence, syn, payload);
            }
            17 if transport.len() >= 8 => {
                let from = (source, u16::from_be_bytes([transport[0], transport[1]]));
                let to = (destination, u16::from_be_bytes([transport[2], transport[3]]));
                self.datagrams.push((from, to, transport[8..].to_vec()));
            }
            _ => {}
        }
    }

    fn segment(&mut self, from: Endpoint, to: Endpoint, sequence: u32, syn: bool, payload: &[u8]) {
        let key = (from, to);
        let index = match self.current.get(&key) {
            // A SYN starts a new connection between the same ends (a repeated SYN of the same
            // one has the same sequence number and changes nothing).
            Some(&index) if !(syn && self.flows[index].base != sequence.wrapping_add(1)) => index,
            _ if !syn && payload.is_empty() => return,
            _ => {
                // A connection seen from its SYN starts after it; one seen mid-way, here.
                let base = if syn { sequence.wrapping_add(1) } else { sequence };
                self.flows.push(Flow { from, to, base, data: Vec::new() });
                self.current.insert(key, self.flows.len() - 1);
                self.flows.len() - 1
            }
        };
        if payload.is_empty() {
            return;
        }
        let flow = &mut self.flows[index];
        let start = sequence.wrapping_add(u32::from(syn)).wrapping_sub(flow.base) as usize;
        if start + payload.len() > MAXIMUM_STREAM {
            return;
        }
        if flow.data.len() < start + payload.len() {
            flow.data.resize(start + payload.len(), 0);
        }
        flow.data[start..start + payload.len()].copy_from_slice(payload);
    }

    /// Every way the secret `password` of `user` can be seen on the wire: raw, and base64 as
    /// AUTH PLAIN (`\0user\0password`, `user\0user\0password`) and LOGIN (alone) send it, and
    /// the part of its base64 that does not depend on what comes before or after it, at each
    /// of the three alignments.
    pub fn secret_forms(user: &str, password: &str) -> Vec<Vec<u8>> {
        let encode = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes).into_bytes();
        let mut forms = vec![password.as_bytes().to_vec(), encode(password.as_bytes())];
        forms.push(encode(format!("\0{user}\0{password}").as_bytes()));
        forms.push(encode(format!("{user}\0{user}\0{password}").as_bytes()));
        for shift in 0..3 {
            let mut bytes = vec![0u8; shift];
            bytes.extend_from_slice(password.as_bytes());
            let encoded = encode(&bytes);
            let start = if shift > 0 { 4 } else { 0 };
            let end = bytes.len() / 3 * 4;
            if end >= start + 8 {
                forms.push(encoded[start..end].to_vec());
            }
        }
        forms
    }

    /// What was seen in clear where TLS is required, one sentence each (empty: nothing), for
    /// the smarthost at `smarthost`, the password's `secret_forms` and the offered messages.
    pub fn findings(&self, smarthost: Endpoint, secret_forms: &[Vec<u8>], offered: &[Offered]) -> Vec<String> {
        let mut findings = Vec::new();
        let describe = |from: Endpoint, to: Endpoint| format!("{}:{} → {}:{}", from.0, from.1, to.0, to.1);
        let streams = self.flows.iter().map(|flow| (flow.from, flow.to, &flow.data, "TCP")).chain(
            self.datagrams.iter().map(|(from, to, payload)| (*from, *to, payload, "UDP")),
        );
        for (from, to, bytes, protocol) in streams {
            if let Some(form) = secret_forms.iter().find(|form| contains(bytes, form)) {
                findings.push(format!(
                    "the wire tap read a provider's password in clear ({:?}) on {protocol} {}",
                    String::from_utf8_lossy(form),
                    describe(from, to)
                ));
            }
        }
        let outbound: Vec<(usize, &Offered)> =
            offered.iter().enumerate().filter(|(_, message)| message.destination == crate::peers::Destination::Smarthost).collect();
        for flow in self.flows.iter().filter(|flow| flow.to == smarthost || flow.from == smarthost) {
            for (index, message) in &outbound {
                if let Some(needle) = crate::invariants::needles(message).into_iter().find(|needle| contains(&flow.data, needle)) {
                    findings.push(format!(
                        "the wire tap read outbound message {index} in clear on the smarthost connection {}: {:?}",
                        describe(flow.from, flow.to),
                        String::from_utf8_lossy(needle)
                    ));
                }
            }
        }
        findings
    }
}

impl Wiretap {
    /// The messages of `messages` (by index) of which the tap read any piece on a connection
    /// with `endpoint`, in either direction.
    pub fn messages_seen_with(&self, endpoint: Endpoint, messages: &[Offered]) -> Vec<usize> {
        let flows: Vec<&Flow> = self.flows.iter().filter(|flow| flow.to == endpoint || flow.from == endpoint).collect();
        (0..messages.len())
            .filter(|&index| {
                crate::invariants::needles(&messages[index]).into_iter().any(|needle| flows.iter().any(|flow| contains(&flow.data, needle)))
            })
            .collect()
    }

    /// The control: the outbound messages whose `Message-ID` line the tap read in clear on a
    /// LAN client's submission to the device's `submission` port (every one the device
    /// answered `250` to must be among them, over the boots, or the tap is blind).
    pub fn read_on_submission(&self, submission: Endpoint, offered: &[Offered]) -> Vec<usize> {
        let submitted: Vec<&Flow> = self.flows.iter().filter(|flow| flow.to == submission).collect();
        offered
            .iter()
            .enumerate()
            .filter(|(_, message)| message.destination == crate::peers::Destination::Smarthost)
            .filter(|(_, message)| {
                crate::invariants::needles(message).first().is_some_and(|message_id| submitted.iter().any(|flow| contains(&flow.data, message_id)))
            })
            .map(|(index, _)| index)
            .collect()
    }
}

/// The control's verdict: an outbound message answered `250` that the tap never read on its
/// submission means the tap cannot see (and its silence on the smarthost's connections means
/// nothing).
pub fn blind_spots(offered: &[Offered], accepted: &[usize], read_on_submission: &[usize]) -> Vec<String> {
    accepted
        .iter()
        .filter(|index| offered[**index].destination == crate::peers::Destination::Smarthost && !read_on_submission.contains(index))
        .map(|index| format!("the wire tap did not read outbound message {index} on its submission in clear: the tap is blind"))
        .collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_found_in_any_base64_alignment() {
        let forms = Wiretap::secret_forms("homemx", "a fairly long password 123");
        let encode = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes).into_bytes();
        for prefix in ["", "x", "xy", "xyz", "\0homemx\0"] {
            let text = encode(format!("{prefix}a fairly long password 123 and more").as_bytes());
            assert!(forms.iter().any(|form| contains(&text, form)), "prefix {prefix:?}");
        }
        assert!(!forms.iter().any(|form| contains(&encode(b"another text entirely, long enough to matter"), form)));
    }

    /// An Ethernet + IPv4 + TCP frame (checksums left zero: the tap does not check them).
    fn tcp_frame(from: Endpoint, to: Endpoint, sequence: u32, syn: bool, payload: &[u8]) -> Vec<u8> {
        let mut frame = vec![0u8; 14];
        frame[12..14].copy_from_slice(&[0x08, 0x00]);
        let total = (20 + 20 + payload.len()) as u16;
        let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 6, 0, 0];
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        ip.extend_from_slice(&from.0.octets());
        ip.extend_from_slice(&to.0.octets());
        let mut tcp = vec![0u8; 20];
        tcp[0..2].copy_from_slice(&from.1.to_be_bytes());
        tcp[2..4].copy_from_slice(&to.1.to_be_bytes());
        tcp[4..8].copy_from_slice(&sequence.to_be_bytes());
        tcp[12] = 5 << 4;
        tcp[13] = if syn { 0x02 } else { 0x10 };
        frame.extend_from_slice(&ip);
        frame.extend_from_slice(&tcp);
        frame.extend_from_slice(payload);
        frame
    }

    #[test]
    fn streams_are_reassembled_from_reordered_and_repeated_segments() {
        let client = (Ipv4Addr::new(10, 0, 0, 2), 40000);
        let server = (Ipv4Addr::new(10, 0, 0, 1), 587);
        let mut tap = Wiretap::default();
        let isn = u32::MAX - 3;
        tap.frame(&tcp_frame(client, server, isn, true, b""));
        tap.frame(&tcp_frame(client, server, isn.wrapping_add(1 + 9), false, b"PASSWORD here"));
        tap.frame(&tcp_frame(client, server, isn.wrapping_add(1), false, b"AUTH the "));
        tap.frame(&tcp_frame(client, server, isn.wrapping_add(1), false, b"AUTH the "));
        assert_eq!(tap.flows.len(), 1);
        assert_eq!(tap.flows[0].data, b"AUTH the PASSWORD here");
        let forms = vec![b"the PASSWORD".to_vec()];
        assert_eq!(tap.findings(server, &forms, &[]).len(), 1);
        assert!(tap.findings(server, &[b"absent".to_vec()], &[]).is_empty());
    }
}
