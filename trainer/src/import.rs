//! Reading one of our exported ONNX models back into burn, so training can fine-tune the model a pipeline runs
//! now (`train --init model.onnx`). The export folds each BatchNorm into its convolution; the import puts the
//! folded weight and bias back into the convolution and an identity BatchNorm (gamma 1, beta = bias, mean 0,
//! variance 1 - eps), which computes exactly the same function and trains from there.

use crate::checkpoint::CheckpointInfo;
use crate::import_pytorch_ssd::PytorchSsdGraph;
use crate::import_tfod::{is_tfod, load_tfod};
use crate::model::{ConvBn, SsdLite, SsdLiteConfig, Variant};
use burn::module::{Param, RunningState};
use burn::nn::conv::Conv2d;
use burn::tensor::{Device, Tensor, TensorData};
use detection_common::boxes::Anchor;
use detection_common::labels::Labels;
use detection_common::metadata as meta;
use detection_common::onnx::{ModelProto, TensorProto};
use prost::Message;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The metadata key the exporter writes with the width multiplier (the architecture cannot be read off the
/// channel counts alone: several widths round to the same stem).
pub const KEY_WIDTH: &str = "mobilenet-trainer.width";
/// The metadata key with the layout variant when it is not the trainer's own (an imported TensorFlow
/// model's).
pub const KEY_VARIANT: &str = "mobilenet-trainer.variant";

struct Convs<'a> {
    path: &'a Path,
    /// (weight, bias) of every Conv node, in graph order — the order the exporter walks the model in.
    list: Vec<(&'a TensorProto, &'a TensorProto)>,
    next: usize,
    device: Device,
}

pub(crate) fn floats(t: &TensorProto) -> Vec<f32> {
    if !t.float_data.is_empty() {
        return t.float_data.clone();
    }
    t.raw_data
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

impl Convs<'_> {
    fn take(&mut self, conv: &Conv2d) -> Result<(Tensor<4>, Vec<f32>), String> {
        let (w, b) = self.list.get(self.next).ok_or_else(|| {
            format!(
                "{}: fewer convolutions than the architecture has ({})",
                self.path.display(),
                self.next
            )
        })?;
        self.next += 1;
        let dims = conv.weight.val().dims();
        let got: Vec<usize> = w.dims.iter().map(|&d| d as usize).collect();
        if got != dims {
            return Err(format!(
                "{}: convolution {} has shape {got:?}, the architecture needs {dims:?}",
                self.path.display(),
                self.next - 1
            ));
        }
        let (weight, bias) = (floats(w), floats(b));
        if weight.len() != dims.iter().product::<usize>() || bias.len() != dims[0] {
            return Err(format!(
                "{}: convolution {} holds {} weights and {} biases, its shape {dims:?} needs {} and {}",
                self.path.display(),
                self.next - 1,
                weight.len(),
                bias.len(),
                dims.iter().product::<usize>(),
                dims[0]
            ));
        }
        let weight = Tensor::from_data(TensorData::new(weight, dims), &self.device);
        Ok((weight, bias))
    }

    fn conv_bn(&mut self, m: &mut ConvBn) -> Result<(), String> {
        let (weight, bias) = self.take(&m.conv)?;
        set_folded(m, weight, &bias, &self.device);
        Ok(())
    }

    fn conv(&mut self, c: &mut Conv2d) -> Result<(), String> {
        let (weight, bias) = self.take(c)?;
        set_conv(c, weight, &bias, &self.device);
        Ok(())
    }
}

/// What importing another project's model needs besides the file.
pub struct ImportOptions<'a> {
    /// Class names (foreground, in the model's class order); `None` when the caller has none (an error).
    pub labels: Option<&'a Labels>,
    /// The model's anchors (normalised `cy cx h w`, its output order); `None`: its project's default generator.
    pub anchors: Option<&'a [Anchor]>,
    /// The side of the network's input (300 for TF-OD's SSDLite-MobileNetV2 configurations and pytorch-ssd).
    pub input_size: usize,
}

/// The class names of an imported model with `num_classes` outputs (background included), from the names the
/// user gave: an ONNX file from TensorFlow or PyTorch carries none.
pub(crate) fn model_labels(path: &Path, given: Option<&Labels>, num_classes: usize) -> Result<Labels, String> {
    match given {
        Some(l) if l.len() == num_classes => Ok(l.clone()),
        // Training data with more classes: the model's are its first ones, the rest get fresh heads.
        Some(l) if l.len() > num_classes => {
            let names = &l.foreground()[..num_classes - 1];
            eprintln!(
                "note: {} names no classes: its {} taken as the data's first ({})",
                path.display(),
                num_classes - 1,
                names.join(", ")
            );
            Ok(Labels::parse(&names.join("\n")))
        }
        Some(l) => Err(format!(
            "{}: the model has {} classes, the labels name {} ({}): give one name per class, in its order",
            path.display(),
            num_classes - 1,
            l.len() - 1,
            l.foreground().join(", ")
        )),
        None => Err(format!(
            "{}: the model carries no class names: give them with --labels FILE (one per line, {} for this model)",
            path.display(),
            num_classes - 1
        )),
    }
}

/// Takes the anchors given for an imported model (its output order) as the shapes of `config`, refusing a list
/// whose centres are not where `config` places them.
pub(crate) fn apply_given_anchors(
    path: &Path,
    config: &mut SsdLiteConfig,
    anchors: Option<&[Anchor]>,
) -> Result<(), String> {
    let Some(anchors) = anchors else { return Ok(()) };
    let shapes = config
        .shapes_from_anchors(anchors)
        .map_err(|e| format!("{}: the anchors given for it: {e}", path.display()))?;
    config.anchor_shapes = Some(shapes);
    let off_grid = config
        .anchors()
        .iter()
        .zip(anchors)
        .any(|(ours, given)| (ours.cy - given.cy).abs() > 1e-4 || (ours.cx - given.cx).abs() > 1e-4);
    if off_grid {
        return Err(format!(
            "{}: its anchors are not centred where a {} {}x{} model's are",
            path.display(),
            config.variant.name(),
            config.input_size,
            config.input_size
        ));
    }
    Ok(())
}

/// Refuses a configuration read from `path` that describes no network this trainer can build.
pub(crate) fn check_config(path: &Path, config: &SsdLiteConfig) -> Result<(), String> {
    config
        .check()
        .map_err(|e| format!("{}: cannot fine-tune this model: {e}", path.display()))
}

/// Puts a convolution with its BatchNorm folded in (`weight`, `bias`) into `m`: the weight into the convolution,
/// the bias into an identity BatchNorm.
pub(crate) fn set_folded(m: &mut ConvBn, weight: Tensor<4>, bias: &[f32], device: &Device) {
    let n = bias.len();
    m.conv.weight = Param::from_tensor(weight);
    let eps = m.bn.epsilon as f32;
    m.bn.gamma = Param::from_tensor(Tensor::ones([n], device));
    m.bn.beta = Param::from_tensor(Tensor::from_data(TensorData::new(bias.to_vec(), [n]), device));
    m.bn.running_mean = RunningState::new(Tensor::zeros([n], device));
    m.bn.running_var = RunningState::new(Tensor::full([n], 1.0 - eps, device));
}

/// Puts `weight` and `bias` into a convolution that has a bias of its own (a head's last layer).
pub(crate) fn set_conv(c: &mut Conv2d, weight: Tensor<4>, bias: &[f32], device: &Device) {
    let n = bias.len();
    c.weight = Param::from_tensor(weight);
    c.bias = Some(Param::from_tensor(Tensor::from_data(
        TensorData::new(bias.to_vec(), [n]),
        device,
    )));
}

/// Loads an ONNX model as a trainable model: one `mobilenet-trainer` exported, a TF Object Detection API
/// SSDLite-MobileNetV2, or a pytorch-ssd `mb2-ssd-lite` (`opts` says what the last two need besides the file).
pub fn load_onnx(path: &Path, opts: &ImportOptions, device: &Device) -> Result<(SsdLite, CheckpointInfo), String> {
    let model = read_onnx(path)?;
    if model.metadata_props.iter().any(|p| p.key == KEY_WIDTH) {
        exported(path, &model, device)
    } else if is_tfod(&model) {
        load_tfod(path, &model, opts, device)
    } else {
        let graph = PytorchSsdGraph::find(path, &model).map_err(|why| {
            format!(
                "{}: not a model mobilenet-trainer exported (no {KEY_WIDTH} metadata), nor a TF Object Detection API \
                 SSDLite-MobileNetV2 (no FeatureExtractor/MobilenetV2 convolutions), nor a pytorch-ssd mb2-ssd-lite \
                 ({why}): these are the ONNX models it can fine-tune",
                path.display()
            )
        })?;
        graph.load(opts, device)
    }
}

/// Loads `path`, an ONNX model `mobilenet-trainer` exported, as a trainable model with its labels and sizes.
pub fn load_exported(path: &Path, device: &Device) -> Result<(SsdLite, CheckpointInfo), String> {
    exported(path, &read_onnx(path)?, device)
}

fn read_onnx(path: &Path) -> Result<ModelProto, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    ModelProto::decode(bytes.as_slice()).map_err(|e| format!("{}: not an ONNX model: {e}", path.display()))
}

/// `model`, read from `path`, as `load_exported` returns it.
fn exported(path: &Path, model: &ModelProto, device: &Device) -> Result<(SsdLite, CheckpointInfo), String> {
    let props: HashMap<&str, &str> = model
        .metadata_props
        .iter()
        .map(|p| (p.key.as_str(), p.value.as_str()))
        .collect();
    let get = |key: &str| {
        props.get(key).copied().ok_or_else(|| {
            format!(
                "{}: not a model exported by mobilenet-trainer (no {key} metadata); fine-tune from a checkpoint instead",
                path.display()
            )
        })
    };
    let width: f32 = get(KEY_WIDTH)?
        .parse()
        .map_err(|_| format!("{}: bad {KEY_WIDTH}", path.display()))?;
    let (w, h) = meta::parse_size(get(meta::KEY_INPUT_SIZE)?)
        .ok_or_else(|| format!("{}: bad {}", path.display(), meta::KEY_INPUT_SIZE))?;
    if w != h {
        return Err(format!("{}: input {w}x{h} is not square", path.display()));
    }
    let labels = Labels::parse(get(meta::KEY_LABELS)?);
    let mut config = SsdLiteConfig {
        num_classes: labels.len(),
        width,
        input_size: w as usize,
        anchor_shapes: None,
        variant: match props.get(KEY_VARIANT) {
            None => Variant::Trainer,
            Some(name) => Variant::parse(name).ok_or_else(|| format!("{}: bad {KEY_VARIANT}", path.display()))?,
        },
    };
    crate::import::check_config(path, &config)?;
    // Exports from before anchor fitting carry no anchors: they used SSD's shapes.
    if let Some(text) = props.get(meta::KEY_ANCHORS) {
        let source = format!("{} metadata {}", path.display(), meta::KEY_ANCHORS);
        let anchors = detection_common::boxes::parse_anchors(text, &source).map_err(|e| e.to_string())?;
        let shapes = config
            .shapes_from_anchors(&anchors)
            .map_err(|e| format!("{source}: {e}"))?;
        if anchors != config.anchors() {
            config.anchor_shapes = Some(shapes);
        }
    }
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| format!("{}: the model has no graph", path.display()))?;
    let inits: HashMap<&str, &TensorProto> = graph.initializer.iter().map(|t| (t.name.as_str(), t)).collect();
    let mut list = Vec::new();
    for node in graph.node.iter().filter(|n| n.op_type == "Conv") {
        let find = |i: usize| {
            node.input
                .get(i)
                .and_then(|name| inits.get(name.as_str()).copied())
                .ok_or_else(|| format!("{}: a Conv node without constant weights", path.display()))
        };
        list.push((find(1)?, find(2)?));
    }
    let mut convs = Convs {
        path,
        list,
        next: 0,
        device: device.clone(),
    };
    let mut m = config.init(device);
    convs.conv_bn(&mut m.backbone.stem)?;
    for block in &mut m.backbone.blocks {
        if let Some(e) = &mut block.expand {
            convs.conv_bn(e)?;
        }
        convs.conv_bn(&mut block.depthwise)?;
        convs.conv_bn(&mut block.project)?;
    }
    convs.conv_bn(&mut m.backbone.last)?;
    for extra in &mut m.extras {
        convs.conv_bn(&mut extra.reduce)?;
        convs.conv_bn(&mut extra.depthwise)?;
        convs.conv_bn(&mut extra.expand)?;
    }
    for head in m.loc_heads.iter_mut().chain(m.cls_heads.iter_mut()) {
        convs.conv_bn(&mut head.depthwise)?;
        convs.conv(&mut head.pointwise)?;
    }
    if convs.next != convs.list.len() {
        return Err(format!(
            "{}: {} convolutions, the architecture has {}",
            path.display(),
            convs.list.len(),
            convs.next
        ));
    }
    Ok((m, CheckpointInfo::imported(config, labels)))
}

/// `mobilenet-trainer import`: `model` (any ONNX model `load_onnx` takes) as `output/checkpoint.bpk`; returns
/// what was written, for the user.
pub fn import_to_checkpoint(
    model: &Path,
    labels: Option<PathBuf>,
    anchors: Option<PathBuf>,
    input_size: usize,
    output: &Path,
) -> Result<String, String> {
    let read = |p: &Path| std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()));
    let labels = labels.map(|p| read(&p).map(|text| Labels::parse(&text))).transpose()?;
    let anchors = anchors
        .map(|p| {
            let text = read(&p)?;
            detection_common::boxes::parse_anchors(&text, &p.display().to_string()).map_err(|e| e.to_string())
        })
        .transpose()?;
    let opts = ImportOptions {
        labels: labels.as_ref(),
        anchors: anchors.as_deref(),
        input_size,
    };
    let device = crate::device::cpu();
    let (m, info) = load_onnx(model, &opts, &device)?;
    std::fs::create_dir_all(output).map_err(|e| format!("cannot create {}: {e}", output.display()))?;
    let path = output.join("checkpoint.bpk");
    crate::checkpoint::save(&m, &info, &path)?;
    let c = &info.config;
    Ok(format!(
        "wrote {} from {}: width {}, input {}x{}, layout {}, classes: {}\nfine-tune it with: mobilenet-trainer train --init {} --data ...",
        path.display(),
        model.display(),
        c.width,
        c.input_size,
        c.input_size,
        c.variant.name(),
        info.labels.foreground().join(", "),
        path.display()
    ))
}
