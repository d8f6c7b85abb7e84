//! The memory a process tree holds: the proportional set size (PSS: each page divided by the
//! number of processes sharing it, so the sum over a tree counts shared libraries and shared
//! memory once) of a process and all its descendants, from `/proc/PID/smaps_rollup`, once or
//! as the peak of samples taken while some work runs. Reads `/proc` only; calls nothing else.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::Result;

/// The memory of a process tree at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TreeMemory {
    /// Sum of `Pss:` over the tree, bytes.
    pub proportional_set_size: u64,
    /// Sum of `Rss:` over the tree, bytes (shared pages counted once per process).
    pub resident_set_size: u64,
    /// Processes in the tree.
    pub processes: usize,
}

/// The parent of every process now running (from `/proc/PID/stat`).
fn parents() -> HashMap<u32, u32> {
    let mut parents = HashMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return parents;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else {
            continue;
        };
        // `pid (comm) state ppid …`: comm may hold spaces and parentheses, so split after the last ')'.
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let parent = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
        if let Some(parent) = parent {
            parents.insert(pid, parent);
        }
    }
    parents
}

/// `root` and every process descending from it, `root` first.
pub fn process_tree(root: u32) -> Vec<u32> {
    let parents = parents();
    let mut tree = vec![root];
    let mut index = 0;
    while index < tree.len() {
        let parent = tree[index];
        let mut children: Vec<u32> = parents.iter().filter(|(_, of)| **of == parent).map(|(pid, _)| *pid).collect();
        children.sort_unstable();
        tree.extend(children);
        index += 1;
    }
    tree
}

/// A `Name:  N kB` field of `smaps_rollup`, in bytes.
fn field_bytes(rollup: &str, name: &str) -> Option<u64> {
    let line = rollup.lines().find(|line| line.starts_with(name))?;
    let kilobytes: u64 = line[name.len()..].trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kilobytes * 1024)
}

/// The memory of `root` and its descendants now. A process that ends while it is read is
/// left out; `root` itself must be readable.
pub fn tree_memory(root: u32) -> Result<TreeMemory> {
    let mut memory = TreeMemory::default();
    for pid in process_tree(root) {
        let rollup = match std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) {
            Ok(rollup) => rollup,
            Err(error) if pid == root => return Err(format!("/proc/{root}/smaps_rollup: {error}").into()),
            Err(_) => continue,
        };
        let (Some(proportional), Some(resident)) = (field_bytes(&rollup, "Pss:"), field_bytes(&rollup, "Rss:")) else {
            continue;
        };
        memory.proportional_set_size += proportional;
        memory.resident_set_size += resident;
        memory.processes += 1;
    }
    Ok(memory)
}

/// Runs `work` while a thread samples the memory of `root`'s tree every `interval`; returns
/// the work's result and the sample with the largest PSS (at least one sample is taken, after
/// the work if it was quicker than the first interval).
pub fn peak_while<T>(root: u32, interval: Duration, work: impl FnOnce() -> T) -> Result<(T, TreeMemory)> {
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let done = Arc::clone(&done);
        std::thread::spawn(move || -> Result<TreeMemory> {
            let mut peak = TreeMemory::default();
            loop {
                let finished = done.load(Ordering::Acquire);
                let sample = tree_memory(root)?;
                if sample.proportional_set_size > peak.proportional_set_size {
                    peak = sample;
                }
                if finished {
                    return Ok(peak);
                }
                std::thread::sleep(interval);
            }
        })
    };
    let result = work();
    done.store(true, Ordering::Release);
    let peak = sampler.join().map_err(|_| "the memory sampler panicked")??;
    Ok((result, peak))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_process() {
        let memory = tree_memory(std::process::id()).unwrap();
        assert!(memory.processes >= 1);
        assert!(memory.proportional_set_size > 0 && memory.proportional_set_size <= memory.resident_set_size);
    }

    #[test]
    fn a_child_is_part_of_the_tree() {
        let mut child = std::process::Command::new("sleep").arg("5").spawn().unwrap();
        let tree = process_tree(std::process::id());
        assert!(tree.contains(&child.id()), "{tree:?}");
        // SAFETY: the child this test started, by its PID.
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        let _ = child.wait();
    }

    #[test]
    fn parses_a_rollup_field() {
        let rollup = "00400000-7ffd [rollup]\nRss:                1234 kB\nPss:                 567 kB\n";
        assert_eq!(field_bytes(rollup, "Pss:"), Some(567 * 1024));
        assert_eq!(field_bytes(rollup, "Rss:"), Some(1234 * 1024));
        assert_eq!(field_bytes(rollup, "Swap:"), None);
    }
}
