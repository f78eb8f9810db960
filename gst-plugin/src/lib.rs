//! GStreamer plugin `mobilenetdetect`: MobileNet-SSD object detection with ONNX Runtime.
//!
//! Elements:
//! - `mobilenetdetect`: runs a detector on every frame (or every Nth) and attaches one
//!   GstVideoRegionOfInterestMeta per detection.
//! - `detectioncapture`: saves chosen frames and boxes as a Pascal VOC dataset for retraining.
//! - `detectionjson`: writes the boxes of each frame as one JSON line (file, stdout, UDP).
//! - `detectionoverlay`: draws boxes, labels and confidences on the frames.
//! - `detectiontrack`: gives each detection a track id that stays with its object.
//! - `detecttestsrc`: moving labelled objects with ground-truth boxes, for demos and tests.

use gst::glib;

mod background;
mod detectioncapture;
mod detectionjson;
mod detectionoverlay;
mod detectiontrack;
mod detecttestsrc;
mod fleet;
mod metrics;
mod mobilenetdetect;
mod roimeta;
mod tiling;
mod video;

fn plugin_init(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    mobilenetdetect::register(plugin)?;
    detectioncapture::register(plugin)?;
    detectionjson::register(plugin)?;
    detectionoverlay::register(plugin)?;
    detectiontrack::register(plugin)?;
    detecttestsrc::register(plugin)?;
    Ok(())
}

gst::plugin_define!(
    mobilenetdetect,
    env!("CARGO_PKG_DESCRIPTION"),
    plugin_init,
    concat!(env!("CARGO_PKG_VERSION"), "-", env!("COMMIT_ID")),
    "MIT/X11",
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_NAME"),
    "https://example.invalid/mobilenetdetect",
    env!("BUILD_REL_DATE")
);
