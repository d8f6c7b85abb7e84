//! Captures the firmware's defmt log (semihosting on QEMU's stdout), decodes it with the
//! image's own symbol table, and keeps the lines for tests to wait on.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use defmt_decoder::{DecodeError, Table};

use crate::Result;

#[derive(Default)]
struct Lines {
    lines: Vec<String>,
    closed: bool,
}

/// The decoded log of one QEMU run.
#[derive(Clone)]
pub struct LogCapture {
    shared: Arc<(Mutex<Lines>, Condvar)>,
}

/// Where decoded lines go besides memory.
pub struct LogOutput {
    /// Print each line on stderr (the run command, `HOMEMX_SHOW_LOGS=1` in tests).
    pub echo: bool,
    /// Also append each line to this file.
    pub file: Option<std::path::PathBuf>,
    /// Prefix for echoed lines (which machine).
    pub prefix: String,
}

impl LogCapture {
    /// Starts decoding `stream` with the defmt table of the ELF image at `elf`.
    pub fn start(elf: &Path, mut stream: impl Read + Send + 'static, output: LogOutput) -> Result<Self> {
        let image = std::fs::read(elf)?;
        let table = Table::parse(&image)?.ok_or("the firmware image has no defmt table")?;
        let capture = LogCapture { shared: Arc::new((Mutex::new(Lines::default()), Condvar::new())) };
        let shared = capture.shared.clone();
        let mut file = match &output.file {
            Some(path) => Some(std::fs::OpenOptions::new().create(true).append(true).open(path)?),
            None => None,
        };
        std::thread::spawn(move || {
            let mut decoder = table.new_stream_decoder();
            let mut buffer = [0u8; 4096];
            loop {
                let count = match stream.read(&mut buffer) {
                    Ok(0) | Err(_) => break,
                    Ok(count) => count,
                };
                decoder.received(&buffer[..count]);
                loop {
                    let line = match decoder.decode() {
                        Ok(frame) => frame.display(false).to_string(),
                        Err(DecodeError::UnexpectedEof) => break,
                        Err(DecodeError::Malformed) => "(malformed defmt frame skipped)".to_string(),
                    };
                    if output.echo {
                        eprintln!("{}{}", output.prefix, line);
                    }
                    if let Some(file) = file.as_mut() {
                        let _ = writeln!(file, "{line}");
                    }
                    let (lines, changed) = &*shared;
                    lines.lock().unwrap().lines.push(line);
                    changed.notify_all();
                }
            }
            let (lines, changed) = &*shared;
            lines.lock().unwrap().closed = true;
            changed.notify_all();
        });
        Ok(capture)
    }

    /// How many lines have arrived so far.
    pub fn line_count(&self) -> usize {
        self.shared.0.lock().unwrap().lines.len()
    }

    /// A copy of all lines so far.
    pub fn lines(&self) -> Vec<String> {
        self.shared.0.lock().unwrap().lines.clone()
    }

    /// Waits until a line at index `from` or later contains `needle`; returns it.
    pub fn wait_for(&self, from: usize, needle: &str, timeout: Duration) -> Result<String> {
        self.wait_for_any(from, &[needle], timeout)
    }

    /// Waits until a line at index `from` or later contains one of `needles`; returns the first
    /// such line.
    pub fn wait_for_any(&self, from: usize, needles: &[&str], timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        let (lines, changed) = &*self.shared;
        let mut guard = lines.lock().unwrap();
        loop {
            if let Some(line) = guard.lines.iter().skip(from).find(|line| needles.iter().any(|needle| line.contains(needle))) {
                return Ok(line.clone());
            }
            if guard.closed {
                return Err(format!("firmware log ended without {needles:?}; last lines:\n{}", tail(&guard.lines)).into());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(format!("no {needles:?} in the firmware log within {timeout:?}; last lines:\n{}", tail(&guard.lines)).into());
            }
            guard = changed.wait_timeout(guard, deadline - now).unwrap().0;
        }
    }
}

fn tail(lines: &[String]) -> String {
    lines[lines.len().saturating_sub(15)..].join("\n")
}
