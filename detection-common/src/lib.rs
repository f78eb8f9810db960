//! What the `mobilenetdetect` GStreamer element and the trainer must agree on.
//!
//! - [`metadata`]: the ONNX `metadata_props` keys a model carries (format, labels, layout, normalisation, ...).
//! - [`labels`]: label files and class ids (SSD class 0 is background).
//! - [`boxes`]: box maths, anchors and SSD box decoding.
//! - [`nms`]: score filtering and class-aware non-maximum suppression.
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
pub mod track;
pub mod voc;

pub use boxes::BBox;
pub use nms::Detection;
