//! Instructions per firmware operation, counted by a QEMU TCG plugin instead of `-icount`:
//! guest time keeps following the host's clock, so a machine with real network peers runs as
//! it always does, and the count is exact per executed instruction.
//!
//! The plugin (`qemu/plugin/operation_counts.c`, built by `host-tools/setup.sh` into
//! `target/qemu-plugin/`) counts every executed guest instruction and watches the firmware's
//! *mark sled* (`firmware/services/src/instrument.rs`): the firmware calls one sled entry where an
//! [`Operation`] begins and one where it ends (or is abandoned), and the plugin appends a line
//! per mark to a file in the machine's run directory, flushed at once, so it can be read while
//! QEMU runs. This module finds the sled in the ELF, builds the `-plugin` argument
//! ([`MachineConfig::operation_counts`](crate::machine::MachineConfig::operation_counts) makes
//! [`Machine`](crate::machine::Machine) load it) and reads the file.
//!
//! ```text
//! begin OP ABSOLUTE                 an operation began (ABSOLUTE: instructions since reset)
//! end OP INSTRUCTIONS ABSOLUTE US   one completed: INSTRUCTIONS since its begin, in US
//!                                   microseconds of host time (a diagnostic, see below)
//! cancel OP ABSOLUTE                one was abandoned (error path): no count
//! overlap OP ABSOLUTE               one completed while another of its kind ran: no count
//! exit ABSOLUTE                     QEMU exited
//! ```
//!
//! A count includes everything the core executed between the marks: other tasks and
//! interrupt handlers too. Idle time is WFI, but the QEMU board's time driver ticks at 1 kHz,
//! and each tick (interrupt, timer queue, one executor pass) costs about a hundred
//! instructions: an operation that waits on its peers for longer counts more. The host time
//! in each `end` record shows how long it waited; see [`OperationCount::host_time`].

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use homemx_instrument::Operation;
use homemx_instrument::{ENTRY_BYTES, SLED_ENTRIES, SLED_SYMBOL};
use object::{Object, ObjectSymbol};

use crate::{repository_root, Result};

/// The plugin's file name in [`plugin_directory`].
pub const PLUGIN_FILE_NAME: &str = "libhomemx_operation_counts.so";
/// The counts file's name in a machine's run directory.
pub const COUNTS_FILE_NAME: &str = "operation-counts.txt";

/// Where `host-tools/setup.sh` builds the plugin (and keeps QEMU's plugin header).
pub fn plugin_directory() -> PathBuf {
    repository_root().join("target/qemu-plugin")
}

/// The plugin's source.
pub fn plugin_source() -> PathBuf {
    repository_root().join("qemu/plugin/operation_counts.c")
}

/// The built plugin, checked to exist and to be newer than its source.
pub fn plugin() -> Result<PathBuf> {
    let plugin = plugin_directory().join(PLUGIN_FILE_NAME);
    let built = std::fs::metadata(&plugin).and_then(|metadata| metadata.modified());
    let Ok(built) = built else {
        return Err(format!("the instruction-counting QEMU plugin is not built ({}): run host-tools/setup.sh", plugin.display()).into());
    };
    if std::fs::metadata(plugin_source()).and_then(|metadata| metadata.modified()).is_ok_and(|changed| changed > built) {
        return Err(format!("{} changed since the plugin was built: run host-tools/setup.sh", plugin_source().display()).into());
    }
    Ok(plugin)
}

/// Where an image's mark sled is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MarkSled {
    /// The address of its first entry (Thumb bit clear).
    pub address: u32,
    /// Its entries.
    pub entries: usize,
}

/// Finds the mark sled in `elf` and checks that it has the entries this harness expects (an
/// image built from other sources would count under the wrong names).
pub fn mark_sled(elf: &Path) -> Result<MarkSled> {
    let bytes = std::fs::read(elf).map_err(|error| format!("{}: {error}", elf.display()))?;
    let file = object::File::parse(&*bytes).map_err(|error| format!("{}: {error}", elf.display()))?;
    let symbol = file
        .symbols()
        .find(|symbol| symbol.name() == Ok(SLED_SYMBOL))
        .ok_or_else(|| format!("{} has no {SLED_SYMBOL} (an image without instruction-count marks)", elf.display()))?;
    let expected = (SLED_ENTRIES * ENTRY_BYTES) as u64;
    if symbol.size() != expected {
        return Err(format!(
            "{SLED_SYMBOL} in {} is {} bytes, this harness expects {expected}: rebuild the image",
            elf.display(),
            symbol.size()
        )
        .into());
    }
    Ok(MarkSled { address: (symbol.address() & !1) as u32, entries: SLED_ENTRIES })
}

/// The `-plugin` argument that counts `elf`'s operations into `counts_file`.
pub fn plugin_argument(elf: &Path, counts_file: &Path) -> Result<String> {
    let plugin = plugin()?;
    let sled = mark_sled(elf)?;
    for path in [plugin.as_path(), counts_file] {
        if path.to_string_lossy().contains(',') {
            return Err(format!("{}: QEMU's -plugin option cannot take a path with a comma", path.display()).into());
        }
    }
    Ok(format!("{},marks={:#x},count={},out={}", plugin.display(), sled.address, sled.entries, counts_file.display()))
}

/// One line of the counts file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Record {
    /// An operation began, `at` instructions since reset.
    Begin {
        /// Which.
        operation: Operation,
        /// Instructions since reset.
        at: u64,
    },
    /// An operation completed after `instructions` (since its begin, or since reset for an
    /// operation marked by its end only, [`Operation::BootToReady`]).
    End {
        /// Which.
        operation: Operation,
        /// Instructions since its begin.
        instructions: u64,
        /// Instructions since reset.
        at: u64,
        /// Host time from its begin to its end.
        host_time: Duration,
    },
    /// An operation was abandoned (an error path): no count.
    Cancel {
        /// Which.
        operation: Operation,
        /// Instructions since reset.
        at: u64,
    },
    /// An operation completed while another of its kind ran: no count.
    Overlap {
        /// Which.
        operation: Operation,
        /// Instructions since reset.
        at: u64,
    },
    /// QEMU exited after `total` instructions.
    Exit {
        /// Instructions since reset.
        total: u64,
    },
}

/// One completed operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OperationCount {
    /// Which.
    pub operation: Operation,
    /// Instructions from its begin to its end.
    pub instructions: u64,
    /// Host time from its begin to its end: guest time follows it (no `-icount`), and idle
    /// guest time costs timer ticks, so it tells how much of the count is waiting. Depends on
    /// the host's load: a diagnostic, not a figure.
    pub host_time: Duration,
}

impl OperationCount {
    /// The operation's name ([`Operation::name`]).
    pub fn name(&self) -> &'static str {
        self.operation.name()
    }
}

/// What the plugin wrote so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OperationCounts {
    /// Every record, in order.
    pub records: Vec<Record>,
}

impl OperationCounts {
    /// Parses the file's text; a last line without its newline (being written) is left out.
    pub fn parse(text: &str) -> Result<Self> {
        let complete = match text.rfind('\n') {
            Some(end) => &text[..end + 1],
            None => "",
        };
        let mut records = Vec::new();
        for line in complete.lines() {
            records.push(parse_record(line).ok_or_else(|| format!("unreadable line in the operation counts: {line:?}"))?);
        }
        Ok(OperationCounts { records })
    }

    /// Reads `path` (a file that does not exist yet holds nothing).
    pub fn read(path: &Path) -> Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(error) => Err(format!("{}: {error}", path.display()).into()),
        }
    }

    /// Every completed operation, in the order they ended.
    pub fn completed(&self) -> Vec<OperationCount> {
        self.records
            .iter()
            .filter_map(|record| match *record {
                Record::End { operation, instructions, host_time, .. } => Some(OperationCount { operation, instructions, host_time }),
                _ => None,
            })
            .collect()
    }

    /// Each completed `operation`, in order.
    pub fn completed_of(&self, operation: Operation) -> Vec<OperationCount> {
        self.completed().into_iter().filter(|count| count.operation == operation).collect()
    }

    /// The instructions of each completed `operation`, in order.
    pub fn counts(&self, operation: Operation) -> Vec<u64> {
        self.completed().into_iter().filter(|count| count.operation == operation).map(|count| count.instructions).collect()
    }

    /// How many `operation`s were abandoned and how many overlapped (no count for either).
    pub fn uncounted(&self, operation: Operation) -> (usize, usize) {
        let cancelled =
            self.records.iter().filter(|record| matches!(record, Record::Cancel { operation: which, .. } if *which == operation)).count();
        let overlapped =
            self.records.iter().filter(|record| matches!(record, Record::Overlap { operation: which, .. } if *which == operation)).count();
        (cancelled, overlapped)
    }
}

fn parse_record(line: &str) -> Option<Record> {
    let fields: Vec<&str> = line.split(' ').collect();
    let number = |index: usize| -> Option<u64> { fields.get(index)?.parse().ok() };
    let operation = || -> Option<Operation> { Operation::from_index(usize::try_from(number(1)?).ok()?) };
    let record = match (fields.first().copied()?, fields.len()) {
        ("begin", 3) => Record::Begin { operation: operation()?, at: number(2)? },
        ("end", 5) => {
            Record::End { operation: operation()?, instructions: number(2)?, at: number(3)?, host_time: Duration::from_micros(number(4)?) }
        }
        ("cancel", 3) => Record::Cancel { operation: operation()?, at: number(2)? },
        ("overlap", 3) => Record::Overlap { operation: operation()?, at: number(2)? },
        ("exit", 2) => Record::Exit { total: number(1)? },
        _ => return None,
    };
    Some(record)
}

/// Waits until `path` holds at least `count` completed `operation`s; returns their counts.
pub fn wait_for_counts(path: &Path, operation: Operation, count: usize, timeout: Duration) -> Result<Vec<u64>> {
    let deadline = Instant::now() + timeout;
    loop {
        let counts = OperationCounts::read(path)?.counts(operation);
        if counts.len() >= count {
            return Ok(counts);
        }
        if Instant::now() > deadline {
            return Err(
                format!("{} has {} completed {} within {timeout:?}, not {count}", path.display(), counts.len(), operation.name()).into()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Minimum, median, maximum and spread ((max − min) / median) of some counts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spread {
    /// The smallest.
    pub min: u64,
    /// The median (the lower middle one of an even number).
    pub median: u64,
    /// The largest.
    pub max: u64,
    /// (max − min) / median.
    pub spread: f64,
}

impl Spread {
    /// The figures of `counts` (`None` when empty).
    pub fn of(counts: &[u64]) -> Option<Spread> {
        let mut sorted = counts.to_vec();
        sorted.sort_unstable();
        let (&min, &max) = (sorted.first()?, sorted.last()?);
        let median = sorted[(sorted.len() - 1) / 2];
        Some(Spread { min, median, max, spread: (max - min) as f64 / median.max(1) as f64 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_record_and_leaves_out_a_partial_line() {
        let text = "begin 5 100 1000\n";
        assert!(OperationCounts::parse(text).is_err(), "a begin with an extra field is refused");
        let text = "end 0 5000 5000 800000\nbegin 5 6000\nend 5 1234 7234 2500\nbegin 9 8000\ncancel 9 9000\nbegin 5 9100\nbegin 5 9200\noverlap 5 9300\noverlap 5 9400\nexit 10000\nbegin 1 1";
        let counts = OperationCounts::parse(text).unwrap();
        assert_eq!(counts.records.len(), 10, "the unfinished last line is not read");
        assert_eq!(
            counts.completed(),
            vec![
                OperationCount { operation: Operation::BootToReady, instructions: 5000, host_time: Duration::from_millis(800) },
                OperationCount { operation: Operation::MxMessage, instructions: 1234, host_time: Duration::from_micros(2500) }
            ]
        );
        assert_eq!(counts.counts(Operation::MxMessage), vec![1234]);
        assert_eq!(counts.uncounted(Operation::Unlock), (1, 0));
        assert_eq!(counts.uncounted(Operation::MxMessage), (0, 2));
        assert_eq!(counts.records.last(), Some(&Record::Exit { total: 10000 }));
        assert!(OperationCounts::parse("end 99 1 1 1\n").is_err(), "an operation this harness does not know is an error");
        assert!(OperationCounts::parse("end 5 1 1\n").is_err(), "an end without its host time is not this plugin's");
    }

    #[test]
    fn spread_of_counts() {
        let spread = Spread::of(&[110, 100, 105, 102]).unwrap();
        assert_eq!((spread.min, spread.median, spread.max), (100, 102, 110));
        assert!((spread.spread - 10.0 / 102.0).abs() < 1e-12);
        assert_eq!(Spread::of(&[]), None);
    }
}
