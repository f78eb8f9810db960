//! The `detectionoverlay` element: draws the boxes on each frame (rectangles in a colour per class, label and
//! confidence in a filled tag), in place, on RGB-family, NV12 and I420 frames.

use gst::glib;
use gst::prelude::*;

mod canvas;
mod imp;

glib::wrapper! {
    pub struct DetectionOverlay(ObjectSubclass<imp::DetectionOverlay>)
        @extends gst_video::VideoFilter, gst_base::BaseTransform, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "detectionoverlay",
        gst::Rank::NONE,
        DetectionOverlay::static_type(),
    )
}
