//! The LAN's DNS server (the lease names 10.0.0.1): answers A questions for the provider's
//! names from a fixed zone and NXDOMAIN for every other name, over UDP 53, as the device's
//! resolver asks it (one question, class IN, RD set, no EDNS). A name of the zone asked for
//! another type gets an empty NOERROR (NODATA).
//!
//! [`answer`] is the sans-I/O core; [`serve`] runs it on a UDP socket of the peers' stack.
//! Hand-written from RFC 1035, independently of the device's parser, which the tests use.
//! Queries are untrusted input: every length is checked.
//!
//! Owns: nothing. Calls: nothing.

use embassy_net::udp::{PacketMetadata, UdpSocket};
use embassy_net::Stack;

/// The DNS port.
pub const DNS_PORT: u16 = 53;
const HEADER_BYTES: usize = 12;
const TYPE_A: u16 = 1;
const CLASS_IN: u16 = 1;
const RCODE_FORMAT_ERROR: u16 = 1;
const RCODE_NAME_ERROR: u16 = 3;
/// Seconds the answers may be cached.
const TTL: u32 = 300;

/// The question of `query`: (its name, lower case, without the trailing dot; where it ends).
fn question(query: &[u8]) -> Option<(String, usize)> {
    let mut at = HEADER_BYTES;
    let mut labels: Vec<String> = Vec::new();
    loop {
        let length = *query.get(at)? as usize;
        at += 1;
        if length == 0 {
            break;
        }
        // No compression in a question of one name; a pointer or reserved bits: refused.
        if length > 63 {
            return None;
        }
        let label = query.get(at..at + length)?;
        labels.push(String::from_utf8_lossy(label).to_ascii_lowercase());
        at += length;
    }
    // Type and class.
    query.get(at..at + 4)?;
    Some((labels.join("."), at + 4))
}

/// The reply to `query` from the zone `zone` (lower-case names, their one address), or `None`
/// for what is no standard query (a response, another opcode, too short).
pub fn answer(query: &[u8], zone: &[(&str, [u8; 4])]) -> Option<Vec<u8>> {
    let header = query.get(..HEADER_BYTES)?;
    let flags = u16::from_be_bytes([header[2], header[3]]);
    let question_count = u16::from_be_bytes([header[4], header[5]]);
    if flags & 0x8000 != 0 || flags >> 11 & 0xF != 0 {
        return None;
    }
    // QR, the query's RD, RA.
    let reply_flags = 0x8080 | (flags & 0x0100);
    let mut reply = Vec::with_capacity(128);
    reply.extend_from_slice(&header[..2]);
    let parsed = if question_count == 1 { question(query) } else { None };
    let Some((name, question_end)) = parsed else {
        reply.extend_from_slice(&(reply_flags | RCODE_FORMAT_ERROR).to_be_bytes());
        reply.extend_from_slice(&[0; 8]);
        return Some(reply);
    };
    let record_type = u16::from_be_bytes([query[question_end - 4], query[question_end - 3]]);
    let class = u16::from_be_bytes([query[question_end - 2], query[question_end - 1]]);
    let address = zone.iter().find(|(zone_name, _)| *zone_name == name).map(|(_, address)| *address);
    let rcode = if address.is_some() { 0 } else { RCODE_NAME_ERROR };
    let answer = address.filter(|_| record_type == TYPE_A && class == CLASS_IN);
    reply.extend_from_slice(&(reply_flags | rcode).to_be_bytes());
    reply.extend_from_slice(&1u16.to_be_bytes());
    reply.extend_from_slice(&u16::from(answer.is_some()).to_be_bytes());
    reply.extend_from_slice(&[0; 4]);
    reply.extend_from_slice(&query[HEADER_BYTES..question_end]);
    if let Some(address) = answer {
        // The name by a pointer to the question's (offset 12).
        reply.extend_from_slice(&0xC00Cu16.to_be_bytes());
        reply.extend_from_slice(&TYPE_A.to_be_bytes());
        reply.extend_from_slice(&CLASS_IN.to_be_bytes());
        reply.extend_from_slice(&TTL.to_be_bytes());
        reply.extend_from_slice(&4u16.to_be_bytes());
        reply.extend_from_slice(&address);
    }
    Some(reply)
}

/// Answers DNS queries on port 53 of `stack` from `zone` for ever.
pub async fn serve(stack: Stack<'static>, zone: Vec<(&'static str, [u8; 4])>) -> ! {
    let mut receive_metadata = [PacketMetadata::EMPTY; 4];
    let mut transmit_metadata = [PacketMetadata::EMPTY; 4];
    let mut receive_buffer = [0u8; 2048];
    let mut transmit_buffer = [0u8; 2048];
    let mut socket = UdpSocket::new(stack, &mut receive_metadata, &mut receive_buffer, &mut transmit_metadata, &mut transmit_buffer);
    socket.bind(DNS_PORT).expect("a fresh socket binds");
    let mut query = [0u8; 512];
    loop {
        let Ok((length, from)) = socket.recv_from(&mut query).await else { continue };
        if let Some(reply) = answer(&query[..length], &zone) {
            // A full transmit buffer only loses this reply; the resolver asks again.
            let _ = socket.send_to(&reply, from.endpoint).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use homemx_dns::{build_query, parse_response, Answer, RecordType};

    const ZONE: [(&str, [u8; 4]); 1] = [("smarthost.example.net", [10, 0, 0, 1])];

    fn ask(name: &str, record_type: RecordType) -> Answer {
        let mut query = [0u8; 300];
        let length = build_query(0x4242, name, record_type, &mut query).unwrap();
        let reply = answer(&query[..length], &ZONE).expect("a query is answered");
        parse_response(0x4242, name, record_type, &reply).expect("the device's parser accepts the reply")
    }

    #[test]
    fn the_device_resolver_reads_the_zone() {
        match ask("Smarthost.Example.NET", RecordType::A) {
            Answer::A { records, omitted: 0 } => assert_eq!(records[0].address, [10, 0, 0, 1]),
            other => panic!("{other:?}"),
        }
        assert_eq!(ask("elsewhere.example", RecordType::A), Answer::NameError);
        assert_eq!(ask("smarthost.example.net", RecordType::Mx), Answer::NoData);
    }

    #[test]
    fn malformed_queries_get_no_answer_or_a_format_error() {
        assert!(answer(&[0; 11], &ZONE).is_none(), "shorter than a header");
        let mut response = [0u8; 40];
        response[2] = 0x80;
        assert!(answer(&response, &ZONE).is_none(), "a response");
        let mut truncated = [0u8; 300];
        let length = build_query(1, "smarthost.example.net", RecordType::A, &mut truncated).unwrap();
        let reply = answer(&truncated[..length - 3], &ZONE).expect("answered");
        assert_eq!(u16::from_be_bytes([reply[2], reply[3]]) & 0xF, RCODE_FORMAT_ERROR);
    }
}
