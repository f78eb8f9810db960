//! What the `mobilenetdetect` GStreamer element and the trainer must agree on.
//!
//! - [`metadata`]: the ONNX `metadata_props` keys a model carries (format, labels, layout, normalisation, ...).
//! - [`labels`]: label files and class ids (SSD class 0 is background).
//! - [`boxes`]: box maths, anchors and SSD box decoding.
//! - [`nms`]: score filtering and class-aware non-maximum suppression.
//! - [`release`]: the release manifest beside a fleet's models (stable, candidate, canary share) and the canary
//!   verdicts devices publish.
//! - [`jsonline`]: the JSON line per frame that `detectionjson` writes and `score` reads.
//! - [`onnx`]: a small ONNX model writer (protobuf messages and a graph builder), used by the trainer's export,
//!   the tests and the benchmark to build models without Python.

pub mod assignment;
pub mod boxes;
pub mod cvat;
pub mod files;
pub mod jsonline;
pub mod label_studio;
pub mod labels;
pub mod map;
pub mod metadata;
pub mod mobilenet_v2;
pub mod mot;
pub mod nms;
pub mod onnx;
pub mod release;
pub mod track;
pub mod voc;

pub use boxes::BBox;
pub use nms::Detection;

/// FNV-1a, 64 bits: a hash that is the same on every machine and in every release (splits and cohorts are
/// decided by it, so they must never move).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}
