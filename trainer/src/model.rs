//! MobileNetV2-SSDLite in burn: the MobileNetV2 backbone (torchvision's layout: stem, 17 inverted residual
//! blocks, 1x1 head conv; width multiplier), SSDLite heads on the stride-16 expansion layer and the stride-32
//! map, and four extra layers (torchvision's ssdlite320); `Variant` lays it out as TF-OD's and pytorch-ssd's
//! mb2-ssd-lite for imported models.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d};
use burn::tensor::{Device, Tensor};
use detection_common::boxes::{Anchor, grid_anchors, ssd_anchor_shapes, ssd_anchors, strided_anchors};

/// Channel counts rounded the way MobileNetV2 does (multiples of 8, never 10% below the target).
pub fn make_divisible(v: f32, divisor: usize) -> usize {
    let d = divisor as f32;
    let new = ((v + d / 2.0) / d).floor().max(1.0) as usize * divisor;
    if (new as f32) < 0.9 * v { new + divisor } else { new }
}

fn relu6(x: Tensor<4>) -> Tensor<4> {
    x.clamp(0.0, 6.0)
}

/// Conv2d (no bias) + BatchNorm (+ ReLU6).
#[derive(Module, Debug)]
pub struct ConvBn {
    pub conv: Conv2d,
    pub bn: BatchNorm,
    pub act: bool,
}

impl ConvBn {
    pub fn new(cin: usize, cout: usize, k: usize, stride: usize, groups: usize, act: bool, device: &Device) -> Self {
        let p = k / 2;
        let conv = Conv2dConfig::new([cin, cout], [k, k])
            .with_stride([stride, stride])
            .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
            .with_groups(groups)
            .with_bias(false)
            .init(device);
        Self {
            conv,
            bn: BatchNormConfig::new(cout).init(device),
            act,
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let y = self.bn.forward(self.conv.forward(x));
        if self.act { relu6(y) } else { y }
    }

    /// BatchNorm normalises by its running statistics from now on, in training too; gamma and beta still learn.
    fn freeze_statistics(&mut self) {
        self.bn.training = self.bn.training.clone().with_value(false);
    }

    /// Pads as `variant` does for an input side of `side` pixels; returns the output's side.
    fn set_padding(&mut self, variant: Variant, side: usize) -> usize {
        let [kernel, _] = self.conv.kernel_size;
        let [stride, _] = self.conv.stride;
        let (before, after) = variant.pads(side, kernel, stride);
        self.conv.padding = PaddingConfig2d::Explicit(before, before, after, after);
        (side + before + after - kernel) / stride + 1
    }
}

/// MobileNetV2 inverted residual: optional 1x1 expansion, 3x3 depthwise, 1x1 linear projection.
#[derive(Module, Debug)]
pub struct InvertedResidual {
    pub expand: Option<ConvBn>,
    pub depthwise: ConvBn,
    pub project: ConvBn,
    pub residual: bool,
}

impl InvertedResidual {
    pub fn new(cin: usize, cout: usize, stride: usize, t: usize, device: &Device) -> Self {
        let hidden = cin * t;
        Self {
            expand: (t != 1).then(|| ConvBn::new(cin, hidden, 1, 1, 1, true, device)),
            depthwise: ConvBn::new(hidden, hidden, 3, stride, hidden, true, device),
            project: ConvBn::new(hidden, cout, 1, 1, 1, false, device),
            residual: stride == 1 && cin == cout,
        }
    }

    /// Output, and the expansion layer's output (what the first SSDLite head reads on one block).
    pub fn forward_with_expansion(&self, x: Tensor<4>) -> (Tensor<4>, Option<Tensor<4>>) {
        let expanded = self.expand.as_ref().map(|e| e.forward(x.clone()));
        let h = expanded.clone().unwrap_or_else(|| x.clone());
        let y = self.project.forward(self.depthwise.forward(h));
        (if self.residual { y + x } else { y }, expanded)
    }
}

/// SSDLite head for one feature map: depthwise 3x3 + BN + ReLU6, then a 1x1 conv to `per_location * width`.
#[derive(Module, Debug)]
pub struct SeparableHead {
    pub depthwise: ConvBn,
    pub pointwise: Conv2d,
    pub width: usize,
}

impl SeparableHead {
    /// `depthwise_act: false` for a head that is a single 1x1 convolution in the original (pytorch-ssd's last
    /// map): its depthwise layer, imported as the identity, must not clip.
    pub fn new(cin: usize, per_location: usize, width: usize, depthwise_act: bool, device: &Device) -> Self {
        Self {
            depthwise: ConvBn::new(cin, cin, 3, 1, cin, depthwise_act, device),
            pointwise: Conv2dConfig::new([cin, per_location * width], [1, 1]).init(device),
            width,
        }
    }

    /// [B, C, H, W] -> [B, H*W*per_location, width], anchors ordered by row, column, then shape.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<3> {
        let y = self.pointwise.forward(self.depthwise.forward(x));
        let [b, _, _, _] = y.dims();
        y.permute([0, 2, 3, 1]).reshape([b as i32, -1, self.width as i32])
    }
}

/// An extra SSD layer: 1x1 down to `mid` channels, 3x3 depthwise stride 2, 1x1 up (ReLU6 after it unless
/// `linear_out`: pytorch-ssd's are inverted residuals, whose projection is linear).
#[derive(Module, Debug)]
pub struct ExtraBlock {
    pub reduce: ConvBn,
    pub depthwise: ConvBn,
    pub expand: ConvBn,
}

impl ExtraBlock {
    pub fn new(cin: usize, mid: usize, cout: usize, linear_out: bool, device: &Device) -> Self {
        Self {
            reduce: ConvBn::new(cin, mid, 1, 1, 1, true, device),
            depthwise: ConvBn::new(mid, mid, 3, 2, mid, true, device),
            expand: ConvBn::new(mid, cout, 1, 1, 1, !linear_out, device),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.expand.forward(self.depthwise.forward(self.reduce.forward(x)))
    }
}

/// Anchors per location on each of the six maps (this trainer's and TF-OD's; `Variant::anchors_per_location`).
pub const ANCHORS_PER_LOCATION: [usize; 6] = [3, 6, 6, 6, 6, 6];
/// pytorch-ssd's mb2-ssd-lite: six on every map.
const PYTORCH_SSD_ANCHORS_PER_LOCATION: [usize; 6] = [6; 6];
/// pytorch-ssd's extras are inverted residuals whose hidden width is the input's times these.
const PYTORCH_SSD_EXTRA_EXPANSION: [f32; 4] = [0.2, 0.25, 0.5, 0.25];
use crate::import_pytorch_ssd::{PYTORCH_SSD_SIDE, PYTORCH_SSD_SPECS};
use detection_common::mobilenet_v2::{BLOCKS, LAST_CHANNELS, STEM_CHANNELS, STRIDE32_BLOCK};

/// Anchor shapes `(w, h)`, normalised to the input, one list per map (as many as `ANCHORS_PER_LOCATION` says).
pub type AnchorShapes = Vec<Vec<(f32, f32)>>;

#[derive(Debug, Clone, PartialEq)]
pub struct SsdLiteConfig {
    pub num_classes: usize,
    pub width: f32,
    pub input_size: usize,
    /// Shapes fitted to a dataset's boxes (`anchors.rs`); `None`: SSD's default shapes.
    pub anchor_shapes: Option<AnchorShapes>,
    pub variant: Variant,
}

/// Where a network's layout comes from. The layers are the same; details differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Variant {
    /// This trainer's own: symmetric padding, a last extra layer of 64 channels.
    #[default]
    Trainer,
    /// The TF Object Detection API's SSDLite (imported models): TensorFlow's "SAME" padding of the strided
    /// convolutions — on an even side its one extra row and column go at the bottom and right only, so the same
    /// weights padded symmetrically would see the image shifted a pixel — and a last extra layer of 128 channels.
    TfOd,
    /// pytorch-ssd's `mb2-ssd-lite` (jetson-inference's re-training format, imported models): symmetric padding,
    /// six anchors on every map centred on its shrinkage grid, extras that are inverted residuals (hidden width
    /// from the input's, linear projection, the last of 64 channels), single 1x1 heads on the last map, and
    /// `(x - 127) / 128` input scaling.
    PytorchSsd,
}

impl Variant {
    /// The name checkpoints and exported models record (`Trainer` is recorded as nothing at all).
    pub fn name(self) -> &'static str {
        match self {
            Variant::Trainer => "trainer",
            Variant::TfOd => "tf-od",
            Variant::PytorchSsd => "pytorch-ssd",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        [Variant::Trainer, Variant::TfOd, Variant::PytorchSsd]
            .into_iter()
            .find(|v| v.name() == name)
    }

    /// Anchors per location on each of the six maps.
    pub fn anchors_per_location(self) -> [usize; 6] {
        match self {
            Variant::Trainer | Variant::TfOd => ANCHORS_PER_LOCATION,
            Variant::PytorchSsd => PYTORCH_SSD_ANCHORS_PER_LOCATION,
        }
    }

    /// The pixel value the original network's input scale puts at 0, and the pixel span of one unit: the network
    /// then shifts our ImageNet-normalised input so that its zero padding is the original's (`input_shift`),
    /// and the stem's weights take the scale. `None`: our own scale.
    pub fn input_scale(self) -> Option<(f32, f32)> {
        match self {
            Variant::Trainer => None,
            Variant::TfOd => Some((127.5, 127.5)),
            Variant::PytorchSsd => Some((127.0, 128.0)),
        }
    }

    /// Hidden channels of extra layer `index` (0..4) from `cin` to `cout`.
    fn extra_hidden(self, index: usize, cin: usize, cout: usize) -> usize {
        match self {
            Variant::Trainer | Variant::TfOd => cout / 2,
            Variant::PytorchSsd => (cin as f32 * PYTORCH_SSD_EXTRA_EXPANSION[index]).round() as usize,
        }
    }

    /// (before, after) padding of a `kernel`-wide convolution with `stride` on a side of `side` pixels.
    fn pads(self, side: usize, kernel: usize, stride: usize) -> (usize, usize) {
        match self {
            Variant::Trainer | Variant::PytorchSsd => (kernel / 2, kernel / 2),
            Variant::TfOd => {
                let total = ((side.div_ceil(stride) - 1) * stride + kernel).saturating_sub(side);
                (total / 2, total - total / 2)
            }
        }
    }

    /// Channels of the last extra layer's output before the width multiplier.
    fn last_extra_channels(self) -> f32 {
        match self {
            Variant::Trainer | Variant::PytorchSsd => 64.0,
            Variant::TfOd => 128.0,
        }
    }
}

/// The MobileNetV2 feature extractor, named so torchvision's `features.N` weights map onto it one to one.
#[derive(Module, Debug)]
pub struct MobileNetV2 {
    pub stem: ConvBn,
    pub blocks: Vec<InvertedResidual>,
    pub last: ConvBn,
    /// The pixel value an imported network's input scale puts at 0 (`Variant::input_scale`), 0 for ours: the
    /// input is shifted by `input_shift(input_zero)` before the stem, which makes the stem's zero padding the
    /// original's (TensorFlow's and pytorch-ssd's 0 is mid-grey, ours ImageNet's mean).
    pub input_zero: f32,
}

/// Per channel, the pixel value `zero` ImageNet-normalised (`(zero - mean) / std`): an input scale
/// `(x - zero) / span` is then `(normalised - shift) * std / span`, the scale going into the stem's weights.
pub fn input_shift(zero: f32) -> [f32; 3] {
    let (m, s) = (crate::augment::INPUT_MEAN, crate::augment::INPUT_STD);
    [0, 1, 2].map(|c| (zero - m[c]) / s[c])
}

impl MobileNetV2 {
    /// (the stride-16 expansion layer of block 13, the stride-32 output of the 1x1 head conv).
    pub fn forward(&self, x: Tensor<4>) -> (Tensor<4>, Tensor<4>) {
        self.forward_from(self.forward_below(x, 0), 0)
    }

    /// The activations entering block `block` (the stem's output for block 0): what stays fixed while only the
    /// blocks from `block` on are fine-tuned.
    pub fn forward_below(&self, x: Tensor<4>, block: usize) -> Tensor<4> {
        self.blocks[..block]
            .iter()
            .fold(self.stem.forward(self.shift_input(x)), |h, b| {
                b.forward_with_expansion(h).0
            })
    }

    /// Every BatchNorm of the backbone normalises by its running statistics, in training too.
    pub fn freeze_batchnorm_statistics(&mut self) {
        let mut all: Vec<&mut ConvBn> = vec![&mut self.stem, &mut self.last];
        for block in &mut self.blocks {
            all.extend(block.expand.as_mut());
            all.extend([&mut block.depthwise, &mut block.project]);
        }
        all.into_iter().for_each(ConvBn::freeze_statistics);
    }

    fn shift_input(&self, x: Tensor<4>) -> Tensor<4> {
        if self.input_zero == 0.0 {
            return x;
        }
        let shift = Tensor::<1>::from_floats(input_shift(self.input_zero), &x.device()).reshape([1, 3, 1, 1]);
        x - shift
    }

    /// The rest of the network from block `block` (at most `STRIDE32_BLOCK`, whose expansion the first head
    /// reads) on activations `h` from `forward_below`: (stride-16 map, stride-32 map).
    pub fn forward_from(&self, mut h: Tensor<4>, block: usize) -> (Tensor<4>, Tensor<4>) {
        assert!(block <= STRIDE32_BLOCK, "block {block} is above the stride-16 tap");
        let mut stride16 = None;
        for (i, b) in self.blocks.iter().enumerate().skip(block) {
            let (out, expansion) = b.forward_with_expansion(h);
            if i == STRIDE32_BLOCK {
                stride16 = expansion;
            }
            h = out;
        }
        (stride16.expect("the stride-32 block expands"), self.last.forward(h))
    }
}

#[derive(Module, Debug)]
pub struct SsdLite {
    pub backbone: MobileNetV2,
    pub extras: Vec<ExtraBlock>,
    pub loc_heads: Vec<SeparableHead>,
    pub cls_heads: Vec<SeparableHead>,
}

impl SsdLiteConfig {
    /// Smallest and largest input sides the network is built for (below 32 px the deepest feature maps vanish).
    pub const INPUT_SIZES: std::ops::RangeInclusive<usize> = 32..=2048;
    /// Width multipliers that make sense for MobileNetV2.
    pub const WIDTHS: std::ops::RangeInclusive<f32> = 0.1..=4.0;

    /// Whether the configuration describes a network that can be built: checked before building one from
    /// numbers read out of a file (checkpoint or ONNX metadata), which may be damaged or hand-edited.
    pub fn check(&self) -> Result<(), String> {
        if !self.width.is_finite() || !Self::WIDTHS.contains(&self.width) {
            return Err(format!(
                "width multiplier {} is outside {}..={}",
                self.width,
                Self::WIDTHS.start(),
                Self::WIDTHS.end()
            ));
        }
        if !Self::INPUT_SIZES.contains(&self.input_size) {
            return Err(format!(
                "input size {} is outside {}..={}",
                self.input_size,
                Self::INPUT_SIZES.start(),
                Self::INPUT_SIZES.end()
            ));
        }
        let max_classes = detection_common::labels::MAX_CLASS_ID + 1;
        if !(2..=max_classes).contains(&self.num_classes) {
            return Err(format!(
                "{} classes (with the background) is outside 2..={max_classes}",
                self.num_classes
            ));
        }
        Ok(())
    }

    /// Channels of the six feature maps.
    pub fn feature_channels(&self) -> [usize; 6] {
        let c96 = make_divisible(96.0 * self.width, 8);
        let last = if self.width > 1.0 {
            make_divisible(LAST_CHANNELS as f32 * self.width, 8)
        } else {
            LAST_CHANNELS
        };
        // Extras keep torchvision's widths scaled by the multiplier (at least 16 channels).
        let e = |c: f32| make_divisible((c * self.width).max(16.0), 8);
        [
            c96 * 6,
            last,
            e(512.0),
            e(256.0),
            e(256.0),
            e(self.variant.last_extra_channels()),
        ]
    }

    /// Channels, height and width of the activations entering MobileNetV2 block `block` (the stem's output for
    /// block 0); each stride-2 layer halves the side, rounding up.
    pub fn block_input_shape(&self, block: usize) -> [usize; 3] {
        let mut channels = make_divisible(STEM_CHANNELS as f32 * self.width, 8);
        let mut side = self.input_size.div_ceil(2);
        let layers = BLOCKS
            .iter()
            .flat_map(|&(_, c, n, s)| (0..n).map(move |i| (c, if i == 0 { s } else { 1 })));
        for (c, stride) in layers.take(block) {
            channels = make_divisible(c as f32 * self.width, 8);
            side = side.div_ceil(stride);
        }
        [channels, side, side]
    }

    /// Sizes of the six maps for the input size (strides 16, 32, then halving with "same" padding).
    pub fn feature_sizes(&self) -> [usize; 6] {
        let s16 = self.input_size.div_ceil(16);
        let mut s = [s16, s16.div_ceil(2), 0, 0, 0, 0];
        for i in 2..6 {
            s[i] = s[i - 1].div_ceil(2);
        }
        s
    }

    pub fn init(&self, device: &Device) -> SsdLite {
        let w = self.width;
        let mut cin = make_divisible(STEM_CHANNELS as f32 * w, 8);
        let stem = ConvBn::new(3, cin, 3, 2, 1, true, device);
        let mut blocks = Vec::new();
        for (t, c, n, s) in BLOCKS {
            let cout = make_divisible(c as f32 * w, 8);
            for i in 0..n {
                blocks.push(InvertedResidual::new(cin, cout, if i == 0 { s } else { 1 }, t, device));
                cin = cout;
            }
        }
        let ch = self.feature_channels();
        let last = ConvBn::new(cin, ch[1], 1, 1, 1, true, device);
        let variant = self.variant;
        let extras = (2..6)
            .map(|i| {
                let mid = variant.extra_hidden(i - 2, ch[i - 1], ch[i]);
                ExtraBlock::new(ch[i - 1], mid, ch[i], variant == Variant::PytorchSsd, device)
            })
            .collect();
        let per_location = self.anchors_per_location();
        // pytorch-ssd's last map has plain 1x1 heads: here a depthwise layer that starts as the identity.
        let depthwise_act = |i: usize| !(variant == Variant::PytorchSsd && i == 5);
        let loc_heads = (0..6)
            .map(|i| SeparableHead::new(ch[i], per_location[i], 4, depthwise_act(i), device))
            .collect();
        let cls_heads = (0..6)
            .map(|i| SeparableHead::new(ch[i], per_location[i], self.num_classes, depthwise_act(i), device))
            .collect();
        let mut model = SsdLite {
            backbone: MobileNetV2 {
                stem,
                blocks,
                last,
                input_zero: 0.0,
            },
            extras,
            loc_heads,
            cls_heads,
        };
        model.apply_variant(self.variant, self.input_size);
        model
    }

    /// Default boxes in the heads' output order (normalised `cy cx h w`): the fitted shapes, or SSD's — 3 on the
    /// first map (a small square and two 2:1 boxes), 6 elsewhere (two squares, 2:1, 1:2, 3:1, 1:3), scales 0.2
    /// to 0.95.
    /// pytorch-ssd's centre their anchors on each map's shrinkage grid at its 300x300 input.
    pub fn anchors(&self) -> Vec<Anchor> {
        let sizes = self.feature_sizes();
        if self.variant == Variant::PytorchSsd && sizes == PYTORCH_SSD_SPECS.map(|(side, ..)| side) {
            let steps = PYTORCH_SSD_SPECS.map(|(_, shrinkage, ..)| shrinkage / PYTORCH_SSD_SIDE as f32);
            return strided_anchors(&sizes, &steps, &self.shapes());
        }
        match &self.anchor_shapes {
            Some(shapes) => grid_anchors(&sizes, shapes),
            None => ssd_anchors(&sizes, &self.anchors_per_location()),
        }
    }

    /// Anchors per location on each of the six maps.
    pub fn anchors_per_location(&self) -> [usize; 6] {
        self.variant.anchors_per_location()
    }

    /// The shapes `anchors()` places on each map.
    pub fn shapes(&self) -> AnchorShapes {
        self.anchor_shapes.clone().unwrap_or_else(|| {
            let per_location = self.anchors_per_location();
            ssd_anchor_shapes(per_location.len(), &per_location)
        })
    }

    /// The fitted shapes as text, one line per map of `w h` pairs (`None` for SSD's shapes).
    pub fn shapes_to_text(&self) -> Option<String> {
        self.anchor_shapes.as_ref().map(|maps| {
            maps.iter()
                .map(|shapes| {
                    shapes
                        .iter()
                        .map(|(w, h)| format!("{w} {h}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect::<Vec<_>>()
                .join("\n")
        })
    }

    /// Reads what `shapes_to_text` wrote: as many maps and shapes as the heads predict, sizes in (0, 2] (SSD's
    /// widest shapes exceed 1; anchors clip them to the input).
    pub fn shapes_from_text(text: &str, per_location: [usize; 6]) -> Result<AnchorShapes, String> {
        let maps: Vec<&str> = text.lines().collect();
        if maps.len() != per_location.len() {
            return Err(format!(
                "anchor shapes for {} maps, expected {}",
                maps.len(),
                per_location.len()
            ));
        }
        maps.iter()
            .zip(per_location)
            .map(|(line, m)| {
                let v: Vec<f32> = line
                    .split_whitespace()
                    .map(|x| {
                        x.parse::<f32>()
                            .map_err(|_| format!("anchor size '{x}' is not a number"))
                    })
                    .collect::<Result<_, _>>()?;
                if v.len() != 2 * m || v.iter().any(|x| !(x.is_finite() && *x > 0.0 && *x <= 2.0)) {
                    return Err(format!("anchor shapes '{line}': expected {m} pairs 'w h' in (0, 2]"));
                }
                Ok(v.chunks(2).map(|c| (c[0], c[1])).collect())
            })
            .collect()
    }

    /// The shapes of a full anchor list (`anchors()`'s order): the first cell of each map.
    pub fn shapes_from_anchors(&self, anchors: &[Anchor]) -> Result<AnchorShapes, String> {
        let sizes = self.feature_sizes();
        let per_location = self.anchors_per_location();
        let expected: usize = sizes.iter().zip(per_location).map(|(s, m)| s * s * m).sum();
        if anchors.len() != expected {
            return Err(format!(
                "{} anchors, but a {}x{} SSDLite has {expected}",
                anchors.len(),
                self.input_size,
                self.input_size
            ));
        }
        let mut offset = 0;
        let mut shapes = Vec::with_capacity(sizes.len());
        for (size, m) in sizes.iter().zip(per_location) {
            shapes.push(anchors[offset..offset + m].iter().map(|a| (a.w, a.h)).collect());
            offset += size * size * m;
        }
        Ok(shapes)
    }
}

impl SsdLite {
    /// Lays the network out as `variant` does at `input_size`: the padding of every strided convolution
    /// (TensorFlow's depends on whether each side is even; stride-1 convolutions pad symmetrically either way)
    /// and the input shift.
    pub fn apply_variant(&mut self, variant: Variant, input_size: usize) {
        let b = &mut self.backbone;
        b.input_zero = variant.input_scale().map_or(0.0, |(zero, _)| zero);
        let mut side = b.stem.set_padding(variant, input_size);
        for block in &mut b.blocks {
            side = block.depthwise.set_padding(variant, side);
        }
        for extra in &mut self.extras {
            side = extra.depthwise.set_padding(variant, side);
        }
    }

    /// Every BatchNorm normalises by its running statistics, in training too (gamma and beta still learn): how
    /// a trained detector is fine-tuned. Its layers were trained on those statistics (an imported model's are
    /// folded into its weights and stand at mean 0, variance 1), which a batch of 16 would replace.
    pub fn freeze_batchnorm_statistics(&mut self) {
        self.backbone.freeze_batchnorm_statistics();
        let mut all: Vec<&mut ConvBn> = Vec::new();
        for e in &mut self.extras {
            all.extend([&mut e.reduce, &mut e.depthwise, &mut e.expand]);
        }
        for h in self.loc_heads.iter_mut().chain(&mut self.cls_heads) {
            all.push(&mut h.depthwise);
        }
        all.into_iter().for_each(ConvBn::freeze_statistics);
    }

    /// Images [B, 3, S, S] normalised -> (box encodings [B, A, 4] in the TF order ty,tx,th,tw, logits [B, A, C]).
    pub fn forward(&self, x: Tensor<4>) -> (Tensor<3>, Tensor<3>) {
        let (stride16, stride32) = self.backbone.forward(x);
        self.forward_heads(stride16, stride32)
    }

    /// Training with a frozen backbone: its forward pass runs without autodiff and with BatchNorm on its
    /// running statistics, so the backward pass (burn's slow part on CPU) only covers extras and heads.
    pub fn forward_frozen_backbone(&self, x: Tensor<4>) -> (Tensor<3>, Tensor<3>) {
        let (stride16, stride32) = self.backbone.valid().forward(x.inner());
        self.forward_heads(stride16.autodiff(), stride32.autodiff())
    }

    /// Fine-tuning the upper backbone: blocks from `block` on, extras and heads on activations `h` entering
    /// `block` (cached: the blocks below stay fixed).
    pub fn forward_from_block(&self, h: Tensor<4>, block: usize) -> (Tensor<3>, Tensor<3>) {
        let (stride16, stride32) = self.backbone.forward_from(h, block);
        self.forward_heads(stride16, stride32)
    }

    /// Training the heads on cached activations `h` entering block `block` while the whole backbone is frozen:
    /// the blocks from `block` on run without autodiff and with BatchNorm on running statistics.
    pub fn forward_from_block_frozen(&self, h: Tensor<4>, block: usize) -> (Tensor<3>, Tensor<3>) {
        let (stride16, stride32) = self.backbone.valid().forward_from(h.inner(), block);
        self.forward_heads(stride16.autodiff(), stride32.autodiff())
    }

    /// Extras and heads on the backbone's two maps (what training on cached backbone features runs).
    pub fn forward_heads(&self, stride16: Tensor<4>, stride32: Tensor<4>) -> (Tensor<3>, Tensor<3>) {
        let mut features = Vec::with_capacity(6);
        features.push(stride16);
        let mut f = stride32;
        features.push(f.clone());
        for extra in &self.extras {
            f = extra.forward(f);
            features.push(f.clone());
        }
        let locs: Vec<Tensor<3>> = features
            .iter()
            .zip(&self.loc_heads)
            .map(|(f, head)| head.forward(f.clone()))
            .collect();
        let logits: Vec<Tensor<3>> = features
            .iter()
            .zip(&self.cls_heads)
            .map(|(f, head)| head.forward(f.clone()))
            .collect();
        (Tensor::cat(locs, 1), Tensor::cat(logits, 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fitted_shapes_survive_text_and_anchor_lists() {
        let mut cfg = SsdLiteConfig {
            num_classes: 3,
            width: 1.0,
            input_size: 160,
            anchor_shapes: None,
            variant: Default::default(),
        };
        assert_eq!(cfg.shapes_to_text(), None, "SSD's shapes are not written");
        let mut shapes = cfg.shapes();
        shapes[0] = vec![(0.12, 0.16), (0.17, 0.23), (0.21, 0.3)];
        cfg.anchor_shapes = Some(shapes.clone());
        let text = cfg.shapes_to_text().unwrap();
        assert_eq!(
            SsdLiteConfig::shapes_from_text(&text, ANCHORS_PER_LOCATION).unwrap(),
            shapes
        );
        // The export's anchor list gives the shapes back (as the anchors clip them).
        let back = cfg.shapes_from_anchors(&cfg.anchors()).unwrap();
        assert_eq!(back[0], shapes[0]);
        let again = SsdLiteConfig {
            anchor_shapes: Some(back),
            ..cfg.clone()
        };
        assert_eq!(again.anchors(), cfg.anchors());
        assert!(cfg.shapes_from_anchors(&cfg.anchors()[1..]).is_err());
        for bad in ["0.1 0.1", &text.replace("0.12", "x"), &text.replace("0.12", "-1")] {
            assert!(
                SsdLiteConfig::shapes_from_text(bad, ANCHORS_PER_LOCATION).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn shapes_and_anchor_count_agree() {
        let device = Device::flex();
        for (size, width) in [(300, 1.0), (160, 0.35)] {
            let cfg = SsdLiteConfig {
                num_classes: 4,
                width,
                input_size: size,
                anchor_shapes: None,
                variant: Default::default(),
            };
            let model = cfg.init(&device);
            let x = Tensor::<4>::zeros([2, 3, size, size], &device);
            let (loc, cls) = model.forward(x);
            let a = cfg.anchors().len();
            assert_eq!(loc.dims(), [2, a, 4]);
            assert_eq!(cls.dims(), [2, a, 4]);
            if size == 300 {
                assert_eq!(a, 1917);
            }
        }
    }

    #[test]
    fn the_upper_blocks_on_their_input_give_the_whole_network() {
        let device = Device::flex();
        let cfg = SsdLiteConfig {
            num_classes: 3,
            width: 0.5,
            input_size: 96,
            anchor_shapes: None,
            variant: Default::default(),
        };
        let model = cfg.init(&device).valid();
        let x = Tensor::<4>::random([1, 3, 96, 96], burn::tensor::Distribution::Default, &device);
        let (loc, cls) = model.forward(x.clone());
        for block in [0, 11, STRIDE32_BLOCK] {
            let h = model.backbone.forward_below(x.clone(), block);
            assert_eq!(h.dims()[1..], cfg.block_input_shape(block), "block {block}");
            let (l, c) = model.forward_from_block(h, block);
            assert!(l.all_close(loc.clone(), None, Some(1e-5)) && c.all_close(cls.clone(), None, Some(1e-5)));
        }
    }

    #[test]
    fn channel_rounding_matches_mobilenet_v2() {
        assert_eq!(make_divisible(32.0, 8), 32);
        assert_eq!(make_divisible(32.0 * 0.35, 8), 16);
        assert_eq!(make_divisible(96.0 * 0.5, 8), 48);
        assert_eq!(make_divisible(160.0 * 0.75, 8), 120);
    }
}
