//! The `detecttestsrc` element: a synthetic source of moving, labelled sign-like objects on textured
//! backgrounds, with the ground-truth boxes attached as ROI metas (a `ground-truth` structure, so they stay
//! distinguishable from a detector's). For demos, tests and trying a pipeline without a camera.

use gst::glib;
use gst::prelude::*;

mod imp;
pub mod scene;

glib::wrapper! {
    pub struct DetectTestSrc(ObjectSubclass<imp::DetectTestSrc>)
        @extends gst_base::PushSrc, gst_base::BaseSrc, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "detecttestsrc",
        gst::Rank::NONE,
        DetectTestSrc::static_type(),
    )
}
