//! The `detectionjson` element: a passthrough that writes one JSON object per frame with the boxes it sees, to
//! a file, stdout, a UDP destination or an MQTT broker (through an on-disk outbox), for dashcam logs, robotics
//! bridges and fleets.

use gst::glib;
use gst::prelude::*;

mod imp;
pub(crate) mod mqtt;
mod outbox;

glib::wrapper! {
    pub struct DetectionJson(ObjectSubclass<imp::DetectionJson>)
        @extends gst_base::BaseTransform, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "detectionjson",
        gst::Rank::NONE,
        DetectionJson::static_type(),
    )
}
