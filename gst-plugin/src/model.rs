//! Loading a detector through ONNX Runtime, working out its input and output conventions, running it on a
//! prepared tensor and decoding its outputs into detections.

use crate::preprocess::{TensorSpec, TensorType};
use crate::runtime;
use detection_common::boxes::{Anchor, BoxEncoding, decode_box, parse_anchors, read_anchors_file};
use detection_common::labels::{ClassRef, Labels, parse_class_list, parse_class_thresholds};
use detection_common::metadata::{self as meta, BoxOrder, ChannelOrder, InputLayout, ModelFormat, ScoreActivation};
use detection_common::nms::push_candidate;
use detection_common::{BBox, Detection};
use ort::ep::ExecutionProvider;
use ort::session::Session;
use ort::value::{TensorElementType, TensorRef, ValueType};
use std::fmt;
use std::path::PathBuf;

/// Execution providers the element can ask ONNX Runtime for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    Cpu,
    Cuda,
    TensorRt,
    OpenVino,
}

impl Provider {
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "cpu" => Some(Self::Cpu),
            "cuda" => Some(Self::Cuda),
            "tensorrt" | "trt" => Some(Self::TensorRt),
            "openvino" => Some(Self::OpenVino),
            _ => None,
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::Cuda => "cuda",
            Self::TensorRt => "tensorrt",
            Self::OpenVino => "openvino",
        }
    }
}

pub fn parse_providers(s: &str) -> Result<Vec<Provider>, String> {
    let list: Vec<Provider> = s
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            Provider::parse(p)
                .ok_or_else(|| format!("unknown execution provider '{p}' (known: cpu, cuda, tensorrt, openvino)"))
        })
        .collect::<Result<_, _>>()?;
    if list.is_empty() {
        Ok(vec![Provider::Cpu])
    } else {
        Ok(list)
    }
}

/// Everything the user can say about how to load and read a model; `None` means "from the model, else default".
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ModelOptions {
    pub path: PathBuf,
    pub format: Option<ModelFormat>,
    pub anchors_file: Option<PathBuf>,
    pub box_encoding: Option<BoxEncoding>,
    pub score_activation: Option<ScoreActivation>,
    pub box_order: Option<BoxOrder>,
    pub layout: Option<InputLayout>,
    pub channel_order: Option<ChannelOrder>,
    pub mean: Option<[f32; 3]>,
    pub std: Option<[f32; 3]>,
    pub labels_file: Option<PathBuf>,
    pub providers: Vec<Provider>,
    pub threads: u32,
}

/// Why a model could not be loaded; each maps to a GStreamer error domain.
#[derive(Debug, Clone, PartialEq)]
pub enum LoadError {
    /// A property value is wrong or missing.
    Settings(String),
    /// ONNX Runtime is missing or broken.
    Runtime(String),
    /// A file cannot be read.
    Open(String),
    /// The file is not an ONNX model ONNX Runtime can load.
    NotOnnx(String),
    /// A valid model whose inputs/outputs the element cannot use.
    Unsupported(String),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Settings(s) | Self::Runtime(s) | Self::Open(s) | Self::NotOnnx(s) | Self::Unsupported(s) => {
                f.write_str(s)
            }
        }
    }
}

/// The model's image input.
#[derive(Debug, Clone, PartialEq)]
pub struct InputDesc {
    pub name: String,
    pub dtype: TensorType,
    pub layout: InputLayout,
    /// `None`: dynamic, the tensor is fed at the frame's size.
    pub size: Option<(u32, u32)>,
    pub channel_order: ChannelOrder,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl InputDesc {
    pub fn tensor_spec(&self, frame_width: u32, frame_height: u32) -> TensorSpec {
        let (width, height) = self.size.unwrap_or((frame_width, frame_height));
        TensorSpec {
            width,
            height,
            layout: self.layout,
            dtype: self.dtype,
            channel_order: self.channel_order,
            mean: self.mean,
            std: self.std,
        }
    }
}

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

/// Per-class score thresholds after the `classes` filter: `INFINITY` means the class is never reported.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassGate {
    per_class: Vec<f32>,
    fallback: f32,
}

impl ClassGate {
    pub fn new(score_threshold: f32, classes: &str, class_thresholds: &str, labels: &Labels) -> Result<Self, String> {
        let allowed: Vec<usize> = parse_class_list(classes)
            .iter()
            .map(|c| c.resolve(labels).map_err(|e| format!("classes: {e}")))
            .collect::<Result<_, _>>()?;
        let overrides: Vec<(usize, f32)> = parse_class_thresholds(class_thresholds)
            .map_err(|e| format!("class-thresholds: {e}"))?
            .into_iter()
            .map(|(c, t): (ClassRef, f32)| {
                c.resolve(labels)
                    .map(|id| (id, t))
                    .map_err(|e| format!("class-thresholds: {e}"))
            })
            .collect::<Result<_, _>>()?;
        let len = [labels.len()]
            .into_iter()
            .chain(allowed.iter().map(|i| i + 1))
            .chain(overrides.iter().map(|(i, _)| i + 1))
            .max()
            .unwrap_or(0);
        let fallback = if allowed.is_empty() {
            score_threshold
        } else {
            f32::INFINITY
        };
        let mut per_class = vec![fallback; len];
        for &id in &allowed {
            per_class[id] = score_threshold;
        }
        for &(id, t) in &overrides {
            if per_class[id].is_finite() {
                per_class[id] = t;
            }
        }
        Ok(Self { per_class, fallback })
    }

    #[inline]
    pub fn threshold(&self, class_id: usize) -> f32 {
        *self.per_class.get(class_id).unwrap_or(&self.fallback)
    }
}

/// A loaded detector.
pub struct Model {
    session: Session,
    pub path: PathBuf,
    pub format: ModelFormat,
    pub input: InputDesc,
    decoder: Decoder,
    pub labels: Labels,
    /// The execution provider actually in use.
    pub provider: &'static str,
    /// Things the user should hear about (e.g. provider fallbacks).
    pub warnings: Vec<String>,
}

impl fmt::Debug for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Model")
            .field("path", &self.path)
            .field("format", &self.format)
            .field("input", &self.input)
            .field("decoder", &self.decoder)
            .field("provider", &self.provider)
            .finish()
    }
}

fn describe_outlets(session: &Session) -> String {
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

fn shape_of(o: &ort::value::Outlet) -> Vec<i64> {
    o.dtype().tensor_shape().map(|s| s.to_vec()).unwrap_or_default()
}

fn lname(o: &ort::value::Outlet) -> String {
    o.name().to_ascii_lowercase()
}

fn find_output(session: &Session, keys: &[&str]) -> Option<usize> {
    session
        .outputs()
        .iter()
        .position(|o| keys.iter().any(|k| lname(o).contains(k)))
}

fn meta_parse<T>(value: Option<&String>, key: &str, parse: impl Fn(&str) -> Option<T>) -> Result<Option<T>, LoadError> {
    match value {
        None => Ok(None),
        Some(v) => parse(v)
            .map(Some)
            .ok_or_else(|| LoadError::Unsupported(format!("model metadata {key}='{v}' is not a valid value"))),
    }
}

impl Model {
    pub fn load(opts: &ModelOptions) -> Result<Model, LoadError> {
        let path = &opts.path;
        if path.as_os_str().is_empty() {
            return Err(LoadError::Settings(
                "no model set: set the 'model' property to an ONNX file".into(),
            ));
        }
        let shown = path.display();
        // Read errors are reported as such, before ONNX Runtime gets to say something vaguer.
        std::fs::File::open(path).map_err(|e| LoadError::Open(format!("cannot open model file {shown}: {e}")))?;
        if path.is_dir() {
            return Err(LoadError::Open(format!(
                "model {shown} is a directory, not an ONNX file"
            )));
        }
        let env = runtime::environment().map_err(LoadError::Runtime)?;

        let mut warnings = Vec::new();
        let mut builder = Session::builder(env)
            .map_err(|e| LoadError::Runtime(format!("cannot create an ONNX Runtime session builder: {e}")))?;
        if opts.threads > 0 {
            builder = builder
                .with_intra_threads(opts.threads as usize)
                .map_err(|e| LoadError::Runtime(format!("cannot set {} threads: {e}", opts.threads)))?;
        }
        let provider = register_providers(&mut builder, &opts.providers, &mut warnings);
        let session = builder
            .commit_from_file(path)
            .map_err(|e| LoadError::NotOnnx(format!("{shown} is not an ONNX model ONNX Runtime can load: {e}")))?;

        let metadata = session.metadata().ok();
        let custom = |key: &str| metadata.as_ref().and_then(|m| m.custom(key));
        let (
            m_format,
            m_labels,
            m_layout,
            m_order,
            m_mean,
            m_std,
            m_size,
            m_box_order,
            m_encoding,
            m_activation,
            m_anchors,
        ) = (
            custom(meta::KEY_FORMAT),
            custom(meta::KEY_LABELS),
            custom(meta::KEY_INPUT_LAYOUT),
            custom(meta::KEY_CHANNEL_ORDER),
            custom(meta::KEY_INPUT_MEAN),
            custom(meta::KEY_INPUT_STD),
            custom(meta::KEY_INPUT_SIZE),
            custom(meta::KEY_BOX_ORDER),
            custom(meta::KEY_BOX_ENCODING),
            custom(meta::KEY_SCORE_ACTIVATION),
            custom(meta::KEY_ANCHORS),
        );
        drop(metadata);
        let unsupported = |why: String| {
            LoadError::Unsupported(format!("{shown}: {why}. The model has {}", describe_outlets(&session)))
        };

        // Which output convention.
        let format = match opts.format {
            Some(f) => f,
            None => match meta_parse(m_format.as_ref(), meta::KEY_FORMAT, ModelFormat::parse)? {
                Some(f) => f,
                None => {
                    detect_format(&session, opts.anchors_file.is_some() || m_anchors.is_some()).ok_or_else(|| {
                        unsupported(
                        "cannot tell the output format from the model's outputs; set model-format=tf-od, ssd-raw or \
                         ssd-decoded"
                            .into(),
                    )
                    })?
                }
            },
        };

        // The image input.
        if session.inputs().len() != 1 {
            return Err(unsupported(format!(
                "expected exactly one image input, found {}",
                session.inputs().len()
            )));
        }
        let inp = &session.inputs()[0];
        let dtype = match inp.dtype().tensor_type() {
            Some(TensorElementType::Float32) => TensorType::F32,
            Some(TensorElementType::Uint8) => TensorType::U8,
            other => {
                return Err(unsupported(format!(
                    "input '{}' has element type {other:?}; only float32 and uint8 are supported",
                    inp.name()
                )));
            }
        };
        let ishape = shape_of(inp);
        if ishape.len() != 4 || (ishape[0] > 1) {
            return Err(unsupported(format!(
                "input '{}' must be a 4-D image tensor with batch 1, found {ishape:?}",
                inp.name()
            )));
        }
        let layout = match opts.layout {
            Some(l) => l,
            None => match meta_parse(m_layout.as_ref(), meta::KEY_INPUT_LAYOUT, InputLayout::parse)? {
                Some(l) => l,
                None if ishape[1] == 3 => InputLayout::Nchw,
                None if ishape[3] == 3 => InputLayout::Nhwc,
                None if format == ModelFormat::TfOd => InputLayout::Nhwc,
                None => {
                    return Err(unsupported(format!(
                        "cannot tell the layout of input '{}' {ishape:?}; set input-layout=nchw or nhwc",
                        inp.name()
                    )));
                }
            },
        };
        let (c_dim, h_dim, w_dim) = match layout {
            InputLayout::Nchw => (ishape[1], ishape[2], ishape[3]),
            InputLayout::Nhwc => (ishape[3], ishape[1], ishape[2]),
        };
        if c_dim != 3 && c_dim != -1 {
            return Err(unsupported(format!(
                "input '{}' has {c_dim} channels in {layout} layout; 3 are needed",
                inp.name()
            )));
        }
        let size = if h_dim > 0 && w_dim > 0 {
            match (u32::try_from(w_dim), u32::try_from(h_dim)) {
                (Ok(w), Ok(h)) if meta::input_size_ok(w, h) => Some((w, h)),
                _ => {
                    return Err(unsupported(format!(
                        "input '{}' is {w_dim}x{h_dim} pixels; each side must be 1..={}",
                        inp.name(),
                        meta::MAX_INPUT_SIDE
                    )));
                }
            }
        } else if h_dim == 0 || w_dim == 0 {
            return Err(unsupported(format!(
                "input '{}' has a zero-size side {ishape:?}",
                inp.name()
            )));
        } else {
            meta_parse(m_size.as_ref(), meta::KEY_INPUT_SIZE, meta::parse_size)?
        };
        let channel_order = match opts.channel_order {
            Some(c) => c,
            None => {
                meta_parse(m_order.as_ref(), meta::KEY_CHANNEL_ORDER, ChannelOrder::parse)?.unwrap_or(ChannelOrder::Rgb)
            }
        };
        let triplet = |v: Option<&String>, key: &str| meta_parse(v, key, |s| meta::parse_triplet(s).ok());
        let (mean, std) = match dtype {
            TensorType::U8 => ([0.0; 3], [1.0; 3]),
            TensorType::F32 => (
                opts.mean
                    .or(triplet(m_mean.as_ref(), meta::KEY_INPUT_MEAN)?)
                    .unwrap_or([127.5; 3]),
                opts.std
                    .or(triplet(m_std.as_ref(), meta::KEY_INPUT_STD)?)
                    .unwrap_or([127.5; 3]),
            ),
        };
        if std.contains(&0.0) {
            return Err(LoadError::Settings(format!(
                "input-std {std:?} has a zero: division by zero"
            )));
        }
        let input = InputDesc {
            name: inp.name().to_string(),
            dtype,
            layout,
            size,
            channel_order,
            mean,
            std,
        };

        // Labels.
        let labels = match &opts.labels_file {
            Some(f) => Labels::read_file(f).map_err(LoadError::Open)?,
            None => m_labels.as_deref().map(Labels::parse).unwrap_or_default(),
        };

        let decoder = match format {
            ModelFormat::TfOd => {
                let boxes = find_output(&session, &["detection_boxes"]);
                let scores = find_output(&session, &["detection_scores"]);
                let classes = find_output(&session, &["detection_classes"]);
                let num = find_output(&session, &["num_detections"]);
                match (boxes, scores, classes) {
                    (Some(boxes), Some(scores), Some(classes)) => Decoder::TfOd { boxes, scores, classes, num },
                    _ => return Err(unsupported("a tf-od model needs outputs detection_boxes, detection_scores and detection_classes (num_detections optional)".into())),
                }
            }
            ModelFormat::SsdDecoded | ModelFormat::SsdRaw => {
                let (b, s) = pick_box_and_score_outputs(&session).ok_or_else(|| {
                    unsupported(format!(
                        "a {format} model needs a box output [1,A,4] and a score output [1,A,C] or [1,A]"
                    ))
                })?;
                if format == ModelFormat::SsdDecoded {
                    let order = match opts.box_order {
                        Some(o) => o,
                        None => meta_parse(m_box_order.as_ref(), meta::KEY_BOX_ORDER, BoxOrder::parse)?
                            .unwrap_or(BoxOrder::Xyxy),
                    };
                    Decoder::Decoded {
                        boxes: b,
                        scores: s,
                        order,
                    }
                } else {
                    let anchors = match (&opts.anchors_file, &m_anchors) {
                        (Some(f), _) => read_anchors_file(f).map_err(|e| LoadError::Open(format!("anchors: {e}")))?,
                        (None, Some(text)) => parse_anchors(text, &format!("{shown} metadata {}", meta::KEY_ANCHORS))
                            .map_err(|e| LoadError::Unsupported(e.to_string()))?,
                        (None, None) => {
                            return Err(LoadError::Settings(format!(
                                "{shown} is an ssd-raw model without embedded anchors: set anchors=FILE (one 'cy cx h w' line per anchor)"
                            )));
                        }
                    };
                    let a = shape_of(&session.outputs()[b]).get(1).copied().unwrap_or(-1);
                    if a > 0 && a as usize != anchors.len() {
                        return Err(unsupported(format!(
                            "the model predicts {a} boxes but {} anchors were given",
                            anchors.len()
                        )));
                    }
                    let encoding = match opts.box_encoding {
                        Some(e) => e,
                        None => meta_parse(m_encoding.as_ref(), meta::KEY_BOX_ENCODING, BoxEncoding::parse)?
                            .unwrap_or(BoxEncoding::Tf),
                    };
                    let activation = match opts.score_activation {
                        Some(a) => a,
                        None => meta_parse(
                            m_activation.as_ref(),
                            meta::KEY_SCORE_ACTIVATION,
                            ScoreActivation::parse,
                        )?
                        .unwrap_or(match encoding {
                            BoxEncoding::Tf => ScoreActivation::Sigmoid,
                            BoxEncoding::Xywh => ScoreActivation::Softmax,
                        }),
                    };
                    Decoder::Raw {
                        encodings: b,
                        logits: s,
                        anchors,
                        encoding,
                        activation,
                    }
                }
            }
        };

        Ok(Model {
            session,
            path: path.clone(),
            format,
            input,
            decoder,
            labels,
            provider,
            warnings,
        })
    }

    /// Runs the model on a prepared tensor and appends every detection that passes `gate` to `out`
    /// (boxes normalised to the tensor, before NMS).
    pub fn infer(
        &mut self,
        spec: &TensorSpec,
        f32s: &[f32],
        u8s: &[u8],
        gate: &ClassGate,
        out: &mut Vec<Detection>,
    ) -> Result<(), String> {
        let (w, h) = (spec.width as usize, spec.height as usize);
        let shape = match spec.layout {
            InputLayout::Nchw => [1, 3, h, w],
            InputLayout::Nhwc => [1, h, w, 3],
        };
        let outputs = match spec.dtype {
            TensorType::F32 => {
                let t = TensorRef::from_array_view((shape, f32s)).map_err(|e| format!("input tensor: {e}"))?;
                self.session.run(ort::inputs![t])
            }
            TensorType::U8 => {
                let t = TensorRef::from_array_view((shape, u8s)).map_err(|e| format!("input tensor: {e}"))?;
                self.session.run(ort::inputs![t])
            }
        }
        .map_err(|e| format!("inference failed: {e}"))?;
        // Borrowed views of the outputs: nothing is copied or allocated per frame here.
        let get = |i: usize| -> Result<(&[i64], &[f32]), String> {
            if i >= outputs.len() {
                return Err(format!("the model has no output {i}"));
            }
            outputs[i]
                .try_extract_tensor::<f32>()
                .map(|(s, d)| (&s[..], d))
                .map_err(|e| format!("output {i} is not a float tensor: {e}"))
        };
        self.decoder.decode(get, gate, out)
    }
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

/// Picks the box output ([1,A,4]) and the score output among the model's outputs, by name first, then by shape.
fn pick_box_and_score_outputs(session: &Session) -> Option<(usize, usize)> {
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
fn detect_format(session: &Session, has_anchors: bool) -> Option<ModelFormat> {
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

/// Registers the first provider of `wanted` that works; returns its name (CPU when none does).
fn register_providers(
    builder: &mut ort::session::builder::SessionBuilder,
    wanted: &[Provider],
    warnings: &mut Vec<String>,
) -> &'static str {
    for p in wanted {
        let result: Result<(), String> = match p {
            Provider::Cpu => return "cpu",
            Provider::Cuda => try_register(builder, ort::ep::CUDA::default()),
            Provider::TensorRt => try_register(builder, ort::ep::TensorRT::default()),
            Provider::OpenVino => try_register(builder, ort::ep::OpenVINO::default()),
        };
        match result {
            Ok(()) => return p.as_str(),
            Err(e) => warnings.push(format!(
                "execution provider {} unavailable ({e}); trying the next one",
                p.as_str()
            )),
        }
    }
    if !wanted.contains(&Provider::Cpu) {
        warnings.push("no requested execution provider is available; running on cpu".into());
    }
    "cpu"
}

fn try_register<E: ExecutionProvider>(
    builder: &mut ort::session::builder::SessionBuilder,
    ep: E,
) -> Result<(), String> {
    match E::is_available() {
        Ok(true) => ep.register(builder).map_err(|e| e.to_string()),
        Ok(false) => Err("not in this ONNX Runtime build".into()),
        Err(e) => Err(e.to_string()),
    }
}
