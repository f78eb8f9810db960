//! The `detectiontrack` element: multi-object tracking after `mobilenetdetect`. Gives every detection a
//! `track-id` that stays with the object from frame to frame (ByteTrack-style association with a Kalman motion
//! model), and on frames the detector skipped (`interval` > 1) replaces the carried-over boxes with the tracks'
//! predicted ones.

use gst::glib;
use gst::prelude::*;

mod imp;

glib::wrapper! {
    pub struct DetectionTrack(ObjectSubclass<imp::DetectionTrack>)
        @extends gst_base::BaseTransform, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "detectiontrack",
        gst::Rank::NONE,
        DetectionTrack::static_type(),
    )
}
