//! The event log in RAM: the last events (unlocks, refusals, provisioning, mail flow) for the
//! console's `logs` command and, later, the status page. Never holds a secret. A line longer
//! than one entry is split between words into several entries (homemx-wire's `log_text`).
//!
//! Owns: the event log's entries in RAM. Calls: nothing.

use core::cell::RefCell;
use critical_section::Mutex;
use embassy_time::Instant;
use heapless::Deque;
use homemx_wire::log_text;
use homemx_wire::message::{LogEntry, LogLevel, LogPage, MAX_LOG_ENTRIES, MAX_LOG_TEXT};

/// Entries kept in RAM (the oldest are dropped): the board's choice.
pub const CAPACITY: usize = crate::bsp::SIZING.event_log_entries;
/// Longest event line before it is split into entries (longer ones end in a cut mark).
const LINE_CAPACITY: usize = 320;

struct EventLog {
    entries: Deque<Kept, CAPACITY>,
    /// The sequence number of the next entry; the entries before it are numbered back to
    /// back, the oldest kept being `next_sequence - entries.len()`.
    next_sequence: u32,
}

/// An entry as kept in RAM: 108 bytes instead of a [`LogEntry`]'s 116 (its sequence number is
/// its place in the log, its text's length a byte).
struct Kept {
    uptime_seconds: u32,
    level: LogLevel,
    text: heapless::String<MAX_LOG_TEXT, u8>,
}

impl EventLog {
    /// The entries kept with their sequence numbers, oldest first.
    fn numbered(&self) -> impl Iterator<Item = (u32, &Kept)> {
        let oldest = self.next_sequence.wrapping_sub(self.entries.len() as u32);
        self.entries.iter().enumerate().map(move |(place, kept)| (oldest.wrapping_add(place as u32), kept))
    }
}

static LOG: Mutex<RefCell<EventLog>> = Mutex::new(RefCell::new(EventLog { entries: Deque::new(), next_sequence: 0 }));

/// Records an event (also sent to the defmt log).
pub fn record(level: LogLevel, arguments: core::fmt::Arguments<'_>) {
    let text = log_text::format_bounded::<LINE_CAPACITY>(arguments);
    match level {
        LogLevel::Info => defmt::info!("event: {}", text.as_str()),
        LogLevel::Warning => defmt::warn!("event: {}", text.as_str()),
        LogLevel::Alarm => defmt::error!("event (alarm): {}", text.as_str()),
    }
    // defmt's frames cannot be read on the host: the simulated board prints the text instead.
    #[cfg(feature = "board-sim")]
    crate::bsp::logging::event(
        match level {
            LogLevel::Info => "info",
            LogLevel::Warning => "warning",
            LogLevel::Alarm => "alarm",
        },
        text.as_str(),
    );
    let uptime_seconds = Instant::now().as_secs() as u32;
    critical_section::with(|cs| {
        let mut log = LOG.borrow(cs).borrow_mut();
        for text in log_text::pieces(&text) {
            log.next_sequence += 1;
            if log.entries.is_full() {
                log.entries.pop_front();
            }
            let text = heapless::String::try_from(text.as_str()).unwrap_or_default();
            let _ = log.entries.push_back(Kept { uptime_seconds, level, text });
        }
    });
}

/// Up to `max_entries` entries from sequence number `start` on.
pub fn page(start: u32, max_entries: u8) -> LogPage {
    critical_section::with(|cs| {
        let log = LOG.borrow(cs).borrow();
        let mut page = LogPage { entries: heapless::Vec::new(), next: start, more: false };
        let wanted = (max_entries as usize).min(MAX_LOG_ENTRIES);
        for (sequence, kept) in log.numbered().filter(|&(sequence, _)| sequence >= start) {
            if page.entries.len() == wanted {
                page.more = true;
                break;
            }
            page.next = sequence + 1;
            let text = heapless::String::try_from(kept.text.as_str()).unwrap_or_default();
            let _ = page.entries.push(LogEntry { sequence, uptime_seconds: kept.uptime_seconds, level: kept.level, text });
        }
        if page.entries.is_empty() {
            page.next = start.max(log.numbered().next().map_or(log.next_sequence, |(sequence, _)| sequence));
        }
        page
    })
}

/// Records an informational event.
#[macro_export]
macro_rules! event_info {
    ($($argument:tt)*) => { $crate::event_log::record(homemx_wire::message::LogLevel::Info, format_args!($($argument)*)) };
}

/// Records a warning.
#[macro_export]
macro_rules! event_warning {
    ($($argument:tt)*) => { $crate::event_log::record(homemx_wire::message::LogLevel::Warning, format_args!($($argument)*)) };
}
