//! Loading a detector through ONNX Runtime, working out its input and output conventions from the user's
//! options, the model's metadata and its graph, and running it on a prepared tensor.

use crate::decode::Decoder;
use crate::outputs::{describe_outlets, detect_format, find_output, pick_box_and_score_outputs, shape_of};
use crate::postprocess::PostProcess;
use crate::preprocess::{TensorSpec, TensorType};
use crate::providers::{Provider, register_providers};
use crate::runtime;
use detection_common::Detection;
use detection_common::boxes::{BoxEncoding, parse_anchors, read_anchors_file};
use detection_common::labels::Labels;
use detection_common::metadata::{self as meta, BoxOrder, ChannelOrder, InputLayout, ModelFormat, ScoreActivation};
use ort::AsPointer;
use ort::session::Session;
use ort::value::{DynValue, TensorElementType, TensorRef};
use std::ffi::CString;
use std::fmt;
use std::path::PathBuf;
use std::ptr::NonNull;
use std::sync::{Arc, Condvar, Mutex, Weak};

/// The most outputs a detector may have (the TF Object Detection API layout has four).
const MAX_OUTPUTS: usize = 8;

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
    /// ONNX Runtime's intra-op threads sleep between runs instead of spinning: for two sessions taking turns on
    /// the same cores (a canary's candidate and its stable model in shadow), where each one's spinning threads
    /// would slow the other's run (measured: a shadow run at 1 frame in 10 cost 30 % of frames/s with
    /// spinning, see benchmarks/shadow_cost).
    pub no_spinning: bool,
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

/// A loaded detector. Several users (elements on several streams, several requests of one element) share one
/// through [`Model::shared`] and [`Model::detect`] takes `&self`: runs take turns on the one session unless
/// users allow more at once ([`Model::allow_runs_at_once`], CPU provider only).
pub struct Model {
    session: Session,
    runs: RunSlots,
    input_name: CString,
    output_names: Vec<CString>,
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

fn meta_parse<T>(value: Option<&String>, key: &str, parse: impl Fn(&str) -> Option<T>) -> Result<Option<T>, LoadError> {
    match value {
        None => Ok(None),
        Some(v) => parse(v)
            .map(Some)
            .ok_or_else(|| LoadError::Unsupported(format!("model metadata {key}='{v}' is not a valid value"))),
    }
}

/// Models in use in this process, by what was loaded: the options and the files' identities (a replaced file
/// is another model).
/// One slot per key: a load holds only its own slot, so two streams asking for the same model load it once
/// while a stream asking for another model is not held up.
static SHARED: Mutex<Vec<(String, Slot)>> = Mutex::new(Vec::new());

/// A model in use by someone, or none (a `Weak` that no longer upgrades).
type Slot = Arc<Mutex<Weak<Model>>>;

/// What identifies a loaded model: the options and, for each file, its inode, size and modification time.
fn share_key(opts: &ModelOptions) -> String {
    use std::os::unix::fs::MetadataExt;
    let file = |p: &Option<PathBuf>| {
        p.as_ref()
            .and_then(|p| std::fs::metadata(p).ok())
            .map(|m| (m.ino(), m.len(), m.mtime(), m.mtime_nsec()))
    };
    format!(
        "{opts:?} {:?} {:?} {:?}",
        file(&Some(opts.path.clone())),
        file(&opts.anchors_file),
        file(&opts.labels_file)
    )
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
        if opts.no_spinning {
            builder = builder
                .with_intra_op_spinning(false)
                .map_err(|e| LoadError::Runtime(format!("cannot turn off thread spinning: {e}")))?;
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

        let c_name = |n: &str| {
            CString::new(n).map_err(|_| unsupported(format!("the name of input/output '{n}' contains a NUL byte")))
        };
        let input_name = c_name(session.inputs()[0].name())?;
        let output_names = session
            .outputs()
            .iter()
            .map(|o| c_name(o.name()))
            .collect::<Result<Vec<_>, _>>()?;
        if output_names.len() > MAX_OUTPUTS {
            return Err(unsupported(format!(
                "{} outputs; a detector has at most {MAX_OUTPUTS}",
                output_names.len()
            )));
        }
        Ok(Model {
            session,
            runs: RunSlots::new(concurrent_provider(provider)),
            input_name,
            output_names,
            path: path.clone(),
            format,
            input,
            decoder,
            labels,
            provider,
            warnings,
        })
    }

    /// The model these options describe, shared with every other user in the process that asked for the same
    /// one (same options, same files): one session in memory however many streams run it.
    pub fn shared(opts: &ModelOptions) -> Result<Arc<Model>, LoadError> {
        let key = share_key(opts);
        let slot = {
            let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
            // Slots nobody uses any more; one being loaded (locked) or handed out (referenced) stays.
            shared.retain(|(_, slot)| {
                Arc::strong_count(slot) > 1 || slot.try_lock().map(|m| m.strong_count() > 0).unwrap_or(true)
            });
            match shared.iter().find(|(k, _)| *k == key) {
                Some((_, slot)) => slot.clone(),
                None => {
                    let slot = Arc::new(Mutex::new(Weak::new()));
                    shared.push((key, slot.clone()));
                    slot
                }
            }
        };
        // Held while loading, so that two streams starting together with this model load it once.
        let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(model) = slot.upgrade() {
            return Ok(model);
        }
        let model = Arc::new(Model::load(opts)?);
        *slot = Arc::downgrade(&model);
        Ok(model)
    }

    /// Runs the model on a prepared tensor (`f32s` or `u8s`, as `spec.dtype` says) and puts its detections
    /// after `post` (class gate, NMS) into `out`, boxes normalised to the tensor. Nothing is allocated per
    /// call beyond what ONNX Runtime does.
    pub fn detect(
        &self,
        spec: &TensorSpec,
        f32s: &[f32],
        u8s: &[u8],
        post: &PostProcess,
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
                self.run(t.ptr())
            }
            TensorType::U8 => {
                let t = TensorRef::from_array_view((shape, u8s)).map_err(|e| format!("input tensor: {e}"))?;
                self.run(t.ptr())
            }
        }
        .map_err(|e| format!("inference failed: {e}"))?;
        let outputs = &outputs[..self.output_names.len()];
        // Borrowed views of the outputs: nothing is copied or allocated per frame here.
        let get = |i: usize| -> Result<(&[i64], &[f32]), String> {
            if i >= outputs.len() {
                return Err(format!("the model has no output {i}"));
            }
            outputs[i]
                .as_ref()
                .ok_or_else(|| format!("ONNX Runtime returned no value for output {i}"))?
                .try_extract_tensor::<f32>()
                .map(|(s, d)| (&s[..], d))
                .map_err(|e| format!("output {i} is not a float tensor: {e}"))
        };
        post.run(&self.decoder, get, out)
    }

    /// Whether runs on this model can happen at once from several threads (CPU provider) or always take turns.
    pub fn concurrent_runs(&self) -> bool {
        self.runs.concurrent
    }

    /// Lets up to `n` runs happen at once (never fewer than any user asked for; a no-op where runs must take
    /// turns). Each run in flight needs its own intermediate tensors, so several streams sharing a model at
    /// one request each keep the memory of one.
    pub fn allow_runs_at_once(&self, n: usize) {
        if self.runs.concurrent {
            let mut s = self.runs.state.lock().unwrap_or_else(|e| e.into_inner());
            s.allowed = s.allowed.max(n.max(1));
        }
    }

    /// One run of the session on `input`, all outputs, through ONNX Runtime's C API. ONNX Runtime documents
    /// `Run` as callable concurrently on one session, and the CPU provider keeps no per-run state in it; `ort`
    /// still takes `&mut self` for every run because some accelerator providers are not safe that way: on
    /// those, runs take turns (`runs`). This is what lets one session serve several requests and streams.
    fn run(&self, input: *const ort::sys::OrtValue) -> Result<[Option<DynValue>; MAX_OUTPUTS], String> {
        let _slot = self.runs.acquire();
        let input_names = [self.input_name.as_ptr()];
        let inputs = [input];
        let mut output_names = [std::ptr::null(); MAX_OUTPUTS];
        for (slot, name) in output_names.iter_mut().zip(&self.output_names) {
            *slot = name.as_ptr();
        }
        let n = self.output_names.len();
        let mut raw: [*mut ort::sys::OrtValue; MAX_OUTPUTS] = [std::ptr::null_mut(); MAX_OUTPUTS];
        // SAFETY: the session, names and input outlive the call; `raw` has room for the `n` outputs asked for,
        // and ONNX Runtime allocates each with the session's allocator (handed to `from_ptr` below).
        let status = unsafe {
            (ort::api().Run)(
                self.session.ptr().cast_mut(),
                std::ptr::null(),
                input_names.as_ptr(),
                inputs.as_ptr(),
                1,
                output_names.as_ptr(),
                n,
                raw.as_mut_ptr(),
            )
        };
        // Take ownership of whatever came back before looking at the status, so nothing leaks.
        let allocator = self.session.allocator();
        let outputs = raw.map(|p| {
            NonNull::new(p).map(|p| {
                // SAFETY: a value ONNX Runtime just returned to us, owned from here on.
                unsafe { DynValue::from_ptr(p, Some(allocator)) }
            })
        });
        // SAFETY: `status` is what `Run` returned; ownership passes to the result.
        unsafe { ort::Error::result_from_status(status) }.map_err(|e| e.to_string())?;
        Ok(outputs)
    }
}

/// Providers on which concurrent runs of one session are known to be safe.
fn concurrent_provider(provider: &str) -> bool {
    provider == crate::providers::Provider::Cpu.as_str()
}

/// How many runs may happen at once on a session, and how many do.
struct RunSlots {
    concurrent: bool,
    state: Mutex<SlotCount>,
    freed: Condvar,
}

struct SlotCount {
    allowed: usize,
    running: usize,
}

impl RunSlots {
    fn new(concurrent: bool) -> Self {
        Self {
            concurrent,
            state: Mutex::new(SlotCount { allowed: 1, running: 0 }),
            freed: Condvar::new(),
        }
    }

    fn acquire(&self) -> RunSlot<'_> {
        // A panic in another user's run leaves the session as usable as before: go on anyway.
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        while s.running >= s.allowed {
            s = self.freed.wait(s).unwrap_or_else(|e| e.into_inner());
        }
        s.running += 1;
        RunSlot(self)
    }
}

struct RunSlot<'a>(&'a RunSlots);

impl Drop for RunSlot<'_> {
    fn drop(&mut self) {
        self.0.state.lock().unwrap_or_else(|e| e.into_inner()).running -= 1;
        self.0.freed.notify_one();
    }
}
