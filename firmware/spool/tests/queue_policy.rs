//! Property test of the queue policy (`src/queue_policy.rs`): one message with 1 to 128
//! recipients, local and outbound mixed, goes through random attempts made the way the
//! delivery task makes them (the pending recipients in envelope order, a batch of limited
//! size, the rest at once), with every answer (2xx, 4xx, 5xx, none, and stray answers for
//! recipients outside the batch, and stale batches that carry a recipient already answered
//! for good), a wall clock that is unknown, steps forwards, jumps days
//! ahead or goes back, resets (the uptime starts again) and flushes. No recipient is ever
//! lost: after every attempt each recipient is exactly one of delivered (in exactly one
//! attempt), failed for good (an outbound one named in exactly one non-delivery report, a
//! local one in none), or pending in a message that is still queued; the message is removed
//! exactly when none is pending; and a final run of successful attempts empties the queue.

use homemx_spool::queue_policy::{
    is_due, is_expired, pending, record_outcomes, AttemptResults, Disposition, Outcome, QueueClock, RecipientSet, Route,
    LONGEST_RETRY_SECONDS,
};
use homemx_spool::{DeliveryState, RecipientState, MAX_RECIPIENTS};
use proptest::prelude::*;

const QUEUED_AT: u64 = 1_700_000_000;

#[derive(Debug, Clone)]
enum WallClock {
    Unknown,
    Forwards(u64),
    Backwards(u64),
}

#[derive(Debug, Clone)]
struct Step {
    /// Seconds of uptime that pass before the step.
    uptime_passes: u64,
    /// The device resets: the uptime starts again near 0.
    reset: bool,
    wall_clock: WallClock,
    /// The owner's flush (or an unlock).
    flush: bool,
    /// Most recipients the attempt carries.
    batch_capacity: usize,
    /// Answer per batch position: 0 2xx, 1 4xx, 2 5xx, 3 none.
    answers: Vec<u8>,
    /// An answer for some recipient, maybe outside the batch.
    stray: Option<(usize, u8)>,
    /// The batch also carries this recipient when it is no longer pending (a stale batch).
    stale: Option<usize>,
}

fn step() -> impl Strategy<Value = Step> {
    (
        prop_oneof![3 => 0u64..100, 2 => 100u64..5000, 1 => 5000u64..100_000],
        prop::bool::weighted(0.1),
        prop_oneof![
            1 => Just(WallClock::Unknown),
            4 => (0u64..200_000).prop_map(WallClock::Forwards),
            1 => (86_400u64..4 * 86_400).prop_map(WallClock::Forwards),
            1 => (0u64..3 * 86_400).prop_map(WallClock::Backwards),
        ],
        prop::bool::weighted(0.2),
        prop_oneof![1usize..4, 4usize..=40],
        prop::collection::vec(0u8..4, MAX_RECIPIENTS),
        prop::option::weighted(0.2, (0usize..MAX_RECIPIENTS + 2, 0u8..3)),
        prop::option::weighted(0.2, 0usize..MAX_RECIPIENTS),
    )
        .prop_map(|(uptime_passes, reset, wall_clock, flush, batch_capacity, answers, stray, stale)| Step {
            uptime_passes,
            reset,
            wall_clock,
            flush,
            batch_capacity,
            answers,
            stray,
            stale,
        })
}

fn outcome(code: u8) -> Option<Outcome> {
    match code {
        0 => Some(Outcome::Delivered),
        1 => Some(Outcome::Deferred),
        2 => Some(Outcome::Failed),
        _ => None,
    }
}

/// The queue as the delivery task sees it, and everything that happened to each recipient.
struct Run {
    routes: Vec<Route>,
    state: DeliveryState,
    removed: bool,
    uptime: u64,
    unix: Option<u64>,
    /// Attempts that delivered recipient i.
    deliveries: Vec<u32>,
    /// Non-delivery reports that named recipient i.
    reports: Vec<u32>,
}

impl Run {
    fn count(&self) -> usize {
        self.routes.len()
    }

    /// One attempt as the delivery task makes it; checks what `record_outcomes` decided.
    fn attempt(
        &mut self,
        capacity: usize,
        flush: bool,
        answer: impl Fn(usize, usize) -> Option<Outcome>,
        stray: Option<(usize, u8)>,
        stale: Option<usize>,
    ) {
        if self.removed || !is_due(&self.state, self.uptime, flush) {
            return;
        }
        let count = self.count();
        let waiting: Vec<usize> = pending(&self.state, count).collect();
        let mut batch: Vec<usize> = waiting.iter().copied().take(capacity).collect();
        let more_pending = waiting.len() > batch.len();
        if let Some(index) = stale.filter(|&index| index < count && self.state.recipient(index) != RecipientState::Pending) {
            batch.push(index);
        }
        let mut results = AttemptResults::new();
        for &index in &batch {
            results.tried(index, self.routes[index]);
        }
        for (position, &index) in batch.iter().enumerate() {
            if let Some(outcome) = answer(position, index) {
                results.answered(index, outcome);
            }
        }
        if let Some((index, code)) = stray {
            results.answered(index, outcome(code).unwrap());
        }
        let clock = QueueClock { uptime_seconds: self.uptime, unix_seconds: self.unix };
        let before = self.state;
        let recorded = record_outcomes(before, count, &results, more_pending, QUEUED_AT, clock);
        let after = recorded.state;
        let batch_set = RecipientSet::from_bits(batch.iter().fold(0u128, |bits, &index| bits | 1u128 << index));
        let outbound = RecipientSet::from_bits(
            (0..count).filter(|&index| self.routes[index] == Route::Smarthost).fold(0, |bits, index| bits | 1u128 << index),
        );
        let all = RecipientSet::first(count);

        // Final results stay final; nothing beyond the envelope; never both.
        assert_eq!(after.delivered & before.delivered, before.delivered, "a delivery was forgotten");
        assert_eq!(after.failed & before.failed, before.failed, "a failure was forgotten");
        assert_eq!(after.delivered & after.failed, 0);
        assert_eq!(RecipientSet::from_bits(after.delivered | after.failed).without(all), RecipientSet::EMPTY);
        // What changed is in the batch, and is what the decision says.
        let newly_delivered = RecipientSet::from_bits(after.delivered & !before.delivered);
        let newly_failed = RecipientSet::from_bits(after.failed & !before.failed);
        assert_eq!(newly_delivered, recorded.delivered);
        assert_eq!(newly_failed, recorded.refused.or(recorded.expired));
        assert_eq!(newly_delivered.or(newly_failed).without(batch_set), RecipientSet::EMPTY, "only the batch is decided");
        assert_eq!(newly_delivered.or(newly_failed).and(RecipientSet::from_bits(before.delivered | before.failed)), RecipientSet::EMPTY);
        assert!(recorded.refused.and(recorded.expired).is_empty());
        // Expiry: only outbound recipients, only once the lifetime is reached.
        assert_eq!(recorded.expired.without(outbound), RecipientSet::EMPTY);
        assert!(recorded.expired.is_empty() || is_expired(QUEUED_AT, self.unix));
        // The report names exactly the outbound recipients that failed now.
        assert_eq!(recorded.non_delivery_report, newly_failed.and(outbound));
        // Answers that must take effect.
        for (position, &index) in batch.iter().enumerate().filter(|(_, &index)| before.recipient(index) == RecipientState::Pending) {
            let stray_here = stray.is_some_and(|(stray_index, _)| stray_index == index);
            match (answer(position, index), stray_here) {
                (Some(Outcome::Delivered), _) => assert_eq!(after.recipient(index), RecipientState::Delivered),
                (Some(Outcome::Failed), false) => assert_eq!(after.recipient(index), RecipientState::Failed),
                (Some(Outcome::Deferred) | None, false) if !recorded.expired.contains(index) => {
                    assert_eq!(after.recipient(index), RecipientState::Pending, "a deferred recipient stays queued")
                }
                _ => {}
            }
        }
        // Counts.
        assert_eq!(recorded.counts.delivered_local, newly_delivered.without(outbound).len());
        assert_eq!(recorded.counts.relayed, newly_delivered.and(outbound).len());
        assert_eq!(recorded.counts.bounced, newly_failed.len());
        assert_eq!(recorded.counts.deferred, recorded.deferred.len());
        // Removed exactly when nothing is pending; otherwise due again within the longest delay.
        match recorded.disposition {
            Disposition::Remove => assert!(after.is_finished(count)),
            Disposition::Retry { delay_seconds, next_retry } => {
                assert!(!after.is_finished(count));
                assert_eq!(after.attempts, before.attempts + 1);
                assert_eq!(next_retry, self.uptime + delay_seconds);
                assert_eq!(after.next_retry, next_retry);
                assert!(delay_seconds <= LONGEST_RETRY_SECONDS);
                assert!(!more_pending || delay_seconds == 0, "the rest of the recipients go at once");
                assert!(is_due(&after, next_retry, false));
            }
        }

        for index in newly_delivered.iter() {
            self.deliveries[index] += 1;
        }
        for index in recorded.non_delivery_report.iter() {
            self.reports[index] += 1;
        }
        self.state = after;
        self.removed = recorded.disposition == Disposition::Remove;
        self.check_nothing_lost();
    }

    fn check_nothing_lost(&self) {
        for index in 0..self.count() {
            let route = self.routes[index];
            match self.state.recipient(index) {
                RecipientState::Delivered => {
                    assert_eq!(self.deliveries[index], 1, "recipient {index} delivered exactly once");
                    assert_eq!(self.reports[index], 0);
                }
                RecipientState::Failed => {
                    assert_eq!(self.deliveries[index], 0);
                    let wanted = u32::from(route == Route::Smarthost);
                    assert_eq!(self.reports[index], wanted, "recipient {index} ({route:?}) reported {wanted} times");
                }
                RecipientState::Pending => {
                    assert!(!self.removed, "recipient {index} pending in a removed message");
                    assert_eq!((self.deliveries[index], self.reports[index]), (0, 0));
                }
            }
        }
    }

    fn pass_time(&mut self, step: &Step) {
        self.uptime = if step.reset { step.uptime_passes % 60 } else { self.uptime + step.uptime_passes };
        self.unix = match step.wall_clock {
            WallClock::Unknown => None,
            WallClock::Forwards(seconds) => Some(self.unix.unwrap_or(QUEUED_AT) + seconds),
            WallClock::Backwards(seconds) => Some(self.unix.unwrap_or(QUEUED_AT).saturating_sub(seconds)),
        };
    }
}

fn recipients() -> impl Strategy<Value = Vec<Route>> {
    let route = prop_oneof![Just(Route::Mailbox), Just(Route::Smarthost)];
    prop_oneof![
        3 => prop::collection::vec(route.clone(), 1..=4),
        2 => prop::collection::vec(route.clone(), 5..=40),
        1 => prop::collection::vec(route, 100..=MAX_RECIPIENTS),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn no_sequence_of_outcomes_loses_a_recipient(routes in recipients(), steps in prop::collection::vec(step(), 1..40)) {
        let count = routes.len();
        let mut run = Run {
            routes,
            state: DeliveryState::default(),
            removed: false,
            uptime: 30,
            unix: Some(QUEUED_AT),
            deliveries: vec![0; count],
            reports: vec![0; count],
        };
        for step in &steps {
            run.pass_time(step);
            run.attempt(step.batch_capacity, step.flush, |position, _| outcome(step.answers[position]), step.stray, step.stale);
        }
        // Whatever is still queued is delivered by successful attempts: nothing is stuck.
        for _ in 0..=count {
            run.attempt(32, true, |_, _| Some(Outcome::Delivered), None, None);
        }
        prop_assert!(run.removed, "the message is removed once every recipient is answered");
        for index in 0..count {
            prop_assert!(run.state.recipient(index) != RecipientState::Pending);
        }
    }
}
