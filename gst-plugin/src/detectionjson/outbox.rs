//! An on-disk outbox: lines are appended to a file before anything is sent, and a cursor file records how far
//! the broker has acknowledged them. A broker outage, a restart of the pipeline or a killed process loses no
//! line: whatever is past the cursor is sent (again) in order on the next connection.
//!
//! Files in the outbox folder: segments `NNNNNNNNNNNN.jsonl` (append-only, numbered in order; the writer starts
//! a new one past `SEGMENT_BYTES`), `sent` (`SEGMENT OFFSET` of the first line not yet acknowledged, replaced
//! atomically) and `.lock` (one element at a time uses an outbox). Segments wholly acknowledged are deleted,
//! so the outbox stays small however long the stream runs, even when some line is always in flight.
//!
//! An append is all or nothing: a write that fails halfway (a full disk, a file-size limit) is cut back off the
//! file, so no broken line is ever sent or joined to the next one. After a failure the writer moves to a new
//! segment, so acknowledged segments can be deleted and free the space.

use crate::fleet::Claim;
use detection_common::files::write_atomically;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

const CURSOR: &str = "sent";
/// The single file of outboxes written before segments; taken over as the first segment.
const LEGACY_LINES: &str = "lines.jsonl";
/// A segment grows to about this size before the writer starts the next one.
const SEGMENT_BYTES: u64 = 1 << 20;

/// A place in the outbox: a segment and a byte offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub(super) struct Position {
    pub(super) segment: u64,
    pub(super) offset: u64,
}

fn segment_path(dir: &Path, segment: u64) -> PathBuf {
    dir.join(format!("{segment:012}.jsonl"))
}

/// The segments in `dir`, in order.
fn segments(dir: &Path) -> std::io::Result<Vec<u64>> {
    let mut found: Vec<u64> = std::fs::read_dir(dir)?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".jsonl")?.parse().ok())
        .collect();
    found.sort_unstable();
    Ok(found)
}

/// The writing side (the element's writer thread).
pub(super) struct Appender {
    dir: PathBuf,
    file: File,
    segment: u64,
    len: u64,
}

/// The sending side (the publisher thread).
pub(super) struct Reader {
    dir: PathBuf,
    /// The segment being read and its file.
    file: File,
    at: Position,
    /// Where the line last handed out starts (for `unread`).
    last_start: Position,
    /// The first line not acknowledged (what `sent` says once persisted).
    acknowledged: Position,
    persisted: Position,
    buffer: Vec<u8>,
    /// Bytes of a line an earlier run left half-written, removed at open (for the element to report).
    pub(super) cut_at_open: u64,
    /// Held while the outbox is open: no other element uses it.
    _claim: Claim,
}

fn parse_cursor(dir: &Path, text: &str) -> Result<Option<Position>, String> {
    let bad = || {
        format!(
            "outbox {}: 'sent' is not a position (SEGMENT OFFSET): '{}'",
            dir.display(),
            text.trim()
        )
    };
    let mut parts = text.split_whitespace();
    let numbers: Vec<u64> = parts
        .by_ref()
        .take(2)
        .map(|p| p.parse().map_err(|_| bad()))
        .collect::<Result<_, _>>()?;
    match numbers[..] {
        [] => Ok(None),
        // An outbox of before segments: an offset into lines.jsonl, which becomes segment 0.
        [offset] => Ok(Some(Position { segment: 0, offset })),
        [segment, offset] => Ok(Some(Position { segment, offset })),
        _ => Err(bad()),
    }
}

/// Cuts `file` back to just after its last newline (a line a killed process left half-written is not a line).
/// Returns how many bytes went.
fn cut_partial_line(file: &mut File) -> std::io::Result<u64> {
    let len = file.metadata()?.len();
    let mut end = len;
    let mut chunk = [0u8; 4096];
    while end > 0 {
        let start = end.saturating_sub(chunk.len() as u64);
        let n = (end - start) as usize;
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut chunk[..n])?;
        if let Some(i) = chunk[..n].iter().rposition(|&b| b == b'\n') {
            end = start + i as u64 + 1;
            break;
        }
        end = start;
    }
    if end < len {
        file.set_len(end)?;
    }
    Ok(len - end)
}

/// Opens (creating) the outbox in `dir` and claims it for this element; an error names the folder when another
/// element has it or its files are damaged.
pub(super) fn open(dir: &Path) -> Result<(Appender, Reader), String> {
    let fail = |what: &str, e: std::io::Error| format!("outbox {}: cannot {what}: {e}", dir.display());
    std::fs::create_dir_all(dir).map_err(|e| fail("create the folder", e))?;
    let claim = crate::fleet::claim_folder(
        dir,
        "outbox",
        "give each detectionjson its own outbox (or leave 'outbox' unset to get one per element)",
    )?;
    let legacy = dir.join(LEGACY_LINES);
    if legacy.exists() {
        std::fs::rename(&legacy, segment_path(dir, 0)).map_err(|e| fail("take over lines.jsonl", e))?;
    }
    let mut found = segments(dir).map_err(|e| fail("list the folder", e))?;
    if found.is_empty() {
        File::create(segment_path(dir, 0)).map_err(|e| fail("create the first segment", e))?;
        found.push(0);
    }
    let last = *found.last().expect("at least one segment");
    let mut tail = OpenOptions::new()
        .read(true)
        .write(true)
        .open(segment_path(dir, last))
        .map_err(|e| fail("open the last segment", e))?;
    let cut = cut_partial_line(&mut tail).map_err(|e| fail("check the last segment", e))?;
    let len = tail.metadata().map_err(|e| fail("read the last segment", e))?.len();
    let append = OpenOptions::new()
        .append(true)
        .open(segment_path(dir, last))
        .map_err(|e| fail("open the last segment", e))?;

    let cursor = match std::fs::read_to_string(dir.join(CURSOR)) {
        Ok(text) => parse_cursor(dir, &text)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(fail("read 'sent'", e)),
    };
    let first = Position {
        segment: found[0],
        offset: 0,
    };
    let cursor = match cursor {
        // Within the segments that are here: resume there.
        Some(c) if found.contains(&c.segment) => {
            let size = std::fs::metadata(segment_path(dir, c.segment)).map_or(0, |m| m.len());
            // Beyond its end (the file was cut since): send the segment again rather than lose a line.
            if c.offset <= size {
                c
            } else {
                Position { offset: 0, ..c }
            }
        }
        // Before the oldest segment (deleted once acknowledged) or unknown: the oldest line left.
        _ => first,
    };
    let read = File::open(segment_path(dir, cursor.segment)).map_err(|e| fail("open a segment", e))?;
    Ok((
        Appender {
            dir: dir.to_path_buf(),
            file: append,
            segment: last,
            len,
        },
        Reader {
            dir: dir.to_path_buf(),
            file: read,
            at: cursor,
            last_start: cursor,
            acknowledged: cursor,
            persisted: cursor,
            buffer: Vec::with_capacity(4096),
            cut_at_open: cut,
            _claim: claim,
        },
    ))
}

impl Appender {
    /// Appends one line (`line` ends with a newline), all or nothing. On the disk (page cache) when this
    /// returns: a killed process loses nothing.
    pub(super) fn append(&mut self, line: &[u8]) -> std::io::Result<()> {
        if self.len > 0 && self.len + line.len() as u64 > SEGMENT_BYTES {
            self.next_segment()?;
        }
        match self.write(line) {
            Ok(()) => Ok(()),
            // A segment at a file-size limit: a new one takes the line. A full disk fails again below (and
            // the line is lost) until acknowledged segments are deleted.
            Err(_) if self.len > 0 => {
                self.next_segment()?;
                self.write(line)
            }
            Err(e) => Err(e),
        }
    }

    /// Writes the line at the end; on failure cuts off what part of it got written.
    fn write(&mut self, line: &[u8]) -> std::io::Result<()> {
        match self.file.write_all(line) {
            Ok(()) => {
                self.len += line.len() as u64;
                Ok(())
            }
            Err(e) => {
                // Cutting never needs room; if even that fails the next open cuts the partial line.
                let _ = self.file.set_len(self.len);
                Err(e)
            }
        }
    }

    fn next_segment(&mut self) -> std::io::Result<()> {
        let next = self.segment + 1;
        self.file = OpenOptions::new()
            .append(true)
            .create(true)
            .open(segment_path(&self.dir, next))?;
        self.segment = next;
        self.len = 0;
        Ok(())
    }
}

impl Reader {
    /// The next complete line not yet handed out, without its newline, and where it ends.
    pub(super) fn next_line(&mut self) -> std::io::Result<Option<(&[u8], Position)>> {
        loop {
            // Looked at before reading: once a later segment exists, this one is complete.
            let later = segment_path(&self.dir, self.at.segment + 1).exists();
            self.file.seek(SeekFrom::Start(self.at.offset))?;
            self.buffer.clear();
            let mut chunk = [0u8; 4096];
            let mut end = None;
            loop {
                let n = self.file.read(&mut chunk)?;
                if n == 0 {
                    break;
                }
                if let Some(i) = chunk[..n].iter().position(|&b| b == b'\n') {
                    self.buffer.extend_from_slice(&chunk[..i]);
                    end = Some(self.at.offset + self.buffer.len() as u64 + 1);
                    break;
                }
                self.buffer.extend_from_slice(&chunk[..n]);
            }
            if let Some(end) = end {
                self.last_start = self.at;
                self.at.offset = end;
                return Ok(Some((&self.buffer, self.at)));
            }
            if !later {
                // Nothing, or a line still being written: wait for its newline.
                return Ok(None);
            }
            self.open_segment(Position {
                segment: self.at.segment + 1,
                offset: 0,
            })?;
        }
    }

    fn open_segment(&mut self, at: Position) -> std::io::Result<()> {
        if at.segment != self.at.segment {
            self.file = File::open(segment_path(&self.dir, at.segment))?;
        }
        self.at = at;
        Ok(())
    }

    /// Where the line last handed out starts.
    pub(super) fn line_start(&self) -> Position {
        self.last_start
    }

    /// The line just handed out is to be handed out again.
    pub(super) fn unread(&mut self) -> std::io::Result<()> {
        self.open_segment(self.last_start)
    }

    /// Every line up to `to` (a position `next_line` returned) was acknowledged.
    pub(super) fn acknowledged(&mut self, to: Position) {
        self.acknowledged = self.acknowledged.max(to);
    }

    /// Lines handed out but not acknowledged are handed out again (after a reconnection).
    pub(super) fn rewind(&mut self) -> std::io::Result<()> {
        self.open_segment(self.acknowledged)
    }

    /// Whether every line written so far has been acknowledged.
    pub(super) fn all_acknowledged(&self) -> std::io::Result<bool> {
        let a = self.acknowledged;
        if segment_path(&self.dir, a.segment + 1).exists() {
            return Ok(false);
        }
        Ok(a.offset >= std::fs::metadata(segment_path(&self.dir, a.segment))?.len())
    }

    /// Records the acknowledged position on disk, then deletes the segments before it.
    pub(super) fn persist(&mut self) -> std::io::Result<()> {
        if self.acknowledged == self.persisted {
            return Ok(());
        }
        let a = self.acknowledged;
        write_atomically(
            &self.dir.join(CURSOR),
            format!("{} {}\n", a.segment, a.offset).as_bytes(),
        )?;
        if a.segment > self.persisted.segment {
            for old in segments(&self.dir)?.into_iter().take_while(|s| *s < a.segment) {
                std::fs::remove_file(segment_path(&self.dir, old))?;
            }
        }
        self.persisted = a;
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

    fn lines(r: &mut Reader) -> Vec<(String, Position)> {
        std::iter::from_fn(|| {
            r.next_line()
                .unwrap()
                .map(|(l, p)| (String::from_utf8(l.to_vec()).unwrap(), p))
        })
        .collect()
    }

    #[test]
    fn lines_come_out_in_order_and_unacknowledged_ones_come_again() {
        let d = dir("order");
        let (mut a, mut r) = open(&d).unwrap();
        for i in 0..5 {
            a.append(format!("line {i}\n").as_bytes()).unwrap();
        }
        let (line, first) = r.next_line().unwrap().map(|(l, p)| (l.to_vec(), p)).unwrap();
        assert_eq!(line, b"line 0");
        r.acknowledged(first);
        let out = lines(&mut r);
        assert_eq!(out.len(), 4);
        r.acknowledged(out[0].1);
        r.persist().unwrap();
        // A reconnection: line 2 was not acknowledged and comes again, then the rest.
        r.rewind().unwrap();
        let again: Vec<String> = lines(&mut r).into_iter().map(|(l, _)| l).collect();
        assert_eq!(again, ["line 2", "line 3", "line 4"]);
        // A new process starts where the broker's acknowledgements stopped.
        drop((a, r));
        let (_a, mut r) = open(&d).unwrap();
        let rest = lines(&mut r);
        assert_eq!(rest[0].0, "line 2");
        r.acknowledged(rest[2].1);
        assert!(r.all_acknowledged().unwrap());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn acknowledged_segments_are_deleted_while_lines_stay_in_flight() {
        let d = dir("segments");
        let (mut a, mut r) = open(&d).unwrap();
        let line = format!("{}\n", "x".repeat(999));
        let mut sent = Vec::new();
        // 3 MB written and read while the newest line is never acknowledged before the next is written.
        for _ in 0..3000 {
            a.append(line.as_bytes()).unwrap();
            if let Some(p) = sent.last() {
                r.acknowledged(*p);
                r.persist().unwrap();
            }
            sent.extend(lines(&mut r).into_iter().map(|(_, p)| p));
        }
        assert_eq!(sent.len(), 3000);
        let left = segments(&d).unwrap();
        assert!(left.len() <= 2, "only the segments in use stay: {left:?}");
        let bytes: u64 = left
            .iter()
            .map(|s| std::fs::metadata(segment_path(&d, *s)).unwrap().len())
            .sum();
        assert!(bytes <= 2 * SEGMENT_BYTES, "{bytes}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_line_cut_short_by_a_killed_run_is_removed_and_an_old_outbox_is_taken_over() {
        let d = dir("legacy");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(LEGACY_LINES), "one\ntwo\nthr").unwrap();
        std::fs::write(d.join(CURSOR), "4").unwrap();
        let (mut a, mut r) = open(&d).unwrap();
        a.append(b"four\n").unwrap();
        let got: Vec<String> = lines(&mut r).into_iter().map(|(l, _)| l).collect();
        assert_eq!(got, ["two", "four"]);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_second_element_cannot_open_an_outbox_in_use() {
        let d = dir("claimed");
        let held = open(&d).unwrap();
        let e = open(&d).err().unwrap();
        assert!(e.contains("in use") && e.contains(&d.display().to_string()), "{e}");
        drop(held);
        open(&d).unwrap();
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_cursor_that_is_not_a_position_is_a_clear_error() {
        let d = dir("bad");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(CURSOR), "twelve").unwrap();
        let e = open(&d).err().unwrap();
        assert!(
            e.contains("'sent' is not a position") && e.contains(&d.display().to_string()),
            "{e}"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }
}
