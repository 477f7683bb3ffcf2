//! Output capture of one run: live file plus head/tail in memory.
//!
//! Guarantees: every byte the run writes is counted; the first
//! `output_limit/2` bytes are kept as the head and the last `output_limit/2`
//! bytes after the head as the tail (head ++ tail is the whole output when it
//! fits); the bytes are appended to the run's output file as they arrive, up
//! to [`FILE_CAP`], after which the file gets one marker line and no more.
//! The output file is *not* deleted here: its owner (the caller that records
//! the outcome) removes it once it no longer streams or needs it.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::OnceLock;

/// Largest output file kept on disk for one run.
pub(crate) const FILE_CAP: u64 = 64 << 20;

const FILE_CAP_MARKER: &[u8] =
    b"\n[cronsun: output file capped at 64 MiB; later output only counted]\n";

/// Group given read access to output files (the agent's, with privilege
/// separation); set once by the executor process.
static OUTPUT_GROUP: OnceLock<u32> = OnceLock::new();

pub(crate) fn set_output_group(gid: u32) {
    let _ = OUTPUT_GROUP.set(gid);
}

/// Opens a run's output file for append. The folder may be writable by the
/// (less trusted) agent, so the last component is never followed as a
/// symlink and must be a regular file with one link; a fresh file gets the
/// agent's group (mode 0640) so it can stream and later remove it.
fn open_output(path: &Path) -> std::io::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.file_type().is_file() || meta.nlink() != 1 {
        return Err(std::io::Error::other(
            "not a regular file with a single link; refusing to write to it",
        ));
    }
    if let Some(gid) = OUTPUT_GROUP.get() {
        std::os::unix::fs::fchown(&file, Some(meta.uid()), Some(*gid))?;
    }
    Ok(file)
}

pub(crate) struct OutputCapture {
    head: Vec<u8>,
    head_cap: usize,
    tail: VecDeque<u8>,
    tail_cap: usize,
    total: u64,
    limit: u64,
    file: Option<File>,
    file_bytes: u64,
    file_cap: u64,
}

/// What a finished capture hands to the outcome.
pub(crate) struct Captured {
    pub head: Vec<u8>,
    pub tail: Vec<u8>,
    pub total: u64,
    pub truncated: bool,
}

impl OutputCapture {
    /// Creates the capture; the file is opened for append (created 0640).
    /// A file that cannot be opened is logged and skipped: the run still goes
    /// on and its head/tail are still recorded.
    pub(crate) fn new(limit: u64, path: &Path) -> OutputCapture {
        let file = open_output(path)
            .map_err(|e| {
                tracing::warn!(path = %path.display(), error = %e, "cannot open run output file; output kept in memory only");
            })
            .ok();
        Self::with_file(limit, file, FILE_CAP)
    }

    fn with_file(limit: u64, file: Option<File>, file_cap: u64) -> OutputCapture {
        let half = usize::try_from(limit / 2).unwrap_or(usize::MAX);
        OutputCapture {
            head: Vec::with_capacity(half.min(64 << 10)),
            head_cap: half,
            tail: VecDeque::new(),
            tail_cap: half,
            total: 0,
            limit,
            file,
            file_bytes: 0,
            file_cap,
        }
    }

    pub(crate) fn push(&mut self, mut data: &[u8]) {
        self.total += data.len() as u64;
        self.write_file(data);
        let room = self.head_cap - self.head.len();
        let to_head = room.min(data.len());
        self.head.extend_from_slice(&data[..to_head]);
        data = &data[to_head..];
        if data.len() >= self.tail_cap {
            self.tail.clear();
            self.tail.extend(&data[data.len() - self.tail_cap..]);
        } else if !data.is_empty() {
            let overflow = (self.tail.len() + data.len()).saturating_sub(self.tail_cap);
            self.tail.drain(..overflow);
            self.tail.extend(data);
        }
    }

    fn write_file(&mut self, data: &[u8]) {
        let Some(file) = self.file.as_mut() else {
            return;
        };
        let room = self.file_cap.saturating_sub(self.file_bytes);
        let n = usize::try_from(room).unwrap_or(usize::MAX).min(data.len());
        let mut result = file.write_all(&data[..n]);
        self.file_bytes += n as u64;
        if result.is_ok() && n < data.len() {
            result = file.write_all(FILE_CAP_MARKER);
            self.file = None;
        }
        if let Err(e) = result {
            tracing::warn!(error = %e, "writing run output file failed; output kept in memory only");
            self.file = None;
        }
    }

    pub(crate) fn finish(self) -> Captured {
        Captured {
            head: self.head,
            tail: self.tail.into(),
            total: self.total,
            truncated: self.total > self.limit,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(limit: u64, chunks: &[&[u8]]) -> Captured {
        let mut c = OutputCapture::with_file(limit, None, FILE_CAP);
        for ch in chunks {
            c.push(ch);
        }
        c.finish()
    }

    #[test]
    fn small_output_is_whole() {
        let c = feed(10, &[b"abc", b"defgh"]);
        assert_eq!([c.head.clone(), c.tail.clone()].concat(), b"abcdefgh");
        assert_eq!(c.head, b"abcde");
        assert_eq!(c.total, 8);
        assert!(!c.truncated);
    }

    #[test]
    fn large_output_keeps_ends() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        let chunks: Vec<&[u8]> = data.chunks(7).collect();
        let c = feed(100, &chunks);
        assert_eq!(c.head, &data[..50]);
        assert_eq!(c.tail, &data[950..]);
        assert_eq!(c.total, 1000);
        assert!(c.truncated);
        let c = feed(100, &[&data]);
        assert_eq!(c.tail, &data[950..]);
    }

    #[test]
    fn file_is_capped_with_marker() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("out.log");
        let file = File::create(&path).expect("create");
        let mut c = OutputCapture::with_file(10, Some(file), 8);
        c.push(b"12345");
        c.push(b"67890");
        c.push(b"more");
        let got = std::fs::read(&path).expect("read");
        assert_eq!(got, [&b"12345678"[..], FILE_CAP_MARKER].concat());
        assert_eq!(c.finish().total, 14);
    }
}
