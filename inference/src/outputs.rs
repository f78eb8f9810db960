//! Reading a session's inputs and outputs: shapes, names, which outputs hold boxes and scores, and which
//! output convention a model follows when neither the user nor its metadata says.

use detection_common::metadata::ModelFormat;
use ort::session::Session;
use ort::value::ValueType;

pub(crate) fn describe_outlets(session: &Session) -> String {
    let one = |o: &ort::value::Outlet| match o.dtype() {
        ValueType::Tensor { ty, shape, .. } => format!("{} {:?}{:?}", o.name(), ty, &shape[..]),
        other => format!("{} {other:?}", o.name()),
    };
    format!(
        "inputs: [{}]; outputs: [{}]",
        session.inputs().iter().map(one).collect::<Vec<_>>().join(", "),
        session.outputs().iter().map(one).collect::<Vec<_>>().join(", ")
    )
}

pub(crate) fn shape_of(o: &ort::value::Outlet) -> Vec<i64> {
    o.dtype().tensor_shape().map(|s| s.to_vec()).unwrap_or_default()
}

fn lname(o: &ort::value::Outlet) -> String {
    o.name().to_ascii_lowercase()
}

pub(crate) fn find_output(session: &Session, keys: &[&str]) -> Option<usize> {
    session
        .outputs()
        .iter()
        .position(|o| keys.iter().any(|k| lname(o).contains(k)))
}

/// Picks the box output ([1,A,4]) and the score output among the model's outputs, by name first, then by shape.
pub(crate) fn pick_box_and_score_outputs(session: &Session) -> Option<(usize, usize)> {
    let outs = session.outputs();
    let usable: Vec<usize> = (0..outs.len())
        .filter(|&i| {
            let n = lname(&outs[i]);
            !(n.contains("anchor") || n.contains("prior"))
        })
        .collect();
    let is_box_shape = |i: usize| {
        let s = shape_of(&outs[i]);
        s.len() == 3 && s[2] == 4
    };
    let by_name = |keys: &[&str]| {
        usable
            .iter()
            .copied()
            .find(|&i| keys.iter().any(|k| lname(&outs[i]).contains(k)))
    };
    let b = by_name(&["box", "loc", "regress"]).filter(|&i| is_box_shape(i));
    let s = by_name(&["score", "class", "conf", "logit", "prob"]);
    match (b, s) {
        (Some(b), Some(s)) if b != s => Some((b, s)),
        _ if usable.len() == 2 => {
            let (x, y) = (usable[0], usable[1]);
            match (is_box_shape(x), is_box_shape(y)) {
                (true, false) => Some((x, y)),
                (false, true) => Some((y, x)),
                _ => None,
            }
        }
        _ => None,
    }
}

/// Guesses the output format from output names; `None` when the names do not tell.
pub(crate) fn detect_format(session: &Session, has_anchors: bool) -> Option<ModelFormat> {
    if find_output(session, &["detection_boxes"]).is_some() {
        return Some(ModelFormat::TfOd);
    }
    let (b, s) = pick_box_and_score_outputs(session)?;
    let (bn, sn) = (lname(&session.outputs()[b]), lname(&session.outputs()[s]));
    let raw = [
        "encoding",
        "raw",
        "loc",
        "regress",
        "logit",
        "class_predictions",
        "conf",
    ];
    if has_anchors || raw.iter().any(|k| bn.contains(k) || sn.contains(k)) {
        Some(ModelFormat::SsdRaw)
    } else if bn.contains("box") && (sn.contains("score") || sn.contains("prob")) {
        Some(ModelFormat::SsdDecoded)
    } else {
        None
    }
}
