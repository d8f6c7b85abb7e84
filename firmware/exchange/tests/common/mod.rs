//! The scripted peer the driver's tests share.
#![allow(dead_code)]

use std::collections::VecDeque;

use embedded_io_async::{ErrorKind, ErrorType, Read, Write};

/// A peer that sends its chunks in order (one per read), then the end of the stream (or an
/// error, or nothing ever again), and keeps what it was sent.
#[derive(Default)]
pub struct ScriptedPeer {
    pub chunks: VecDeque<Vec<u8>>,
    pub fail_reads_at_end: bool,
    /// After its chunks it says nothing and does not close (a read never completes).
    pub silent_at_end: bool,
    pub fail_writes: bool,
    pub written: Vec<u8>,
    pub reads: usize,
}

impl ErrorType for ScriptedPeer {
    type Error = ErrorKind;
}

impl Read for ScriptedPeer {
    async fn read(&mut self, buffer: &mut [u8]) -> Result<usize, ErrorKind> {
        self.reads += 1;
        let Some(mut chunk) = self.chunks.pop_front() else {
            if self.silent_at_end {
                return core::future::pending().await;
            }
            return if self.fail_reads_at_end { Err(ErrorKind::ConnectionReset) } else { Ok(0) };
        };
        let count = chunk.len().min(buffer.len());
        buffer[..count].copy_from_slice(&chunk[..count]);
        if count < chunk.len() {
            self.chunks.push_front(chunk.split_off(count));
        }
        Ok(count)
    }
}

impl Write for ScriptedPeer {
    async fn write(&mut self, data: &[u8]) -> Result<usize, ErrorKind> {
        if self.fail_writes {
            return Err(ErrorKind::BrokenPipe);
        }
        // At most 7 bytes per write: the driver must loop.
        let count = data.len().min(7);
        self.written.extend_from_slice(&data[..count]);
        Ok(count)
    }
    async fn flush(&mut self) -> Result<(), ErrorKind> {
        if self.fail_writes {
            return Err(ErrorKind::BrokenPipe);
        }
        Ok(())
    }
}

/// `data` cut into chunks of the lengths `cuts` gives in turn (cycled).
pub fn chunked(data: &[u8], cuts: &[usize]) -> VecDeque<Vec<u8>> {
    let mut chunks = VecDeque::new();
    let mut rest = data;
    for cut in cuts.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (chunk, tail) = rest.split_at((*cut).clamp(1, rest.len()));
        chunks.push_back(chunk.to_vec());
        rest = tail;
    }
    chunks
}
