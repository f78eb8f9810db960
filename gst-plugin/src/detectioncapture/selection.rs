//! Which frames `detectioncapture` saves besides the uncertain band: the `select` flags, and the rule that finds
//! where the detector and a reference detector disagree.

use super::writer::SavedBox;
use crate::roimeta::rect_bbox;
use gst::glib;

/// Which frames are hard examples worth saving.
#[glib::flags(name = "GstDetectionCaptureSelect")]
pub enum Select {
    #[flags_value(
        name = "A box of a wanted class with a confidence in the uncertain band (and negatives at negative-rate)",
        nick = "uncertain"
    )]
    UNCERTAIN = 0b01,
    #[flags_value(
        name = "A tracked object the detector did not find (detectiontrack hold-frames >= 1 predicts it): saved \
                with the predicted box marked <review>missed</review>, for a person to confirm",
        nick = "missed"
    )]
    MISSED = 0b010,
    #[flags_value(
        name = "The detector and a reference detector (mobilenetdetect role=reference) disagree: a box of one \
                without a box of the same label in the other at IoU >= disagreement-iou; those boxes are saved \
                marked <review>disagreement</review>",
        nick = "disagreement"
    )]
    DISAGREEMENT = 0b100,
}

/// Marks the detector's boxes (`out`, those not already under review and `wanted`) that no reference box agrees
/// with, and moves into `out` the reference boxes no detector box agrees with (each marked `disagreement`);
/// boxes agree when they have the same label and overlap at IoU >= `min_iou`. Returns whether any box is disputed.
pub fn mark_disagreements(
    out: &mut Vec<SavedBox>,
    reference: &mut Vec<SavedBox>,
    min_iou: f32,
    wanted: impl Fn(&SavedBox) -> bool,
) -> bool {
    // By label, not class id: the two models may number their classes differently.
    let agree = |a: &SavedBox, b: &SavedBox| a.label == b.label && rect_bbox(a.rect).iou(&rect_bbox(b.rect)) >= min_iou;
    let mut disputed = false;
    for o in out.iter_mut().filter(|o| o.review.is_none()) {
        if wanted(o) && !reference.iter().any(|r| agree(o, r)) {
            o.review = Some("disagreement");
            disputed = true;
        }
    }
    for r in reference.drain(..) {
        if !out.iter().any(|o| o.review != Some("missed") && agree(o, &r)) {
            out.push(r);
            disputed = true;
        }
    }
    disputed
}
