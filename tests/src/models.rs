//! Small detector graphs with known outputs, one per model format, plus a colour probe that reports what the
//! element fed it.

use detection_common::metadata as meta;
use detection_common::onnx::{Attr, Dim, GraphBuilder, data_type};

/// The image input of a test model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ImageInput {
    /// `None`: dynamic spatial dims.
    pub size: Option<(i64, i64)>,
    pub nhwc: bool,
    pub uint8: bool,
}

impl ImageInput {
    pub fn nchw(width: i64, height: i64) -> Self {
        Self {
            size: Some((width, height)),
            nhwc: false,
            uint8: false,
        }
    }

    pub fn nhwc(width: i64, height: i64) -> Self {
        Self {
            size: Some((width, height)),
            nhwc: true,
            uint8: false,
        }
    }

    fn dims(&self) -> Vec<Dim> {
        let (w, h) = match self.size {
            Some((w, h)) => (Dim::Fixed(w), Dim::Fixed(h)),
            None => (Dim::Dynamic("width"), Dim::Dynamic("height")),
        };
        if self.nhwc {
            vec![Dim::Fixed(1), h, w, Dim::Fixed(3)]
        } else {
            vec![Dim::Fixed(1), Dim::Fixed(3), h, w]
        }
    }

    /// Adds the input; returns (name, float view of it).
    fn add(&self, g: &mut GraphBuilder, name: &str) -> (String, String) {
        let ty = if self.uint8 { data_type::UINT8 } else { data_type::FLOAT };
        let x = g.input(name, ty, &self.dims());
        let f = if self.uint8 {
            g.node("Cast", &[&x], "", vec![("to", Attr::Int(data_type::FLOAT as i64))])
        } else {
            x.clone()
        };
        (x, f)
    }
}

/// A scalar zero that depends on the input, so outputs stay tied to the graph input and are not constant-folded.
fn input_zero(g: &mut GraphBuilder, x_float: &str) -> String {
    let mean = g.node("ReduceMean", &[x_float], "", vec![("keepdims", Attr::Int(0))]);
    let zero = g.initializer_f32("zero", &[], &[0.0]);
    g.node("Mul", &[&mean, &zero], "", vec![])
}

/// `const + 0 * mean(input)` as output `name` with the given dims.
fn constant_output(g: &mut GraphBuilder, zero: &str, name: &str, dims: &[i64], data: &[f32]) {
    let c = g.initializer_f32(name, dims, data);
    g.node("Add", &[&c, zero], name, vec![]);
    let d: Vec<Dim> = dims.iter().map(|v| Dim::Fixed(*v)).collect();
    g.output(name, data_type::FLOAT, &d);
}

/// ssd-decoded: `boxes` [1,A,4] (corner form, `box_names.0`) and `scores` [1,A,C] with fixed values.
pub fn decoded_model(
    input: ImageInput,
    boxes: &[[f32; 4]],
    scores: &[Vec<f32>],
    names: (&str, &str),
    metadata: &[(&str, &str)],
) -> Vec<u8> {
    let a = boxes.len() as i64;
    let c = scores[0].len() as i64;
    let mut g = GraphBuilder::new("decoded");
    let (_, xf) = input.add(&mut g, "input");
    let zero = input_zero(&mut g, &xf);
    let flat_boxes: Vec<f32> = boxes.iter().flatten().copied().collect();
    let flat_scores: Vec<f32> = scores.iter().flatten().copied().collect();
    constant_output(&mut g, &zero, names.0, &[1, a, 4], &flat_boxes);
    if c == 1 {
        constant_output(&mut g, &zero, names.1, &[1, a], &flat_scores);
    } else {
        constant_output(&mut g, &zero, names.1, &[1, a, c], &flat_scores);
    }
    for (k, v) in metadata {
        g.metadata(k, v);
    }
    g.to_bytes()
}

/// ssd-raw: `box_encodings` [1,A,4] and `class_predictions` [1,A,C] logits, anchors optionally in metadata.
pub fn raw_model(input: ImageInput, encodings: &[[f32; 4]], logits: &[Vec<f32>], metadata: &[(&str, &str)]) -> Vec<u8> {
    decoded_model(
        input,
        encodings,
        logits,
        ("box_encodings", "class_predictions"),
        metadata,
    )
}

/// tf-od: uint8 NHWC input of any size named `image_tensor:0`, detection_* outputs with `num` valid rows.
pub fn tf_od_model(boxes_yxyx: &[[f32; 4]], scores: &[f32], classes: &[f32], num: f32) -> Vec<u8> {
    let n = boxes_yxyx.len() as i64;
    let mut g = GraphBuilder::new("tf_od");
    let input = ImageInput {
        size: None,
        nhwc: true,
        uint8: true,
    };
    let (_, xf) = input.add(&mut g, "image_tensor:0");
    let zero = input_zero(&mut g, &xf);
    let flat: Vec<f32> = boxes_yxyx.iter().flatten().copied().collect();
    constant_output(&mut g, &zero, "detection_boxes:0", &[1, n, 4], &flat);
    constant_output(&mut g, &zero, "detection_scores:0", &[1, n], scores);
    constant_output(&mut g, &zero, "detection_classes:0", &[1, n], classes);
    constant_output(&mut g, &zero, "num_detections:0", &[1], &[num]);
    g.to_bytes()
}

/// A colour probe (ssd-decoded): one box covering `probe_box`, scores [bg=0, mean(ch0), mean(ch1), mean(ch2)]
/// where the means are over the whole input tensor. With mean 0 / std 255 the confidences are the mean
/// R, G, B (in the model's channel order) of what the element fed in, so tests can check conversion, channel
/// order, layout and letterbox padding.
pub fn colour_probe_model(input: ImageInput, probe_box: [f32; 4], extra_metadata: &[(&str, &str)]) -> Vec<u8> {
    let mut g = GraphBuilder::new("colour_probe");
    let (_, xf) = input.add(&mut g, "input");
    let axes = if input.nhwc { vec![1, 2] } else { vec![2, 3] };
    let means = g.node(
        "ReduceMean",
        &[&xf],
        "",
        vec![("axes", Attr::Ints(axes)), ("keepdims", Attr::Int(0))],
    );
    let shape = g.initializer_i64("shape", &[3], &[1, 1, 3]);
    let means3 = g.node("Reshape", &[&means, &shape], "", vec![]);
    let bg = g.initializer_f32("bg", &[1, 1, 1], &[0.0]);
    g.node("Concat", &[&bg, &means3], "scores", vec![("axis", Attr::Int(2))]);
    g.output(
        "scores",
        data_type::FLOAT,
        &[Dim::Fixed(1), Dim::Fixed(1), Dim::Fixed(4)],
    );
    let zero = input_zero(&mut g, &xf);
    constant_output(&mut g, &zero, "boxes", &[1, 1, 4], &probe_box);
    g.metadata(meta::KEY_FORMAT, "ssd-decoded");
    g.metadata(meta::KEY_LABELS, "BACKGROUND\nred\ngreen\nblue\n");
    g.metadata(meta::KEY_INPUT_MEAN, "0,0,0");
    g.metadata(meta::KEY_INPUT_STD, "255,255,255");
    for (k, v) in extra_metadata {
        g.metadata(k, v);
    }
    g.to_bytes()
}

/// A model ONNX Runtime loads but the element cannot use: one input, a single [1,10] output.
pub fn unusable_model() -> Vec<u8> {
    let mut g = GraphBuilder::new("classifier");
    let (_, xf) = ImageInput::nchw(32, 32).add(&mut g, "input");
    let zero = input_zero(&mut g, &xf);
    constant_output(&mut g, &zero, "logits", &[1, 10], &[0.0; 10]);
    g.to_bytes()
}

/// A hand-built (untrained) bright-blob detector in the ssd-decoded format, for the demo: windows of several
/// sizes slide over the grey image; a window scores `inner * (1 - ring)`, the share of bright pixels inside it
/// times the share of dark pixels in the ring around it, so the window that fits a bright object on a dark
/// background best scores highest (about 0.78 for a disc). It finds videotestsrc's `pattern=ball`.
pub fn blob_detector_model(width: i64, height: i64, label: &str) -> Vec<u8> {
    let mut g = GraphBuilder::new("blob_detector");
    let (_, x) = ImageInput::nchw(width, height).add(&mut g, "input");
    let grey = g.node(
        "ReduceMean",
        &[&x],
        "",
        vec![("axes", Attr::Ints(vec![1])), ("keepdims", Attr::Int(1))],
    );
    let (mut boxes, mut score_parts) = (Vec::new(), Vec::new());
    for k in [8i64, 12, 16, 24, 32, 48, 64, 96] {
        if k > width.min(height) {
            break;
        }
        let s = (k / 4).max(1);
        let (ow, oh) = ((width - k) / s + 1, (height - k) / s + 1);
        let inner = g.node(
            "AveragePool",
            &[&grey],
            "",
            vec![
                ("kernel_shape", Attr::Ints(vec![k, k])),
                ("strides", Attr::Ints(vec![s, s])),
            ],
        );
        let outer = g.node(
            "AveragePool",
            &[&grey],
            "",
            vec![
                ("kernel_shape", Attr::Ints(vec![2 * k, 2 * k])),
                ("strides", Attr::Ints(vec![s, s])),
                ("pads", Attr::Ints(vec![k / 2, k / 2, k / 2, k / 2])),
                ("count_include_pad", Attr::Int(1)),
            ],
        );
        // ring = (4 * outer - inner) / 3; score = inner * (1 - ring)
        let four = g.initializer_f32("four", &[], &[4.0]);
        let third = g.initializer_f32("third", &[], &[1.0 / 3.0]);
        let one = g.initializer_f32("one", &[], &[1.0]);
        let o4 = g.node("Mul", &[&outer, &four], "", vec![]);
        let diff = g.node("Sub", &[&o4, &inner], "", vec![]);
        let ring = g.node("Mul", &[&diff, &third], "", vec![]);
        let dark = g.node("Sub", &[&one, &ring], "", vec![]);
        let score = g.node("Mul", &[&inner, &dark], "", vec![]);
        let shape = g.initializer_i64("shape", &[2], &[1, oh * ow]);
        score_parts.push(g.node("Reshape", &[&score, &shape], "", vec![]));
        for i in 0..oh {
            for j in 0..ow {
                let (x0, y0) = ((j * s) as f32, (i * s) as f32);
                boxes.extend_from_slice(&[
                    x0 / width as f32,
                    y0 / height as f32,
                    (x0 + k as f32) / width as f32,
                    (y0 + k as f32) / height as f32,
                ]);
            }
        }
    }
    let refs: Vec<&str> = score_parts.iter().map(String::as_str).collect();
    g.node("Concat", &refs, "scores", vec![("axis", Attr::Int(1))]);
    let a = boxes.len() as i64 / 4;
    g.output("scores", data_type::FLOAT, &[Dim::Fixed(1), Dim::Fixed(a)]);
    let zero = input_zero(&mut g, &x);
    constant_output(&mut g, &zero, "boxes", &[1, a, 4], &boxes);
    g.metadata(meta::KEY_FORMAT, "ssd-decoded");
    g.metadata(meta::KEY_LABELS, &format!("BACKGROUND\n{label}\n"));
    g.metadata(meta::KEY_INPUT_MEAN, "0,0,0");
    g.metadata(meta::KEY_INPUT_STD, "255,255,255");
    g.to_bytes()
}
