//! Checking that DNS really sends the domain's mail here: [`verify_dns`] judges the DynDNS
//! host name's A records and the mail domain's MX set against our public address and host name
//! and returns a small [`Verdict`] (enums plus the offending names and addresses, bounded to
//! [`MAX_LISTED`] each).
//!
//! Rules:
//! - A records: all equal to our address → [`ARecord::Matches`]; none → [`ARecord::Missing`]
//!   (alarm: the MX name does not resolve, mail cannot arrive). An address other than ours that
//!   is the address we last registered → [`ARecord::Stale`] (our address changed and the
//!   update has not shown yet: no alarm). Any other address → [`ARecord::Differs`]: a change we
//!   did not make, alarm "possible mail diversion" (several A records with one foreign count
//!   the same: round robin would send part of the mail away). With no address to compare with
//!   (the check-IP sources never agreed and nothing was registered yet) the A records are
//!   [`ARecord::NotJudged`]; the MX set is judged all the same.
//! - MX: names compare without regard to ASCII case, a trailing dot ignored. Our host name at
//!   the lowest (most preferred) preference and nobody else there → [`MxState::OursPreferred`];
//!   foreign hosts at worse preferences are listed as `backup_mx` (information: "backup MX at
//!   the provider"). A foreign host at a better preference → [`MxState::ForeignPreferred`], at
//!   the same best preference → [`MxState::SharedPreference`] (senders split mail between
//!   them), our name absent → [`MxState::NotListed`]: all three alarm "possible mail
//!   diversion". No MX at all → [`MxState::Missing`] (alarm: senders fall back to the domain's
//!   A record, which is not this appliance's job to guess).

use crate::checkip::Ipv4;
use crate::name::same_name;
use heapless::Vec;

/// Most offending names or addresses listed in a verdict; more set `truncated`.
pub const MAX_LISTED: usize = 4;

/// What the host name's A records say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ARecord {
    /// Only our address.
    Matches,
    /// The address we registered before (update pending): no alarm.
    Stale,
    /// An address we did not register: possible mail diversion.
    Differs,
    /// No A record: the MX cannot be reached.
    Missing,
    /// No address of ours is known yet to compare with.
    NotJudged,
}

/// What the domain's MX set says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MxState {
    /// Our host name alone at the best preference.
    OursPreferred,
    /// Our host name shares the best preference with a foreign host.
    SharedPreference,
    /// A foreign host is preferred over ours.
    ForeignPreferred,
    /// Our host name is not in the MX set.
    NotListed,
    /// The domain has no MX record.
    Missing,
}

/// The alarm a verdict raises.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alarm {
    /// DNS points mail (or part of it) somewhere we did not register.
    PossibleMailDiversion,
    /// The A or MX record is missing: mail cannot reach the appliance.
    Unreachable,
}

/// The result of [`verify_dns`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict<'a> {
    /// The A record state.
    pub a: ARecord,
    /// A records other than our address (bounded).
    pub foreign_addresses: Vec<Ipv4, MAX_LISTED>,
    /// The MX state.
    pub mx: MxState,
    /// Foreign MX hosts at a better or equal preference than ours, or all of them when ours
    /// is not listed (bounded).
    pub offending_mx: Vec<(u16, &'a str), MAX_LISTED>,
    /// Foreign MX hosts at a worse preference than ours: information only (bounded).
    pub backup_mx: Vec<(u16, &'a str), MAX_LISTED>,
    /// Some list above was longer than [`MAX_LISTED`].
    pub truncated: bool,
}

impl Verdict<'_> {
    /// The alarm to raise, if any (diversion wins over unreachability).
    pub fn alarm(&self) -> Option<Alarm> {
        let diverted = self.a == ARecord::Differs
            || matches!(self.mx, MxState::SharedPreference | MxState::ForeignPreferred | MxState::NotListed);
        if diverted {
            Some(Alarm::PossibleMailDiversion)
        } else if self.a == ARecord::Missing || self.mx == MxState::Missing {
            Some(Alarm::Unreachable)
        } else {
            None
        }
    }

    /// Whether all is as it should be (no alarm, nothing stale).
    pub fn is_clean(&self) -> bool {
        self.a == ARecord::Matches && self.mx == MxState::OursPreferred
    }
}

/// Judges the DNS view: `a_records` of `host_name`, `domain_mx` (preference, exchange) of the
/// mail domain, against `our_ip` (`None`: not known, the A records are not judged) and the
/// address the guard `last_registered`.
pub fn verify_dns<'a>(
    our_ip: Option<Ipv4>,
    host_name: &str,
    a_records: &[Ipv4],
    domain_mx: &[(u16, &'a str)],
    last_registered: Option<Ipv4>,
) -> Verdict<'a> {
    let mut truncated = false;
    let mut foreign_addresses = Vec::new();
    let mut a = if a_records.is_empty() { ARecord::Missing } else { ARecord::Matches };
    for &address in a_records.iter().filter(|&&address| Some(address) != our_ip) {
        if !foreign_addresses.contains(&address) && foreign_addresses.push(address).is_err() {
            truncated = true;
        }
        if our_ip.is_none() {
            a = ARecord::NotJudged;
        } else if last_registered == Some(address) {
            if a == ARecord::Matches {
                a = ARecord::Stale;
            }
        } else {
            a = ARecord::Differs;
        }
    }

    let ours_best = domain_mx.iter().filter(|(_, name)| same_name(name, host_name)).map(|&(p, _)| p).min();
    let foreign = || domain_mx.iter().filter(|(_, name)| !same_name(name, host_name));
    let mut offending_mx = Vec::new();
    let mut backup_mx = Vec::new();
    let mx = match ours_best {
        None if domain_mx.is_empty() => MxState::Missing,
        None => {
            for &entry in foreign() {
                truncated |= offending_mx.push(entry).is_err();
            }
            MxState::NotListed
        }
        Some(ours) => {
            let mut state = MxState::OursPreferred;
            for &(preference, name) in foreign() {
                if preference < ours {
                    state = MxState::ForeignPreferred;
                    truncated |= offending_mx.push((preference, name)).is_err();
                } else if preference == ours {
                    if state == MxState::OursPreferred {
                        state = MxState::SharedPreference;
                    }
                    truncated |= offending_mx.push((preference, name)).is_err();
                } else {
                    truncated |= backup_mx.push((preference, name)).is_err();
                }
            }
            state
        }
    };
    Verdict { a, foreign_addresses, mx, offending_mx, backup_mx, truncated }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const OURS: Ipv4 = [203, 0, 113, 5];
    const OLD: Ipv4 = [203, 0, 113, 4];
    const EVIL: Ipv4 = [198, 51, 100, 66];
    const HOST: &str = "mx.example.org";

    #[test]
    fn a_record_table() {
        type Row<'a> = (&'a [Ipv4], Option<Ipv4>, ARecord, Option<Alarm>);
        let table: &[Row] = &[
            (&[OURS], Some(OURS), ARecord::Matches, None),
            (&[OURS, OURS], None, ARecord::Matches, None),
            (&[OLD], Some(OLD), ARecord::Stale, None),
            (&[OURS, OLD], Some(OLD), ARecord::Stale, None),
            (&[EVIL], Some(OURS), ARecord::Differs, Some(Alarm::PossibleMailDiversion)),
            (&[EVIL], None, ARecord::Differs, Some(Alarm::PossibleMailDiversion)),
            (&[OLD], None, ARecord::Differs, Some(Alarm::PossibleMailDiversion)),
            (&[OURS, EVIL], Some(OURS), ARecord::Differs, Some(Alarm::PossibleMailDiversion)),
            (&[EVIL, OLD], Some(OLD), ARecord::Differs, Some(Alarm::PossibleMailDiversion)),
            (&[OLD, EVIL], Some(OLD), ARecord::Differs, Some(Alarm::PossibleMailDiversion)),
            (&[], Some(OURS), ARecord::Missing, Some(Alarm::Unreachable)),
        ];
        for (records, registered, state, alarm) in table {
            let verdict = verify_dns(Some(OURS), HOST, records, &[(10, HOST)], *registered);
            assert_eq!(verdict.a, *state, "{records:?} {registered:?}");
            assert_eq!(verdict.alarm(), *alarm, "{records:?} {registered:?}");
            assert!(verdict.foreign_addresses.iter().all(|a| *a != OURS && records.contains(a)));
        }
        let verdict = verify_dns(Some(OURS), HOST, &[OURS, EVIL], &[(10, HOST)], Some(OURS));
        assert_eq!(verdict.foreign_addresses.as_slice(), &[EVIL]);
        // Nothing to compare with: the A record is not judged, the MX still is.
        let verdict = verify_dns(None, HOST, &[EVIL], &[(10, "evil.example")], None);
        assert_eq!(verdict.a, ARecord::NotJudged);
        assert_eq!(verdict.mx, MxState::NotListed);
        assert_eq!(verdict.alarm(), Some(Alarm::PossibleMailDiversion));
        assert_eq!(verify_dns(None, HOST, &[], &[(10, HOST)], None).a, ARecord::Missing);
    }

    #[test]
    fn mx_table() {
        type Row = (&'static [(u16, &'static str)], MxState, &'static [&'static str], &'static [&'static str]);
        let table: &[Row] = &[
            (&[(10, "mx.example.org")], MxState::OursPreferred, &[], &[]),
            (&[(10, "MX.Example.ORG.")], MxState::OursPreferred, &[], &[]),
            (
                &[(10, "mx.example.org"), (20, "backup.provider.example")],
                MxState::OursPreferred,
                &[],
                &["backup.provider.example"],
            ),
            (
                &[(20, "backup.provider.example"), (10, "mx.example.org.")],
                MxState::OursPreferred,
                &[],
                &["backup.provider.example"],
            ),
            (&[(10, "mx.example.org"), (10, "other.example")], MxState::SharedPreference, &["other.example"], &[]),
            (&[(10, "mx.example.org"), (5, "evil.example")], MxState::ForeignPreferred, &["evil.example"], &[]),
            (
                &[(10, "mx.example.org"), (10, "a.example"), (5, "evil.example"), (30, "b.example")],
                MxState::ForeignPreferred,
                &["a.example", "evil.example"],
                &["b.example"],
            ),
            (&[(10, "evil.example")], MxState::NotListed, &["evil.example"], &[]),
            (&[(10, "mx.example.org.evil.example")], MxState::NotListed, &["mx.example.org.evil.example"], &[]),
            (&[(0, ".")], MxState::NotListed, &["."], &[]),
            (&[], MxState::Missing, &[], &[]),
            (&[(30, "mx.example.org"), (10, "mx.example.org")], MxState::OursPreferred, &[], &[]),
            (
                &[(20, "b.example"), (10, "mx.example.org"), (15, "mx.example.org")],
                MxState::OursPreferred,
                &[],
                &["b.example"],
            ),
        ];
        for (mx, state, offending, backups) in table {
            let verdict = verify_dns(Some(OURS), HOST, &[OURS], mx, Some(OURS));
            assert_eq!(verdict.mx, *state, "{mx:?}");
            let names: Vec<&str, 8> = verdict.offending_mx.iter().map(|(_, n)| *n).collect();
            assert_eq!(names.as_slice(), *offending, "{mx:?}");
            let names: Vec<&str, 8> = verdict.backup_mx.iter().map(|(_, n)| *n).collect();
            assert_eq!(names.as_slice(), *backups, "{mx:?}");
            let expected_alarm = match state {
                MxState::OursPreferred => None,
                MxState::Missing => Some(Alarm::Unreachable),
                _ => Some(Alarm::PossibleMailDiversion),
            };
            assert_eq!(verdict.alarm(), expected_alarm, "{mx:?}");
            assert_eq!(verdict.is_clean(), *state == MxState::OursPreferred);
        }
    }

    #[test]
    fn lists_are_bounded() {
        let names = ["a.example", "b.example", "c.example", "d.example", "e.example", "f.example"];
        let mx: std::vec::Vec<(u16, &str)> = names.iter().map(|n| (5, *n)).chain([(10, HOST)]).collect();
        let records: std::vec::Vec<Ipv4> = (1..=6).map(|i| [198, 51, 100, i]).collect();
        let verdict = verify_dns(Some(OURS), HOST, &records, &mx, Some(OURS));
        assert!(verdict.truncated);
        assert_eq!(verdict.offending_mx.len(), MAX_LISTED);
        assert_eq!(verdict.foreign_addresses.len(), MAX_LISTED);
        assert_eq!(verdict.alarm(), Some(Alarm::PossibleMailDiversion));
        assert!(!verify_dns(Some(OURS), HOST, &[OURS], &[(10, HOST)], None).truncated);
    }

    proptest! {
        #[test]
        fn verdict_is_consistent(
            records in proptest::collection::vec(0u8..4, 0..6),
            mx in proptest::collection::vec((0u16..4, 0usize..4), 0..6),
            registered in proptest::option::of(0u8..4),
        ) {
            let records: std::vec::Vec<Ipv4> = records.iter().map(|&i| [203, 0, 113, i]).collect();
            let names = ["mx.example.org", "MX.EXAMPLE.ORG.", "backup.example", "evil.example"];
            let mx: std::vec::Vec<(u16, &str)> = mx.iter().map(|&(p, n)| (p, names[n])).collect();
            let ours = [203, 0, 113, 0];
            let verdict = verify_dns(Some(ours), HOST, &records, &mx, registered.map(|i| [203, 0, 113, i]));
            // Matches iff every record is ours and there is one.
            prop_assert_eq!(verdict.a == ARecord::Matches, !records.is_empty() && records.iter().all(|&r| r == ours));
            let ours_best = mx.iter().filter(|(_, n)| same_name(n, HOST)).map(|(p, _)| *p).min();
            let foreign_best = mx.iter().filter(|(_, n)| !same_name(n, HOST)).map(|(p, _)| *p).min();
            let expected = match (ours_best, foreign_best) {
                (None, None) => MxState::Missing,
                (None, Some(_)) => MxState::NotListed,
                (Some(_), None) => MxState::OursPreferred,
                (Some(o), Some(f)) if f < o => MxState::ForeignPreferred,
                (Some(o), Some(f)) if f == o => MxState::SharedPreference,
                (Some(_), Some(_)) => MxState::OursPreferred,
            };
            prop_assert_eq!(verdict.mx, expected);
            prop_assert!(verdict.backup_mx.iter().all(|(p, n)| !same_name(n, HOST) && Some(*p) > ours_best));
        }
    }
}
