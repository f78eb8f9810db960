//! The metadata contract between the elements, both sides of it: each box is a GstVideoRegionOfInterestMeta
//! whose params hold either a `detection` structure (from `mobilenetdetect`) or a `ground-truth` structure (from
//! a labelled source such as `detecttestsrc`), with `label`, `class-id` and, for detections, `confidence` and
//! the box normalised to the frame. With the `v1_24` feature each detection is also a GstAnalytics
//! object-detection Mtd.

use detection_common::BBox;
use gst::glib;

pub const DETECTION: &str = "detection";
pub const GROUND_TRUTH: &str = "ground-truth";
/// Boxes of a second detector run beside the deployed one (`mobilenetdetect role=reference`, e.g. a teacher).
pub const REFERENCE: &str = "reference";

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
    #[enum_value(
        name = "A reference detector's (mobilenetdetect role=reference, e.g. a teacher beside the deployed model)",
        nick = "reference"
    )]
    Reference,
}

impl BoxSource {
    pub fn structure_name(&self) -> &'static str {
        match self {
            Self::Detections => DETECTION,
            Self::GroundTruth => GROUND_TRUTH,
            Self::Reference => REFERENCE,
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
    /// The object's identity (from `detectiontrack`, or the source's own for ground truth).
    pub track_id: Option<u64>,
    /// A tracked object the detector did not find on this frame (see [`NewDetection::missed`]).
    pub missed: bool,
}

impl MetaBox<'_> {
    /// A copy that does not borrow the buffer (to draw on the frame while holding the boxes).
    pub fn to_owned_box(&self) -> OwnedBox {
        OwnedBox {
            label: self.label.to_string(),
            class_id: self.class_id,
            confidence: self.confidence,
            rect: self.rect,
            track_id: self.track_id,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct OwnedBox {
    pub label: String,
    pub class_id: u32,
    pub confidence: f64,
    pub rect: (u32, u32, u32, u32),
    pub track_id: Option<u64>,
}

/// A detection to attach to a frame.
#[derive(Debug, Clone)]
pub struct NewDetection<'a> {
    pub label: std::borrow::Cow<'a, str>,
    pub class_id: u32,
    pub confidence: f32,
    /// x, y, width, height in pixels.
    pub rect: (u32, u32, u32, u32),
    /// The same box normalised to the frame (0..1), unrounded.
    pub norm: BBox,
    /// The PTS of the frame the detector ran on (an earlier frame when detections are carried over).
    pub inference_pts: Option<gst::ClockTime>,
    /// From `detectiontrack`.
    pub track_id: Option<u64>,
    /// When the track was first seen (for the GstAnalytics tracking Mtd).
    pub first_seen: Option<gst::ClockTime>,
    /// From `detectiontrack`: the detector ran on this frame and did not find this tracked object; the box is
    /// where the track predicts it.
    pub missed: bool,
}

/// Attaches a frame's detections: one ROI meta each and, with the `v1_24` feature, one GstAnalytics relation
/// meta holding an object-detection Mtd per detection.
pub fn attach_detections<'a>(buf: &mut gst::BufferRef, detections: impl Iterator<Item = NewDetection<'a>> + Clone) {
    attach_boxes(buf, DETECTION, detections.clone());
    #[cfg(feature = "v1_24")]
    attach_analytics(buf, detections);
}

/// One ROI meta per box, its fields in a `structure` param (`DETECTION`, or `REFERENCE` for a second
/// detector's boxes, which trackers, overlays and JSON writers leave alone).
pub fn attach_boxes<'a>(buf: &mut gst::BufferRef, structure: &str, detections: impl Iterator<Item = NewDetection<'a>>) {
    for d in detections {
        let mut meta = gst_video::VideoRegionOfInterestMeta::add(buf, &d.label, d.rect);
        meta.add_param(
            gst::Structure::builder(structure)
                .field("label", d.label.as_ref())
                .field("class-id", d.class_id)
                .field("confidence", d.confidence as f64)
                .field("x-min", d.norm.x0 as f64)
                .field("y-min", d.norm.y0 as f64)
                .field("x-max", d.norm.x1 as f64)
                .field("y-max", d.norm.y1 as f64)
                .field_if_some("inference-pts", d.inference_pts.map(|t| t.nseconds()))
                .field_if("missed", true, d.missed)
                .field_if_some("track-id", d.track_id)
                .build(),
        );
    }
}

/// With the `v1_24` feature: one GstAnalytics relation meta holding an object-detection Mtd per detection.
#[cfg(feature = "v1_24")]
fn attach_analytics<'a>(buf: &mut gst::BufferRef, detections: impl Iterator<Item = NewDetection<'a>>) {
    use gst_analytics::prelude::*;
    {
        let mut rmeta = gst_analytics::AnalyticsRelationMeta::add(buf);
        for d in detections {
            let Ok(od) = rmeta.add_od_mtd(
                glib::Quark::from_str(d.label.as_ref()),
                d.rect.0 as i32,
                d.rect.1 as i32,
                d.rect.2 as i32,
                d.rect.3 as i32,
                d.confidence,
            ) else {
                continue;
            };
            let od = od.id();
            // The track as a tracking Mtd related to its box.
            if let Some(id) = d.track_id {
                let first_seen = d.first_seen.unwrap_or(gst::ClockTime::ZERO);
                if let Ok(tracking) = rmeta.add_tracking_mtd(id, first_seen) {
                    let tracking = tracking.id();
                    let _ = rmeta.set_relation(gst_analytics::RelTypes::RELATE_TO, od, tracking);
                }
            }
        }
    }
}

/// Attaches one ground-truth box (a labelled source's own objects) with the object's identity.
pub fn attach_ground_truth(
    buf: &mut gst::BufferRef,
    label: &str,
    class_id: u32,
    track_id: u64,
    rect: (u32, u32, u32, u32),
) {
    let mut meta = gst_video::VideoRegionOfInterestMeta::add(buf, label, rect);
    meta.add_param(
        gst::Structure::builder(GROUND_TRUTH)
            .field("label", label)
            .field("class-id", class_id)
            .field("track-id", track_id)
            .build(),
    );
}

/// Removes the detections from `buf` and returns them (to attach them again changed, e.g. with track ids).
pub fn take_detections(buf: &mut gst::BufferRef) -> Vec<NewDetection<'static>> {
    let mut taken = Vec::new();
    buf.foreach_meta_mut(|mut meta| {
        let Some(roi) = meta.downcast_mut::<gst_video::VideoRegionOfInterestMeta>() else {
            return std::ops::ControlFlow::Continue(gst::buffer::BufferMetaForeachAction::Keep);
        };
        let Some(p) = roi.param(DETECTION) else {
            return std::ops::ControlFlow::Continue(gst::buffer::BufferMetaForeachAction::Keep);
        };
        let num = |k: &str| p.get::<f64>(k).unwrap_or(0.0) as f32;
        taken.push(NewDetection {
            label: std::borrow::Cow::Owned(roi.roi_type().to_string()),
            class_id: p.get::<u32>("class-id").unwrap_or(0),
            confidence: p.get::<f64>("confidence").unwrap_or(1.0) as f32,
            rect: roi.rect(),
            norm: BBox::new(num("x-min"), num("y-min"), num("x-max"), num("y-max")),
            inference_pts: p.get::<u64>("inference-pts").ok().map(gst::ClockTime::from_nseconds),
            track_id: p.get::<u64>("track-id").ok(),
            first_seen: None,
            missed: p.get::<bool>("missed").unwrap_or(false),
        });
        std::ops::ControlFlow::Continue(gst::buffer::BufferMetaForeachAction::Remove)
    });
    taken
}

/// The boxes of `source` on `buf`, in meta order, as far as they lie inside a `width` x `height` frame.
///
/// Metadata comes from other elements and may be anything: a box is clipped to the frame, and one with
/// nothing left inside it or with a confidence that is not a finite number is skipped, so consumers never
/// write a zero-size box, an `inf` or a box outside the image.
pub fn boxes(
    buf: &gst::BufferRef,
    source: BoxSource,
    (width, height): (u32, u32),
) -> impl Iterator<Item = MetaBox<'_>> {
    let name = source.structure_name();
    buf.iter_meta::<gst_video::VideoRegionOfInterestMeta>()
        .filter_map(move |m| {
            let p = m.param(name)?;
            let confidence = p.get::<f64>("confidence").unwrap_or(1.0);
            if !confidence.is_finite() {
                return None;
            }
            Some(MetaBox {
                label: m.roi_type(),
                class_id: p.get::<u32>("class-id").unwrap_or(0),
                confidence,
                rect: clip_rect(m.rect(), width, height)?,
                track_id: p.get::<u64>("track-id").ok(),
                missed: p.get::<bool>("missed").unwrap_or(false),
            })
        })
}

/// A pixel rectangle (x, y, width, height) as corners.
pub fn rect_bbox((x, y, w, h): (u32, u32, u32, u32)) -> BBox {
    BBox::new(
        x as f32,
        y as f32,
        x.saturating_add(w) as f32,
        y.saturating_add(h) as f32,
    )
}

/// `rect` (x, y, width, height) intersected with a `width` x `height` frame; `None` when nothing is left.
pub fn clip_rect((x, y, w, h): (u32, u32, u32, u32), width: u32, height: u32) -> Option<(u32, u32, u32, u32)> {
    let (x1, y1) = (x.saturating_add(w).min(width), y.saturating_add(h).min(height));
    (x1 > x && y1 > y).then(|| (x, y, x1 - x, y1 - y))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rectangles_are_clipped_to_the_frame() {
        assert_eq!(clip_rect((10, 10, 20, 20), 100, 100), Some((10, 10, 20, 20)));
        assert_eq!(clip_rect((90, 95, 20, 20), 100, 100), Some((90, 95, 10, 5)));
        assert_eq!(clip_rect((u32::MAX, 0, u32::MAX, 5), 100, 100), None);
        assert_eq!(clip_rect((5, 5, 0, 10), 100, 100), None);
        assert_eq!(clip_rect((0, 0, 10, 10), 0, 0), None);
    }
}
