//! The `mobilenetdetect` element's settings: the property enums, defaults, and what the settings mean for
//! loading a model and for post-processing.

use detection_common::boxes::BoxEncoding;
use detection_common::metadata::{BoxOrder, ChannelOrder, InputLayout, ModelFormat, ScoreActivation, parse_triplet};
use detection_inference::preprocess::ResizeMode;
use detection_inference::providers::parse_providers;
use detection_inference::{ClassGate, LoadError, Model, ModelOptions, PostProcess};
use gst::glib;
use gst::prelude::*;
use std::path::PathBuf;

macro_rules! choice_enum {
    ($(#[$m:meta])* $name:ident, $gname:literal, $default:ident, $target:ty, { $($variant:ident = $nick:literal => $value:expr),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, glib::Enum, Default)]
        #[repr(u32)]
        #[enum_type(name = $gname)]
        pub enum $name {
            #[default]
            #[enum_value(name = "Auto: from the model's metadata and shapes", nick = "auto")]
            Auto,
            $(#[enum_value(name = $nick, nick = $nick)] $variant),+
        }

        impl $name {
            fn resolve(self) -> Option<$target> {
                match self {
                    Self::Auto => None,
                    $(Self::$variant => Some($value)),+
                }
            }
        }
    };
}

choice_enum!(ModelFormatChoice, "GstMobilenetDetectModelFormat", Auto, ModelFormat, {
    TfOd = "tf-od" => ModelFormat::TfOd,
    SsdRaw = "ssd-raw" => ModelFormat::SsdRaw,
    SsdDecoded = "ssd-decoded" => ModelFormat::SsdDecoded,
});
choice_enum!(BoxEncodingChoice, "GstMobilenetDetectBoxEncoding", Auto, BoxEncoding, {
    Tf = "tf" => BoxEncoding::Tf,
    Xywh = "xywh" => BoxEncoding::Xywh,
});
choice_enum!(ScoreActivationChoice, "GstMobilenetDetectScoreActivation", Auto, ScoreActivation, {
    Sigmoid = "sigmoid" => ScoreActivation::Sigmoid,
    Softmax = "softmax" => ScoreActivation::Softmax,
    Identity = "none" => ScoreActivation::None,
});
choice_enum!(BoxOrderChoice, "GstMobilenetDetectBoxOrder", Auto, BoxOrder, {
    Xyxy = "xyxy" => BoxOrder::Xyxy,
    Yxyx = "yxyx" => BoxOrder::Yxyx,
});
choice_enum!(InputLayoutChoice, "GstMobilenetDetectInputLayout", Auto, InputLayout, {
    Nchw = "nchw" => InputLayout::Nchw,
    Nhwc = "nhwc" => InputLayout::Nhwc,
});
choice_enum!(ChannelOrderChoice, "GstMobilenetDetectChannelOrder", Auto, ChannelOrder, {
    Rgb = "rgb" => ChannelOrder::Rgb,
    Bgr = "bgr" => ChannelOrder::Bgr,
});

#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, glib::Enum, Default)]
#[repr(u32)]
#[enum_type(name = "GstMobilenetDetectResize")]
pub enum ResizeChoice {
    #[default]
    #[enum_value(name = "Stretch: scale each axis to the model input", nick = "stretch")]
    Stretch,
    #[enum_value(name = "Letterbox: keep the aspect ratio and pad", nick = "letterbox")]
    Letterbox,
}

impl ResizeChoice {
    pub(super) fn mode(self) -> ResizeMode {
        match self {
            Self::Stretch => ResizeMode::Stretch,
            Self::Letterbox => ResizeMode::Letterbox,
        }
    }
}

/// Whose boxes the element's are.
#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, glib::Enum, Default)]
#[repr(u32)]
#[enum_type(name = "GstMobilenetDetectRole")]
pub enum RoleChoice {
    #[default]
    #[enum_value(
        name = "Detector: its boxes are the detections that trackers, overlays, JSON and captures read",
        nick = "detector"
    )]
    Detector,
    #[enum_value(
        name = "Reference: a second model beside the deployed one (e.g. a teacher); its boxes are attached as \
                'reference' and read only where asked for (detectioncapture select=disagreement, source=reference)",
        nick = "reference"
    )]
    Reference,
}

/// How frames and inference keep pace with each other.
#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, glib::Enum, Default)]
#[repr(u32)]
#[enum_type(name = "GstMobilenetDetectMode")]
pub enum ModeChoice {
    #[default]
    #[enum_value(
        name = "In order: every inferred frame waits for its own detections; the stream runs at the model's pace",
        nick = "in-order"
    )]
    InOrder,
    #[enum_value(
        name = "Live: frames pass at once, at the source's pace; inference runs beside the stream on the newest frame and every frame carries the newest finished detections (inference-pts says which frame they were computed on)",
        nick = "live"
    )]
    Live,
}

pub(super) const DEFAULT_SCORE_THRESHOLD: f32 = 0.5;
pub(super) const DEFAULT_IOU_THRESHOLD: f32 = 0.45;
pub(super) const DEFAULT_MAX_DETECTIONS: u32 = 100;
pub(super) const DEFAULT_INTERVAL: u32 = 1;
pub(super) const DEFAULT_PROVIDERS: &str = "cpu";
pub(super) const DEFAULT_INFLIGHT: u32 = 1;
pub(super) const MAX_INFLIGHT: u32 = 16;
pub(super) const DEFAULT_WATCH_INTERVAL_MS: u32 = 30_000;

#[derive(Debug, Clone)]
pub(super) struct Settings {
    pub(super) model: Option<String>,
    pub(super) model_format: ModelFormatChoice,
    pub(super) anchors: Option<String>,
    pub(super) box_encoding: BoxEncodingChoice,
    pub(super) score_activation: ScoreActivationChoice,
    pub(super) box_order: BoxOrderChoice,
    pub(super) input_layout: InputLayoutChoice,
    pub(super) channel_order: ChannelOrderChoice,
    pub(super) input_mean: Option<String>,
    pub(super) input_std: Option<String>,
    pub(super) labels: Option<String>,
    pub(super) execution_provider: String,
    pub(super) threads: u32,
    pub(super) inflight: u32,
    pub(super) mode: ModeChoice,
    pub(super) role: RoleChoice,
    pub(super) resize: ResizeChoice,
    pub(super) score_threshold: f32,
    pub(super) iou_threshold: f32,
    pub(super) max_detections: u32,
    pub(super) classes: String,
    pub(super) class_thresholds: String,
    pub(super) interval: u32,
    pub(super) post_messages: bool,
    pub(super) watch_model: bool,
    /// How often `watch-model` asks object storage whether an s3:// model changed, in milliseconds.
    pub(super) watch_interval: u32,
    /// Endpoint and credentials for an s3:// model.
    pub(super) s3: crate::fleet::S3Properties,
    /// The device's identity for a release manifest, and where its verdicts go.
    pub(super) release: super::release::ReleaseProperties,
    /// The tiled mode's grid and overlap.
    pub(super) tiles: crate::tiling::TileProperties,
    /// Bumped on every change of the post-processing filters, so the streaming thread rebuilds its class gate.
    pub(super) filter_version: u64,
    /// Bumped on every change of a setting that needs a reload: a failed load only restores the running
    /// model's settings when nothing changed since it started.
    pub(super) model_version: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            model: None,
            model_format: Default::default(),
            anchors: None,
            box_encoding: Default::default(),
            score_activation: Default::default(),
            box_order: Default::default(),
            input_layout: Default::default(),
            channel_order: Default::default(),
            input_mean: None,
            input_std: None,
            labels: None,
            execution_provider: DEFAULT_PROVIDERS.into(),
            threads: 0,
            inflight: DEFAULT_INFLIGHT,
            mode: ModeChoice::InOrder,
            role: RoleChoice::Detector,
            resize: Default::default(),
            score_threshold: DEFAULT_SCORE_THRESHOLD,
            iou_threshold: DEFAULT_IOU_THRESHOLD,
            max_detections: DEFAULT_MAX_DETECTIONS,
            classes: String::new(),
            class_thresholds: String::new(),
            interval: DEFAULT_INTERVAL,
            post_messages: false,
            watch_model: false,
            watch_interval: DEFAULT_WATCH_INTERVAL_MS,
            s3: Default::default(),
            release: Default::default(),
            tiles: Default::default(),
            filter_version: 0,
            model_version: 0,
        }
    }
}

fn non_empty_path(s: &Option<String>) -> Option<PathBuf> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(PathBuf::from)
}

impl Settings {
    pub(super) fn model_options(&self) -> Result<ModelOptions, LoadError> {
        let triplet = |name: &str, v: &Option<String>| -> Result<Option<[f32; 3]>, LoadError> {
            match v.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
                None => Ok(None),
                Some(s) => parse_triplet(s)
                    .map(Some)
                    .map_err(|e| LoadError::Settings(format!("{name}: {e}"))),
            }
        };
        Ok(ModelOptions {
            path: non_empty_path(&self.model).unwrap_or_default(),
            format: self.model_format.resolve(),
            anchors_file: non_empty_path(&self.anchors),
            box_encoding: self.box_encoding.resolve(),
            score_activation: self.score_activation.resolve(),
            box_order: self.box_order.resolve(),
            layout: self.input_layout.resolve(),
            channel_order: self.channel_order.resolve(),
            mean: triplet("input-mean", &self.input_mean)?,
            std: triplet("input-std", &self.input_std)?,
            labels_file: non_empty_path(&self.labels),
            providers: parse_providers(&self.execution_provider).map_err(LoadError::Settings)?,
            threads: self.threads,
            // Set by the loader when a shadow model shares the cores.
            no_spinning: false,
        })
    }

    /// The class gate and NMS for `model` (its labels resolve class names).
    pub(super) fn post_process(&self, model: &Model) -> Result<PostProcess, String> {
        Ok(PostProcess {
            gate: ClassGate::new(
                self.score_threshold,
                &self.classes,
                &self.class_thresholds,
                &model.labels,
            )?,
            iou_threshold: self.iou_threshold,
            max_detections: self.max_detections as usize,
        })
    }
}

/// The element's properties, with their ranges, defaults and documentation.
pub(super) fn param_specs() -> Vec<glib::ParamSpec> {
    vec![
        glib::ParamSpecString::builder("model")
            .nick("Model")
            .blurb("Path of the ONNX model, or of a release manifest (…/release.json: the model it assigns to device-id, see 'mobilenet-trainer rollout'), or s3://BUCKET/KEY (downloaded into $XDG_CACHE_HOME/mobilenetdetect/models; S3 settings from AWS_* or the endpoint-uri, region, access-key, ... properties). Setting it while playing loads the new model in the background and swaps it in between two frames; a failed load keeps the old model and posts a warning")
            .mutable_playing()
            .build(),
        glib::ParamSpecEnum::builder::<ModelFormatChoice>("model-format")
            .nick("Model format")
            .blurb("Output convention of the model: tf-od (TF Object Detection API), ssd-raw (box encodings + logits + anchors), ssd-decoded (boxes + scores); auto detects it from the model")
            .mutable_playing()
            .build(),
        glib::ParamSpecString::builder("anchors")
            .nick("Anchors file")
            .blurb("ssd-raw: file with one anchor per line, 'cy cx h w' normalised (default: embedded in the model metadata)")
            .mutable_playing()
            .build(),
        glib::ParamSpecEnum::builder::<BoxEncodingChoice>("box-encoding")
            .nick("Box encoding")
            .blurb("ssd-raw: tf (ty,tx,th,tw with scales 10,10,5,5) or xywh (tx,ty,tw,th with variances 0.1/0.2, pytorch-ssd)")
            .mutable_playing()
            .build(),
        glib::ParamSpecEnum::builder::<ScoreActivationChoice>("score-activation")
            .nick("Score activation")
            .blurb("ssd-raw: how class logits become scores (auto: model metadata, else sigmoid for tf and softmax for xywh encoding)")
            .mutable_playing()
            .build(),
        glib::ParamSpecEnum::builder::<BoxOrderChoice>("box-order")
            .nick("Box order")
            .blurb("ssd-decoded: corner order of the boxes output (auto: model metadata, else xyxy)")
            .mutable_playing()
            .build(),
        glib::ParamSpecEnum::builder::<InputLayoutChoice>("input-layout")
            .nick("Input layout")
            .blurb("Layout of the model input (auto: model metadata, else from its shape)")
            .mutable_playing()
            .build(),
        glib::ParamSpecEnum::builder::<ChannelOrderChoice>("channel-order")
            .nick("Channel order")
            .blurb("Channel order of the model input (auto: model metadata, else rgb)")
            .mutable_playing()
            .build(),
        glib::ParamSpecString::builder("input-mean")
            .nick("Input mean")
            .blurb("Per-channel mean subtracted from 0-255 pixels, 'm0,m1,m2' or one value; the tensor gets (pixel - mean) / std (default: model metadata, else 127.5 for float inputs)")
            .mutable_playing()
            .build(),
        glib::ParamSpecString::builder("input-std")
            .nick("Input std")
            .blurb("Per-channel divisor, 's0,s1,s2' or one value (default: model metadata, else 127.5 for float inputs)")
            .mutable_playing()
            .build(),
        glib::ParamSpecString::builder("labels")
            .nick("Labels file")
            .blurb("File with one label per line (a leading BACKGROUND line is handled); default: model metadata, else class ids")
            .mutable_playing()
            .build(),
        glib::ParamSpecString::builder("execution-provider")
            .nick("Execution providers")
            .blurb("Ordered, comma-separated list of ONNX Runtime execution providers to try: cpu, cuda, tensorrt, openvino. An unavailable one falls back to the next with a warning")
            .default_value(Some(DEFAULT_PROVIDERS))
            .mutable_ready()
            .build(),
        glib::ParamSpecString::builder("active-execution-provider")
            .nick("Active execution provider")
            .blurb("The execution provider the loaded model runs on")
            .read_only()
            .build(),
        glib::ParamSpecString::builder("metrics-address")
            .nick("Metrics address")
            .blurb("HOST:PORT where the process serves every element's counters for Prometheus (GET /metrics), like the MOBILENETDETECT_METRICS_ADDRESS environment variable; one endpoint per process")
            .mutable_ready()
            .build(),
        glib::ParamSpecUInt::builder("threads")
            .nick("Threads")
            .blurb("ONNX Runtime intra-op threads (0: ONNX Runtime's default)")
            .maximum(1024)
            .default_value(0)
            .mutable_ready()
            .build(),
        glib::ParamSpecUInt::builder("inflight")
            .nick("Frames in flight")
            .blurb("How many frames are inferred at once, on one ONNX Runtime session with 'threads' threads each; the next frame is preprocessed meanwhile and frames leave in order, each with its own detections. On 2 cores, inflight=2 threads=1 gets the most frames/s; 1 holds no frame back")
            .minimum(1)
            .maximum(MAX_INFLIGHT)
            .default_value(DEFAULT_INFLIGHT)
            .mutable_ready()
            .build(),
        glib::ParamSpecEnum::builder_with_default("role", RoleChoice::Detector)
            .nick("Role")
            .blurb("detector: the pipeline's detections; reference: a second model run beside the deployed one (e.g. a teacher), its boxes attached as 'reference' for detectioncapture select=disagreement or source=reference")
            .mutable_ready()
            .build(),
        glib::ParamSpecEnum::builder_with_default("mode", ModeChoice::InOrder)
            .nick("Mode")
            .blurb("in-order: each inferred frame waits for its detections (a live source slower than the model falls behind); live: frames never wait, inference takes the newest frame whenever it is free, and the element adds no latency")
            .mutable_ready()
            .build(),
        glib::ParamSpecEnum::builder_with_default("resize", ResizeChoice::Stretch)
            .nick("Resize")
            .blurb("How frames are fitted into a fixed-size model input: stretch, or letterbox (keep the aspect ratio, pad)")
            .mutable_playing()
            .build(),
        glib::ParamSpecFloat::builder("score-threshold")
            .nick("Score threshold")
            .blurb("Minimum confidence of a reported detection")
            .minimum(0.0)
            .maximum(1.0)
            .default_value(DEFAULT_SCORE_THRESHOLD)
            .mutable_playing()
            .build(),
        glib::ParamSpecFloat::builder("iou-threshold")
            .nick("IoU threshold")
            .blurb("Class-aware non-maximum suppression: a box overlapping a better one of its class by more than this is dropped")
            .minimum(0.0)
            .maximum(1.0)
            .default_value(DEFAULT_IOU_THRESHOLD)
            .mutable_playing()
            .build(),
        glib::ParamSpecUInt::builder("max-detections")
            .nick("Maximum detections")
            .blurb("Maximum number of detections per frame")
            .minimum(1)
            .maximum(10000)
            .default_value(DEFAULT_MAX_DETECTIONS)
            .mutable_playing()
            .build(),
        glib::ParamSpecString::builder("classes")
            .nick("Classes")
            .blurb("Only report these classes: comma-separated label names or class ids (empty: all)")
            .mutable_playing()
            .build(),
        glib::ParamSpecString::builder("class-thresholds")
            .nick("Per-class thresholds")
            .blurb("Per-class score thresholds overriding score-threshold, e.g. 'person=0.6,car=0.3' (names or ids)")
            .mutable_playing()
            .build(),
        glib::ParamSpecUInt::builder("interval")
            .nick("Interval")
            .blurb("Run the model on every Nth frame; frames in between carry the latest detections (live mode: at most every Nth frame)")
            .minimum(1)
            .maximum(10000)
            .default_value(DEFAULT_INTERVAL)
            .mutable_playing()
            .build(),
        glib::ParamSpecBoolean::builder("watch-model")
            .nick("Watch model")
            .blurb("Reload the model, without stopping, when its file is replaced (write the new model elsewhere and rename it over the old one) or, for an s3:// model, when the object changes (polled every watch-interval; a failed or partial download keeps the running model and warns)")
            .default_value(false)
            .mutable_ready()
            .build(),
        glib::ParamSpecUInt::builder("watch-interval")
            .nick("Watch interval")
            .blurb("How often watch-model polls an s3:// model or manifest, in milliseconds (one HEAD request each; a local file is checked every 200 ms); also how often a verdict is published")
            .minimum(100)
            .maximum(86_400_000)
            .default_value(DEFAULT_WATCH_INTERVAL_MS)
            .mutable_ready()
            .build(),
        glib::ParamSpecBoolean::builder("post-messages")
            .nick("Post messages")
            .blurb("Post an element message 'mobilenetdetect' with the detections of every inferred frame")
            .default_value(false)
            .mutable_playing()
            .build(),
    ]
    .into_iter()
    .chain(crate::fleet::S3Properties::specs())
    .chain(super::release::ReleaseProperties::specs())
    .chain(crate::tiling::TileProperties::specs(
        "each is scaled to the model's input (small objects keep their pixels) and inferred, all on the one session (inflight runs at once), and their detections are joined across tile borders",
    ))
    .collect()
}

/// The per-frame subset of the settings, copied out under the lock.
pub(super) struct FrameSettings {
    pub(super) resize: ResizeMode,
    pub(super) tiles: detection_inference::tiles::TileGrid,
    pub(super) interval: u32,
    pub(super) post_messages: bool,
}
