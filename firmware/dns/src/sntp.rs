//! SNTP client mode (RFC 4330, RFC 5905 v4): the 48-byte request, the strict check of the
//! reply, NTP timestamps across the 2036 era rollover, and `WallClock`, the Unix time derived
//! from one exchange and the caller's monotonic clock.

/// The length of an NTP packet without extensions.
pub const PACKET_LEN: usize = 48;
/// The NTP server port.
pub const NTP_PORT: u16 = 123;
/// Seconds from the NTP epoch (1900-01-01) to the Unix epoch (1970-01-01).
pub const NTP_TO_UNIX_SECONDS: u64 = 2_208_988_800;
/// The era pivot: NTP timestamps are read as times in [2026-01-01, 2026-01-01 + 2^32 s), that
/// is up to early 2162, whichever NTP era (the first ends 2036-02-07) they fall in.
pub const PIVOT_UNIX_SECONDS: u64 = 1_767_225_600;
/// The earliest Unix time [`WallClock::is_plausible`] accepts: 2026-01-01T00:00:00Z.
pub const PLAUSIBLE_FROM_UNIX_SECONDS: u64 = PIVOT_UNIX_SECONDS;
/// The first Unix time [`WallClock::is_plausible`] refuses: 2100-01-01T00:00:00Z.
pub const PLAUSIBLE_UNTIL_UNIX_SECONDS: u64 = 4_102_444_800;

const MODE_CLIENT: u8 = 3;
const MODE_SERVER: u8 = 4;
const MODE_BROADCAST: u8 = 5;
const VERSION: u8 = 4;

/// A 64-bit NTP timestamp: seconds since 1900 modulo 2^32 and a binary fraction of a second.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct NtpTimestamp {
    /// Whole seconds since the start of the NTP era.
    pub seconds: u32,
    /// Fraction of a second in units of 2^-32 s.
    pub fraction: u32,
}

impl NtpTimestamp {
    /// The timestamp whose 64 bits (seconds high, fraction low) are `bits`: how the caller
    /// turns a random `u64` into the request's transmit timestamp (the nonce).
    pub const fn from_bits(bits: u64) -> NtpTimestamp {
        NtpTimestamp { seconds: (bits >> 32) as u32, fraction: bits as u32 }
    }

    /// The 64 bits of the timestamp.
    pub const fn to_bits(self) -> u64 {
        (self.seconds as u64) << 32 | self.fraction as u64
    }

    /// The timestamp of a Unix time in milliseconds (era number dropped).
    pub const fn from_unix_ms(unix_ms: u64) -> NtpTimestamp {
        let seconds = (unix_ms / 1000 + NTP_TO_UNIX_SECONDS) as u32;
        // Rounded up, so that `unix_ms` gives back the same millisecond.
        let fraction = ((unix_ms % 1000) << 32).div_ceil(1000);
        NtpTimestamp { seconds, fraction: fraction as u32 }
    }

    /// The Unix time in milliseconds, taking the timestamp to lie in the 2^32 seconds from
    /// [`PIVOT_UNIX_SECONDS`] (so 2036's rollover to era 1 is handled).
    pub const fn unix_ms(self) -> u64 {
        let pivot_ntp = (PIVOT_UNIX_SECONDS + NTP_TO_UNIX_SECONDS) as u32;
        let since_pivot = self.seconds.wrapping_sub(pivot_ntp) as u64;
        let milliseconds = (self.fraction as u64 * 1000) >> 32;
        (PIVOT_UNIX_SECONDS + since_pivot) * 1000 + milliseconds
    }

    fn read(bytes: &[u8; PACKET_LEN], at: usize) -> NtpTimestamp {
        let word = |offset: usize| {
            let mut value = 0u32;
            for index in offset..offset + 4 {
                value = value << 8 | u32::from(bytes.get(index).copied().unwrap_or(0));
            }
            value
        };
        NtpTimestamp { seconds: word(at), fraction: word(at + 4) }
    }
}

/// A kiss-of-death code (RFC 5905 7.4): the ASCII reference ID of a stratum-0 reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KissCode(pub [u8; 4]);

impl KissCode {
    /// The server asks us to query less often.
    pub const RATE: KissCode = KissCode(*b"RATE");
    /// Access denied: stop querying this server.
    pub const DENY: KissCode = KissCode(*b"DENY");
    /// Access restricted: stop querying this server.
    pub const RSTR: KissCode = KissCode(*b"RSTR");

    /// True for DENY and RSTR, after which RFC 5905 says to stop using the server.
    pub fn must_stop(self) -> bool {
        self == KissCode::DENY || self == KissCode::RSTR
    }
}

/// The leap second warning of a synchronised server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeapIndicator {
    /// No leap second pending.
    None,
    /// The last minute of the day has 61 seconds.
    InsertSecond,
    /// The last minute of the day has 59 seconds.
    DeleteSecond,
}

/// Why a reply was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SntpError {
    /// Shorter than 48 bytes.
    TooShort,
    /// Mode 5: a broadcast, which a client in unicast mode does not take.
    Broadcast,
    /// A mode other than 4 (server) or 5.
    UnexpectedMode(u8),
    /// A version other than 3 or 4.
    UnsupportedVersion(u8),
    /// The origin timestamp is not our transmit timestamp: not a reply to our request.
    Spoofed,
    /// Stratum 0: the server sent a kiss-of-death with this code.
    KissOfDeath(KissCode),
    /// Stratum 16 (unsynchronised) or above.
    BadStratum(u8),
    /// Leap indicator 3: the server's clock is not synchronised.
    Unsynchronised,
    /// The receive or transmit timestamp is zero.
    ZeroTimestamp,
}

/// What a valid reply says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerTime {
    /// The leap second warning.
    pub leap: LeapIndicator,
    /// The version the server answered with (3 or 4).
    pub version: u8,
    /// The server's stratum, 1..=15.
    pub stratum: u8,
    /// When the server received our request (T2).
    pub receive: NtpTimestamp,
    /// When the server sent the reply (T3).
    pub transmit: NtpTimestamp,
}

/// Writes a client request (LI 0, version 4, mode 3) carrying `transmit` as its transmit
/// timestamp and zero everywhere else. `transmit` should be a random 64-bit value: the server
/// echoes it as the origin timestamp, which is how [`parse_reply`] recognises the reply.
pub fn build_request(transmit: NtpTimestamp, out: &mut [u8; PACKET_LEN]) {
    *out = [0; PACKET_LEN];
    out[0] = VERSION << 3 | MODE_CLIENT;
    for (slot, byte) in out[40..].iter_mut().zip(transmit.to_bits().to_be_bytes()) {
        *slot = byte;
    }
}

/// Checks a reply to the request sent with `sent_transmit`, strictly: at least 48 bytes,
/// mode 4 (5, broadcast, refused), version 3 or 4, origin timestamp equal to `sent_transmit`,
/// then stratum 0 (kiss-of-death, with its code), stratum 16 and above, leap indicator 3, and
/// zero receive or transmit timestamps. The origin is checked before the kiss code, so a forged
/// kiss-of-death cannot make the caller stop using a server.
pub fn parse_reply(bytes: &[u8], sent_transmit: NtpTimestamp) -> Result<ServerTime, SntpError> {
    let packet: &[u8; PACKET_LEN] =
        bytes.get(..PACKET_LEN).and_then(|head| head.try_into().ok()).ok_or(SntpError::TooShort)?;
    let first = packet[0];
    let (leap, version, mode) = (first >> 6, first >> 3 & 7, first & 7);
    match mode {
        MODE_SERVER => {}
        MODE_BROADCAST => return Err(SntpError::Broadcast),
        other => return Err(SntpError::UnexpectedMode(other)),
    }
    if version != 3 && version != 4 {
        return Err(SntpError::UnsupportedVersion(version));
    }
    if NtpTimestamp::read(packet, 24) != sent_transmit {
        return Err(SntpError::Spoofed);
    }
    let stratum = packet[1];
    match stratum {
        0 => return Err(SntpError::KissOfDeath(KissCode([packet[12], packet[13], packet[14], packet[15]]))),
        1..=15 => {}
        _ => return Err(SntpError::BadStratum(stratum)),
    }
    let leap = match leap {
        0 => LeapIndicator::None,
        1 => LeapIndicator::InsertSecond,
        2 => LeapIndicator::DeleteSecond,
        _ => return Err(SntpError::Unsynchronised),
    };
    let receive = NtpTimestamp::read(packet, 32);
    let transmit = NtpTimestamp::read(packet, 40);
    if receive.to_bits() == 0 || transmit.to_bits() == 0 {
        return Err(SntpError::ZeroTimestamp);
    }
    Ok(ServerTime { leap, version, stratum, receive, transmit })
}

/// Unix time from the caller's monotonic millisecond clock: a Unix time known at one
/// monotonic instant, carried forward by the monotonic clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WallClock {
    base_unix_ms: u64,
    base_monotonic_ms: u64,
    round_trip_ms: u64,
}

impl WallClock {
    /// The clock that reads `unix_ms` at monotonic instant `monotonic_ms`.
    pub const fn set(unix_ms: u64, monotonic_ms: u64) -> WallClock {
        WallClock { base_unix_ms: unix_ms, base_monotonic_ms: monotonic_ms, round_trip_ms: 0 }
    }

    /// The clock from one exchange: the request left at monotonic `sent_monotonic_ms` (T1),
    /// the reply arrived at `received_monotonic_ms` (T4), the server received the request at
    /// T2 and sent the reply at T3 (its Unix clock).
    ///
    /// NTP's offset θ = ((T2 − T1) + (T3 − T4)) / 2 is here the offset from our monotonic
    /// clock to Unix time (T1, T4 monotonic; T2, T3 Unix), so Unix ≈ monotonic + θ; at T4 that
    /// is T3 + δ/2 with the round trip δ = (T4 − T1) − (T3 − T2): the reply is taken to have
    /// spent half the network time on its way back. The error is at most δ/2 (see
    /// [`round_trip_ms`](Self::round_trip_ms): callers should refuse exchanges with a long one).
    pub fn from_exchange(sent_monotonic_ms: u64, received_monotonic_ms: u64, reply: &ServerTime) -> WallClock {
        let t1 = i128::from(sent_monotonic_ms);
        let t4 = i128::from(received_monotonic_ms.max(sent_monotonic_ms));
        let t2 = i128::from(reply.receive.unix_ms());
        let t3 = i128::from(reply.transmit.unix_ms());
        let offset = ((t2 - t1) + (t3 - t4)) / 2;
        let round_trip = ((t4 - t1) - (t3 - t2)).max(0);
        WallClock {
            base_unix_ms: u64::try_from((t4 + offset).max(0)).unwrap_or(u64::MAX),
            base_monotonic_ms: received_monotonic_ms.max(sent_monotonic_ms),
            round_trip_ms: u64::try_from(round_trip).unwrap_or(u64::MAX),
        }
    }

    /// Unix milliseconds at monotonic instant `monotonic_ms` (earlier instants than the base
    /// count backwards; never below 0).
    pub fn unix_ms(&self, monotonic_ms: u64) -> u64 {
        if monotonic_ms >= self.base_monotonic_ms {
            self.base_unix_ms.saturating_add(monotonic_ms - self.base_monotonic_ms)
        } else {
            self.base_unix_ms.saturating_sub(self.base_monotonic_ms - monotonic_ms)
        }
    }

    /// Unix seconds at monotonic instant `monotonic_ms`.
    pub fn unix_seconds(&self, monotonic_ms: u64) -> u64 {
        self.unix_ms(monotonic_ms) / 1000
    }

    /// The network round trip of the exchange the clock came from (0 for [`set`](Self::set)).
    pub fn round_trip_ms(&self) -> u64 {
        self.round_trip_ms
    }

    /// True if `unix_seconds` is a time this appliance can be living in: from
    /// 2026-01-01 (before its firmware existed) to the end of 2099.
    pub fn is_plausible(unix_seconds: u64) -> bool {
        (PLAUSIBLE_FROM_UNIX_SECONDS..PLAUSIBLE_UNTIL_UNIX_SECONDS).contains(&unix_seconds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// 2026-03-15T12:00:00Z.
    const MARCH_2026_UNIX: u64 = 1_773_576_000;
    const NONCE: NtpTimestamp = NtpTimestamp { seconds: 0x8BAD_F00D, fraction: 0x1234_5678 };

    /// A server reply by hand: LI/VN/mode byte, stratum, reference ID, origin, receive, transmit.
    fn reply(first: u8, stratum: u8, reference: [u8; 4], origin: u64, receive: u64, transmit: u64) -> [u8; 48] {
        let mut packet = [0u8; 48];
        packet[0] = first;
        packet[1] = stratum;
        packet[2] = 6; // poll
        packet[3] = 0xEC; // precision -20
        packet[12..16].copy_from_slice(&reference);
        packet[16..24].copy_from_slice(&receive.to_be_bytes()); // reference timestamp
        packet[24..32].copy_from_slice(&origin.to_be_bytes());
        packet[32..40].copy_from_slice(&receive.to_be_bytes());
        packet[40..48].copy_from_slice(&transmit.to_be_bytes());
        packet
    }

    fn good_reply(receive: u64, transmit: u64) -> [u8; 48] {
        reply(0x24, 2, *b"GPS\0", NONCE.to_bits(), receive, transmit)
    }

    #[test]
    fn request_bytes() {
        let mut out = [0xAAu8; 48];
        build_request(NtpTimestamp::from_bits(0x0102_0304_0506_0708), &mut out);
        assert_eq!(out[0], 0x23);
        assert!(out[1..40].iter().all(|&byte| byte == 0));
        assert_eq!(&out[40..], &[1, 2, 3, 4, 5, 6, 7, 8]);
    }

    #[test]
    fn known_date() {
        // 2026-03-15T12:00:00.500Z: NTP seconds 3_982_564_800 = 0xED61_1DC0, fraction 2^31.
        let seconds = MARCH_2026_UNIX + NTP_TO_UNIX_SECONDS;
        assert_eq!(seconds, 0xED61_1DC0);
        let timestamp = seconds << 32 | 0x8000_0000;
        let bytes = good_reply(timestamp, timestamp + (1 << 32) / 1000 * 3);
        let time = parse_reply(&bytes, NONCE).unwrap();
        assert_eq!(time.stratum, 2);
        assert_eq!(time.version, 4);
        assert_eq!(time.leap, LeapIndicator::None);
        assert_eq!(time.receive.unix_ms(), MARCH_2026_UNIX * 1000 + 500);
        assert_eq!(time.transmit.unix_ms(), MARCH_2026_UNIX * 1000 + 502);
        // Extension fields or a MAC after the 48 bytes are allowed.
        let mut longer = bytes.to_vec();
        longer.extend_from_slice(&[0; 20]);
        assert_eq!(parse_reply(&longer, NONCE), Ok(time));
    }

    #[test]
    fn era_rollover() {
        // The last second of era 0: 2036-02-07T06:28:15Z.
        assert_eq!(NtpTimestamp { seconds: u32::MAX, fraction: 0 }.unix_ms(), 2_085_978_495_000);
        // Era 1 starts at 2036-02-07T06:28:16Z with seconds 0.
        assert_eq!(NtpTimestamp { seconds: 0, fraction: 0 }.unix_ms(), 2_085_978_496_000);
        // 2040-01-01T00:00:00Z is Unix 2_208_988_800: NTP seconds 2 * 2_208_988_800 - 2^32 in era 1.
        assert_eq!(NtpTimestamp { seconds: 123_010_304, fraction: 0 }.unix_ms(), 2_208_988_800_000);
        // The pivot itself and the second before it (which wraps to the far end, 2162).
        let pivot = (PIVOT_UNIX_SECONDS + NTP_TO_UNIX_SECONDS) as u32;
        assert_eq!(NtpTimestamp { seconds: pivot, fraction: 0 }.unix_ms(), PIVOT_UNIX_SECONDS * 1000);
        let before = NtpTimestamp { seconds: pivot - 1, fraction: 0 }.unix_ms() / 1000;
        assert_eq!(before, PIVOT_UNIX_SECONDS + (1 << 32) - 1);
        assert!(!WallClock::is_plausible(before));
        // A reply from era 1 parses and converts.
        let timestamp = 123_010_304u64 << 32;
        let time = parse_reply(&good_reply(timestamp, timestamp), NONCE).unwrap();
        assert_eq!(time.transmit.unix_ms() / 1000, 2_208_988_800);
    }

    #[test]
    fn refusals() {
        let ts = (MARCH_2026_UNIX + NTP_TO_UNIX_SECONDS) << 32;
        let nonce = NONCE.to_bits();
        let table: [([u8; 48], SntpError); 11] = [
            (reply(0x24, 0, *b"RATE", nonce, ts, ts), SntpError::KissOfDeath(KissCode::RATE)),
            (reply(0x24, 0, *b"DENY", nonce, ts, ts), SntpError::KissOfDeath(KissCode::DENY)),
            (reply(0xE4, 2, [0; 4], nonce, ts, ts), SntpError::Unsynchronised),
            (reply(0x24, 2, [0; 4], nonce ^ 1, ts, ts), SntpError::Spoofed),
            (reply(0x24, 2, [0; 4], 0, ts, ts), SntpError::Spoofed),
            (reply(0x25, 2, [0; 4], nonce, ts, ts), SntpError::Broadcast),
            (reply(0x23, 2, [0; 4], nonce, ts, ts), SntpError::UnexpectedMode(3)),
            (reply(0x14, 2, [0; 4], nonce, ts, ts), SntpError::UnsupportedVersion(2)),
            (reply(0x24, 16, [0; 4], nonce, ts, ts), SntpError::BadStratum(16)),
            (reply(0x24, 2, [0; 4], nonce, ts, 0), SntpError::ZeroTimestamp),
            (reply(0x24, 2, [0; 4], nonce, 0, ts), SntpError::ZeroTimestamp),
        ];
        for (index, (bytes, error)) in table.iter().enumerate() {
            assert_eq!(parse_reply(bytes, NONCE), Err(*error), "case {index}");
        }
        // A forged kiss-of-death (wrong origin) is not believed.
        assert_eq!(parse_reply(&reply(0x24, 0, *b"DENY", nonce ^ 2, ts, ts), NONCE), Err(SntpError::Spoofed));
        assert!(KissCode::DENY.must_stop() && KissCode::RSTR.must_stop() && !KissCode::RATE.must_stop());
        // Version 3, leap second warnings.
        assert_eq!(parse_reply(&reply(0x1C, 1, *b"PPS\0", nonce, ts, ts), NONCE).map(|t| t.version), Ok(3));
        assert_eq!(
            parse_reply(&reply(0x64, 1, [0; 4], nonce, ts, ts), NONCE).map(|t| t.leap),
            Ok(LeapIndicator::InsertSecond)
        );
        assert_eq!(
            parse_reply(&reply(0xA4, 1, [0; 4], nonce, ts, ts), NONCE).map(|t| t.leap),
            Ok(LeapIndicator::DeleteSecond)
        );
        // Short packets.
        let good = good_reply(ts, ts);
        for length in 0..48 {
            assert_eq!(parse_reply(&good[..length], NONCE), Err(SntpError::TooShort));
        }
    }

    #[test]
    fn timestamp_conversions() {
        for ms in [0u64, 1, 499, 500, 999] {
            let unix_ms = MARCH_2026_UNIX * 1000 + ms;
            assert_eq!(NtpTimestamp::from_unix_ms(unix_ms).unix_ms(), unix_ms);
        }
        let timestamp = NtpTimestamp::from_bits(0xDEAD_BEEF_0123_4567);
        assert_eq!(timestamp, NtpTimestamp { seconds: 0xDEAD_BEEF, fraction: 0x0123_4567 });
        assert_eq!(timestamp.to_bits(), 0xDEAD_BEEF_0123_4567);
    }

    #[test]
    fn wall_clock_from_exchange() {
        // Sent at monotonic 10_000, received at 10_300; the server held it 100 ms.
        // True offset: Unix = monotonic + X; with a symmetric path, each way takes 100 ms.
        let x = MARCH_2026_UNIX * 1000 - 10_000;
        let t2 = 10_000 + 100 + x;
        let t3 = t2 + 100;
        let time = ServerTime {
            leap: LeapIndicator::None,
            version: 4,
            stratum: 1,
            receive: NtpTimestamp::from_unix_ms(t2),
            transmit: NtpTimestamp::from_unix_ms(t3),
        };
        let clock = WallClock::from_exchange(10_000, 10_300, &time);
        assert_eq!(clock.round_trip_ms(), 200);
        assert_eq!(clock.unix_ms(10_300), 10_300 + x);
        assert_eq!(clock.unix_ms(70_300), 70_300 + x);
        assert_eq!(clock.unix_ms(300), 300 + x);
        assert_eq!(clock.unix_seconds(10_000), MARCH_2026_UNIX);
        assert!(WallClock::is_plausible(clock.unix_seconds(10_300)));
        // Asymmetric path (all 200 ms on the way out): the error is at most half the round trip.
        let time = ServerTime {
            receive: NtpTimestamp::from_unix_ms(t2 + 100),
            transmit: NtpTimestamp::from_unix_ms(t3 + 100),
            ..time
        };
        let clock = WallClock::from_exchange(10_000, 10_300, &time);
        assert_eq!(clock.round_trip_ms(), 200);
        assert_eq!(clock.unix_ms(10_300), 10_300 + x + 100);
        // A reply "received" before it was sent is taken as a zero-length wait.
        let clock = WallClock::from_exchange(10_300, 10_000, &time);
        assert_eq!(clock.round_trip_ms(), 0);
    }

    #[test]
    fn wall_clock_set_and_plausibility() {
        let clock = WallClock::set(1_800_000_000_000, 5_000);
        assert_eq!(clock.unix_ms(6_000), 1_800_000_001_000);
        assert_eq!(clock.unix_ms(0), 1_799_999_995_000);
        assert_eq!(WallClock::set(1_000, 5_000).unix_ms(0), 0);
        assert!(!WallClock::is_plausible(0));
        assert!(!WallClock::is_plausible(1_700_000_000)); // 2023
        assert!(WallClock::is_plausible(1_767_225_600)); // 2026-01-01
        assert!(WallClock::is_plausible(4_102_444_799));
        assert!(!WallClock::is_plausible(4_102_444_800)); // 2100-01-01
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..80), nonce in any::<u64>()) {
            let _ = parse_reply(&bytes, NtpTimestamp::from_bits(nonce));
        }

        #[test]
        fn timestamps_map_into_the_window(seconds in any::<u32>(), fraction in any::<u32>()) {
            let unix_ms = NtpTimestamp { seconds, fraction }.unix_ms();
            prop_assert!(unix_ms >= PIVOT_UNIX_SECONDS * 1000);
            prop_assert!(unix_ms < (PIVOT_UNIX_SECONDS + (1 << 32)) * 1000);
            prop_assert_eq!(NtpTimestamp::from_unix_ms(unix_ms).seconds, seconds);
        }

        #[test]
        fn accepted_replies_echo_the_nonce(mut packet in any::<[u8; 48]>(), nonce in any::<u64>()) {
            packet[24..32].copy_from_slice(&nonce.to_be_bytes());
            if let Ok(time) = parse_reply(&packet, NtpTimestamp::from_bits(nonce)) {
                prop_assert!((1..=15).contains(&time.stratum));
                prop_assert_eq!(packet[0] & 7, 4);
                prop_assert!(packet[0] >> 6 != 3);
            }
            prop_assert_eq!(parse_reply(&packet, NtpTimestamp::from_bits(!nonce)).err().map(|e| e == SntpError::Spoofed || matches!(e, SntpError::Broadcast | SntpError::UnexpectedMode(_) | SntpError::UnsupportedVersion(_))), Some(true));
        }
    }
}
