//! An on-disk outbox: lines are appended to a file before anything is sent, and a cursor file records how far
//! the broker has acknowledged them. A broker outage, a restart of the pipeline or a killed process loses no
//! line: whatever is past the cursor is sent (again) in order on the next connection.
//!
//! Files in the outbox folder: `lines.jsonl` (append-only) and `sent` (the byte offset of the first line not
//! yet acknowledged, replaced atomically). When every line is acknowledged both start again from empty.

use detection_common::files::write_atomically;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

const LINES: &str = "lines.jsonl";
const CURSOR: &str = "sent";

/// The writing side (the element's writer thread).
pub(super) struct Appender {
    file: File,
    /// Held while appending and while the reader empties the files, so no line is cut away.
    compaction: Arc<Mutex<()>>,
}

/// The sending side (the publisher thread).
pub(super) struct Reader {
    dir: PathBuf,
    file: File,
    compaction: Arc<Mutex<()>>,
    /// Offset of the first line not acknowledged (what `sent` says once persisted).
    acknowledged: u64,
    persisted: u64,
    /// Offset of the next line to hand out.
    read_at: u64,
    buffer: Vec<u8>,
}

/// Opens (creating) the outbox in `dir`.
pub(super) fn open(dir: &Path) -> Result<(Appender, Reader), String> {
    let fail = |what: &str, e: std::io::Error| format!("outbox {}: cannot {what}: {e}", dir.display());
    std::fs::create_dir_all(dir).map_err(|e| fail("create the folder", e))?;
    let lines = dir.join(LINES);
    let append = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&lines)
        .map_err(|e| fail("open lines.jsonl", e))?;
    // Read and write: the reader empties the file once everything is acknowledged.
    let read = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&lines)
        .map_err(|e| fail("read lines.jsonl", e))?;
    let len = read.metadata().map_err(|e| fail("read lines.jsonl", e))?.len();
    let cursor = match std::fs::read_to_string(dir.join(CURSOR)) {
        Ok(text) => text.trim().parse::<u64>().map_err(|_| {
            format!(
                "outbox {}: 'sent' is not a byte offset: '{}'",
                dir.display(),
                text.trim()
            )
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(fail("read 'sent'", e)),
    };
    // A cursor beyond the end: the files were emptied and the process stopped before the cursor was reset.
    let cursor = if cursor > len { 0 } else { cursor };
    let compaction = Arc::new(Mutex::new(()));
    Ok((
        Appender {
            file: append,
            compaction: compaction.clone(),
        },
        Reader {
            dir: dir.to_path_buf(),
            file: read,
            compaction,
            acknowledged: cursor,
            persisted: cursor,
            read_at: cursor,
            buffer: Vec::with_capacity(4096),
        },
    ))
}

impl Appender {
    /// Appends one line (`line` ends with a newline). On the disk (page cache) when this returns: a killed
    /// process loses nothing.
    pub(super) fn append(&mut self, line: &[u8]) -> std::io::Result<()> {
        let _guard = self.compaction.lock().unwrap_or_else(|e| e.into_inner());
        self.file.write_all(line)
    }
}

impl Reader {
    /// The next complete line not yet handed out, without its newline.
    pub(super) fn next_line(&mut self) -> std::io::Result<Option<&[u8]>> {
        self.file.seek(SeekFrom::Start(self.read_at))?;
        self.buffer.clear();
        let mut chunk = [0u8; 4096];
        loop {
            let n = self.file.read(&mut chunk)?;
            if n == 0 {
                // Nothing, or a line still being written: wait for its newline.
                return Ok(None);
            }
            if let Some(end) = chunk[..n].iter().position(|&b| b == b'\n') {
                self.buffer.extend_from_slice(&chunk[..end]);
                self.read_at += (self.buffer.len() + 1) as u64;
                return Ok(Some(&self.buffer));
            }
            self.buffer.extend_from_slice(&chunk[..n]);
        }
    }

    /// The line just handed out (of `len` bytes without the newline) is to be handed out again.
    pub(super) fn unread(&mut self, len: usize) {
        self.read_at -= len as u64 + 1;
    }

    /// The oldest line handed out was acknowledged; `len` is its length without the newline.
    pub(super) fn acknowledged(&mut self, len: usize) {
        self.acknowledged += len as u64 + 1;
    }

    /// Lines handed out but not acknowledged are handed out again (after a reconnection).
    pub(super) fn rewind(&mut self) {
        self.read_at = self.acknowledged;
    }

    /// Whether every line written so far has been acknowledged.
    pub(super) fn all_acknowledged(&self) -> std::io::Result<bool> {
        Ok(self.acknowledged >= self.file.metadata()?.len())
    }

    /// Records the acknowledged position on disk; when everything is acknowledged, empties the outbox.
    pub(super) fn persist(&mut self) -> std::io::Result<()> {
        if self.acknowledged == self.persisted {
            return Ok(());
        }
        {
            let _guard = self.compaction.lock().unwrap_or_else(|e| e.into_inner());
            if self.read_at == self.acknowledged && self.all_acknowledged()? {
                // Nothing in flight and nothing new: start both files again from empty.
                self.file.set_len(0)?;
                self.acknowledged = 0;
                self.read_at = 0;
            }
        }
        write_atomically(&self.dir.join(CURSOR), self.acknowledged.to_string().as_bytes())?;
        self.persisted = self.acknowledged;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("mobilenetdetect-outbox-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn lines_come_out_in_order_and_unacknowledged_ones_come_again() {
        let d = dir("order");
        let (mut a, mut r) = open(&d).unwrap();
        for i in 0..5 {
            a.append(format!("line {i}\n").as_bytes()).unwrap();
        }
        a.append(b"partial").unwrap();
        assert_eq!(r.next_line().unwrap(), Some(&b"line 0"[..]));
        r.acknowledged(6);
        assert_eq!(r.next_line().unwrap(), Some(&b"line 1"[..]));
        assert_eq!(r.next_line().unwrap(), Some(&b"line 2"[..]));
        r.acknowledged(6);
        r.persist().unwrap();
        // A reconnection: line 2 was not acknowledged and comes again, then the rest; the partial line waits.
        r.rewind();
        let rest: Vec<_> = std::iter::from_fn(|| r.next_line().unwrap().map(<[u8]>::to_vec)).collect();
        assert_eq!(rest, [b"line 2".to_vec(), b"line 3".to_vec(), b"line 4".to_vec()]);
        // A new process starts where the broker's acknowledgements stopped.
        drop((a, r));
        let (mut a, mut r) = open(&d).unwrap();
        assert_eq!(r.next_line().unwrap(), Some(&b"line 2"[..]));
        r.acknowledged(6);
        a.append(b"\n").unwrap();
        for _ in 0..2 {
            r.next_line().unwrap();
            r.acknowledged(6);
        }
        assert_eq!(r.next_line().unwrap(), Some(&b"partial"[..]));
        r.acknowledged(7);
        assert!(r.all_acknowledged().unwrap());
        r.persist().unwrap();
        assert_eq!(
            std::fs::metadata(d.join(LINES)).unwrap().len(),
            0,
            "emptied once all is acknowledged"
        );
        assert_eq!(std::fs::read_to_string(d.join(CURSOR)).unwrap(), "0");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_cursor_that_is_not_a_number_is_a_clear_error() {
        let d = dir("bad");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(CURSOR), "twelve").unwrap();
        let e = open(&d).err().unwrap();
        assert!(
            e.contains("'sent' is not a byte offset") && e.contains(&d.display().to_string()),
            "{e}"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }
}
