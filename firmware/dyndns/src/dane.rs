//! DANE for the MX (RFC 7672): the TLSA record the owner publishes for the key in use
//! ([`TlsaLine`]) and the judgement of the TLSA records DNS publishes against that key
//! ([`judge_tlsa`]), so that a new key (a renewal without `reuse_key`, a new device) that
//! would make DANE senders refuse to deliver is an alert, not silence. Owns nothing; calls
//! nothing.
//!
//! Rules of [`judge_tlsa`] (each tested below):
//! - **Supported records** are selector 1 (the SubjectPublicKeyInfo) with matching type 1
//!   (SHA-256), for usage 3 (DANE-EE: the key in use) and usage 2 (DANE-TA: the issuing CA's
//!   key, the second certificate of the installed chain; a self-signed certificate has none, so
//!   a `2 1 1` record never matches it). These are what `homemx tls tlsa` prints.
//! - **Unsupported records** (usages 0 and 1, which RFC 7672 3.1.3 says SMTP senders treat as
//!   unusable; selector 0, the whole certificate; matching types 0 and 2) are ignored: the
//!   device cannot vouch for them. A set of them alone counts as **not matching**: a DANE
//!   sender may still deliver, but the appliance cannot tell, so it says so (publish `3 1 1`).
//! - **Refused records**: a supported record whose data is not exactly 32 octets (cut short,
//!   or longer) is malformed (RFC 7671 5: unusable); it is counted and never matches.
//! - No record (NXDOMAIN or NODATA) → [`TlsaState::NotPublished`], no alarm. Some supported
//!   record matches → [`TlsaState::Matches`]. Records published and none matches →
//!   [`TlsaState::Mismatch`], the alarm.

use core::fmt;

/// The owner name's prefix for SMTP on port 25 (RFC 7672 2.2): `_25._tcp.<mx-host>`.
pub const SMTP_PREFIX: &str = "_25._tcp.";
/// Certificate usage 2: DANE-TA, a trust anchor (the issuing CA).
pub const USAGE_DANE_TA: u8 = 2;
/// Certificate usage 3: DANE-EE, the end entity (the server's own key).
pub const USAGE_DANE_EE: u8 = 3;
/// Selector 1: the SubjectPublicKeyInfo.
pub const SELECTOR_SPKI: u8 = 1;
/// Matching type 1: SHA-256.
pub const MATCHING_SHA256: u8 = 1;

/// The SHA-256 digests of the SubjectPublicKeyInfo of the key in use and of the issuing CA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyDigests {
    /// The certificate in use (the leaf).
    pub key: [u8; 32],
    /// The issuer's certificate, when the installed chain has one (not for a self-signed one).
    pub issuer: Option<[u8; 32]>,
}

/// One published TLSA record as [`judge_tlsa`] reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Association<'a> {
    /// Certificate usage (0-3).
    pub usage: u8,
    /// Selector (0-1).
    pub selector: u8,
    /// Matching type (0-2).
    pub matching_type: u8,
    /// The certificate association data, whole (a caller that did not keep oversized data
    /// passes it empty: it is then refused, never compared by its prefix).
    pub data: &'a [u8],
}

/// What the published TLSA records say of the key in use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsaState {
    /// No TLSA record: DANE is not in use, nothing to check.
    NotPublished,
    /// A supported record names the key in use (usage 3) or the issuing CA (usage 2).
    Matches {
        /// The usage of the first record that matched.
        usage: u8,
    },
    /// Records are published and none of the supported ones matches (or there are none).
    Mismatch,
}

/// The result of [`judge_tlsa`]: the state and what was counted on the way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TlsaVerdict {
    /// The state.
    pub state: TlsaState,
    /// Records of a supported kind (`3 1 1`, `2 1 1`) with well-formed data.
    pub supported: u8,
    /// Records of kinds the device does not check (other usages, selectors, matching types).
    pub unsupported: u8,
    /// Supported records whose data is not a 32-octet digest (cut short, or too long).
    pub refused: u8,
}

impl TlsaVerdict {
    /// Whether the owner is to be alerted (DANE senders would refuse the key in use).
    pub fn alarm(&self) -> bool {
        self.state == TlsaState::Mismatch
    }
}

/// Judges the TLSA records published for `_25._tcp.<mx-host>` against `digests` (see the
/// module documentation for the rules).
pub fn judge_tlsa<'a>(records: impl IntoIterator<Item = Association<'a>>, digests: &KeyDigests) -> TlsaVerdict {
    let mut verdict = TlsaVerdict { state: TlsaState::NotPublished, supported: 0, unsupported: 0, refused: 0 };
    let mut published = false;
    let mut matched = None;
    for record in records {
        published = true;
        let expected = match (record.usage, record.selector, record.matching_type) {
            (USAGE_DANE_EE, SELECTOR_SPKI, MATCHING_SHA256) => Some(digests.key),
            (USAGE_DANE_TA, SELECTOR_SPKI, MATCHING_SHA256) => digests.issuer,
            _ => {
                verdict.unsupported = verdict.unsupported.saturating_add(1);
                continue;
            }
        };
        let Ok(digest) = <&[u8; 32]>::try_from(record.data) else {
            verdict.refused = verdict.refused.saturating_add(1);
            continue;
        };
        verdict.supported = verdict.supported.saturating_add(1);
        if matched.is_none() && expected.as_ref() == Some(digest) {
            matched = Some(record.usage);
        }
    }
    verdict.state = match (published, matched) {
        (false, _) => TlsaState::NotPublished,
        (true, Some(usage)) => TlsaState::Matches { usage },
        (true, None) => TlsaState::Mismatch,
    };
    verdict
}

/// The TLSA record for `host` in zone-file form, e.g. `_25._tcp.mx.example.org. IN TLSA 3 1 1
/// 1f2e…` (usage 3 with the key's digest, or 2 with the issuer's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TlsaLine<'a> {
    /// The MX host name (a trailing dot is allowed).
    pub host: &'a str,
    /// [`USAGE_DANE_EE`] or [`USAGE_DANE_TA`].
    pub usage: u8,
    /// The SHA-256 of the SubjectPublicKeyInfo.
    pub digest: &'a [u8; 32],
}

impl fmt::Display for TlsaLine<'_> {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = self.host.strip_suffix('.').unwrap_or(self.host);
        write!(out, "{SMTP_PREFIX}{host}. IN TLSA {} {SELECTOR_SPKI} {MATCHING_SHA256} ", self.usage)?;
        self.digest.iter().try_for_each(|byte| write!(out, "{byte:02x}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [0x11; 32];
    const CA: [u8; 32] = [0x22; 32];
    const CA_ISSUED: KeyDigests = KeyDigests { key: KEY, issuer: Some(CA) };
    const SELF_SIGNED: KeyDigests = KeyDigests { key: KEY, issuer: None };

    fn record(usage: u8, selector: u8, matching_type: u8, data: &[u8]) -> Association<'_> {
        Association { usage, selector, matching_type, data }
    }

    #[test]
    fn no_record_is_no_alarm() {
        let verdict = judge_tlsa([], &CA_ISSUED);
        assert_eq!(verdict.state, TlsaState::NotPublished);
        assert!(!verdict.alarm());
    }

    #[test]
    fn the_key_in_use_or_its_issuer_matches() {
        assert_eq!(judge_tlsa([record(3, 1, 1, &KEY)], &SELF_SIGNED).state, TlsaState::Matches { usage: 3 });
        assert_eq!(judge_tlsa([record(2, 1, 1, &CA)], &CA_ISSUED).state, TlsaState::Matches { usage: 2 });
        // A rollover: the old and the new key published together; one matching is enough.
        let verdict = judge_tlsa([record(3, 1, 1, &[0x99; 32]), record(3, 1, 1, &KEY)], &CA_ISSUED);
        assert_eq!((verdict.state, verdict.supported), (TlsaState::Matches { usage: 3 }, 2));
        assert!(!verdict.alarm());
    }

    /// The attack (or the renewal with a new key): the published digest is another key's.
    #[test]
    fn a_wrong_hash_is_a_mismatch() {
        let mut wrong = KEY;
        wrong[31] ^= 1;
        let verdict = judge_tlsa([record(3, 1, 1, &wrong)], &CA_ISSUED);
        assert_eq!(verdict.state, TlsaState::Mismatch);
        assert!(verdict.alarm());
        // The issuer's digest in a DANE-EE record, the key's in a DANE-TA one: no match.
        assert!(judge_tlsa([record(3, 1, 1, &CA)], &CA_ISSUED).alarm());
        assert!(judge_tlsa([record(2, 1, 1, &KEY)], &CA_ISSUED).alarm());
        // A DANE-TA record cannot match a self-signed certificate (there is no issuer).
        assert!(judge_tlsa([record(2, 1, 1, &CA)], &SELF_SIGNED).alarm());
    }

    /// Records of kinds the device does not check never count as a match, even when their data
    /// happens to be our digest; a set of them alone is a mismatch (documented in the module).
    #[test]
    fn a_record_for_another_usage_only_is_not_a_match() {
        for (usage, selector, matching_type) in [(1, 1, 1), (0, 1, 1), (3, 0, 1), (3, 1, 2), (3, 1, 0), (4, 1, 1), (255, 255, 255)] {
            let verdict = judge_tlsa([record(usage, selector, matching_type, &KEY)], &CA_ISSUED);
            assert_eq!((verdict.state, verdict.unsupported, verdict.supported), (TlsaState::Mismatch, 1, 0), "{usage} {selector} {matching_type}");
        }
        // Beside a matching record they are only counted.
        let verdict = judge_tlsa([record(1, 1, 1, &[0; 32]), record(3, 1, 1, &KEY)], &CA_ISSUED);
        assert_eq!((verdict.state, verdict.unsupported), (TlsaState::Matches { usage: 3 }, 1));
    }

    /// A digest cut short (or padded, or not kept because it was oversized) is refused: never a
    /// match by its prefix, and a set of only such records alarms.
    #[test]
    fn truncated_data_is_refused_not_matched() {
        for data in [&KEY[..31], &KEY[..1], &[], &[KEY.as_slice(), &[0]].concat()[..]] {
            let verdict = judge_tlsa([record(3, 1, 1, data)], &CA_ISSUED);
            assert_eq!((verdict.state, verdict.refused, verdict.supported), (TlsaState::Mismatch, 1, 0), "{} octets", data.len());
        }
        let verdict = judge_tlsa([record(3, 1, 1, &KEY[..16]), record(2, 1, 1, &CA)], &CA_ISSUED);
        assert_eq!((verdict.state, verdict.refused), (TlsaState::Matches { usage: 2 }, 1));
    }

    #[test]
    fn the_line_is_zone_file_text() {
        let digest: [u8; 32] = core::array::from_fn(|index| index as u8 * 8);
        let line = TlsaLine { host: "mx.example.org.", usage: USAGE_DANE_EE, digest: &digest }.to_string();
        assert_eq!(line, "_25._tcp.mx.example.org. IN TLSA 3 1 1 0008101820283038404850586068707880889098a0a8b0b8c0c8d0d8e0e8f0f8");
        let line = TlsaLine { host: "home.example.net", usage: USAGE_DANE_TA, digest: &digest }.to_string();
        assert!(line.starts_with("_25._tcp.home.example.net. IN TLSA 2 1 1 0008"), "{line}");
    }

    proptest::proptest! {
        /// Whatever is published, a match is exactly a supported record with our digest.
        #[test]
        fn a_match_needs_our_digest_in_a_supported_record(
            records in proptest::collection::vec((0u8..5, 0u8..3, 0u8..3, 0usize..4, 30usize..34), 0..6),
        ) {
            let datas = [KEY, CA, [0x33; 32], [0x11; 32]];
            let published: std::vec::Vec<(u8, u8, u8, std::vec::Vec<u8>)> = records
                .iter()
                .map(|&(usage, selector, matching, which, length)| {
                    let mut data = datas[which].to_vec();
                    data.resize(length, 0x11);
                    (usage, selector, matching, data)
                })
                .collect();
            let verdict = judge_tlsa(published.iter().map(|(u, s, m, d)| record(*u, *s, *m, d)), &CA_ISSUED);
            let expected = published.iter().any(|(usage, selector, matching, data)| {
                (*selector, *matching) == (1, 1) && ((*usage == 3 && data[..] == KEY) || (*usage == 2 && data[..] == CA))
            });
            proptest::prop_assert_eq!(matches!(verdict.state, TlsaState::Matches { .. }), expected);
            proptest::prop_assert_eq!(verdict.state == TlsaState::NotPublished, published.is_empty());
            proptest::prop_assert_eq!(usize::from(verdict.supported + verdict.unsupported + verdict.refused), published.len());
        }
    }
}
