//! The `detectioncapture` element: a passthrough that saves chosen frames and their boxes as a Pascal VOC
//! dataset (the layout `mobilenet-trainer` reads), encoding and writing on a worker thread so the streaming
//! thread never waits on the disk. `location=s3://BUCKET/PREFIX` writes the same layout to object storage
//! (`upload.rs`), from any number of devices at once.

use gst::glib;
use gst::prelude::*;

mod destination;
mod imp;
mod selection;
mod settings;
mod tracks;
mod upload;
mod writer;

glib::wrapper! {
    pub struct DetectionCapture(ObjectSubclass<imp::DetectionCapture>)
        @extends gst_base::BaseTransform, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    tracks::TrackPolicy::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    selection::Select::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    gst::Element::register(
        Some(plugin),
        "detectioncapture",
        gst::Rank::NONE,
        DetectionCapture::static_type(),
    )
}
