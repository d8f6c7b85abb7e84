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
