//! ONNX export: the trained SSDLite as a self-contained model in the decoded format mobilenetdetect reads with
//! no extra properties — float NCHW input of fixed size, `boxes` [1,A,4] (x0,y0,x1,y1 normalised, decoded from
//! the anchors inside the graph) and `scores` [1,A,C] (softmax, background at 0) — with metadata_props for
//! labels, size, layout, normalisation, channel order and format. BatchNorm is folded into the convolutions.

use crate::model::{ConvBn, SeparableHead, SsdLite, SsdLiteConfig};
use burn::nn::conv::Conv2d;
use burn::tensor::Tensor;
use detection_common::labels::Labels;
use detection_common::metadata as meta;
use detection_common::onnx::{Attr, Dim, GraphBuilder, data_type};

pub use crate::augment::{INPUT_MEAN, INPUT_STD};

fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().expect("f32 parameters")
}

struct Writer {
    g: GraphBuilder,
    relu6: (String, String),
}

/// A BatchNorm's parameters and statistics, per channel.
pub(crate) struct BatchNormStats {
    pub gamma: Vec<f32>,
    pub beta: Vec<f32>,
    pub mean: Vec<f32>,
    pub var: Vec<f32>,
    pub eps: f32,
}

impl BatchNormStats {
    fn of(bn: &burn::nn::BatchNorm) -> Self {
        Self {
            gamma: host(bn.gamma.val()),
            beta: host(bn.beta.val()),
            mean: host(bn.running_mean.value()),
            var: host(bn.running_var.value()),
            eps: bn.epsilon as f32,
        }
    }

    /// Folds this BatchNorm into the convolution before it (`weight` [out, ...], `bias` [out]): each output
    /// channel scaled by gamma / sqrt(var + eps), then shifted by beta - mean times that scale.
    pub(crate) fn fold_into(&self, weight: &mut [f32], bias: &mut [f32]) {
        let per_out = weight.len() / bias.len().max(1);
        for (o, b) in bias.iter_mut().enumerate() {
            let scale = self.gamma[o] / (self.var[o] + self.eps).sqrt();
            weight[o * per_out..(o + 1) * per_out]
                .iter_mut()
                .for_each(|v| *v *= scale);
            *b = *b * scale + (self.beta[o] - self.mean[o] * scale);
        }
    }
}

impl Writer {
    /// A Conv node with `bn` folded in, plus ReLU6 when `act`.
    fn conv(&mut self, x: &str, conv: &Conv2d, bn: Option<&BatchNormStats>, act: bool) -> String {
        let w = conv.weight.val();
        let dims = w.dims();
        let mut weight = host(w);
        let out = dims[0];
        let mut bias = conv
            .bias
            .as_ref()
            .map(|b| host(b.val()))
            .unwrap_or_else(|| vec![0.0; out]);
        if let Some(bn) = bn {
            bn.fold_into(&mut weight, &mut bias);
        }
        let wn = self.g.initializer_f32("w", &dims.map(|d| d as i64), &weight);
        let bn = self.g.initializer_f32("b", &[out as i64], &bias);
        let [k0, k1] = conv.kernel_size;
        let pads = match conv.padding {
            burn::nn::PaddingConfig2d::Explicit(t, l, b, r) => vec![t as i64, l as i64, b as i64, r as i64],
            _ => vec![0, 0, 0, 0],
        };
        let y = self.g.node(
            "Conv",
            &[x, &wn, &bn],
            "",
            vec![
                ("kernel_shape", Attr::Ints(vec![k0 as i64, k1 as i64])),
                ("strides", Attr::Ints(conv.stride.map(|s| s as i64).to_vec())),
                ("pads", Attr::Ints(pads)),
                ("group", Attr::Int(conv.groups as i64)),
            ],
        );
        if act {
            let (lo, hi) = self.relu6.clone();
            self.g.node("Clip", &[&y, &lo, &hi], "", vec![])
        } else {
            y
        }
    }

    fn conv_bn(&mut self, x: &str, m: &ConvBn) -> String {
        self.conv(x, &m.conv, Some(&BatchNormStats::of(&m.bn)), m.act)
    }

    fn head(&mut self, x: &str, h: &SeparableHead) -> String {
        let d = self.conv_bn(x, &h.depthwise);
        let p = self.conv(&d, &h.pointwise, None, false);
        let t = self
            .g
            .node("Transpose", &[&p], "", vec![("perm", Attr::Ints(vec![0, 2, 3, 1]))]);
        let shape = self.g.initializer_i64("shape", &[3], &[1, -1, h.width as i64]);
        self.g.node("Reshape", &[&t, &shape], "", vec![])
    }
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// A trained checkpoint as the ONNX model the element runs, carrying the id of the dataset snapshot it was
/// trained on.
pub fn export_checkpoint(model: &SsdLite, info: &crate::checkpoint::CheckpointInfo) -> Vec<u8> {
    build(model, &info.config, &info.labels, info.dataset_snapshot.as_deref())
}

/// The model as ONNX bytes. `labels` name the foreground classes (class id 1..).
pub fn export_onnx(model: &SsdLite, cfg: &SsdLiteConfig, labels: &Labels) -> Vec<u8> {
    build(model, cfg, labels, None)
}

fn build(model: &SsdLite, cfg: &SsdLiteConfig, labels: &Labels, dataset_snapshot: Option<&str>) -> Vec<u8> {
    let s = cfg.input_size as i64;
    let mut g = GraphBuilder::new("ssdlite_mobilenet_v2");
    let relu6 = (
        g.initializer_f32("relu6_min", &[], &[0.0]),
        g.initializer_f32("relu6_max", &[], &[6.0]),
    );
    let x = g.input(
        "input",
        data_type::FLOAT,
        &[Dim::Fixed(1), Dim::Fixed(3), Dim::Fixed(s), Dim::Fixed(s)],
    );
    let mut w = Writer { g, relu6 };

    let zero = model.backbone.input_zero;
    let x = if zero != 0.0 {
        let shift =
            w.g.initializer_f32("input_shift", &[1, 3, 1, 1], &crate::model::input_shift(zero));
        w.g.node("Sub", &[&x, &shift], "", vec![])
    } else {
        x
    };
    let mut h = w.conv_bn(&x, &model.backbone.stem);
    let mut features = Vec::new();
    for (i, block) in model.backbone.blocks.iter().enumerate() {
        let expanded = block.expand.as_ref().map(|e| w.conv_bn(&h, e));
        if i == detection_common::mobilenet_v2::STRIDE32_BLOCK {
            features.push(expanded.clone().expect("the stride-32 block expands"));
        }
        let d = w.conv_bn(expanded.as_deref().unwrap_or(&h), &block.depthwise);
        let p = w.conv_bn(&d, &block.project);
        h = if block.residual {
            w.g.node("Add", &[&h, &p], "", vec![])
        } else {
            p
        };
    }
    let mut f = w.conv_bn(&h, &model.backbone.last);
    features.push(f.clone());
    for extra in &model.extras {
        let a = w.conv_bn(&f, &extra.reduce);
        let b = w.conv_bn(&a, &extra.depthwise);
        f = w.conv_bn(&b, &extra.expand);
        features.push(f.clone());
    }
    let locs: Vec<String> = features
        .iter()
        .zip(&model.loc_heads)
        .map(|(f, hd)| w.head(f, hd))
        .collect();
    let cls: Vec<String> = features
        .iter()
        .zip(&model.cls_heads)
        .map(|(f, hd)| w.head(f, hd))
        .collect();
    let mut g = w.g;
    let enc = g.node("Concat", &refs(&locs), "", vec![("axis", Attr::Int(1))]);
    let logits = g.node("Concat", &refs(&cls), "", vec![("axis", Attr::Int(1))]);
    g.node("Softmax", &[&logits], "scores", vec![("axis", Attr::Int(2))]);

    // Decode TF-style encodings against the anchors: cy = ty/10*ah + acy, h = exp(th/5)*ah, ...
    let anchors = cfg.anchors();
    let a = anchors.len() as i64;
    let col = |g: &mut GraphBuilder, name: &str, f: &dyn Fn(&detection_common::boxes::Anchor) -> f32| {
        let v: Vec<f32> = anchors.iter().map(f).collect();
        g.initializer_f32(name, &[1, a, 1], &v)
    };
    let (acy, acx) = (col(&mut g, "acy", &|a| a.cy), col(&mut g, "acx", &|a| a.cx));
    let (ah10, aw10) = (
        col(&mut g, "ah10", &|a| a.h / 10.0),
        col(&mut g, "aw10", &|a| a.w / 10.0),
    );
    let (ah2, aw2) = (col(&mut g, "ah2", &|a| a.h / 2.0), col(&mut g, "aw2", &|a| a.w / 2.0));
    let split = g.initializer_i64("split", &[4], &[1, 1, 1, 1]);
    let parts: Vec<String> = (0..4).map(|_| g.fresh("enc")).collect();
    g.node_multi("Split", &[&enc, &split], &refs(&parts), vec![("axis", Attr::Int(2))]);
    let fifth = g.initializer_f32("fifth", &[], &[0.2]);
    let cy = {
        let t = g.node("Mul", &[&parts[0], &ah10], "", vec![]);
        g.node("Add", &[&t, &acy], "", vec![])
    };
    let cx = {
        let t = g.node("Mul", &[&parts[1], &aw10], "", vec![]);
        g.node("Add", &[&t, &acx], "", vec![])
    };
    // Half sizes: exp(t/5) * anchor / 2.
    let half_h = {
        let t = g.node("Mul", &[&parts[2], &fifth], "", vec![]);
        let e = g.node("Exp", &[&t], "", vec![]);
        g.node("Mul", &[&e, &ah2], "", vec![])
    };
    let half_w = {
        let t = g.node("Mul", &[&parts[3], &fifth], "", vec![]);
        let e = g.node("Exp", &[&t], "", vec![]);
        g.node("Mul", &[&e, &aw2], "", vec![])
    };
    let x0 = g.node("Sub", &[&cx, &half_w], "", vec![]);
    let y0 = g.node("Sub", &[&cy, &half_h], "", vec![]);
    let x1 = g.node("Add", &[&cx, &half_w], "", vec![]);
    let y1 = g.node("Add", &[&cy, &half_h], "", vec![]);
    g.node("Concat", &[&x0, &y0, &x1, &y1], "boxes", vec![("axis", Attr::Int(2))]);
    g.output(
        "boxes",
        data_type::FLOAT,
        &[Dim::Fixed(1), Dim::Fixed(a), Dim::Fixed(4)],
    );
    g.output(
        "scores",
        data_type::FLOAT,
        &[Dim::Fixed(1), Dim::Fixed(a), Dim::Fixed(cfg.num_classes as i64)],
    );

    g.metadata(meta::KEY_FORMAT, "ssd-decoded");
    g.metadata(meta::KEY_LABELS, &labels.to_text());
    g.metadata(meta::KEY_INPUT_LAYOUT, "nchw");
    g.metadata(meta::KEY_CHANNEL_ORDER, "rgb");
    g.metadata(meta::KEY_INPUT_MEAN, &meta::format_triplet(INPUT_MEAN));
    g.metadata(meta::KEY_INPUT_STD, &meta::format_triplet(INPUT_STD));
    g.metadata(meta::KEY_INPUT_SIZE, &format!("{s}x{s}"));
    g.metadata(meta::KEY_BOX_ORDER, "xyxy");
    // The priors the boxes were decoded with: documentation for an ssd-decoded model, and what `train --init
    // model.onnx` rebuilds fitted anchor shapes from.
    g.metadata(
        meta::KEY_ANCHORS,
        &detection_common::boxes::format_anchors(&cfg.anchors()),
    );
    g.metadata(crate::import::KEY_WIDTH, &cfg.width.to_string());
    if cfg.variant != crate::model::Variant::Trainer {
        g.metadata(crate::import::KEY_VARIANT, cfg.variant.name());
    }
    if let Some(id) = dataset_snapshot {
        g.metadata(crate::snapshot::KEY_SNAPSHOT, id);
    }
    g.to_bytes()
}
