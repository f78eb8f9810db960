//! The inference core of mobilenetdetect, with no GStreamer: finding and loading ONNX Runtime, reading a
//! detector's conventions (output format, input layout, normalisation, labels, anchors) from options, metadata
//! and graph, turning frames into input tensors, and model outputs into detections.
//!
//! One frame's way through it: [`preprocess::Preprocessor::process`] (a [`pixels::Frame`] -> tensor) ->
//! [`model::Model::detect`] (session run -> [`decode::Decoder`] -> [`postprocess::PostProcess`]: class gate
//! and NMS) -> [`geometry::Geometry::to_frame`] (boxes back in frame pixels). The GStreamer elements and the
//! trainer's `eval` both go this way.

pub mod decode;
pub mod geometry;
pub mod model;
mod outputs;
pub mod pixels;
pub mod pool;
pub mod postprocess;
pub mod preprocess;
pub mod providers;
pub mod runtime;
pub mod tiles;

pub use model::{InputDesc, LoadError, Model, ModelOptions};
pub use postprocess::{ClassGate, PostProcess};
pub use providers::Provider;
