//! Importing pytorch-ssd's `mb2-ssd-lite` — the MobileNetV2-SSDLite that jetson-inference re-trains and exports
//! (`onnx_export.py`: input `(x - 127) / 128` RGB 300x300, outputs `scores` softmax and `boxes` corners) — as a
//! trainable model (`Variant::PytorchSsd`). Its layers are matched by the graph's structure, not by names or
//! node order: from the input, each convolution is the one that reads the previous layer's activation; a head is
//! a convolution whose output is transposed into the detections, a class head one whose path reaches the
//! softmax. What differs from our layout is carried over:
//! - its input scale (the network shifts ours to put 0 at pixel 127, the stem's weights take 1/128);
//! - its box encoding `tx, ty, tw, th` (variances 0.1, 0.2): the box heads' output rows are reordered into ours,
//!   `ty, tx, th, tw` (scales 10, 10, 5, 5: the same numbers);
//! - its last map's heads, single 1x1 convolutions: our separable head with its depthwise layer set to the
//!   identity (no activation), the same function;
//! - its priors (`generate_ssd_priors`, six shapes on every map, centres on each map's shrinkage grid).

use crate::checkpoint::CheckpointInfo;
use crate::import::{ImportOptions, apply_given_anchors, model_labels, set_conv, set_folded};
use crate::model::{ConvBn, SeparableHead, SsdLite, SsdLiteConfig, Variant, make_divisible};
use crate::onnx_graph::{Folded, OnnxGraph};
use burn::tensor::{Device, Tensor, TensorData};
use detection_common::mobilenet_v2::{BLOCKS, STEM_CHANNELS, STRIDE32_BLOCK};
use detection_common::onnx::{ModelProto, NodeProto};
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// pytorch-ssd's `width_mult` values tried in turn against the stem's channels.
const WIDTHS: [f32; 4] = [1.0, 0.75, 0.5, 1.4];
/// The side pytorch-ssd's priors are laid out for (`mobilenetv1_ssd_config.image_size`).
pub const PYTORCH_SSD_SIDE: usize = 300;

/// pytorch-ssd's mb2-ssd-lite at its 300x300 input (`mobilenetv1_ssd_config`): per map (side, shrinkage in
/// pixels, min size, max size in pixels).
pub(crate) const PYTORCH_SSD_SPECS: [(usize, f32, f32, f32); 6] = [
    (19, 16.0, 60.0, 105.0),
    (10, 32.0, 105.0, 150.0),
    (5, 64.0, 150.0, 195.0),
    (3, 100.0, 195.0, 240.0),
    (2, 150.0, 240.0, 285.0),
    (1, 300.0, 285.0, 330.0),
];

/// pytorch-ssd's default shapes `(w, h)` per map (`generate_ssd_priors`): the min-size square, the square of
/// the geometric mean of min and max, then 2:1, 1:2, 3:1, 1:3 boxes of the min size.
pub fn pytorch_ssd_default_shapes() -> Vec<Vec<(f32, f32)>> {
    let side = PYTORCH_SSD_SIDE as f32;
    PYTORCH_SSD_SPECS
        .iter()
        .map(|&(_, _, lo, hi)| {
            let s = lo / side;
            let big = (lo * hi).sqrt() / side;
            let mut v = vec![(s, s), (big, big)];
            for r in [2f32, 3.0] {
                v.push((s * r.sqrt(), s / r.sqrt()));
                v.push((s / r.sqrt(), s * r.sqrt()));
            }
            v
        })
        .collect()
}

/// The two heads on one map: (box head, class head), each its depthwise layer (`None` on a plain 1x1 head)
/// and its last convolution.
type Heads<'a> = [(Option<&'a NodeProto>, &'a NodeProto); 2];

struct Walk<'a> {
    g: OnnxGraph<'a>,
    /// Values of `Constant` nodes' outputs (the exporter writes Clip's bounds so).
    constants: HashMap<&'a str, Vec<f32>>,
}

impl<'a> Walk<'a> {
    fn readers(&self, tensor: &str) -> &[&'a NodeProto] {
        self.g.consumers.get(tensor).map_or(&[], Vec::as_slice)
    }

    fn convs_reading(&self, tensor: &str) -> Vec<&'a NodeProto> {
        self.readers(tensor)
            .iter()
            .copied()
            .filter(|n| n.op_type == "Conv" && n.input.first().is_some_and(|i| i == tensor))
            .collect()
    }

    fn out(node: &NodeProto) -> &str {
        node.output.first().map_or("", String::as_str)
    }

    fn attr_ints(node: &NodeProto, name: &str) -> Option<Vec<i64>> {
        node.attribute.iter().find(|a| a.name == name).map(|a| a.ints.clone())
    }

    fn group(node: &NodeProto) -> i64 {
        node.attribute.iter().find(|a| a.name == "group").map_or(1, |a| a.i)
    }

    fn bound(&self, node: &NodeProto, input: usize, attr: &str) -> Option<f32> {
        match node.input.get(input).filter(|n| !n.is_empty()) {
            Some(name) => self
                .constants
                .get(name.as_str())
                .cloned()
                .or_else(|| self.g.inits.get(name.as_str()).map(|t| crate::import::floats(t)))
                .and_then(|v| v.first().copied()),
            None => node.attribute.iter().find(|a| a.name == attr).map(|a| a.f),
        }
    }

    /// The ReLU6 after `conv` (its output's only reader, a Clip to [0, 6]): the activation's tensor.
    fn relu6_after(&self, conv: &NodeProto, what: &str) -> Result<&'a str, String> {
        let fault = |why: String| format!("{what} ({}): {why}", conv.name);
        match self.readers(Self::out(conv)) {
            [clip] if clip.op_type == "Clip" => {
                let (lo, hi) = (self.bound(clip, 1, "min"), self.bound(clip, 2, "max"));
                if lo != Some(0.0) || hi != Some(6.0) {
                    return Err(fault(format!(
                        "clips to {lo:?}..{hi:?} where mb2-ssd-lite has ReLU6 (0..6)"
                    )));
                }
                Ok(Self::out(clip))
            }
            [relu] if relu.op_type == "Relu" => Err(fault(
                "ReLU where mb2-ssd-lite has ReLU6 (an onnx_compatible export): not a network this trainer builds"
                    .into(),
            )),
            readers => Err(fault(format!(
                "read by [{}], not by the ReLU6 mb2-ssd-lite has there",
                readers
                    .iter()
                    .map(|n| n.op_type.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    /// Whether `conv`'s output is reshaped into detections (a head's last layer).
    fn is_head_output(&self, conv: &NodeProto) -> bool {
        self.readers(Self::out(conv)).iter().any(|n| n.op_type == "Transpose")
    }

    /// Whether `conv` is a head: a 1x1 head's only layer, or a separable head's depthwise layer.
    fn is_head(&self, conv: &NodeProto) -> bool {
        if self.is_head_output(conv) {
            return true;
        }
        match self.readers(Self::out(conv)) {
            [clip] if clip.op_type == "Clip" => self
                .convs_reading(Self::out(clip))
                .iter()
                .any(|c| self.is_head_output(c)),
            _ => false,
        }
    }

    /// The one convolution of the network's trunk (not a head) reading `tensor`.
    fn trunk_conv(&self, tensor: &str, what: &str) -> Result<&'a NodeProto, String> {
        let found: Vec<&NodeProto> = self
            .convs_reading(tensor)
            .into_iter()
            .filter(|c| !self.is_head(c))
            .collect();
        match found.as_slice() {
            [one] => Ok(one),
            [] => Err(format!("no convolution for {what} reads '{tensor}'")),
            many => Err(format!(
                "{} convolutions for {what} read '{tensor}' ({})",
                many.len(),
                many.iter().map(|n| n.name.as_str()).collect::<Vec<_>>().join(", ")
            )),
        }
    }

    /// Whether a path from `node`'s output reaches a Softmax (the class scores).
    fn reaches_softmax(&self, node: &NodeProto) -> bool {
        let mut seen = HashSet::new();
        let mut todo = vec![Self::out(node).to_string()];
        while let Some(t) = todo.pop() {
            for n in self.readers(&t) {
                if n.op_type == "Softmax" {
                    return true;
                }
                for o in &n.output {
                    if seen.insert(o.clone()) {
                        todo.push(o.clone());
                    }
                }
            }
        }
        false
    }

    /// The box and class heads reading map `tensor` (`plain`: single 1x1 convolutions).
    fn heads(&self, tensor: &str, map: usize, plain: bool) -> Result<Heads<'a>, String> {
        let mut found = Vec::new();
        for conv in self.convs_reading(tensor).into_iter().filter(|c| self.is_head(c)) {
            if plain {
                found.push((None, conv));
                continue;
            }
            let act = self.relu6_after(conv, &format!("map {map}'s head"))?;
            let last = self
                .convs_reading(act)
                .into_iter()
                .find(|c| self.is_head_output(c))
                .ok_or_else(|| format!("map {map}'s head ({}) has no last layer", conv.name))?;
            found.push((Some(conv), last));
        }
        let (class, boxes): (Vec<_>, Vec<_>) = found.into_iter().partition(|(_, last)| self.reaches_softmax(last));
        match (boxes.as_slice(), class.as_slice()) {
            ([b], [c]) => Ok([*b, *c]),
            _ => Err(format!(
                "map {map} has {} box and {} class heads reading '{tensor}', mb2-ssd-lite one of each",
                boxes.len(),
                class.len()
            )),
        }
    }
}

/// The convolutions of an mb2-ssd-lite graph in our model's order, each with the layer's name for errors.
struct Layers<'a> {
    stem: &'a NodeProto,
    /// (expansion, depthwise, projection) of the 17 blocks.
    blocks: Vec<(Option<&'a NodeProto>, &'a NodeProto, &'a NodeProto)>,
    last: &'a NodeProto,
    extras: Vec<[&'a NodeProto; 3]>,
    heads: Vec<Heads<'a>>,
}

fn walk_layers<'a>(
    w: &Walk<'a>,
    model: &'a ModelProto,
    expands: &[bool],
    residual: &[bool],
) -> Result<Layers<'a>, String> {
    let graph = model.graph.as_ref().ok_or("the model has no graph")?;
    let input = graph
        .input
        .iter()
        .find(|i| !w.g.inits.contains_key(i.name.as_str()))
        .ok_or("the graph has no input")?;
    let stem = w.trunk_conv(&input.name, "the stem")?;
    let mut x = w.relu6_after(stem, "the stem")?;
    let mut blocks = Vec::new();
    let mut maps = Vec::new();
    for (i, (&expands, &residual)) in expands.iter().zip(residual).enumerate() {
        let what = format!("block {}", i + 1);
        let expand = expands
            .then(|| w.trunk_conv(x, &format!("{what}'s expansion")))
            .transpose()?;
        let hidden = match expand {
            Some(e) => w.relu6_after(e, &format!("{what}'s expansion"))?,
            None => x,
        };
        if i == STRIDE32_BLOCK {
            maps.push(hidden);
        }
        let depthwise = w.trunk_conv(hidden, &format!("{what}'s depthwise layer"))?;
        let act = w.relu6_after(depthwise, &format!("{what}'s depthwise layer"))?;
        let project = w.trunk_conv(act, &format!("{what}'s projection"))?;
        let mut out = Walk::out(project);
        if residual {
            out = w
                .readers(out)
                .iter()
                .find(|n| n.op_type == "Add" && n.input.iter().any(|i| i == x))
                .map(|add| Walk::out(add))
                .ok_or_else(|| format!("{what} ({}): no residual Add with its input", project.name))?;
        }
        blocks.push((expand, depthwise, project));
        x = out;
    }
    let last = w.trunk_conv(x, "the last 1x1 layer")?;
    let mut f = w.relu6_after(last, "the last 1x1 layer")?;
    maps.push(f);
    let mut extras = Vec::new();
    for i in 0..4 {
        let what = format!("extra layer {}", i + 1);
        let reduce = w.trunk_conv(f, &format!("{what}'s expansion"))?;
        let a = w.relu6_after(reduce, &format!("{what}'s expansion"))?;
        let depthwise = w.trunk_conv(a, &format!("{what}'s depthwise layer"))?;
        let b = w.relu6_after(depthwise, &format!("{what}'s depthwise layer"))?;
        let project = w.trunk_conv(b, &format!("{what}'s projection"))?;
        extras.push([reduce, depthwise, project]);
        f = Walk::out(project);
        maps.push(f);
    }
    let heads = maps
        .iter()
        .enumerate()
        .map(|(map, t)| w.heads(t, map, map == 5))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Layers {
        stem,
        blocks,
        last,
        extras,
        heads,
    })
}

/// An mb2-ssd-lite graph with its layers found.
pub struct PytorchSsdGraph<'a> {
    path: &'a Path,
    walk: Walk<'a>,
    layers: Layers<'a>,
}

/// Which of MobileNetV2's 17 blocks have an expansion layer and which add their input (at any width).
fn block_plan() -> (Vec<bool>, Vec<bool>) {
    let (mut expands, mut residual) = (Vec::new(), Vec::new());
    let mut cin = STEM_CHANNELS;
    for (t, c, n, s) in BLOCKS {
        for i in 0..n {
            let stride = if i == 0 { s } else { 1 };
            expands.push(t != 1);
            residual.push(stride == 1 && cin == c);
            cin = c;
        }
    }
    (expands, residual)
}

impl<'a> PytorchSsdGraph<'a> {
    /// Finds mb2-ssd-lite's layers in `model`; the error says which layer is missing or does not fit, and why
    /// (the caller names the file).
    pub fn find(path: &'a Path, model: &'a ModelProto) -> Result<Self, String> {
        let graph = model.graph.as_ref().ok_or("the model has no graph")?;
        let walk = Walk {
            g: OnnxGraph::new(path, model)?,
            constants: graph
                .node
                .iter()
                .filter(|n| n.op_type == "Constant")
                .filter_map(|n| {
                    let value = n.attribute.iter().find(|a| a.name == "value")?.t.as_ref()?;
                    Some((Walk::out(n), crate::import::floats(value)))
                })
                .collect(),
        };
        let (expands, residual) = block_plan();
        let layers = walk_layers(&walk, model, &expands, &residual)?;
        Ok(Self { path, walk, layers })
    }

    /// The network as a trainable model with its labels and sizes; errors name the file.
    pub fn load(&self, opts: &ImportOptions, device: &Device) -> Result<(SsdLite, CheckpointInfo), String> {
        let (path, layers) = (self.path, &self.layers);
        let g = &self.walk.g;
        let stem_out = g.out_channels(layers.stem, "the stem")?;
        let width = WIDTHS
            .into_iter()
            .find(|&w| make_divisible(32.0 * w, 8) == stem_out)
            .ok_or_else(|| {
                format!(
                    "{}: a stem of {stem_out} channels matches no MobileNetV2 width ({WIDTHS:?})",
                    path.display()
                )
            })?;
        let class_rows = g.out_channels(layers.heads[0][1].1, "map 0's class head")?;
        let per_location = Variant::PytorchSsd.anchors_per_location()[0];
        if class_rows % per_location != 0 || class_rows / per_location < 2 {
            return Err(format!(
                "{}: the first class head has {class_rows} outputs, not {per_location} anchors x (background + classes)",
                path.display()
            ));
        }
        let num_classes = class_rows / per_location;
        if opts.input_size != PYTORCH_SSD_SIDE {
            return Err(format!(
                "{}: pytorch-ssd's mb2-ssd-lite runs at {PYTORCH_SSD_SIDE}x{PYTORCH_SSD_SIDE} (its priors are laid out for it), not {}",
                path.display(),
                opts.input_size
            ));
        }
        let labels = model_labels(path, opts.labels, num_classes)?;
        let mut config = SsdLiteConfig {
            num_classes,
            width,
            input_size: PYTORCH_SSD_SIDE,
            anchor_shapes: Some(pytorch_ssd_default_shapes()),
            variant: Variant::PytorchSsd,
        };
        crate::import::check_config(path, &config)?;
        apply_given_anchors(path, &mut config, opts.anchors)?;
        let m = self.fill(config.init(device), device)?;
        Ok((m, CheckpointInfo::imported(config, labels)))
    }

    /// `m` with every layer's weights from the graph.
    fn fill(&self, mut m: SsdLite, device: &Device) -> Result<SsdLite, String> {
        let (path, layers) = (self.path, &self.layers);
        let g = &self.walk.g;

        let put = |target: &mut ConvBn, node: &'a NodeProto, what: &str, f: Option<Folded>| -> Result<(), String> {
            let f = match f {
                Some(f) => f,
                None => g.folded(node, what)?,
            };
            check_geometry(node, &target.conv, what).map_err(|e| format!("{}: {e}", path.display()))?;
            f.check(path, what, target.conv.weight.dims())?;
            set_folded(target, f.tensor(device), &f.bias, device);
            Ok(())
        };
        let mut stem = g.folded(layers.stem, "the stem")?;
        let (_, span) = Variant::PytorchSsd.input_scale().expect("pytorch-ssd scales its input");
        stem.rescale_input(span);
        put(&mut m.backbone.stem, layers.stem, "the stem", Some(stem))?;
        for (i, (block, (expand, depthwise, project))) in m.backbone.blocks.iter_mut().zip(&layers.blocks).enumerate() {
            let what = format!("block {}", i + 1);
            if let (Some(target), Some(node)) = (block.expand.as_mut(), expand) {
                put(target, node, &format!("{what}'s expansion"), None)?;
            }
            put(
                &mut block.depthwise,
                depthwise,
                &format!("{what}'s depthwise layer"),
                None,
            )?;
            put(&mut block.project, project, &format!("{what}'s projection"), None)?;
        }
        put(&mut m.backbone.last, layers.last, "the last 1x1 layer", None)?;
        for (i, (extra, [reduce, depthwise, project])) in m.extras.iter_mut().zip(&layers.extras).enumerate() {
            let what = format!("extra layer {}", i + 1);
            put(&mut extra.reduce, reduce, &format!("{what}'s expansion"), None)?;
            put(
                &mut extra.depthwise,
                depthwise,
                &format!("{what}'s depthwise layer"),
                None,
            )?;
            put(&mut extra.expand, project, &format!("{what}'s projection"), None)?;
        }
        for (map, [boxes, class]) in layers.heads.iter().enumerate() {
            for (target, (depthwise, last), kind) in [
                (&mut m.loc_heads[map], boxes, "box"),
                (&mut m.cls_heads[map], class, "class"),
            ] {
                let what = format!("map {map}'s {kind} head");
                match depthwise {
                    Some(node) => put(&mut target.depthwise, node, &what, None)?,
                    None => set_identity(target, device),
                }
                let mut f = g.folded(last, &what)?;
                if kind == "box" {
                    f.reorder_box_rows();
                }
                f.check(path, &what, target.pointwise.weight.dims())?;
                set_conv(&mut target.pointwise, f.tensor(device), &f.bias, device);
            }
        }
        Ok(m)
    }
}

/// Refuses a convolution whose stride, grouping or padding is not the layer's in our network.
fn check_geometry(node: &NodeProto, conv: &burn::nn::conv::Conv2d, what: &str) -> Result<(), String> {
    let stride = Walk::attr_ints(node, "strides").unwrap_or_else(|| vec![1, 1]);
    let want_stride: Vec<i64> = conv.stride.iter().map(|&s| s as i64).collect();
    let pads = Walk::attr_ints(node, "pads").unwrap_or_else(|| vec![0; 4]);
    let p = (conv.kernel_size[0] / 2) as i64;
    if stride != want_stride || Walk::group(node) != conv.groups as i64 || pads != [p, p, p, p] {
        return Err(format!(
            "{what} ({}): strides {stride:?}, group {}, pads {pads:?}; mb2-ssd-lite has strides {want_stride:?}, \
             group {}, pads {:?}",
            node.name,
            Walk::group(node),
            conv.groups,
            [p; 4]
        ));
    }
    Ok(())
}

/// A separable head's depthwise layer as the identity (centre tap 1, no bias), standing for pytorch-ssd's
/// missing one on its last map.
fn set_identity(head: &mut SeparableHead, device: &Device) {
    let dims = head.depthwise.conv.weight.dims();
    let [channels, _, kh, kw] = dims;
    let mut weight = vec![0f32; channels * kh * kw];
    for c in 0..channels {
        weight[c * kh * kw + (kh / 2) * kw + kw / 2] = 1.0;
    }
    let weight = Tensor::from_data(TensorData::new(weight, dims), device);
    set_folded(&mut head.depthwise, weight, &vec![0.0; channels], device);
}

impl Folded {
    /// pytorch-ssd's box rows per anchor, `tx, ty, tw, th`, in our order `ty, tx, th, tw`.
    fn reorder_box_rows(&mut self) {
        let per_out = self.weight.len() / self.dims[0];
        let (weight, bias) = (self.weight.clone(), self.bias.clone());
        for anchor in 0..self.dims[0] / 4 {
            for (ours, theirs) in [1, 0, 3, 2].into_iter().enumerate() {
                let (to, from) = (anchor * 4 + ours, anchor * 4 + theirs);
                self.weight[to * per_out..(to + 1) * per_out]
                    .copy_from_slice(&weight[from * per_out..(from + 1) * per_out]);
                self.bias[to] = bias[from];
            }
        }
    }
}
