//! The headline: the verdict line at the top of the page, in `/status.json` and in
//! `homemx status`. "Mail flows" only when the last contact with the LAN mailbox host (a
//! delivery or the periodic connection probe) succeeded and the wall clock is set; otherwise
//! the line names what is missing, most important first ([`StatusSnapshot::problems`]).
//! Sans-I/O like the rest of the crate: the firmware gives the facts ([`crate::snapshot::MailboxReach`], the
//! clock in [`StatusSnapshot::now_unix`]), this module decides the [`Verdict`] and words it.

use core::fmt;

use crate::snapshot::{LockState, MailboxFailure, StatusSnapshot};
use crate::units::Span;

/// Something that keeps the headline from saying "Mail flows", most important first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Problem {
    /// No mailbox host in the configuration: received mail has nowhere to go.
    NoMailboxHost,
    /// The mailbox host failed at its last contact; the outage began at `since_ms`.
    MailboxDown {
        /// Monotonic milliseconds of the first failure of the outage.
        since_ms: u64,
        /// How the last contact failed.
        failure: MailboxFailure,
    },
    /// Not in contact yet since unlock (the first probe is a few seconds away).
    MailboxNotChecked,
    /// The wall clock is not set: no time server answered.
    ClockNotSet,
}

/// Most problems at once.
pub const MAX_PROBLEMS: usize = 2;

impl Problem {
    /// Stable machine name.
    pub const fn name(self) -> &'static str {
        match self {
            Problem::NoMailboxHost => "no_mailbox_host",
            Problem::MailboxDown {
                failure: MailboxFailure::Unreachable,
                ..
            } => "mailbox_unreachable",
            Problem::MailboxDown {
                failure: MailboxFailure::Refusing,
                ..
            } => "mailbox_refusing",
            Problem::MailboxNotChecked => "mailbox_not_checked",
            Problem::ClockNotSet => "clock_not_set",
        }
    }

    /// Whether mail stops because of it (red) rather than being at risk (amber).
    pub const fn stops_mail(self) -> bool {
        matches!(self, Problem::NoMailboxHost | Problem::MailboxDown { .. })
    }
}

/// The one-line verdict at the top of the page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not provisioned yet.
    Unprovisioned,
    /// Locked (whatever the alerts).
    Locked,
    /// Unlocked, but this (the most important of [`StatusSnapshot::problems`]) keeps mail
    /// from flowing or the page from being sure it does.
    Problem(Problem),
    /// Unlocked, mail flows, with this many alerts.
    Alerts(usize),
    /// Unlocked, the mailbox host answered last time, the clock is set, no alerts.
    MailFlows,
}

impl Verdict {
    /// Stable machine name.
    pub const fn name(self) -> &'static str {
        match self {
            Verdict::Unprovisioned => "unprovisioned",
            Verdict::Locked => "locked",
            Verdict::Problem(problem) => problem.name(),
            Verdict::Alerts(_) => "alerts",
            Verdict::MailFlows => "ok",
        }
    }
}

impl StatusSnapshot {
    /// The verdict: not provisioned, then locked, then the most important problem (mailbox
    /// host, clock), then alerts, else mail flows.
    pub fn verdict(&self) -> Verdict {
        match self.lock {
            LockState::Unprovisioned => Verdict::Unprovisioned,
            LockState::Locked => Verdict::Locked,
            LockState::Unlocked => match self.problems().first() {
                Some(problem) => Verdict::Problem(*problem),
                None if !self.alerts.is_empty() => Verdict::Alerts(self.alerts.len()),
                None => Verdict::MailFlows,
            },
        }
    }
}

impl StatusSnapshot {
    /// What keeps mail from flowing, most important first (empty while not unlocked: the lock
    /// state is the verdict then).
    pub fn problems(&self) -> heapless::Vec<Problem, MAX_PROBLEMS> {
        let mut problems = heapless::Vec::new();
        if self.lock != LockState::Unlocked {
            return problems;
        }
        let mailbox = &self.mailbox;
        let first = match (
            mailbox.configured,
            mailbox.failing_since_ms,
            mailbox.failure,
            mailbox.last_success_ms,
        ) {
            (false, ..) => Some(Problem::NoMailboxHost),
            (true, Some(since_ms), Some(failure), _) => {
                Some(Problem::MailboxDown { since_ms, failure })
            }
            (true, _, _, None) => Some(Problem::MailboxNotChecked),
            (true, ..) => None,
        };
        if let Some(problem) = first {
            let _ = problems.push(problem);
        }
        if self.now_unix.is_none() {
            let _ = problems.push(Problem::ClockNotSet);
        }
        problems
    }

    /// One problem in words: `Mailbox host unreachable since 14:02 UTC`.
    pub fn problem_text(&self, problem: Problem) -> ProblemText<'_> {
        ProblemText {
            snapshot: self,
            problem,
        }
    }

    /// The whole verdict on one line, as `homemx status` shows it: the headline, then the
    /// other problems after ` · `.
    pub fn headline_line(&self) -> HeadlineLine<'_> {
        HeadlineLine(self)
    }
}

/// [`StatusSnapshot::problem_text`].
pub struct ProblemText<'a> {
    snapshot: &'a StatusSnapshot,
    problem: Problem,
}

impl fmt::Display for ProblemText<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.problem {
            Problem::NoMailboxHost => {
                formatter.write_str("No mailbox host configured: received mail waits in the spool")
            }
            Problem::MailboxDown { since_ms, failure } => {
                formatter.write_str(match failure {
                    MailboxFailure::Unreachable => "Mailbox host unreachable since ",
                    MailboxFailure::Refusing => "Mailbox host refuses mail since ",
                })?;
                Since {
                    snapshot: self.snapshot,
                    at_ms: since_ms,
                }
                .fmt(formatter)
            }
            Problem::MailboxNotChecked => formatter.write_str("Checking the mailbox host…"),
            Problem::ClockNotSet => formatter.write_str("Clock not set: no time server answered"),
        }
    }
}

/// A moment of an outage: `14:02 UTC` the same day, `2026-05-13 14:02 UTC` before, and
/// `boot + 12 min` when the wall clock is not known.
struct Since<'a> {
    snapshot: &'a StatusSnapshot,
    at_ms: u64,
}

impl fmt::Display for Since<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (Some(now), Some(at)) = (self.snapshot.now_unix, self.snapshot.unix_of(self.at_ms))
        else {
            return write!(formatter, "boot + {}", Span(self.at_ms / 1000));
        };
        if now / 86_400 == at / 86_400 {
            let seconds = at % 86_400;
            write!(
                formatter,
                "{:02}:{:02} UTC",
                seconds / 3600,
                seconds / 60 % 60
            )
        } else {
            crate::units::Utc(at).fmt(formatter)
        }
    }
}

/// The headline itself (the page's `<h1>`): the lock state, the most important problem, the
/// alert count, or "Mail flows — no alerts".
pub(crate) struct VerdictText<'a>(pub &'a StatusSnapshot, pub Verdict);

impl fmt::Display for VerdictText<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.1 {
            Verdict::Unprovisioned => formatter.write_str("Not set up — provision with the CLI"),
            Verdict::Locked => formatter.write_str("Locked — unlock with the CLI"),
            Verdict::Problem(problem) => self.0.problem_text(problem).fmt(formatter),
            Verdict::Alerts(count) => write!(
                formatter,
                "{count} alert{}",
                if count == 1 { "" } else { "s" }
            ),
            Verdict::MailFlows => formatter.write_str("Mail flows — no alerts"),
        }
    }
}

/// [`StatusSnapshot::headline_line`].
pub struct HeadlineLine<'a>(&'a StatusSnapshot);

impl fmt::Display for HeadlineLine<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let snapshot = self.0;
        let verdict = snapshot.verdict();
        VerdictText(snapshot, verdict).fmt(formatter)?;
        if let Verdict::Problem(_) = verdict {
            for problem in snapshot.problems().iter().skip(1) {
                write!(formatter, " · {}", snapshot.problem_text(*problem))?;
            }
            let alerts = snapshot.alerts.len();
            if alerts > 0 {
                write!(
                    formatter,
                    " · {alerts} alert{}",
                    if alerts == 1 { "" } else { "s" }
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::MailboxReach;
    use crate::AlertKind;

    /// 2026-05-14 09:41:20 UTC, one hour after boot.
    const NOW: u64 = 1_778_751_680;
    const UPTIME_MS: u64 = 3_600_000;

    fn unlocked(mailbox: MailboxReach, clock_set: bool) -> StatusSnapshot {
        let mut snapshot = StatusSnapshot {
            now_unix: clock_set.then_some(NOW),
            lock: LockState::Unlocked,
            mailbox,
            ..StatusSnapshot::default()
        };
        snapshot.system.uptime_ms = UPTIME_MS;
        snapshot
    }

    fn reached(at_ms: u64) -> MailboxReach {
        MailboxReach {
            configured: true,
            last_success_ms: Some(at_ms),
            ..MailboxReach::default()
        }
    }

    /// Up until `up_to_ms`, failing since `since_ms`.
    fn down(up_to_ms: Option<u64>, since_ms: u64, failure: MailboxFailure) -> MailboxReach {
        MailboxReach {
            configured: true,
            last_success_ms: up_to_ms,
            failing_since_ms: Some(since_ms),
            failure: Some(failure),
        }
    }

    fn line(snapshot: &StatusSnapshot) -> std::string::String {
        std::format!("{}", snapshot.headline_line())
    }

    #[test]
    fn mail_flows_after_a_success_with_the_clock_set() {
        let snapshot = unlocked(reached(UPTIME_MS - 30_000), true);
        assert!(snapshot.problems().is_empty());
        assert_eq!(snapshot.verdict(), Verdict::MailFlows);
        assert_eq!(line(&snapshot), "Mail flows — no alerts");
    }

    #[test]
    fn a_mailbox_host_down_is_named_with_the_start_of_the_outage() {
        // Up 20 min after boot, failing since 08:55:20 (46 min ago), still failing.
        let snapshot = unlocked(
            down(Some(1_200_000), 840_000, MailboxFailure::Unreachable),
            true,
        );
        let since_ms = 840_000;
        assert_eq!(
            snapshot.verdict(),
            Verdict::Problem(Problem::MailboxDown {
                since_ms,
                failure: MailboxFailure::Unreachable
            })
        );
        assert_eq!(snapshot.verdict().name(), "mailbox_unreachable");
        assert_eq!(line(&snapshot), "Mailbox host unreachable since 08:55 UTC");
        let refusing = unlocked(down(None, 840_000, MailboxFailure::Refusing), true);
        assert_eq!(line(&refusing), "Mailbox host refuses mail since 08:55 UTC");
        assert_eq!(refusing.verdict().name(), "mailbox_refusing");
    }

    #[test]
    fn an_outage_that_began_before_midnight_carries_its_date() {
        let mut snapshot = unlocked(down(None, 1000, MailboxFailure::Unreachable), true);
        snapshot.system.uptime_ms = 11 * 3_600_000;
        assert_eq!(
            line(&snapshot),
            "Mailbox host unreachable since 2026-05-13 22:41 UTC"
        );
    }

    #[test]
    fn the_clock_not_set_is_named() {
        let snapshot = unlocked(reached(UPTIME_MS - 1000), false);
        assert_eq!(snapshot.problems().as_slice(), [Problem::ClockNotSet]);
        assert_eq!(snapshot.verdict().name(), "clock_not_set");
        assert_eq!(line(&snapshot), "Clock not set: no time server answered");
    }

    #[test]
    fn both_the_mailbox_host_first_then_the_clock_with_uptime_for_a_time() {
        let snapshot = unlocked(
            down(
                Some(60_000),
                12 * 60_000 + 5_000,
                MailboxFailure::Unreachable,
            ),
            false,
        );
        assert_eq!(snapshot.problems().len(), 2);
        assert_eq!(snapshot.problems()[1], Problem::ClockNotSet);
        assert_eq!(
            line(&snapshot),
            "Mailbox host unreachable since boot + 12 min · Clock not set: no time server answered"
        );
    }

    #[test]
    fn alerts_follow_the_problems_and_head_when_there_is_none() {
        let mut snapshot = unlocked(down(None, 1000, MailboxFailure::Unreachable), true);
        snapshot.alerts.raise(AlertKind::FlashNearlyFull, 0);
        assert_eq!(
            line(&snapshot),
            "Mailbox host unreachable since 08:41 UTC · 1 alert"
        );
        snapshot.mailbox = reached(2000);
        assert_eq!(snapshot.verdict(), Verdict::Alerts(1));
        assert_eq!(line(&snapshot), "1 alert");
    }

    #[test]
    fn no_contact_yet_or_no_mailbox_host_is_not_mail_flowing() {
        let unchecked = unlocked(
            MailboxReach {
                configured: true,
                ..MailboxReach::default()
            },
            true,
        );
        assert_eq!(
            unchecked.verdict(),
            Verdict::Problem(Problem::MailboxNotChecked)
        );
        let none = unlocked(MailboxReach::default(), true);
        assert_eq!(none.verdict(), Verdict::Problem(Problem::NoMailboxHost));
        assert!(Problem::NoMailboxHost.stops_mail() && !Problem::ClockNotSet.stops_mail());
    }

    #[test]
    fn locked_and_unprovisioned_come_before_any_problem() {
        let mut snapshot = unlocked(MailboxReach::default(), false);
        snapshot.lock = LockState::Locked;
        assert!(snapshot.problems().is_empty());
        assert_eq!(line(&snapshot), "Locked — unlock with the CLI");
        snapshot.lock = LockState::Unprovisioned;
        assert_eq!(line(&snapshot), "Not set up — provision with the CLI");
    }

    #[test]
    fn verdict_order() {
        let mut snapshot = StatusSnapshot {
            now_unix: Some(1_778_751_680),
            lock: LockState::Unlocked,
            mailbox: MailboxReach {
                configured: true,
                last_success_ms: Some(1000),
                ..MailboxReach::default()
            },
            ..StatusSnapshot::default()
        };
        assert_eq!(snapshot.verdict(), Verdict::MailFlows);
        snapshot.now_unix = None;
        assert_eq!(snapshot.verdict(), Verdict::Problem(Problem::ClockNotSet));
        snapshot.now_unix = Some(1_778_751_680);
        snapshot.alerts.raise(AlertKind::UnlockFailed, 0);
        assert_eq!(snapshot.verdict(), Verdict::Alerts(1));
        snapshot.lock = LockState::Locked;
        assert_eq!(snapshot.verdict(), Verdict::Locked);
        snapshot.lock = LockState::Unprovisioned;
        assert_eq!(snapshot.verdict(), Verdict::Unprovisioned);
    }
}
