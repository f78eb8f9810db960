//! `detectioncapture`'s settings: what each property sets, with its range, default and documentation.

use super::selection::Select;
use super::tracks::TrackPolicy;
use crate::roimeta::BoxSource;
use gst::glib;
use gst::prelude::*;

const DEFAULT_SPOOL_SIZE: u64 = 1 << 30;
const DEFAULT_EOS_TIMEOUT_MS: u32 = 30_000;

/// What the properties set.
#[derive(Debug, Clone)]
pub(super) struct Settings {
    pub(super) location: Option<String>,
    pub(super) select: Select,
    pub(super) disagreement_iou: f32,
    pub(super) track_policy: TrackPolicy,
    pub(super) labels: String,
    pub(super) source: BoxSource,
    pub(super) every_n_frames: u32,
    pub(super) min_interval: u64,
    pub(super) uncertain_low: f32,
    pub(super) uncertain_high: f32,
    pub(super) classes: String,
    pub(super) negative_rate: f32,
    pub(super) max_frames: u32,
    pub(super) max_bytes: u64,
    pub(super) queue_size: u32,
    pub(super) quality: u32,
    pub(super) device_id: String,
    pub(super) spool: Option<String>,
    pub(super) spool_size: u64,
    pub(super) eos_timeout_ms: u32,
    pub(super) s3: crate::fleet::S3Properties,
    /// Save each tile of a kept frame as a sample of its own.
    pub(super) tiles: crate::tiling::TileProperties,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            location: None,
            select: Select::UNCERTAIN,
            disagreement_iou: 0.5,
            track_policy: TrackPolicy::All,
            labels: String::new(),
            source: BoxSource::Detections,
            every_n_frames: 1,
            min_interval: 0,
            uncertain_low: 0.0,
            uncertain_high: 1.0,
            classes: String::new(),
            negative_rate: 0.0,
            max_frames: 0,
            max_bytes: 0,
            queue_size: 16,
            quality: 90,
            device_id: crate::fleet::host_name(),
            spool: None,
            spool_size: DEFAULT_SPOOL_SIZE,
            eos_timeout_ms: DEFAULT_EOS_TIMEOUT_MS,
            s3: Default::default(),
            tiles: Default::default(),
        }
    }
}

impl Settings {
    /// The settable properties (the S3 ones included).
    pub(super) fn specs() -> Vec<glib::ParamSpec> {
        vec![
            glib::ParamSpecString::builder("location")
                .nick("Location")
                .blurb("Dataset folder (Pascal VOC: Annotations/, JPEGImages/, ImageSets/Main/, labels.txt; an existing one is continued), or s3://BUCKET/PREFIX: the same layout in object storage, shared by any number of devices, through an on-disk spool")
                .mutable_ready()
                .build(),
            glib::ParamSpecString::builder("device-id")
                .nick("Device id")
                .blurb("s3://: this device's name in a fleet, the first part of its sample names (default: the host name)")
                .mutable_ready()
                .build(),
            glib::ParamSpecString::builder("spool")
                .nick("Spool folder")
                .blurb("s3://: folder where samples wait for upload, kept across restarts; one element at a time may use it (default: $XDG_STATE_HOME/mobilenetdetect/spool/ID/LOCATION, ID the device id, or DEVICE-2, DEVICE-3, ... for further capture elements of this host with the same device id and location)")
                .mutable_ready()
                .build(),
            glib::ParamSpecUInt64::builder("spool-size")
                .nick("Spool size")
                .blurb("s3://: the most bytes waiting in the spool (an outage); beyond it samples are dropped and counted in 'dropped' (0: no limit)")
                .default_value(DEFAULT_SPOOL_SIZE)
                .mutable_ready()
                .build(),
            glib::ParamSpecUInt::builder("eos-timeout")
                .nick("EOS upload timeout")
                .blurb("s3://: at EOS, how long (ms) EOS waits for the spool to be uploaded; it goes on earlier once an upload fails, and what is left waits in the spool for the next run (0: do not wait)")
                .default_value(DEFAULT_EOS_TIMEOUT_MS)
                .mutable_ready()
                .build(),
            glib::ParamSpecString::builder("labels")
                .nick("Labels")
                .blurb("Labels of a new dataset's labels.txt, in class-id order: a comma-separated list or a labels file (default: learnt from the boxes seen)")
                .mutable_ready()
                .build(),
            glib::ParamSpecEnum::builder_with_default("source", BoxSource::Detections)
                .nick("Source")
                .blurb("Which boxes to save: the detector's (detections, with their confidence) or a labelled source's (ground-truth)")
                .mutable_ready()
                .build(),
            glib::ParamSpecUInt::builder("every-n-frames")
                .nick("Every N frames")
                .blurb("Only consider every Nth frame")
                .minimum(1)
                .maximum(1_000_000)
                .default_value(1)
                .mutable_playing()
                .build(),
            glib::ParamSpecUInt64::builder("min-interval")
                .nick("Minimum interval")
                .blurb("Minimum running time between two captures, in nanoseconds (0: none)")
                .default_value(0)
                .mutable_playing()
                .build(),
            glib::ParamSpecFloat::builder("uncertain-low")
                .nick("Uncertain band low")
                .blurb("Keep frames with a detection whose confidence is in [uncertain-low, uncertain-high]: hard examples worth labelling")
                .minimum(0.0)
                .maximum(1.0)
                .default_value(0.0)
                .mutable_playing()
                .build(),
            glib::ParamSpecFloat::builder("uncertain-high")
                .nick("Uncertain band high")
                .blurb("Upper end of the uncertain band (the default band 0..1 keeps every frame with a detection)")
                .minimum(0.0)
                .maximum(1.0)
                .default_value(1.0)
                .mutable_playing()
                .build(),
            glib::ParamSpecFlags::builder::<Select>("select")
                .nick("Select")
                .blurb("Which frames to save: uncertain (a detection in the uncertain band, negatives at \
                        negative-rate), missed (a tracked object the detector lost while its prediction is still \
                        in the frame; needs detectiontrack hold-frames >= 1), disagreement (the detector and a \
                        mobilenetdetect role=reference disagree), or several (uncertain+missed)")
                .default_value(Select::UNCERTAIN)
                .mutable_playing()
                .build(),
            glib::ParamSpecFloat::builder("disagreement-iou")
                .nick("Disagreement IoU")
                .blurb("select=disagreement: boxes of the detector and the reference detector with the same label \
                        agree when they overlap at least this much (intersection over union)")
                .minimum(0.0)
                .maximum(1.0)
                .default_value(0.5)
                .mutable_playing()
                .build(),
            glib::ParamSpecEnum::builder_with_default("track-policy", TrackPolicy::All)
                .nick("Track policy")
                .blurb("For boxes with a track id (detectiontrack): save every chosen frame (all), each object \
                        once at its first chosen frame (first), or once at its most uncertain frame, saved when \
                        its track ends or at EOS (most-uncertain) — instead of dozens of near-identical frames")
                .mutable_ready()
                .build(),
            glib::ParamSpecString::builder("classes")
                .nick("Classes")
                .blurb("Only frames with a box of these classes (names or ids, comma-separated; empty: all)")
                .mutable_playing()
                .build(),
            glib::ParamSpecFloat::builder("negative-rate")
                .nick("Negative rate")
                .blurb("Share of frames without any box to keep as negatives (0: none, 1: all)")
                .minimum(0.0)
                .maximum(1.0)
                .default_value(0.0)
                .mutable_playing()
                .build(),
            glib::ParamSpecUInt::builder("max-frames")
                .nick("Maximum frames")
                .blurb("Stop capturing after this many samples in the dataset (0: no limit)")
                .default_value(0)
                .mutable_playing()
                .build(),
            glib::ParamSpecUInt64::builder("max-bytes")
                .nick("Maximum bytes")
                .blurb("Stop capturing once the dataset holds this many bytes (0: no limit)")
                .default_value(0)
                .mutable_playing()
                .build(),
            glib::ParamSpecUInt::builder("queue-size")
                .nick("Queue size")
                .blurb(
                    "Frames waiting for the writer thread; when full, a live source's frames are skipped and \
                     counted (never waited for), a non-live source waits (nothing lost)",
                )
                .minimum(1)
                .maximum(1024)
                .default_value(16)
                .mutable_ready()
                .build(),
            glib::ParamSpecUInt::builder("quality")
                .nick("JPEG quality")
                .blurb("JPEG quality of the saved images")
                .minimum(1)
                .maximum(100)
                .default_value(90)
                .mutable_ready()
                .build(),
        ]
        .into_iter()
        .chain(crate::fleet::S3Properties::specs())
        .chain(crate::tiling::TileProperties::specs(
            "each tile of a kept frame is saved as a sample of its own (its image, the boxes inside it clipped to it; a box less than a quarter inside is left out unless it covers a quarter of the tile), so that training sees objects at the scale a mobilenetdetect with the same tiles will",
        ))
        .collect()
    }

    /// Sets the property `name`; false when it is not a setting.
    pub(super) fn set(&mut self, name: &str, v: &glib::Value) -> bool {
        let s = self;
        match name {
            "location" => s.location = v.get().expect("type checked upstream"),
            "labels" => {
                s.labels = v
                    .get::<Option<String>>()
                    .expect("type checked upstream")
                    .unwrap_or_default()
            }
            "source" => s.source = v.get().expect("type checked upstream"),
            "every-n-frames" => s.every_n_frames = v.get().expect("type checked upstream"),
            "track-policy" => s.track_policy = v.get().expect("type checked upstream"),
            "select" => s.select = v.get().expect("type checked upstream"),
            "disagreement-iou" => s.disagreement_iou = v.get().expect("type checked upstream"),
            "min-interval" => s.min_interval = v.get().expect("type checked upstream"),
            "uncertain-low" => s.uncertain_low = v.get().expect("type checked upstream"),
            "uncertain-high" => s.uncertain_high = v.get().expect("type checked upstream"),
            "classes" => {
                s.classes = v
                    .get::<Option<String>>()
                    .expect("type checked upstream")
                    .unwrap_or_default()
            }
            "negative-rate" => s.negative_rate = v.get().expect("type checked upstream"),
            "max-frames" => s.max_frames = v.get().expect("type checked upstream"),
            "max-bytes" => s.max_bytes = v.get().expect("type checked upstream"),
            "queue-size" => s.queue_size = v.get().expect("type checked upstream"),
            "quality" => s.quality = v.get().expect("type checked upstream"),
            "device-id" => {
                s.device_id = v
                    .get::<Option<String>>()
                    .expect("type checked upstream")
                    .filter(|v| !v.is_empty())
                    .unwrap_or_else(crate::fleet::host_name)
            }
            "spool" => {
                s.spool = v
                    .get::<Option<String>>()
                    .expect("type checked upstream")
                    .filter(|v| !v.is_empty())
            }
            "spool-size" => s.spool_size = v.get().expect("type checked upstream"),
            "eos-timeout" => s.eos_timeout_ms = v.get().expect("type checked upstream"),
            other if s.tiles.set(other, v) => {}
            other => return s.s3.set(other, v),
        }
        true
    }

    /// The value of the property `name`; None when it is not a setting.
    pub(super) fn get(&self, name: &str) -> Option<glib::Value> {
        let s = self;
        Some(match name {
            "location" => s.location.to_value(),
            "labels" => s.labels.to_value(),
            "source" => s.source.to_value(),
            "every-n-frames" => s.every_n_frames.to_value(),
            "track-policy" => s.track_policy.to_value(),
            "select" => s.select.to_value(),
            "disagreement-iou" => s.disagreement_iou.to_value(),
            "min-interval" => s.min_interval.to_value(),
            "uncertain-low" => s.uncertain_low.to_value(),
            "uncertain-high" => s.uncertain_high.to_value(),
            "classes" => s.classes.to_value(),
            "negative-rate" => s.negative_rate.to_value(),
            "max-frames" => s.max_frames.to_value(),
            "max-bytes" => s.max_bytes.to_value(),
            "queue-size" => s.queue_size.to_value(),
            "quality" => s.quality.to_value(),
            "device-id" => s.device_id.to_value(),
            "spool" => s.spool.to_value(),
            "spool-size" => s.spool_size.to_value(),
            "eos-timeout" => s.eos_timeout_ms.to_value(),
            other => return s.s3.get(other).or_else(|| s.tiles.get(other)),
        })
    }
}
