//! Fuzz target: the DNS response parser on arbitrary bytes, for a few names and every record
//! type, and the same bytes fed to a lookup as a datagram from its server. Nothing may panic;
//! what is accepted must respect the limits (counts, text lengths, host names).
#![no_main]

use homemx_dns::message::{MAX_ADDRESSES, MAX_ASSOCIATIONS, MAX_ASSOCIATION_LEN, MAX_EXCHANGES, MAX_TEXTS, MAX_TEXT_LEN};
use homemx_dns::{is_valid_host_name, parse_response, Answer, Lookup, RecordType};
use libfuzzer_sys::fuzz_target;

const NAMES: [&str; 4] = ["example.org", "_dmarc.example.org", "a.b.c.d.example", "x"];
const TYPES: [RecordType; 8] =
    [RecordType::A, RecordType::Mx, RecordType::Txt, RecordType::Cname, RecordType::Tlsa, RecordType::A, RecordType::Mx, RecordType::Txt];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, bytes)) = data.split_first() else { return };
    let name = NAMES[usize::from(selector & 3)];
    let record_type = TYPES[usize::from(selector >> 2 & 7)];
    // The ID is taken from the message itself half of the time, so the fuzzer gets past it.
    let id = if selector & 0x20 != 0 {
        u16::from_be_bytes([bytes.first().copied().unwrap_or(0), bytes.get(1).copied().unwrap_or(0)])
    } else {
        0xBEEF
    };
    let result = parse_response(id, name, record_type, bytes);
    match &result {
        Ok(Answer::A { records, .. }) => assert!(records.len() <= MAX_ADDRESSES),
        Ok(Answer::Mx { records, .. }) => {
            assert!(records.len() <= MAX_EXCHANGES);
            for record in records {
                assert!(record.exchange.is_empty() || is_valid_host_name(&record.exchange));
                assert_eq!(record.exchange.as_str(), record.exchange.to_ascii_lowercase());
            }
        }
        Ok(Answer::Txt { records, .. }) => {
            assert!(records.len() <= MAX_TEXTS);
            assert!(records.iter().all(|record| record.text.len() <= MAX_TEXT_LEN));
        }
        Ok(Answer::Tlsa { records, .. }) => {
            assert!(records.len() <= MAX_ASSOCIATIONS);
            for record in records {
                assert!(record.data.len() <= MAX_ASSOCIATION_LEN && record.data_length > 0);
                assert!(record.data.is_empty() || record.data.len() == usize::from(record.data_length));
            }
        }
        Ok(Answer::Cname { target, .. }) => assert!(target.is_empty() || is_valid_host_name(target)),
        Ok(Answer::NameError | Answer::NoData) | Err(_) => {}
    }
    if let Ok(answer) = &result {
        assert!(!matches!(answer, Answer::Cname { .. }) || record_type == RecordType::Cname);
    }

    let server = [192, 0, 2, 53];
    let Ok(mut lookup) = Lookup::new(name, record_type, id, &[server], 0) else { return };
    assert!(lookup.poll_transmit(0).is_some());
    lookup.handle_datagram(server, 53, bytes, 10);
    if let Some(outcome) = lookup.poll_result(10) {
        if let Ok(parsed) = &result {
            assert_eq!(outcome.as_ref().ok(), Some(parsed));
        }
    } else {
        assert!(result.is_err());
    }
});
