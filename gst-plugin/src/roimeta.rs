//! The metadata contract between the elements: each box is a GstVideoRegionOfInterestMeta whose params hold
//! either a `detection` structure (from `mobilenetdetect`) or a `ground-truth` structure (from a labelled
//! source such as `detecttestsrc`), with `label`, `class-id` and, for detections, `confidence`.

use gst::glib;

pub const DETECTION: &str = "detection";
pub const GROUND_TRUTH: &str = "ground-truth";

/// Which boxes a consumer element reads.
#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, glib::Enum, Default)]
#[repr(u32)]
#[enum_type(name = "GstMobilenetDetectBoxSource")]
pub enum BoxSource {
    #[default]
    #[enum_value(name = "Detections (mobilenetdetect)", nick = "detections")]
    Detections,
    #[enum_value(name = "Ground truth (detecttestsrc)", nick = "ground-truth")]
    GroundTruth,
}

impl BoxSource {
    pub fn structure_name(&self) -> &'static str {
        match self {
            Self::Detections => DETECTION,
            Self::GroundTruth => GROUND_TRUTH,
        }
    }
}

/// One box read back from a buffer.
#[derive(Debug, Clone, PartialEq)]
pub struct MetaBox<'a> {
    pub label: &'a str,
    pub class_id: u32,
    /// 1.0 for ground truth.
    pub confidence: f64,
    /// x, y, width, height in pixels.
    pub rect: (u32, u32, u32, u32),
}

impl MetaBox<'_> {
    /// A copy that does not borrow the buffer (to draw on the frame while holding the boxes).
    pub fn to_owned_box(&self) -> OwnedBox {
        OwnedBox {
            label: self.label.to_string(),
            class_id: self.class_id,
            confidence: self.confidence,
            rect: self.rect,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct OwnedBox {
    pub label: String,
    pub class_id: u32,
    pub confidence: f64,
    pub rect: (u32, u32, u32, u32),
}

/// The boxes of `source` on `buf`, in meta order.
pub fn boxes(buf: &gst::BufferRef, source: BoxSource) -> impl Iterator<Item = MetaBox<'_>> {
    let name = source.structure_name();
    buf.iter_meta::<gst_video::VideoRegionOfInterestMeta>()
        .filter_map(move |m| {
            let p = m.param(name)?;
            Some(MetaBox {
                label: m.roi_type(),
                class_id: p.get::<u32>("class-id").unwrap_or(0),
                confidence: p.get::<f64>("confidence").unwrap_or(1.0),
                rect: m.rect(),
            })
        })
}
