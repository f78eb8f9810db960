//! SSDLite-MobileNetV2 (width 1.0, 300x300, torchvision/pytorch-ssd layout: heads on the stride-16 expansion and
//! stride-32 maps plus four extra layers, 1917 anchors) as an ONNX graph with seeded random weights, BatchNorm
//! folded into the convolutions. Same architecture and cost as a trained model: what the benchmark runs.

use detection_common::boxes::format_anchors;
use detection_common::metadata as meta;
use detection_common::onnx::{Attr, Dim, GraphBuilder, data_type};

struct Rng(u64);

impl Rng {
    fn uniform(&mut self) -> f32 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let v = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (v >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
}

/// The graph under construction; `conv` mirrors a Conv2d+BN+ReLU6 layer, hence its many arguments.
struct Net {
    g: GraphBuilder,
    rng: Rng,
    relu6_min: String,
    relu6_max: String,
}

impl Net {
    #[allow(clippy::too_many_arguments)]
    fn conv(&mut self, x: &str, cin: i64, cout: i64, k: i64, stride: i64, groups: i64, relu6: bool) -> String {
        let fan_in = (cin / groups) * k * k;
        let std = (2.0 / fan_in as f32).sqrt();
        let n = (cout * (cin / groups) * k * k) as usize;
        let w: Vec<f32> = (0..n).map(|_| self.rng.uniform() * std * 1.732).collect();
        let b: Vec<f32> = (0..cout).map(|_| self.rng.uniform() * 0.01).collect();
        let wn = self.g.initializer_f32("w", &[cout, cin / groups, k, k], &w);
        let bn = self.g.initializer_f32("b", &[cout], &b);
        let p = k / 2;
        let y = self.g.node(
            "Conv",
            &[x, &wn, &bn],
            "",
            vec![
                ("kernel_shape", Attr::Ints(vec![k, k])),
                ("strides", Attr::Ints(vec![stride, stride])),
                ("pads", Attr::Ints(vec![p, p, p, p])),
                ("group", Attr::Int(groups)),
            ],
        );
        if relu6 {
            let (lo, hi) = (self.relu6_min.clone(), self.relu6_max.clone());
            self.g.node("Clip", &[&y, &lo, &hi], "", vec![])
        } else {
            y
        }
    }

    /// MobileNetV2 inverted residual; returns (output, expansion output if any).
    fn inverted_residual(&mut self, x: &str, cin: i64, cout: i64, stride: i64, t: i64) -> (String, Option<String>) {
        let hidden = cin * t;
        let (h, expansion) = if t != 1 {
            let e = self.conv(x, cin, hidden, 1, 1, 1, true);
            (e.clone(), Some(e))
        } else {
            (x.to_string(), None)
        };
        let d = self.conv(&h, hidden, hidden, 3, stride, hidden, true);
        let p = self.conv(&d, hidden, cout, 1, 1, 1, false);
        let out = if stride == 1 && cin == cout {
            self.g.node("Add", &[x, &p], "", vec![])
        } else {
            p
        };
        (out, expansion)
    }

    /// SSDLite separable head: depthwise 3x3 + ReLU6, then 1x1 to `per_loc * width`, flattened to [1, -1, width].
    fn head(&mut self, x: &str, cin: i64, per_loc: i64, width: i64) -> String {
        let d = self.conv(x, cin, cin, 3, 1, cin, true);
        let p = self.conv(&d, cin, per_loc * width, 1, 1, 1, false);
        let t = self
            .g
            .node("Transpose", &[&p], "", vec![("perm", Attr::Ints(vec![0, 2, 3, 1]))]);
        let shape = self.g.initializer_i64("shape", &[3], &[1, -1, width]);
        self.g.node("Reshape", &[&t, &shape], "", vec![])
    }
}

/// Builds the model; `labels` are the foreground classes (background is prepended). Returns the ONNX bytes.
pub fn build(labels: &[&str], seed: u64) -> Vec<u8> {
    build_with_background_prior(labels, seed, 0.0)
}

/// The same graph with `background_logit` added to every anchor's background logit: random weights then
/// leave a few confident anchors per frame, as a trained detector does, instead of most of them (what
/// post-processing costs in a benchmark depends on it).
pub fn build_with_background_prior(labels: &[&str], seed: u64, background_logit: f32) -> Vec<u8> {
    let num_classes = labels.len() as i64 + 1;
    let mut g = GraphBuilder::new("ssdlite_mobilenet_v2");
    let relu6_min = g.initializer_f32("relu6_min", &[], &[0.0]);
    let relu6_max = g.initializer_f32("relu6_max", &[], &[6.0]);
    let x = g.input(
        "input",
        data_type::FLOAT,
        &[Dim::Fixed(1), Dim::Fixed(3), Dim::Fixed(300), Dim::Fixed(300)],
    );
    let mut net = Net {
        g,
        rng: Rng(seed | 1),
        relu6_min,
        relu6_max,
    };

    use detection_common::mobilenet_v2::{BLOCKS, LAST_CHANNELS, STEM_CHANNELS, STRIDE32_BLOCK};
    let (stem, last) = (STEM_CHANNELS as i64, LAST_CHANNELS as i64);
    let mut h = net.conv(&x, 3, stem, 3, 2, 1, true);
    let mut cin = stem;
    let mut head1 = None;
    let mut block = 0;
    for (t, c, n, s) in BLOCKS.map(|(t, c, n, s)| (t as i64, c as i64, n, s as i64)) {
        for i in 0..n {
            let (out, expansion) = net.inverted_residual(&h, cin, c, if i == 0 { s } else { 1 }, t);
            // The first stride-32 block's expansion (576 channels at 19x19) feeds the first head.
            if block == STRIDE32_BLOCK {
                head1 = expansion;
            }
            block += 1;
            h = out;
            cin = c;
        }
    }
    let head2 = net.conv(&h, cin, last, 1, 1, 1, true);
    let mut features = vec![(head1.expect("expansion layer"), 576), (head2.clone(), last)];
    let mut e = head2;
    let mut ec = last;
    for cout in [512, 256, 256, 64] {
        let a = net.conv(&e, ec, cout / 2, 1, 1, 1, true);
        let b = net.conv(&a, cout / 2, cout / 2, 3, 2, cout / 2, true);
        e = net.conv(&b, cout / 2, cout, 1, 1, 1, true);
        ec = cout;
        features.push((e.clone(), cout));
    }
    let per_loc: [usize; 6] = [3, 6, 6, 6, 6, 6];
    let (mut box_parts, mut cls_parts) = (Vec::new(), Vec::new());
    for ((f, c), &k) in features.iter().zip(&per_loc) {
        box_parts.push(net.head(f, *c, k as i64, 4));
        cls_parts.push(net.head(f, *c, k as i64, num_classes));
    }
    let mut g = net.g;
    let box_refs: Vec<&str> = box_parts.iter().map(String::as_str).collect();
    let cls_refs: Vec<&str> = cls_parts.iter().map(String::as_str).collect();
    g.node("Concat", &box_refs, "box_encodings", vec![("axis", Attr::Int(1))]);
    let logits = g.node("Concat", &cls_refs, "", vec![("axis", Attr::Int(1))]);
    let mut prior = vec![0.0f32; num_classes as usize];
    prior[0] = background_logit;
    let prior = g.initializer_f32("background_prior", &[1, 1, num_classes], &prior);
    g.node("Add", &[&logits, &prior], "class_predictions", vec![]);
    let anchors = detection_common::boxes::ssd_anchors(&[19, 10, 5, 3, 2, 1], &per_loc);
    let a = anchors.len() as i64;
    g.output(
        "box_encodings",
        data_type::FLOAT,
        &[Dim::Fixed(1), Dim::Fixed(a), Dim::Fixed(4)],
    );
    g.output(
        "class_predictions",
        data_type::FLOAT,
        &[Dim::Fixed(1), Dim::Fixed(a), Dim::Fixed(num_classes)],
    );
    let mut label_text = String::from("BACKGROUND\n");
    for l in labels {
        label_text.push_str(l);
        label_text.push('\n');
    }
    g.metadata(meta::KEY_FORMAT, "ssd-raw");
    g.metadata(meta::KEY_LABELS, &label_text);
    g.metadata(meta::KEY_ANCHORS, &format_anchors(&anchors));
    g.metadata(meta::KEY_BOX_ENCODING, "tf");
    g.metadata(meta::KEY_SCORE_ACTIVATION, "softmax");
    g.metadata(meta::KEY_INPUT_MEAN, "127.5,127.5,127.5");
    g.metadata(meta::KEY_INPUT_STD, "127.5,127.5,127.5");
    g.metadata(meta::KEY_CHANNEL_ORDER, "rgb");
    g.metadata(meta::KEY_INPUT_LAYOUT, "nchw");
    g.to_bytes()
}

#[cfg(test)]
mod tests {
    #[test]
    fn has_the_standard_anchor_count() {
        assert_eq!(
            detection_common::boxes::ssd_anchors(&[19, 10, 5, 3, 2, 1], &[3, 6, 6, 6, 6, 6]).len(),
            1917
        );
    }
}
