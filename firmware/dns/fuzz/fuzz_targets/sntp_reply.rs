//! Fuzz target: the SNTP reply check on arbitrary bytes, with the origin nonce taken from the
//! input half of the time so the fuzzer reaches the checks behind it; an accepted reply must
//! echo the nonce, come from a synchronised server of stratum 1..=15, and give a wall clock.
#![no_main]

use homemx_dns::sntp::{parse_reply, NtpTimestamp, WallClock};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, bytes)) = data.split_first() else { return };
    let nonce = if selector & 1 != 0 {
        let mut origin = [0u8; 8];
        for (slot, byte) in origin.iter_mut().zip(bytes.iter().skip(24)) {
            *slot = *byte;
        }
        u64::from_be_bytes(origin)
    } else {
        0x0123_4567_89AB_CDEF
    };
    if let Ok(time) = parse_reply(bytes, NtpTimestamp::from_bits(nonce)) {
        assert!((1..=15).contains(&time.stratum));
        assert!(time.version == 3 || time.version == 4);
        assert_eq!(bytes.get(24..32).map(|origin| origin == nonce.to_be_bytes()), Some(true));
        let sent = u64::from(selector) * 1_000;
        let clock = WallClock::from_exchange(sent, sent + u64::from(selector) * 7, &time);
        let _ = WallClock::is_plausible(clock.unix_seconds(sent + 1_000_000));
        assert!(clock.unix_ms(sent) <= clock.unix_ms(sent + 1));
    }
});
