//! Importing a TensorFlow Object Detection API SSDLite-MobileNetV2 model — a frozen graph converted to ONNX with
//! tf2onnx, the model `mobilenetdetect` runs as format `tf-od` — as a trainable model, so that the detector a
//! fleet already runs can be fine-tuned here. Its layers match ours one to one (MobileNetV2, SSDLite heads on
//! block 13's expansion and on the stride-32 map, four extra layers); what differs is carried over:
//! - TensorFlow's "SAME" padding of the strided convolutions (`Variant::TfOd`);
//! - its input scaling, `x * 2/255 - 1`: ours is ImageNet's mean and deviation, so the network shifts its input
//!   to put 0 at mid-grey (keeping TensorFlow's zero padding) and the stem's weights take the scale;
//! - the BatchNorms tf2onnx left unfolded are folded;
//! - sigmoid class scores become softmax ones: the background logit is 0, so with one class the score is the same
//!   (softmax of [0, l] is sigmoid(l)), with more it is close while one class dominates;
//! - its anchors: TF-OD's default generator (or the list given), clipped to the input like ours (its seven widest
//!   shapes reach past it).

use crate::augment::INPUT_STD;
use crate::checkpoint::CheckpointInfo;
use crate::import::{ImportOptions, apply_given_anchors, model_labels, set_conv, set_folded};
use crate::model::{ANCHORS_PER_LOCATION, AnchorShapes, SeparableHead, SsdLite, SsdLiteConfig, Variant};
use crate::onnx_graph::{Folded, OnnxGraph};
use burn::tensor::{Device, Tensor, TensorData};
use detection_common::onnx::{ModelProto, NodeProto};
use std::path::Path;

const BACKBONE: &str = "FeatureExtractor/MobilenetV2/";
/// Widths TF-OD ships MobileNetV2 with (its `depth_multiplier`), tried in turn against the graph's channels.
const WIDTHS: [f32; 6] = [1.0, 0.75, 0.5, 0.35, 1.3, 1.4];

/// Whether `model` looks like a TF-OD SSD MobileNetV2 graph (its stem convolution is there by name).
pub fn is_tfod(model: &ModelProto) -> bool {
    model.graph.as_ref().is_some_and(|g| {
        g.node
            .iter()
            .any(|n| n.op_type == "Conv" && n.name.starts_with(&format!("{BACKBONE}Conv/")))
    })
}

/// TF-OD's layers in an ONNX graph, found by the TensorFlow scopes tf2onnx keeps in node names.
impl<'a> OnnxGraph<'a> {
    /// The one convolution in the TF scope (the node name up to its last `/`) that `scope` accepts.
    fn find(&self, what: &str, scope: impl Fn(&str) -> bool) -> Result<&'a NodeProto, String> {
        let found: Vec<&NodeProto> = self
            .convs
            .iter()
            .copied()
            .filter(|n| n.name.rsplit_once('/').is_some_and(|(s, _)| scope(s)))
            .collect();
        match found.as_slice() {
            [one] => Ok(one),
            [] => Err(format!(
                "{}: no convolution for {what}: not an SSDLite-MobileNetV2 from the TF Object Detection API",
                self.path.display()
            )),
            _ => Err(format!(
                "{}: {} convolutions for {what}",
                self.path.display(),
                found.len()
            )),
        }
    }

    fn conv(&self, what: &str, scope: impl Fn(&str) -> bool) -> Result<Folded, String> {
        self.folded(self.find(what, scope)?, what)
    }

    fn backbone(&self, layer: &str) -> Result<Folded, String> {
        let scope = format!("{BACKBONE}{layer}");
        self.conv(layer, |s| s == scope)
    }

    /// Extra layer `i` (2 to 5 in TF's names): its 1x1 reduction, depthwise 3x3 and 1x1 expansion.
    fn extra(&self, i: usize) -> Result<[Folded; 3], String> {
        let reduce = format!("{BACKBONE}layer_19_1_Conv2d_{i}_");
        let spread = format!("{BACKBONE}layer_19_2_Conv2d_{i}_");
        Ok([
            self.conv(&format!("extra layer {i} 1x1"), |s| s.starts_with(&reduce))?,
            self.conv(&format!("extra layer {i} depthwise"), |s| {
                s.starts_with(&spread) && s.ends_with("_depthwise")
            })?,
            self.conv(&format!("extra layer {i} pointwise"), |s| {
                s.starts_with(&spread) && !s.ends_with("_depthwise")
            })?,
        ])
    }

    /// Head `map`'s depthwise and pointwise layers; `kind` is `BoxEncodingPredictor` or `ClassPredictor`.
    fn head(&self, map: usize, kind: &str) -> Result<[Folded; 2], String> {
        let scope = format!("BoxPredictor_{map}/{kind}");
        let depthwise = format!("{scope}_depthwise");
        Ok([
            self.conv(&format!("{scope} depthwise"), |s| s == depthwise)?,
            self.conv(&scope, |s| s == scope)?,
        ])
    }
}

impl Folded {
    pub(crate) fn tensor(&self, device: &Device) -> Tensor<4> {
        Tensor::from_data(TensorData::new(self.weight.clone(), self.dims), device)
    }

    pub(crate) fn check(&self, path: &Path, what: &str, want: [usize; 4]) -> Result<(), String> {
        if self.dims == want {
            Ok(())
        } else {
            Err(format!(
                "{}: {what} has shape {:?}, a MobileNetV2-SSDLite of this width needs {want:?}",
                path.display(),
                self.dims
            ))
        }
    }

    /// The original's input scale `(x - zero) / span` (`Variant::input_scale`; TF's `x * 2/255 - 1` is
    /// 127.5, 127.5) folded into the first convolution, which then reads ours shifted by `input_shift(zero)` (see
    /// `MobileNetV2::input_zero`): the same function, padding included.
    pub(crate) fn rescale_input(&mut self, span: f32) {
        let [_, cin, kh, kw] = self.dims;
        for (i, channel) in self.weight.chunks_mut(kh * kw).enumerate() {
            let scale = INPUT_STD[i % cin] / span;
            channel.iter_mut().for_each(|v| *v *= scale);
        }
    }

    /// TF's sigmoid class logits [bg, class 1..] per anchor as softmax logits: the background's row becomes 0.
    fn zero_background(&mut self, classes: usize) {
        let per_out = self.weight.len() / self.dims[0];
        for o in (0..self.dims[0]).step_by(classes) {
            self.weight[o * per_out..(o + 1) * per_out].fill(0.0);
            self.bias[o] = 0.0;
        }
    }
}

/// TF-OD's default anchors for SSD (`ssd_anchor_generator`: 6 layers, scales 0.2 to 0.95, aspect ratios 1, 2,
/// 1/2, 3, 1/3 and the interpolated square; 3 shapes on the lowest layer), in its order, as `(w, h)` per map.
pub fn tfod_default_shapes() -> AnchorShapes {
    let maps = ANCHORS_PER_LOCATION.len();
    let scale = |k: usize| 0.2 + (0.95 - 0.2) * k as f32 / (maps - 1) as f32;
    let shape = |s: f32, ar: f32| (s * ar.sqrt(), s / ar.sqrt());
    (0..maps)
        .map(|k| {
            let s = scale(k);
            if k == 0 {
                return vec![shape(0.1, 1.0), shape(s, 2.0), shape(s, 0.5)];
            }
            let next = if k + 1 < maps { scale(k + 1) } else { 1.0 };
            let mut v: Vec<(f32, f32)> = [1.0, 2.0, 0.5, 3.0, 1.0 / 3.0].map(|ar| shape(s, ar)).to_vec();
            v.push(shape((s * next).sqrt(), 1.0));
            v
        })
        .collect()
}

/// Loads `path`, a TF-OD SSDLite-MobileNetV2 in ONNX, as a trainable model with its labels and sizes.
pub fn load_tfod(
    path: &Path,
    model: &ModelProto,
    opts: &ImportOptions,
    device: &Device,
) -> Result<(SsdLite, CheckpointInfo), String> {
    let g = OnnxGraph::new(path, model)?;
    let mut stem = g.backbone("Conv")?;
    let [cls_dw, cls_pw] = g.head(0, "ClassPredictor")?;
    let per_location = ANCHORS_PER_LOCATION[0];
    if cls_pw.dims[0] % per_location != 0 || cls_pw.dims[0] / per_location < 2 {
        return Err(format!(
            "{}: the first class head has {} outputs, not {per_location} anchors x (background + classes)",
            path.display(),
            cls_pw.dims[0]
        ));
    }
    let num_classes = cls_pw.dims[0] / per_location;
    let labels = model_labels(path, opts.labels, num_classes)?;
    let width = WIDTHS
        .into_iter()
        .find(|&width| {
            let cfg = SsdLiteConfig {
                num_classes,
                width,
                input_size: opts.input_size,
                anchor_shapes: None,
                variant: Variant::TfOd,
            };
            let stem_out = crate::model::make_divisible(32.0 * width, 8);
            stem.dims[0] == stem_out && cls_dw.dims[0] == cfg.feature_channels()[0]
        })
        .ok_or_else(|| {
            format!(
                "{}: a stem of {} channels and a first head on {} matches no MobileNetV2 width ({WIDTHS:?})",
                path.display(),
                stem.dims[0],
                cls_dw.dims[0]
            )
        })?;
    let mut config = SsdLiteConfig {
        num_classes,
        width,
        input_size: opts.input_size,
        anchor_shapes: Some(tfod_default_shapes()),
        variant: Variant::TfOd,
    };
    crate::import::check_config(path, &config)?;
    apply_given_anchors(path, &mut config, opts.anchors)?;

    let mut m = config.init(device);
    let (_, span) = Variant::TfOd.input_scale().expect("TF-OD scales its input");
    stem.rescale_input(span);
    let put = |target: &mut crate::model::ConvBn, f: Folded, what: &str| -> Result<(), String> {
        f.check(path, what, target.conv.weight.dims())?;
        set_folded(target, f.tensor(device), &f.bias, device);
        Ok(())
    };
    put(&mut m.backbone.stem, stem, "Conv")?;
    for (i, block) in m.backbone.blocks.iter_mut().enumerate() {
        let name = if i == 0 {
            "expanded_conv".to_string()
        } else {
            format!("expanded_conv_{i}")
        };
        if let Some(e) = &mut block.expand {
            put(e, g.backbone(&format!("{name}/expand"))?, &name)?;
        }
        put(&mut block.depthwise, g.backbone(&format!("{name}/depthwise"))?, &name)?;
        put(&mut block.project, g.backbone(&format!("{name}/project"))?, &name)?;
    }
    put(&mut m.backbone.last, g.backbone("Conv_1")?, "Conv_1")?;
    for (i, extra) in m.extras.iter_mut().enumerate() {
        let [reduce, depthwise, expand] = g.extra(i + 2)?;
        put(&mut extra.reduce, reduce, "extra layer 1x1")?;
        put(&mut extra.depthwise, depthwise, "extra layer depthwise")?;
        put(&mut extra.expand, expand, "extra layer pointwise")?;
    }
    let head = |target: &mut SeparableHead, map: usize, kind: &str| -> Result<(), String> {
        let [dw, mut pw] = g.head(map, kind)?;
        put(&mut target.depthwise, dw, kind)?;
        if kind == "ClassPredictor" {
            pw.zero_background(num_classes);
        }
        pw.check(path, kind, target.pointwise.weight.dims())?;
        set_conv(&mut target.pointwise, pw.tensor(device), &pw.bias, device);
        Ok(())
    };
    for map in 0..ANCHORS_PER_LOCATION.len() {
        head(&mut m.loc_heads[map], map, "BoxEncodingPredictor")?;
        head(&mut m.cls_heads[map], map, "ClassPredictor")?;
    }
    Ok((m, CheckpointInfo::imported(config, labels)))
}
