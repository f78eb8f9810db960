//! The JSON line: one object per frame with its boxes, written by `detectionjson` (to a file, stdout, UDP or
//! MQTT) and read by `mobilenet-trainer score` and by any consumer. This file owns the format:
//!
//! ```text
//! {"frame":N,"timestamp":NS|null,"width":W,"height":H[,"device":"ID"][,"part":I,"parts":K],
//!  "detections":[{"label":"…"[,"track_id":T],"class_id":C,"confidence":F,"x":X,"y":Y,"width":W,"height":H,
//!                 "box":{"x_min":…,"y_min":…,"x_max":…,"y_max":…}},…]}
//! ```
//!
//! `x`, `y`, `width`, `height` are pixels; `box` is normalised to the frame. `device` names the writer where
//! lines of several writers meet (an MQTT topic). A frame whose line is too long for its transport (a UDP
//! datagram, a broker's message limit) becomes several lines with `part` (0-based) and `parts`, each a complete
//! object with the frame's fields and some of its detections; a reader merges them.

use crate::BBox;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// A frame's fields.
#[derive(Debug, Clone, Copy)]
pub struct Header<'a> {
    pub frame: u64,
    /// Presentation time in ns.
    pub timestamp: Option<u64>,
    pub width: u32,
    pub height: u32,
    pub device: Option<&'a str>,
}

/// One box to write.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    pub label: &'a str,
    pub track_id: Option<u64>,
    pub class_id: u32,
    pub confidence: f64,
    /// x, y, width, height in pixels.
    pub rect: (u32, u32, u32, u32),
}

/// Builds frame lines, reusing its buffers from frame to frame.
#[derive(Debug, Default)]
pub struct LineBuilder {
    line: String,
    /// Where each detection's object ends in `line`.
    ends: Vec<usize>,
    /// Where the first detection starts.
    first: usize,
    size: (u32, u32),
}

const DETECTIONS: &str = ",\"detections\":[";

/// Appends `s` as a JSON string literal.
fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// What `LineBuilder::parts` made of a long line.
#[derive(Debug, Default)]
pub struct Parts {
    pub lines: Vec<Vec<u8>>,
    /// Detections left out: alone longer than a part may be (an absurd label).
    pub left_out: usize,
}

impl LineBuilder {
    pub fn with_capacity(bytes: usize, detections: usize) -> Self {
        Self {
            line: String::with_capacity(bytes),
            ends: Vec::with_capacity(detections),
            ..Default::default()
        }
    }

    /// Starts a frame's line (the previous one is forgotten).
    pub fn start(&mut self, h: &Header<'_>) {
        self.line.clear();
        self.ends.clear();
        self.size = (h.width, h.height);
        let _ = write!(self.line, "{{\"frame\":{},\"timestamp\":", h.frame);
        match h.timestamp {
            Some(t) => {
                let _ = write!(self.line, "{t}");
            }
            None => self.line.push_str("null"),
        }
        let _ = write!(self.line, ",\"width\":{},\"height\":{}", h.width, h.height);
        if let Some(d) = h.device {
            self.line.push_str(",\"device\":");
            json_string(&mut self.line, d);
        }
        self.line.push_str(DETECTIONS);
        self.first = self.line.len();
    }

    /// Adds one box.
    pub fn push(&mut self, e: &Entry<'_>) {
        if !self.ends.is_empty() {
            self.line.push(',');
        }
        let (x, y, bw, bh) = e.rect;
        let line = &mut self.line;
        line.push_str("{\"label\":");
        json_string(line, e.label);
        if let Some(id) = e.track_id {
            let _ = write!(line, ",\"track_id\":{id}");
        }
        let (fw, fh) = (self.size.0.max(1) as f64, self.size.1.max(1) as f64);
        let _ = write!(
            line,
            ",\"class_id\":{},\"confidence\":{:.6},\"x\":{x},\"y\":{y},\"width\":{bw},\"height\":{bh},\
             \"box\":{{\"x_min\":{:.6},\"y_min\":{:.6},\"x_max\":{:.6},\"y_max\":{:.6}}}}}",
            e.class_id,
            e.confidence,
            x as f64 / fw,
            y as f64 / fh,
            (x + bw) as f64 / fw,
            (y + bh) as f64 / fh
        );
        self.ends.push(line.len());
    }

    /// Closes the line and returns it, newline included.
    pub fn finish(&mut self) -> &str {
        self.line.push_str("]}\n");
        &self.line
    }

    /// The finished line as several lines of at most `max` bytes each (newline included), each with the frame's
    /// fields, `part`, `parts` and as many whole detections as fit.
    pub fn parts(&self, max: usize) -> Parts {
        let head = &self.line[..self.first - DETECTIONS.len()];
        let starts = std::iter::once(self.first).chain(self.ends.iter().map(|e| e + 1));
        let detections = starts.zip(&self.ends).map(|(start, &end)| &self.line[start..end]);
        // Room for the detections once the head, the part fields and the closing are in.
        let room = max.saturating_sub(head.len() + DETECTIONS.len() + 64);
        let mut groups: Vec<Vec<&str>> = vec![Vec::new()];
        let mut used = 0;
        let mut left_out = 0;
        for d in detections {
            if d.len() + 1 > room {
                left_out += 1;
                continue;
            }
            if used + d.len() + 1 > room {
                groups.push(Vec::new());
                used = 0;
            }
            used += d.len() + 1;
            groups.last_mut().expect("never empty").push(d);
        }
        let parts = groups.len();
        let lines = groups
            .iter()
            .enumerate()
            .map(|(i, g)| format!("{head},\"part\":{i},\"parts\":{parts}{DETECTIONS}{}]}}\n", g.join(",")).into_bytes())
            .collect();
        Parts { lines, left_out }
    }
}

/// One box read back.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordBox {
    pub label: String,
    pub class_id: Option<u32>,
    /// 1.0 when the line has none (ground truth written by an older version).
    pub confidence: f32,
    /// Normalised to the frame.
    pub bbox: BBox,
    pub track_id: Option<u64>,
}

/// One line read back.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub frame: u64,
    pub timestamp: Option<u64>,
    pub device: Option<String>,
    /// (part, parts) of a split frame.
    pub part: Option<(u64, u64)>,
    pub detections: Vec<RecordBox>,
}

/// Reads one line; the error says what is wrong with it.
pub fn parse(line: &str) -> Result<Record, String> {
    let v: serde_json::Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let frame = v["frame"].as_u64().ok_or("no frame number")?;
    let mut detections = Vec::new();
    for d in v["detections"].as_array().ok_or("no detections array")? {
        let b = &d["box"];
        let num = |k: &str| b[k].as_f64().map(|x| x as f32).ok_or(format!("box has no {k}"));
        detections.push(RecordBox {
            label: d["label"].as_str().ok_or("detection without label")?.to_string(),
            class_id: d["class_id"].as_u64().and_then(|c| u32::try_from(c).ok()),
            confidence: d["confidence"].as_f64().unwrap_or(1.0) as f32,
            bbox: BBox::new(num("x_min")?, num("y_min")?, num("x_max")?, num("y_max")?),
            track_id: d["track_id"].as_u64(),
        });
    }
    Ok(Record {
        frame,
        timestamp: v["timestamp"].as_u64(),
        device: v["device"].as_str().map(str::to_string),
        part: v["part"].as_u64().zip(v["parts"].as_u64()),
        detections,
    })
}

/// A whole log file: frame number -> its boxes, the parts of a split frame merged (a part seen twice, as MQTT's
/// at-least-once delivery can do, counts once). Errors name the file and line.
pub fn read_log(path: &Path) -> Result<BTreeMap<u64, Vec<RecordBox>>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut frames: BTreeMap<u64, Vec<RecordBox>> = BTreeMap::new();
    let mut parts_seen = std::collections::HashSet::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let r = parse(line).map_err(|e| format!("{}:{}: {e}", path.display(), i + 1))?;
        match r.part {
            Some((part, _)) => {
                if parts_seen.insert((r.frame, part)) {
                    frames.entry(r.frame).or_default().extend(r.detections);
                }
            }
            None => {
                frames.insert(r.frame, r.detections);
            }
        }
    }
    Ok(frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(label: &str) -> Entry<'_> {
        Entry {
            label,
            track_id: Some(7),
            class_id: 1,
            confidence: 0.5,
            rect: (10, 20, 30, 40),
        }
    }

    #[test]
    fn a_line_reads_back_and_split_parts_merge() {
        let mut b = LineBuilder::default();
        let h = Header {
            frame: 3,
            timestamp: Some(100),
            width: 100,
            height: 200,
            device: Some("car-2"),
        };
        b.start(&h);
        for _ in 0..50 {
            b.push(&entry("a \"quoted\" label"));
        }
        let line = b.finish().to_string();
        let r = parse(line.trim_end()).unwrap();
        assert_eq!(
            (r.frame, r.timestamp, r.device.as_deref(), r.part),
            (3, Some(100), Some("car-2"), None)
        );
        assert_eq!(r.detections.len(), 50);
        assert_eq!(r.detections[0].label, "a \"quoted\" label");
        assert_eq!(r.detections[0].bbox, BBox::new(0.1, 0.1, 0.4, 0.3));

        let parts = b.parts(1000);
        assert!(parts.lines.len() > 3 && parts.left_out == 0);
        let dir = std::env::temp_dir().join(format!("jsonline-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("log.jsonl");
        let mut text = Vec::new();
        for p in &parts.lines {
            assert!(p.len() <= 1000, "{}", p.len());
            text.extend_from_slice(p);
        }
        // A repeated part (at-least-once delivery) is not counted twice.
        text.extend_from_slice(&parts.lines[0]);
        std::fs::write(&log, text).unwrap();
        let frames = read_log(&log).unwrap();
        assert_eq!(frames[&3].len(), 50);
        std::fs::write(&log, "{\"frame\":1,\"detections\":[]}\nnot json\n").unwrap();
        let e = read_log(&log).unwrap_err();
        assert!(e.contains("log.jsonl:2: not JSON"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_detection_longer_than_a_part_is_left_out() {
        let mut b = LineBuilder::default();
        b.start(&Header {
            frame: 0,
            timestamp: None,
            width: 10,
            height: 10,
            device: None,
        });
        let long = "x".repeat(2000);
        b.push(&entry(&long));
        b.push(&entry("short"));
        b.finish();
        let parts = b.parts(1000);
        assert_eq!((parts.lines.len(), parts.left_out), (1, 1));
    }
}
