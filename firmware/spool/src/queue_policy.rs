//! The delivery queue's policy, without I/O: when a queued message is due, how long it waits
//! after a deferral (per route, doubling up to a cap), when an outbound recipient has been
//! queued too long, and what one delivery attempt's per-recipient answers do to the message:
//! its next [`DeliveryState`], who gets a non-delivery report, what is counted, and whether
//! the message is removed or waits for its next retry.
//!
//! Everything here is a pure function of the recorded state, the attempt's answers and the
//! clock the caller passes in ([`QueueClock`]); it reads nothing and writes nothing, and calls
//! only [`DeliveryState`]'s accessors. The firmware's delivery task owns the I/O: it lists
//! the spool, asks [`next_due`] which message to try, runs the SMTP/LMTP sessions, feeds the
//! answers into [`AttemptResults`], and writes what [`record_outcomes`] returns (one state
//! record, then the delete when the message is done; the report; the counters).
//!
//! Rules:
//!
//! - **Retry delays** ([`RetrySchedule`]): towards the LAN mailbox host 5 s doubling to
//!   600 s; towards the smarthost 300 s doubling to 4000 s (Postfix's minimal_backoff_time
//!   and maximal_backoff_time). The delay after the `n`-th attempt is `first × 2ⁿ`, at most
//!   the cap. A message with an outbound recipient still pending follows the smarthost's
//!   schedule, otherwise the mailbox host's. When more recipients are pending than one
//!   attempt carries, the rest go at once (delay 0; RFC 5321 3.3).
//! - **Due** ([`is_due`]): a message is due when its retry time has come, when the owner
//!   asked for a flush (or the vault was just unlocked: every message is due once), or when
//!   its retry time lies further ahead than the longest delay: retry times count seconds
//!   since boot (the wall clock may be unknown), so one written in an earlier, longer boot
//!   means nothing now.
//! - **Expiry** ([`is_expired`]): an outbound recipient that is deferred once its message has
//!   been queued for [`QUEUE_LIFETIME_SECONDS`] (5 days, Postfix's maximal_queue_lifetime;
//!   reached counts) fails for good and is reported to the sender. Recipients for the LAN
//!   mailbox host never expire (the mail is ours; the owner is alerted instead). Without a
//!   wall clock or a queued-at time nothing expires; a wall clock behind the queued-at time
//!   (it was set back) counts as no time in the queue.
//! - **Outcomes** ([`record_outcomes`]): a 2xx delivers a recipient, a 5xx fails it for good
//!   (from the smarthost: a non-delivery report; from our own mailbox host: no report, the
//!   delivery task logs it), a 4xx or no answer leaves it pending. A recipient already
//!   delivered or failed never changes again, and answers for recipients outside the
//!   attempt's batch are ignored. The message is removed once no recipient is pending.

use crate::envelope::{DeliveryState, RecipientState, MAX_RECIPIENTS};
use crate::spool::{MessageId, MessageSummary};

/// How long an outbound recipient may stay queued (Postfix: maximal_queue_lifetime 5d).
pub const QUEUE_LIFETIME_SECONDS: u64 = 5 * 86_400;

/// Where a recipient's mail goes next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// One of our domains: the LAN mailbox host.
    Mailbox,
    /// Anywhere else: the smarthost.
    Smarthost,
}

/// Retry delays after deferrals: the first, doubling with every attempt, up to the longest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetrySchedule {
    /// Delay after the first attempt, in seconds.
    pub first_seconds: u64,
    /// The longest delay, in seconds.
    pub longest_seconds: u64,
}

/// Towards the LAN mailbox host: 5 s doubling to 10 min.
pub const MAILBOX_RETRY: RetrySchedule = RetrySchedule { first_seconds: 5, longest_seconds: 600 };
/// Towards the smarthost (Postfix: minimal_backoff_time 300 s, maximal_backoff_time 4000 s).
pub const SMARTHOST_RETRY: RetrySchedule = RetrySchedule { first_seconds: 300, longest_seconds: 4000 };
/// The longest delay any schedule gives: a retry time further ahead is from an earlier boot.
pub const LONGEST_RETRY_SECONDS: u64 = if MAILBOX_RETRY.longest_seconds > SMARTHOST_RETRY.longest_seconds {
    MAILBOX_RETRY.longest_seconds
} else {
    SMARTHOST_RETRY.longest_seconds
};

impl RetrySchedule {
    /// The schedule of `route`.
    pub const fn of(route: Route) -> Self {
        match route {
            Route::Mailbox => MAILBOX_RETRY,
            Route::Smarthost => SMARTHOST_RETRY,
        }
    }

    /// The delay after an attempt that followed `earlier_attempts` others: the first delay
    /// doubled that many times, at most the longest.
    pub fn delay_seconds(&self, earlier_attempts: u32) -> u64 {
        let factor = 1u64.checked_shl(earlier_attempts).unwrap_or(u64::MAX);
        self.first_seconds.saturating_mul(factor).min(self.longest_seconds)
    }
}

/// The two clocks of the queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueClock {
    /// Seconds since boot: the time base of retry times ([`DeliveryState::next_retry`]).
    pub uptime_seconds: u64,
    /// Unix seconds, when the wall clock is known: the time base of the queue lifetime.
    pub unix_seconds: Option<u64>,
}

/// Whether a message with `state` is to be tried at `uptime_seconds`; `flush`: every
/// message is (the owner's flush, or the first pass after unlock).
pub fn is_due(state: &DeliveryState, uptime_seconds: u64, flush: bool) -> bool {
    flush
        || state.next_retry <= uptime_seconds
        // Written in an earlier boot with a larger uptime than now.
        || state.next_retry > uptime_seconds.saturating_add(LONGEST_RETRY_SECONDS)
}

/// The first message of `messages` to try now: intact, not yet tried in this pass, and due.
pub fn next_due(
    messages: impl IntoIterator<Item = MessageSummary>,
    tried: &[MessageId],
    uptime_seconds: u64,
    flush: bool,
) -> Option<MessageSummary> {
    messages
        .into_iter()
        .find(|message| !message.damaged && !tried.contains(&message.id) && is_due(&message.delivery, uptime_seconds, flush))
}

/// Whether a message queued at `queued_at` (Unix seconds, 0: unknown) has reached the queue
/// lifetime at `unix_seconds` (None: the wall clock is unknown).
pub fn is_expired(queued_at: u64, unix_seconds: Option<u64>) -> bool {
    queued_at != 0 && unix_seconds.is_some_and(|now| now.saturating_sub(queued_at) >= QUEUE_LIFETIME_SECONDS)
}

/// The recipients of a message with `recipient_count` recipients that are still pending, in
/// envelope order.
pub fn pending(state: &DeliveryState, recipient_count: usize) -> impl Iterator<Item = usize> + '_ {
    (0..recipient_count.min(MAX_RECIPIENTS)).filter(move |&index| state.recipient(index) == RecipientState::Pending)
}

/// A set of recipients of one message, by envelope index (0..[`MAX_RECIPIENTS`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecipientSet(u128);

impl RecipientSet {
    /// No recipient.
    pub const EMPTY: Self = Self(0);

    /// The recipients whose bits are set (bit `i`: recipient `i`).
    pub const fn from_bits(bits: u128) -> Self {
        Self(bits)
    }

    /// The set as a bitmap.
    pub const fn bits(self) -> u128 {
        self.0
    }

    /// Recipients 0..`count`.
    pub fn first(count: usize) -> Self {
        match count {
            0 => Self(0),
            count if count >= MAX_RECIPIENTS => Self(u128::MAX),
            count => Self((1u128 << count) - 1),
        }
    }

    /// Adds recipient `index` (ignored beyond [`MAX_RECIPIENTS`]).
    pub fn insert(&mut self, index: usize) {
        if index < MAX_RECIPIENTS {
            self.0 |= 1u128 << index;
        }
    }

    /// Removes recipient `index`.
    pub fn remove(&mut self, index: usize) {
        if index < MAX_RECIPIENTS {
            self.0 &= !(1u128 << index);
        }
    }

    /// Whether recipient `index` is in the set.
    pub fn contains(self, index: usize) -> bool {
        index < MAX_RECIPIENTS && self.0 & (1u128 << index) != 0
    }

    /// How many recipients the set holds.
    pub fn len(self) -> u32 {
        self.0.count_ones()
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The recipients in both sets.
    pub fn and(self, other: Self) -> Self {
        Self(self.0 & other.0)
    }

    /// The recipients in either set.
    pub fn or(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// The recipients in this set and not in `other`.
    pub fn without(self, other: Self) -> Self {
        Self(self.0 & !other.0)
    }

    /// The recipients, ascending.
    pub fn iter(self) -> impl Iterator<Item = usize> {
        (0..MAX_RECIPIENTS).filter(move |&index| self.contains(index))
    }
}

/// A next hop's answer for one recipient.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx: delivered.
    Delivered,
    /// 4xx, or the connection or TLS failed: try again later.
    Deferred,
    /// 5xx: refused for good.
    Failed,
}

/// What one delivery attempt tried and how each recipient was answered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AttemptResults {
    mailbox: RecipientSet,
    smarthost: RecipientSet,
    delivered: RecipientSet,
    failed: RecipientSet,
    deferred: RecipientSet,
}

impl AttemptResults {
    /// Nothing tried yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Recipient `index` is in this attempt's batch and goes to `route`.
    pub fn tried(&mut self, index: usize, route: Route) {
        let (on, off) = match route {
            Route::Mailbox => (&mut self.mailbox, &mut self.smarthost),
            Route::Smarthost => (&mut self.smarthost, &mut self.mailbox),
        };
        on.insert(index);
        off.remove(index);
    }

    /// The next hop answered recipient `index` with `outcome`. When one recipient is answered
    /// more than once, a 2xx wins over a 5xx, and a 5xx over a 4xx.
    pub fn answered(&mut self, index: usize, outcome: Outcome) {
        match outcome {
            Outcome::Delivered => self.delivered.insert(index),
            Outcome::Failed => self.failed.insert(index),
            Outcome::Deferred => self.deferred.insert(index),
        }
    }

    /// The batch: every recipient tried.
    pub fn batch(&self) -> RecipientSet {
        self.mailbox.or(self.smarthost)
    }

    /// The recipients tried on `route`.
    pub fn on_route(&self, route: Route) -> RecipientSet {
        match route {
            Route::Mailbox => self.mailbox,
            Route::Smarthost => self.smarthost,
        }
    }
}

/// What the delivery task counts for the status page.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Recipients delivered to the mailbox host.
    pub delivered_local: u32,
    /// Recipients delivered to the smarthost.
    pub relayed: u32,
    /// Recipients deferred and still pending.
    pub deferred: u32,
    /// Recipients that failed for good (refused, or expired).
    pub bounced: u32,
}

/// What becomes of the message after the attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disposition {
    /// No recipient is pending: delete the message.
    Remove,
    /// Recipients are pending: try again at `next_retry` (uptime seconds), `delay_seconds`
    /// from now.
    Retry {
        /// Seconds from now.
        delay_seconds: u64,
        /// When, in uptime seconds (also in the new state).
        next_retry: u64,
    },
}

/// The decision on one attempt's answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recorded {
    /// The message's new delivery state: write it (before the delete, so a power cut in
    /// between never delivers a recipient twice).
    pub state: DeliveryState,
    /// Recipients delivered now.
    pub delivered: RecipientSet,
    /// Recipients refused for good now (5xx).
    pub refused: RecipientSet,
    /// Outbound recipients failed now because the queue lifetime was reached.
    pub expired: RecipientSet,
    /// Recipients deferred and still pending.
    pub deferred: RecipientSet,
    /// Recipients to name in a non-delivery report to the sender: outbound ones that were
    /// refused or expired now (each recipient once in the message's life).
    pub non_delivery_report: RecipientSet,
    /// For the status page.
    pub counts: Counts,
    /// Remove the message, or when to try again.
    pub disposition: Disposition,
}

/// Applies one attempt's answers (`results`) to a message with `state` and `recipient_count`
/// recipients, queued at `queued_at` (Unix seconds, 0: unknown). `more_pending`: recipients
/// were left out of the batch (the next attempt follows at once).
pub fn record_outcomes(
    state: DeliveryState,
    recipient_count: usize,
    results: &AttemptResults,
    more_pending: bool,
    queued_at: u64,
    clock: QueueClock,
) -> Recorded {
    let all = RecipientSet::first(recipient_count);
    let was_pending = all.without(RecipientSet(state.delivered)).without(RecipientSet(state.failed));
    let batch = results.batch().and(was_pending);
    let smarthost = results.smarthost.and(batch);
    let delivered = results.delivered.and(batch);
    let refused = results.failed.and(batch).without(delivered);
    // Tried without an answer (no connection, a timeout, the session gave up): deferred too,
    // so such recipients still expire after five days.
    let unanswered = batch.without(results.delivered).without(results.failed).without(results.deferred);
    let deferred_answer = results.deferred.or(unanswered).and(batch).without(delivered).without(refused);
    let expired = if is_expired(queued_at, clock.unix_seconds) { deferred_answer.and(smarthost) } else { RecipientSet::EMPTY };
    let deferred = deferred_answer.without(expired);

    let mut next = state;
    next.delivered |= delivered.bits();
    next.failed |= refused.or(expired).bits();
    let still_pending = was_pending.without(delivered).without(refused).without(expired);
    let disposition = if still_pending.is_empty() {
        Disposition::Remove
    } else {
        // Recipients beyond this batch were not tried: no delay for them.
        let route = if still_pending.and(smarthost).is_empty() { Route::Mailbox } else { Route::Smarthost };
        let delay_seconds = if more_pending { 0 } else { RetrySchedule::of(route).delay_seconds(state.attempts) };
        let next_retry = clock.uptime_seconds.saturating_add(delay_seconds);
        next.attempts = state.attempts.saturating_add(1);
        next.next_retry = next_retry;
        Disposition::Retry { delay_seconds, next_retry }
    };
    Recorded {
        state: next,
        delivered,
        refused,
        expired,
        deferred,
        non_delivery_report: refused.and(smarthost).or(expired),
        counts: Counts {
            delivered_local: delivered.without(smarthost).len(),
            relayed: delivered.and(smarthost).len(),
            deferred: deferred.len(),
            bounced: refused.or(expired).len(),
        },
        disposition,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86_400;
    const QUEUED: u64 = 1_700_000_000;

    fn clock(uptime_seconds: u64, unix_seconds: Option<u64>) -> QueueClock {
        QueueClock { uptime_seconds, unix_seconds }
    }

    /// A batch of `routes` (recipient i on routes[i]) answered with `answers` (None: no answer).
    fn results(routes: &[Route], answers: &[Option<Outcome>]) -> AttemptResults {
        let mut results = AttemptResults::new();
        for (index, route) in routes.iter().enumerate() {
            results.tried(index, *route);
        }
        for (index, answer) in answers.iter().enumerate() {
            if let Some(outcome) = answer {
                results.answered(index, *outcome);
            }
        }
        results
    }

    fn set(indices: &[usize]) -> RecipientSet {
        let mut set = RecipientSet::EMPTY;
        for &index in indices {
            set.insert(index);
        }
        set
    }

    fn retry_delay(recorded: &Recorded) -> u64 {
        match recorded.disposition {
            Disposition::Retry { delay_seconds, .. } => delay_seconds,
            Disposition::Remove => panic!("removed: {recorded:?}"),
        }
    }

    #[test]
    fn backoff_doubles_per_route_up_to_its_cap() {
        let mailbox: Vec<u64> = (0..10).map(|attempts| MAILBOX_RETRY.delay_seconds(attempts)).collect();
        assert_eq!(mailbox, [5, 10, 20, 40, 80, 160, 320, 600, 600, 600]);
        let smarthost: Vec<u64> = (0..7).map(|attempts| SMARTHOST_RETRY.delay_seconds(attempts)).collect();
        assert_eq!(smarthost, [300, 600, 1200, 2400, 4000, 4000, 4000]);
        for attempts in [16, 31, 32, 63, 64, 1000, u32::MAX] {
            assert_eq!(MAILBOX_RETRY.delay_seconds(attempts), 600, "{attempts}");
            assert_eq!(SMARTHOST_RETRY.delay_seconds(attempts), 4000, "{attempts}");
        }
        assert_eq!(LONGEST_RETRY_SECONDS, 4000);
    }

    #[test]
    fn each_deferral_counts_an_attempt_and_doubles_the_next_delay() {
        let mut state = DeliveryState::default();
        let mut delays = Vec::new();
        for step in 0..6u64 {
            let now = 1000 * step;
            let recorded =
                record_outcomes(state, 1, &results(&[Route::Mailbox], &[Some(Outcome::Deferred)]), false, QUEUED, clock(now, None));
            delays.push(retry_delay(&recorded));
            assert_eq!(recorded.state.attempts, state.attempts + 1);
            assert_eq!(recorded.state.next_retry, now + delays[delays.len() - 1]);
            assert_eq!(recorded.counts, Counts { deferred: 1, ..Counts::default() });
            state = recorded.state;
        }
        assert_eq!(delays, [5, 10, 20, 40, 80, 160]);
    }

    #[test]
    fn a_pending_outbound_recipient_chooses_the_smarthost_schedule() {
        let state = DeliveryState { attempts: 2, ..DeliveryState::default() };
        let routes = [Route::Mailbox, Route::Smarthost];
        let deferred = Some(Outcome::Deferred);
        let at = clock(50, Some(QUEUED + DAY));
        let both = record_outcomes(state, 2, &results(&routes, &[deferred, deferred]), false, QUEUED, at);
        assert_eq!(retry_delay(&both), 1200, "local and outbound pending: the smarthost's 300 s × 4");
        let local_only = record_outcomes(state, 2, &results(&routes, &[deferred, Some(Outcome::Delivered)]), false, QUEUED, at);
        assert_eq!(retry_delay(&local_only), 20, "only the local one pending: 5 s × 4");
        let outbound_only = record_outcomes(state, 2, &results(&routes, &[Some(Outcome::Delivered), deferred]), false, QUEUED, at);
        assert_eq!(retry_delay(&outbound_only), 1200);
        let unanswered_outbound = record_outcomes(state, 2, &results(&routes, &[deferred, None]), false, QUEUED, at);
        assert_eq!(retry_delay(&unanswered_outbound), 1200, "an unanswered outbound recipient is still pending");
        // The outbound one expired (no longer pending): the local one's schedule.
        let expired = record_outcomes(state, 2, &results(&routes, &[deferred, deferred]), false, QUEUED, clock(50, Some(QUEUED + 6 * DAY)));
        assert_eq!(expired.expired, set(&[1]));
        assert_eq!(retry_delay(&expired), 20);
        assert_eq!(expired.state.next_retry, 70);
    }

    #[test]
    fn recipients_left_out_of_the_batch_go_at_once() {
        let state = DeliveryState { attempts: 3, next_retry: 7, ..DeliveryState::default() };
        // Recipients 0 and 1 in the batch (both deferred), 2 left out.
        let recorded = record_outcomes(
            state,
            3,
            &results(&[Route::Smarthost, Route::Mailbox], &[Some(Outcome::Deferred); 2]),
            true,
            QUEUED,
            clock(900, None),
        );
        assert_eq!(recorded.disposition, Disposition::Retry { delay_seconds: 0, next_retry: 900 });
        assert_eq!(recorded.state.attempts, 4);
        assert!(is_due(&recorded.state, 900, false));
    }

    #[test]
    fn tried_recipients_without_an_answer_count_as_deferred_and_expire() {
        let routes = [Route::Smarthost, Route::Mailbox];
        let at = |unix| record_outcomes(DeliveryState::default(), 2, &results(&routes, &[None, None]), false, QUEUED, clock(10, unix));
        let before = at(Some(QUEUED + QUEUE_LIFETIME_SECONDS - 1));
        assert_eq!(before.deferred, set(&[0, 1]));
        assert!(matches!(before.disposition, Disposition::Retry { .. }));
        let reached = at(Some(QUEUED + QUEUE_LIFETIME_SECONDS));
        assert_eq!(reached.expired, set(&[0]), "the smarthost never answered for five days");
        assert_eq!(reached.non_delivery_report, set(&[0]));
        assert_eq!(reached.deferred, set(&[1]));
    }

    #[test]
    fn outbound_recipients_expire_when_five_days_are_reached_and_not_before() {
        let routes = [Route::Smarthost, Route::Mailbox];
        let deferred = [Some(Outcome::Deferred), Some(Outcome::Deferred)];
        let at = |unix| record_outcomes(DeliveryState::default(), 2, &results(&routes, &deferred), false, QUEUED, clock(10, unix));
        let before = at(Some(QUEUED + QUEUE_LIFETIME_SECONDS - 1));
        assert!(before.expired.is_empty() && before.non_delivery_report.is_empty(), "{before:?}");
        assert_eq!(before.deferred, set(&[0, 1]));
        assert_eq!(before.state.failed, 0);
        let reached = at(Some(QUEUED + QUEUE_LIFETIME_SECONDS));
        assert_eq!(reached.expired, set(&[0]), "the outbound recipient, exactly at 5 days");
        assert_eq!(reached.non_delivery_report, set(&[0]));
        assert_eq!(reached.state.recipient(0), RecipientState::Failed);
        assert_eq!(reached.state.recipient(1), RecipientState::Pending, "the local recipient never expires");
        assert_eq!(reached.deferred, set(&[1]));
        assert_eq!(reached.counts, Counts { deferred: 1, bounced: 1, ..Counts::default() });
        // Answered for good at the same time: not expired, delivered or refused.
        let answered = record_outcomes(
            DeliveryState::default(),
            2,
            &results(&routes, &[Some(Outcome::Delivered), Some(Outcome::Deferred)]),
            false,
            QUEUED,
            clock(10, Some(QUEUED + 9 * DAY)),
        );
        assert!(answered.expired.is_empty() && answered.non_delivery_report.is_empty());
        assert_eq!(answered.state.recipient(0), RecipientState::Delivered);
        assert_eq!(answered.state.recipient(1), RecipientState::Pending);
    }

    #[test]
    fn nothing_expires_without_both_times_or_when_the_clock_went_back() {
        assert!(!is_expired(QUEUED, None), "wall clock unknown");
        assert!(!is_expired(0, Some(QUEUED + 30 * DAY)), "queued-at time unknown");
        assert!(!is_expired(QUEUED, Some(QUEUED - 30 * DAY)), "the wall clock went back");
        assert!(!is_expired(QUEUED, Some(QUEUED + QUEUE_LIFETIME_SECONDS - 1)));
        assert!(is_expired(QUEUED, Some(QUEUED + QUEUE_LIFETIME_SECONDS)));
        assert!(is_expired(1, Some(u64::MAX)), "a clock far ahead");
        let routes = [Route::Smarthost];
        let recorded =
            record_outcomes(DeliveryState::default(), 1, &results(&routes, &[Some(Outcome::Deferred)]), false, 0, clock(1, Some(u64::MAX)));
        assert!(recorded.expired.is_empty() && recorded.state.failed == 0);
    }

    #[test]
    fn a_permanent_refusal_fails_the_recipient_and_reports_only_outbound_ones() {
        let routes = [Route::Smarthost, Route::Mailbox, Route::Smarthost];
        let answers = [Some(Outcome::Failed), Some(Outcome::Failed), Some(Outcome::Delivered)];
        let recorded = record_outcomes(DeliveryState::default(), 3, &results(&routes, &answers), false, QUEUED, clock(10, Some(QUEUED)));
        assert_eq!(recorded.refused, set(&[0, 1]));
        assert_eq!(recorded.non_delivery_report, set(&[0]), "no report for our own mailbox host's refusal");
        assert_eq!(recorded.state.failed, set(&[0, 1]).bits());
        assert_eq!(recorded.state.delivered, set(&[2]).bits());
        assert_eq!(recorded.counts, Counts { relayed: 1, bounced: 2, ..Counts::default() });
        assert_eq!(recorded.disposition, Disposition::Remove);
    }

    #[test]
    fn refused_and_expired_in_one_attempt_count_each_recipient_once() {
        let routes = [Route::Smarthost, Route::Smarthost, Route::Smarthost];
        let answers = [Some(Outcome::Failed), Some(Outcome::Deferred), None];
        let recorded =
            record_outcomes(DeliveryState::default(), 3, &results(&routes, &answers), false, QUEUED, clock(10, Some(QUEUED + 5 * DAY)));
        assert_eq!(recorded.refused, set(&[0]));
        assert_eq!(recorded.expired, set(&[1, 2]), "no answer is a deferral: it expires too");
        assert_eq!(recorded.non_delivery_report, set(&[0, 1, 2]));
        assert_eq!(recorded.counts.bounced, 3);
        assert_eq!(recorded.disposition, Disposition::Remove);
    }

    #[test]
    fn all_recipients_answered_for_good_removes_the_message() {
        let routes = [Route::Mailbox, Route::Smarthost, Route::Mailbox];
        let recorded =
            record_outcomes(DeliveryState::default(), 3, &results(&routes, &[Some(Outcome::Delivered); 3]), false, QUEUED, clock(10, None));
        assert_eq!(recorded.disposition, Disposition::Remove);
        assert!(recorded.state.is_finished(3));
        assert_eq!(recorded.delivered, set(&[0, 1, 2]));
        assert_eq!(recorded.counts, Counts { delivered_local: 2, relayed: 1, ..Counts::default() });
        assert_eq!(recorded.state.attempts, 0, "a removed message's attempts are not counted");
    }

    #[test]
    fn a_partial_delivery_keeps_only_the_rest_queued() {
        let routes = [Route::Mailbox, Route::Smarthost, Route::Smarthost, Route::Mailbox];
        let answers = [Some(Outcome::Delivered), Some(Outcome::Failed), Some(Outcome::Deferred), None];
        let first = record_outcomes(DeliveryState::default(), 4, &results(&routes, &answers), false, QUEUED, clock(10, Some(QUEUED)));
        assert_eq!(pending(&first.state, 4).collect::<Vec<_>>(), [2, 3]);
        assert!(matches!(first.disposition, Disposition::Retry { delay_seconds: 300, next_retry: 310 }));
        // The next attempt carries only the rest; a late answer for recipient 0 or 1 changes nothing.
        let mut second_results = results(&[], &[]);
        second_results.tried(2, Route::Smarthost);
        second_results.tried(3, Route::Mailbox);
        second_results.answered(0, Outcome::Failed);
        second_results.answered(1, Outcome::Delivered);
        second_results.answered(2, Outcome::Delivered);
        let second = record_outcomes(first.state, 4, &second_results, false, QUEUED, clock(400, Some(QUEUED)));
        assert_eq!(second.state.recipient(0), RecipientState::Delivered);
        assert_eq!(second.state.recipient(1), RecipientState::Failed);
        assert_eq!(second.state.recipient(2), RecipientState::Delivered);
        assert_eq!(pending(&second.state, 4).collect::<Vec<_>>(), [3]);
        assert_eq!(second.delivered, set(&[2]));
        assert!(second.refused.is_empty() && second.non_delivery_report.is_empty());
        assert_eq!(retry_delay(&second), 10, "only the local one left, second attempt");
    }

    #[test]
    fn a_message_whose_last_recipients_failed_is_removed() {
        let routes = [Route::Smarthost, Route::Mailbox];
        let refused =
            record_outcomes(DeliveryState::default(), 2, &results(&routes, &[Some(Outcome::Failed); 2]), false, QUEUED, clock(10, None));
        assert_eq!(refused.disposition, Disposition::Remove);
        assert_eq!(refused.non_delivery_report, set(&[0]));
        // The last pending recipient expires: nothing is left to try.
        let state = DeliveryState { delivered: set(&[1]).bits(), attempts: 40, next_retry: 5, ..DeliveryState::default() };
        let mut last = AttemptResults::new();
        last.tried(0, Route::Smarthost);
        last.answered(0, Outcome::Deferred);
        let expired = record_outcomes(state, 2, &last, false, QUEUED, clock(10, Some(QUEUED + 5 * DAY)));
        assert_eq!(expired.disposition, Disposition::Remove);
        assert_eq!(expired.expired, set(&[0]));
        assert_eq!(expired.counts, Counts { bounced: 1, ..Counts::default() });
    }

    #[test]
    fn a_recipient_already_answered_for_good_never_changes() {
        // A stale batch that still carries recipients 0 (delivered) and 1 (failed).
        let state = DeliveryState { delivered: set(&[0]).bits(), failed: set(&[1]).bits(), ..DeliveryState::default() };
        let mut stale = AttemptResults::new();
        for index in 0..3 {
            stale.tried(index, Route::Smarthost);
        }
        stale.answered(0, Outcome::Failed);
        stale.answered(1, Outcome::Delivered);
        stale.answered(2, Outcome::Deferred);
        let recorded = record_outcomes(state, 3, &stale, false, QUEUED, clock(10, Some(QUEUED + 6 * DAY)));
        assert_eq!((recorded.state.delivered, recorded.state.failed), (state.delivered, state.failed | set(&[2]).bits()));
        assert_eq!(recorded.delivered, RecipientSet::EMPTY);
        assert_eq!(recorded.refused, RecipientSet::EMPTY);
        assert_eq!(recorded.expired, set(&[2]));
        assert_eq!(recorded.non_delivery_report, set(&[2]), "recipient 1 was reported when it failed, not again");
        assert_eq!(recorded.counts, Counts { bounced: 1, ..Counts::default() });
    }

    #[test]
    fn answers_outside_the_batch_or_the_envelope_are_ignored() {
        let mut attempt = AttemptResults::new();
        attempt.tried(0, Route::Smarthost);
        attempt.answered(1, Outcome::Delivered);
        attempt.answered(0, Outcome::Deferred);
        attempt.tried(5, Route::Mailbox);
        attempt.answered(5, Outcome::Delivered);
        let recorded = record_outcomes(DeliveryState::default(), 2, &attempt, false, QUEUED, clock(10, None));
        assert_eq!(recorded.state.delivered, 0);
        assert_eq!(pending(&recorded.state, 2).collect::<Vec<_>>(), [0, 1]);
    }

    #[test]
    fn a_recipient_answered_twice_takes_the_better_answer() {
        let mut attempt = AttemptResults::new();
        attempt.tried(0, Route::Smarthost);
        attempt.tried(1, Route::Smarthost);
        attempt.answered(0, Outcome::Failed);
        attempt.answered(0, Outcome::Delivered);
        attempt.answered(1, Outcome::Deferred);
        attempt.answered(1, Outcome::Failed);
        let recorded = record_outcomes(DeliveryState::default(), 2, &attempt, false, QUEUED, clock(10, None));
        assert_eq!(recorded.delivered, set(&[0]));
        assert_eq!(recorded.refused, set(&[1]));
        assert_eq!(recorded.non_delivery_report, set(&[1]));
        assert_eq!(recorded.counts, Counts { relayed: 1, bounced: 1, ..Counts::default() });
    }

    #[test]
    fn a_message_is_due_at_its_retry_time_or_after_a_clock_jump() {
        let state = DeliveryState { next_retry: 1000, ..DeliveryState::default() };
        assert!(!is_due(&state, 999, false));
        assert!(is_due(&state, 1000, false));
        assert!(is_due(&state, 1_000_000, false), "forwards: long past");
        // Backwards: the uptime restarted at a reset; a retry time further ahead than the
        // longest delay is from the earlier boot.
        let earlier_boot = DeliveryState { next_retry: 50_000, ..DeliveryState::default() };
        assert!(is_due(&earlier_boot, 10, false));
        let longest_ahead = DeliveryState { next_retry: 10 + LONGEST_RETRY_SECONDS, ..DeliveryState::default() };
        assert!(!is_due(&longest_ahead, 10, false), "the longest delay itself is honoured");
        assert!(is_due(&DeliveryState { next_retry: 11 + LONGEST_RETRY_SECONDS, ..longest_ahead }, 10, false));
        assert!(is_due(&DeliveryState::default(), 0, false), "never tried");
    }

    fn summary(id: u32, next_retry: u64, damaged: bool) -> MessageSummary {
        MessageSummary {
            id: MessageId(id),
            length: 100,
            recipient_count: 1,
            queued_at: QUEUED,
            delivery: DeliveryState { next_retry, attempts: 1, ..DeliveryState::default() },
            damaged,
        }
    }

    #[test]
    fn the_next_message_is_the_first_due_intact_untried_one() {
        let queue = [summary(1, 500, false), summary(2, 100, true), summary(3, 200, false), summary(4, 150, false)];
        assert_eq!(next_due(queue, &[], 100, false), None, "the damaged one is never tried");
        assert_eq!(next_due(queue, &[], 150, false).map(|message| message.id), Some(MessageId(4)));
        assert_eq!(next_due(queue, &[], 200, false).map(|message| message.id), Some(MessageId(3)));
        assert_eq!(next_due(queue, &[MessageId(3)], 200, false).map(|message| message.id), Some(MessageId(4)));
        assert_eq!(next_due(queue, &[MessageId(3), MessageId(4)], 200, false), None);
    }

    #[test]
    fn a_flush_makes_every_intact_message_due_once_per_pass() {
        let queue = [summary(1, 3000, false), summary(2, 100, true), summary(3, 2000, false), summary(4, 10, false)];
        let mut tried = Vec::new();
        while let Some(message) = next_due(queue, &tried, 0, true) {
            tried.push(message.id);
        }
        assert_eq!(tried, [MessageId(1), MessageId(3), MessageId(4)]);
        let mut tried = Vec::new();
        while let Some(message) = next_due(queue, &tried, 0, false) {
            tried.push(message.id);
        }
        assert!(tried.is_empty(), "without the flush none is due at uptime 0");
    }

    #[test]
    fn recipient_sets() {
        assert_eq!(RecipientSet::first(0), RecipientSet::EMPTY);
        assert_eq!(RecipientSet::first(3).bits(), 0b111);
        assert_eq!(RecipientSet::first(MAX_RECIPIENTS).len(), 128);
        assert_eq!(RecipientSet::first(500).len(), 128);
        let mut set = set(&[0, 127]);
        set.insert(128);
        assert_eq!(set.iter().collect::<Vec<_>>(), [0, 127]);
        assert!(!set.contains(128) && !set.contains(usize::MAX));
        set.remove(0);
        assert_eq!(set.len(), 1);
    }
}
