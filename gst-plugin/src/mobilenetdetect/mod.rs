//! The `mobilenetdetect` element: an in-place video filter that runs a MobileNet-SSD ONNX model through ONNX
//! Runtime and attaches the detections to each buffer.

use gst::glib;
use gst::prelude::*;

mod canary;
mod frames;
mod imp;
mod loader;
mod metrics;
mod release;
mod remote;
mod settings;
mod stream;

pub use settings::{
    BoxEncodingChoice, BoxOrderChoice, ChannelOrderChoice, InputLayoutChoice, ModeChoice, ModelFormatChoice,
    ResizeChoice, RoleChoice, ScoreActivationChoice,
};

/// Name of the element messages with the detections of a frame.
pub const MESSAGE_STRUCTURE: &str = "mobilenetdetect";

glib::wrapper! {
    pub struct MobilenetDetect(ObjectSubclass<imp::MobilenetDetect>)
        @extends gst_video::VideoFilter, gst_base::BaseTransform, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    // The property enums are part of the plugin's API: gst-inspect and the documentation list their values.
    for enum_type in [
        ModelFormatChoice::static_type(),
        BoxEncodingChoice::static_type(),
        ScoreActivationChoice::static_type(),
        BoxOrderChoice::static_type(),
        InputLayoutChoice::static_type(),
        ChannelOrderChoice::static_type(),
        ResizeChoice::static_type(),
        ModeChoice::static_type(),
        RoleChoice::static_type(),
        crate::roimeta::BoxSource::static_type(),
    ] {
        enum_type.mark_as_plugin_api(gst::PluginAPIFlags::empty());
    }
    gst::Element::register(
        Some(plugin),
        "mobilenetdetect",
        gst::Rank::NONE,
        MobilenetDetect::static_type(),
    )
}
