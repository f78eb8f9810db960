//! Output tensors -> candidate detections, for the three output conventions (TF Object Detection, decoded SSD,
//! raw SSD with anchors). Pure functions of the tensors: any shape or value is safe.

use crate::postprocess::ClassGate;
use detection_common::boxes::{Anchor, BoxEncoding, decode_box};
use detection_common::metadata::{BoxOrder, ScoreActivation};
use detection_common::nms::push_candidate;
use detection_common::{BBox, Detection};

/// How a model's outputs become detections; the output indices point into the session's outputs.
#[derive(Debug, Clone)]
pub enum Decoder {
    TfOd {
        boxes: usize,
        scores: usize,
        classes: usize,
        num: Option<usize>,
    },
    Decoded {
        boxes: usize,
        scores: usize,
        order: BoxOrder,
    },
    Raw {
        encodings: usize,
        logits: usize,
        anchors: Vec<Anchor>,
        encoding: BoxEncoding,
        activation: ScoreActivation,
    },
}

impl Decoder {
    /// Decodes output tensors (`get(i)`: shape and data of output `i`) and appends every detection that passes
    /// `gate` to `out` (boxes normalised to the tensor, before NMS). Any shape or value is safe: a mismatch is
    /// an error, never a panic.
    pub fn decode<'a>(
        &self,
        get: impl Fn(usize) -> Result<(&'a [i64], &'a [f32]), String>,
        gate: &ClassGate,
        out: &mut Vec<Detection>,
    ) -> Result<(), String> {
        match self {
            Decoder::TfOd {
                boxes,
                scores,
                classes,
                num,
            } => {
                let (bs, bd) = get(*boxes)?;
                let (_, sd) = get(*scores)?;
                let (_, cd) = get(*classes)?;
                let n = usize::try_from(bs.get(1).copied().unwrap_or(0)).unwrap_or(0);
                let valid = match num {
                    // `as` saturates: NaN gives 0, a huge count is capped below.
                    Some(i) => get(*i)?.1.first().map(|v| *v as usize).unwrap_or(n),
                    None => n,
                }
                .min(n)
                .min(sd.len())
                .min(cd.len())
                .min(bd.len() / 4);
                for i in 0..valid {
                    let class_id = cd[i].round().max(0.0) as usize;
                    let score = sd[i];
                    if class_id > 0 && score >= gate.threshold(class_id) {
                        let b = &bd[i * 4..i * 4 + 4];
                        push_candidate(out, class_id, score, BBox::new(b[1], b[0], b[3], b[2]));
                    }
                }
            }
            Decoder::Decoded { boxes, scores, order } => {
                let (bs, bd) = get(*boxes)?;
                let (ss, sd) = get(*scores)?;
                let (a, c) = check_anchor_dims(bs, ss, bd.len(), sd.len())?;
                for i in 0..a {
                    let row = &sd[i * c..(i + 1) * c];
                    // [1,A] single-class scores are class 1; otherwise column 0 is the background.
                    let first = if c == 1 { 0 } else { 1 };
                    for (k, &score) in row.iter().enumerate().skip(first) {
                        let class_id = if c == 1 { 1 } else { k };
                        if score >= gate.threshold(class_id) {
                            let b = &bd[i * 4..i * 4 + 4];
                            let bbox = match order {
                                BoxOrder::Xyxy => BBox::new(b[0], b[1], b[2], b[3]),
                                BoxOrder::Yxyx => BBox::new(b[1], b[0], b[3], b[2]),
                            };
                            push_candidate(out, class_id, score, bbox);
                        }
                    }
                }
            }
            Decoder::Raw {
                encodings,
                logits,
                anchors,
                encoding,
                activation,
            } => {
                let (es, ed) = get(*encodings)?;
                let (ls, ld) = get(*logits)?;
                let (a, c) = check_anchor_dims(es, ls, ed.len(), ld.len())?;
                if a != anchors.len() {
                    return Err(format!(
                        "the model predicted {a} boxes but {} anchors are loaded",
                        anchors.len()
                    ));
                }
                for (i, anchor) in anchors.iter().enumerate() {
                    let row = &ld[i * c..(i + 1) * c];
                    let (max, sum) = if *activation == ScoreActivation::Softmax {
                        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                        (max, row.iter().map(|v| (v - max).exp()).sum::<f32>())
                    } else {
                        (0.0, 1.0)
                    };
                    let first = if c == 1 { 0 } else { 1 };
                    for (k, &logit) in row.iter().enumerate().skip(first) {
                        let class_id = if c == 1 { 1 } else { k };
                        let score = match activation {
                            ScoreActivation::Sigmoid => 1.0 / (1.0 + (-logit).exp()),
                            ScoreActivation::Softmax => (logit - max).exp() / sum,
                            ScoreActivation::None => logit,
                        };
                        if score >= gate.threshold(class_id) {
                            let bbox = decode_box(&ed[i * 4..i * 4 + 4], anchor, *encoding);
                            push_candidate(out, class_id, score, bbox);
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// Number of anchors A and of score columns C from box [1,A,4] and score [1,A,C] / [1,A] outputs, checked
/// against each other and against the data actually returned.
fn check_anchor_dims(bs: &[i64], ss: &[i64], blen: usize, slen: usize) -> Result<(usize, usize), String> {
    if bs.len() != 3 || bs[2] != 4 {
        return Err(format!("box output has shape {bs:?}, expected [1,A,4]"));
    }
    let disagree = || format!("box output {bs:?} and score output {ss:?} do not agree on the number of boxes");
    let a = usize::try_from(bs[1]).map_err(|_| disagree())?;
    let c = match ss {
        [_, n] if usize::try_from(*n) == Ok(a) => 1,
        [_, n, c] if usize::try_from(*n) == Ok(a) => usize::try_from(*c).map_err(|_| disagree())?,
        _ => return Err(disagree()),
    };
    if a == 0 || c == 0 || a.checked_mul(4) != Some(blen) || a.checked_mul(c) != Some(slen) {
        return Err(disagree());
    }
    Ok((a, c))
}
