//! The `mobilenetdetect` element: an in-place video filter that runs a MobileNet-SSD ONNX model through ONNX
//! Runtime and attaches the detections to each buffer.

use gst::glib;
use gst::prelude::*;

mod imp;

pub use imp::{
    BoxEncodingChoice, BoxOrderChoice, ChannelOrderChoice, InputLayoutChoice, ModelFormatChoice, ResizeChoice,
    ScoreActivationChoice,
};

/// Name of the element messages with the detections of a frame.
pub const MESSAGE_STRUCTURE: &str = "mobilenetdetect";

glib::wrapper! {
    pub struct MobilenetDetect(ObjectSubclass<imp::MobilenetDetect>)
        @extends gst_video::VideoFilter, gst_base::BaseTransform, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "mobilenetdetect",
        gst::Rank::NONE,
        MobilenetDetect::static_type(),
    )
}
