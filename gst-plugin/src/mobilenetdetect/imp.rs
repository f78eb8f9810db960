use detection_common::boxes::BoxEncoding;
use detection_common::metadata::{BoxOrder, ChannelOrder, InputLayout, ModelFormat, ScoreActivation, parse_triplet};
use detection_common::{BBox, Detection};
use detection_inference::preprocess::{Geometry, Preprocessor, ResizeMode};
use detection_inference::providers::parse_providers;
use detection_inference::{ClassGate, LoadError, Model, ModelOptions, PostProcess};
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::prelude::*;
use gst_video::subclass::prelude::*;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "mobilenetdetect",
        gst::DebugColorFlags::empty(),
        Some("MobileNet-SSD detector"),
    )
});

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

const DEFAULT_SCORE_THRESHOLD: f32 = 0.5;
const DEFAULT_IOU_THRESHOLD: f32 = 0.45;
const DEFAULT_MAX_DETECTIONS: u32 = 100;
const DEFAULT_INTERVAL: u32 = 1;
const DEFAULT_PROVIDERS: &str = "cpu";

#[derive(Debug, Clone)]
struct Settings {
    model: Option<String>,
    model_format: ModelFormatChoice,
    anchors: Option<String>,
    box_encoding: BoxEncodingChoice,
    score_activation: ScoreActivationChoice,
    box_order: BoxOrderChoice,
    input_layout: InputLayoutChoice,
    channel_order: ChannelOrderChoice,
    input_mean: Option<String>,
    input_std: Option<String>,
    labels: Option<String>,
    execution_provider: String,
    threads: u32,
    resize: ResizeChoice,
    score_threshold: f32,
    iou_threshold: f32,
    max_detections: u32,
    classes: String,
    class_thresholds: String,
    interval: u32,
    post_messages: bool,
    watch_model: bool,
    /// Bumped on every change of the post-processing filters, so the streaming thread rebuilds its class gate.
    filter_version: u64,
    /// Bumped on every change of a setting that needs a reload: a failed load only restores the running
    /// model's settings when nothing changed since it started.
    model_version: u64,
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
            resize: Default::default(),
            score_threshold: DEFAULT_SCORE_THRESHOLD,
            iou_threshold: DEFAULT_IOU_THRESHOLD,
            max_detections: DEFAULT_MAX_DETECTIONS,
            classes: String::new(),
            class_thresholds: String::new(),
            interval: DEFAULT_INTERVAL,
            post_messages: false,
            watch_model: false,
            filter_version: 0,
            model_version: 0,
        }
    }
}

fn non_empty_path(s: &Option<String>) -> Option<PathBuf> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(PathBuf::from)
}

impl Settings {
    fn model_options(&self) -> Result<ModelOptions, LoadError> {
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
        })
    }

    /// The class gate and NMS for `model` (its labels resolve class names).
    fn post_process(&self, model: &Model) -> Result<PostProcess, String> {
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

/// A detection mapped to the frame, ready to become metadata.
#[derive(Debug, Clone)]
struct FrameDetection {
    class_id: u32,
    score: f32,
    /// Normalised to the frame (0..1).
    norm: BBox,
    /// Integer pixel rectangle (x, y, width, height).
    rect: (u32, u32, u32, u32),
}

struct State {
    model: Model,
    post: PostProcess,
    /// The `filter_version` `post` was built from.
    post_version: u64,
    info: Option<gst_video::VideoInfo>,
    pre: Option<Preprocessor>,
    frame_index: u64,
    candidates: Vec<Detection>,
    latest: Vec<FrameDetection>,
    /// Label per class id, computed once per model (ids without a label are shown as "class-N").
    label_names: Vec<String>,
}

fn label_names(model: &Model) -> Vec<String> {
    (0..model.labels.len().max(1))
        .map(|i| {
            model
                .labels
                .name(i)
                .map(str::to_string)
                .unwrap_or_else(|| format!("class-{i}"))
        })
        .collect()
}

impl State {
    fn label(&self, class_id: u32) -> std::borrow::Cow<'_, str> {
        match self.label_names.get(class_id as usize) {
            Some(l) if class_id > 0 => l.into(),
            _ => format!("class-{class_id}").into(),
        }
    }
}

/// A model loaded off the streaming thread, waiting to be swapped in between two frames.
struct PendingModel {
    generation: u64,
    model: Model,
    post: PostProcess,
    settings: Settings,
}

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into())
}

#[derive(Default)]
pub struct MobilenetDetect {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
    pending: Arc<Mutex<Option<PendingModel>>>,
    /// Incremented for each requested (re)load; a finished load whose generation is stale is dropped.
    load_generation: AtomicU64,
    active_provider: Mutex<String>,
    watcher: Mutex<Option<ModelWatcher>>,
    /// Between start and stop. Setters and the watcher read this instead of locking the state, which the
    /// streaming thread holds during inference (a setter called from a synchronous bus handler must not wait).
    running: std::sync::atomic::AtomicBool,
    /// The labels of the running model, to check a class filter set while running.
    model_labels: Mutex<Option<Arc<detection_common::labels::Labels>>>,
    /// The model-related settings of the running model: restored when a reload with new ones fails.
    active_settings: Mutex<Option<Settings>>,
    loader: Mutex<Loader>,
}

/// The background model loader thread, joined by `stop` so no load outlives the element's run.
#[derive(Default)]
struct Loader {
    thread: Option<std::thread::JoinHandle<()>>,
    /// Whether the thread is still taking requests (it loads again when the settings changed meanwhile).
    busy: bool,
}

/// Something to post once the streaming thread has let go of the state lock: a handler that runs
/// synchronously on the bus may call back into the element.
enum Post {
    Notify(&'static str),
    Message(gst::Message),
    /// A warning in the library domain: `Init` for model loading, `Settings` for a refused setting.
    Warning(gst::LibraryError, String),
    Error(gst::ErrorMessage),
}

/// Polls the model file while `watch-model` is on; a replaced file (new inode, size or mtime, stable over two
/// polls so a file still being written is not loaded) triggers the same background reload as setting `model`.
struct ModelWatcher {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

const WATCH_POLL: std::time::Duration = std::time::Duration::from_millis(200);

/// What identifies one version of the model file.
fn file_signature(path: &str) -> Option<(String, u64, u64, i64, i64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((path.to_string(), m.ino(), m.len(), m.mtime(), m.mtime_nsec()))
}

fn load_error_message(e: &LoadError) -> gst::ErrorMessage {
    match e {
        LoadError::Settings(s) => gst::error_msg!(gst::LibraryError::Settings, ["{}", s]),
        LoadError::Runtime(s) => gst::error_msg!(gst::LibraryError::Init, ["{}", s]),
        LoadError::Open(s) => gst::error_msg!(gst::ResourceError::OpenRead, ["{}", s]),
        LoadError::NotOnnx(s) => gst::error_msg!(gst::StreamError::WrongType, ["{}", s]),
        LoadError::Unsupported(s) => gst::error_msg!(gst::StreamError::Format, ["{}", s]),
    }
}

impl MobilenetDetect {
    fn load(settings: &Settings) -> Result<(Model, PostProcess), LoadError> {
        let opts = settings.model_options()?;
        let model = Model::load(&opts)?;
        let post = settings.post_process(&model).map_err(LoadError::Settings)?;
        Ok((model, post))
    }

    /// Records a model that is now in use; what the user should hear about goes to `posts`.
    fn announce_model(&self, model: &Model, settings: Settings, posts: &mut Vec<Post>) {
        gst::info!(CAT, imp = self, "loaded {:?}", model);
        for w in &model.warnings {
            gst::warning!(CAT, imp = self, "{}", w);
            posts.push(Post::Warning(gst::LibraryError::Init, w.clone()));
        }
        *self.active_provider.lock().unwrap() = model.provider.to_string();
        *self.model_labels.lock().unwrap() = Some(Arc::new(model.labels.clone()));
        *self.active_settings.lock().unwrap() = Some(settings);
    }

    fn post(&self, posts: Vec<Post>) {
        for p in posts {
            match p {
                Post::Notify(property) => self.obj().notify(property),
                Post::Message(m) => {
                    let _ = self.obj().post_message(m);
                }
                Post::Warning(domain, w) => gst::element_imp_warning!(self, domain, ("{}", w)),
                Post::Error(e) => self.post_error_message(e),
            }
        }
    }

    /// After a failed reload: the model-related settings go back to those of the running model, so the
    /// properties say what actually runs.
    fn restore_active_settings(&self, failed: &Settings) {
        let Some(active) = self.active_settings.lock().unwrap().clone() else {
            return;
        };
        let mut s = self.settings.lock().unwrap();
        if s.model_version != failed.model_version {
            // Set again since that load started: the newer value is loaded next.
            return;
        }
        let keep = Settings {
            model_version: s.model_version,
            resize: s.resize,
            score_threshold: s.score_threshold,
            iou_threshold: s.iou_threshold,
            max_detections: s.max_detections,
            classes: s.classes.clone(),
            class_thresholds: s.class_thresholds.clone(),
            interval: s.interval,
            post_messages: s.post_messages,
            watch_model: s.watch_model,
            filter_version: s.filter_version,
            ..active
        };
        *s = keep;
    }

    /// Starts loading the model described by the current settings in the background when running. One loader
    /// thread at a time: requests that arrive while it works are coalesced, and it loads again with the newest
    /// settings before it hands a model over.
    fn reload_if_running(&self) {
        if !self.running.load(Ordering::SeqCst) {
            return;
        }
        let mut loader = self.loader.lock().unwrap();
        self.load_generation.fetch_add(1, Ordering::SeqCst);
        if loader.busy {
            return;
        }
        let element = self.obj().clone();
        match std::thread::Builder::new()
            .name("mobilenetdetect-load".into())
            .spawn(move || Self::load_in_background(element))
        {
            Ok(thread) => {
                // An earlier loader has handed its result over and is ending: it needs no join.
                loader.thread = Some(thread);
                loader.busy = true;
            }
            Err(e) => {
                drop(loader);
                gst::element_imp_warning!(
                    self,
                    gst::CoreError::Thread,
                    ("cannot start the model loader thread: {}", e)
                )
            }
        }
    }

    /// The loader thread's body: loads until the settings it loaded are the newest requested, then hands the
    /// model over to the streaming thread (or warns and keeps the running model).
    fn load_in_background(element: super::MobilenetDetect) {
        let imp = element.imp();
        let mut loader = loop {
            let generation = imp.load_generation.load(Ordering::SeqCst);
            let settings = imp.settings.lock().unwrap().clone();
            // A panic while loading (a broken file tripping a library) must not take the process down.
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Self::load(&settings)));
            let loader = imp.loader.lock().unwrap();
            if imp.running.load(Ordering::SeqCst) && imp.load_generation.load(Ordering::SeqCst) != generation {
                gst::debug!(CAT, obj = element, "settings changed while loading, loading again");
                continue;
            }
            if !imp.running.load(Ordering::SeqCst) {
                break loader;
            }
            // The outcome is handed over under the loader lock, so no newer request can interleave; what is
            // posted waits until the lock is released.
            match result {
                Err(panic) => {
                    drop(loader);
                    gst::element_error!(
                        element,
                        gst::LibraryError::Failed,
                        (
                            "loading {} failed unexpectedly: {}",
                            settings.model.as_deref().unwrap_or(""),
                            panic_text(&panic)
                        )
                    );
                }
                Ok(Ok((model, post))) => {
                    gst::info!(
                        CAT,
                        obj = element,
                        "model {} ready, swapping it in at the next frame",
                        model.path.display()
                    );
                    *imp.pending.lock().unwrap() = Some(PendingModel {
                        generation,
                        model,
                        post,
                        settings,
                    });
                    break loader;
                }
                Ok(Err(e)) => {
                    gst::warning!(CAT, obj = element, "keeping the current model: {e}");
                    imp.restore_active_settings(&settings);
                    drop(loader);
                    gst::element_warning!(
                        element,
                        gst::LibraryError::Settings,
                        ("Keeping the current model: {}", e)
                    );
                }
            }
            // After a post (the lock was released): done unless a handler asked for another load meanwhile.
            let loader = imp.loader.lock().unwrap();
            if imp.running.load(Ordering::SeqCst) && imp.load_generation.load(Ordering::SeqCst) != generation {
                continue;
            }
            break loader;
        };
        // From here on a new request starts a new loader.
        loader.busy = false;
    }

    fn start_watcher(&self, initial_path: String) {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let weak = self.obj().downgrade();
        let flag = stop.clone();
        let spawned = std::thread::Builder::new()
            .name("mobilenetdetect-watch".into())
            .spawn(move || {
                let mut seen = file_signature(&initial_path);
                let mut candidate = None;
                while !flag.load(Ordering::SeqCst) {
                    std::thread::sleep(WATCH_POLL);
                    let Some(element) = weak.upgrade() else { break };
                    let imp = element.imp();
                    let path = imp.settings.lock().unwrap().model.clone().unwrap_or_default();
                    let current = file_signature(&path);
                    let same_path = current.as_ref().map(|c| &c.0) == seen.as_ref().map(|s| &s.0);
                    if current.is_some() && !same_path {
                        // The model property changed: that already reloaded.
                        seen = current;
                        candidate = None;
                    } else if current.is_none() || current == seen {
                        candidate = None;
                    } else if current == candidate {
                        gst::info!(CAT, obj = element, "{path} was replaced, reloading");
                        seen = current;
                        candidate = None;
                        imp.reload_if_running();
                    } else {
                        candidate = current;
                    }
                }
            });
        match spawned {
            Ok(thread) => *self.watcher.lock().unwrap() = Some(ModelWatcher { stop, thread }),
            Err(e) => gst::element_imp_warning!(self, gst::CoreError::Thread, ("cannot watch the model file: {}", e)),
        }
    }

    /// Swaps in a model loaded in the background, if one is ready.
    fn take_pending(&self, state: &mut State, posts: &mut Vec<Post>) {
        let Ok(mut pending) = self.pending.try_lock() else {
            return;
        };
        if let Some(p) = pending.take() {
            if p.generation != self.load_generation.load(Ordering::SeqCst) {
                return;
            }
            drop(pending);
            self.announce_model(&p.model, p.settings, posts);
            posts.push(Post::Notify("active-execution-provider"));
            state.label_names = label_names(&p.model);
            state.model = p.model;
            state.post = p.post;
            state.pre = None;
            state.latest.clear();
            posts.push(Post::Message(
                gst::message::Element::builder(
                    gst::Structure::builder("mobilenetdetect-model-changed")
                        .field("model", state.model.path.display().to_string())
                        .build(),
                )
                .src(&*self.obj())
                .build(),
            ));
        }
    }

    fn infer_frame(
        &self,
        state: &mut State,
        buf: &gst::BufferRef,
        settings: &FrameSettings,
    ) -> Result<(), (gst::ErrorMessage, gst::FlowError)> {
        let info = state.info.as_ref().ok_or_else(|| {
            (
                gst::error_msg!(
                    gst::CoreError::Negotiation,
                    ["no caps negotiated before the first buffer"]
                ),
                gst::FlowError::NotNegotiated,
            )
        })?;
        let negotiation = |e: String| {
            (
                gst::error_msg!(gst::CoreError::Negotiation, ["{}", e]),
                gst::FlowError::NotNegotiated,
            )
        };
        let (format, size, colorimetry) = crate::video::frame_shape(info).map_err(negotiation)?;
        let spec = state.model.input.tensor_spec(size.0, size.1);
        if !state
            .pre
            .as_ref()
            .is_some_and(|p| p.matches(format, size, colorimetry, &spec, settings.resize))
        {
            let pre = Preprocessor::new(format, size, colorimetry, spec, settings.resize).map_err(negotiation)?;
            state.pre = Some(pre);
        }
        let pre = state.pre.as_mut().expect("preprocessor was just set");
        let started = std::time::Instant::now();
        {
            let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buf, info).map_err(|_| {
                (
                    gst::error_msg!(
                        gst::CoreError::Failed,
                        ["cannot map the video frame for reading (buffer smaller than its caps or video meta say)"]
                    ),
                    gst::FlowError::Error,
                )
            })?;
            crate::video::frame(&frame).and_then(|f| pre.process(&f)).map_err(|e| {
                (
                    gst::error_msg!(gst::StreamError::Decode, ["{}", e]),
                    gst::FlowError::Error,
                )
            })?;
        }
        let preprocessed = std::time::Instant::now();
        state
            .model
            .detect(
                &pre.out.spec,
                &pre.out.f32s,
                &pre.out.u8s,
                &state.post,
                &mut state.candidates,
            )
            .map_err(|e| {
                (
                    gst::error_msg!(gst::StreamError::Failed, ["{}: {}", state.model.path.display(), e]),
                    gst::FlowError::Error,
                )
            })?;
        let inferred = std::time::Instant::now();
        let geometry: Geometry = pre.out.geometry;
        let (fw, fh) = (geometry.frame_width as f32, geometry.frame_height as f32);
        state.latest.clear();
        for d in &state.candidates {
            let px = geometry.to_frame(&d.bbox);
            let (x0, y0, x1, y1) = (px.x0.round(), px.y0.round(), px.x1.round(), px.y1.round());
            if x1 <= x0 || y1 <= y0 {
                continue;
            }
            state.latest.push(FrameDetection {
                class_id: d.class_id,
                score: d.score,
                norm: px.scale(1.0 / fw, 1.0 / fh),
                rect: (x0 as u32, y0 as u32, (x1 - x0) as u32, (y1 - y0) as u32),
            });
        }
        gst::log!(
            CAT,
            imp = self,
            "preprocess {:?}, inference {:?}, decode {:?}, {} detections",
            preprocessed - started,
            inferred - preprocessed,
            inferred.elapsed(),
            state.latest.len()
        );
        Ok(())
    }

    fn detections_message(&self, state: &State, buf: &gst::BufferRef) -> gst::Message {
        let info = state.info.as_ref();
        let detections = state.latest.iter().map(|d| {
            gst::Structure::builder(crate::roimeta::DETECTION)
                .field("label", state.label(d.class_id).as_ref())
                .field("class-id", d.class_id)
                .field("confidence", d.score as f64)
                .field("x", d.rect.0)
                .field("y", d.rect.1)
                .field("width", d.rect.2)
                .field("height", d.rect.3)
                .build()
                .to_send_value()
        });
        let s = gst::Structure::builder(super::MESSAGE_STRUCTURE)
            .field("timestamp", buf.pts().map(|t| t.nseconds()).unwrap_or(u64::MAX))
            .field("frame-width", info.map(|i| i.width()).unwrap_or(0))
            .field("frame-height", info.map(|i| i.height()).unwrap_or(0))
            .field("detections", gst::List::new(detections))
            .build();
        gst::message::Element::builder(s).src(&*self.obj()).build()
    }

    fn attach_metas(&self, state: &State, buf: &mut gst::BufferRef) {
        for d in &state.latest {
            let mut meta = gst_video::VideoRegionOfInterestMeta::add(buf, &state.label(d.class_id), d.rect);
            meta.add_param(
                gst::Structure::builder(crate::roimeta::DETECTION)
                    .field("label", state.label(d.class_id).as_ref())
                    .field("class-id", d.class_id)
                    .field("confidence", d.score as f64)
                    .field("x-min", d.norm.x0 as f64)
                    .field("y-min", d.norm.y0 as f64)
                    .field("x-max", d.norm.x1 as f64)
                    .field("y-max", d.norm.y1 as f64)
                    .build(),
            );
        }
        #[cfg(feature = "v1_24")]
        self.attach_analytics(state, buf);
    }

    #[cfg(feature = "v1_24")]
    fn attach_analytics(&self, state: &State, buf: &mut gst::BufferRef) {
        use gst_analytics::prelude::*;
        let mut rmeta = gst_analytics::AnalyticsRelationMeta::add(buf);
        for d in &state.latest {
            let quark = glib::Quark::from_str(state.label(d.class_id).as_ref());
            let _ = rmeta.add_od_mtd(
                quark,
                d.rect.0 as i32,
                d.rect.1 as i32,
                d.rect.2 as i32,
                d.rect.3 as i32,
                d.score,
            );
        }
    }
}

/// The per-frame subset of the settings, copied out under the lock.
struct FrameSettings {
    resize: ResizeMode,
    interval: u32,
    post_messages: bool,
}

#[glib::object_subclass]
impl ObjectSubclass for MobilenetDetect {
    const NAME: &'static str = "GstMobilenetDetect";
    type Type = super::MobilenetDetect;
    type ParentType = gst_video::VideoFilter;
}

impl ObjectImpl for MobilenetDetect {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecString::builder("model")
                    .nick("Model")
                    .blurb("Path of the ONNX model. Setting it while playing loads the new model in the background and swaps it in between two frames; a failed load keeps the old model and posts a warning")
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
                glib::ParamSpecUInt::builder("threads")
                    .nick("Threads")
                    .blurb("ONNX Runtime intra-op threads (0: ONNX Runtime's default)")
                    .maximum(1024)
                    .default_value(0)
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
                    .blurb("Run the model on every Nth frame; frames in between carry the latest detections")
                    .minimum(1)
                    .maximum(10000)
                    .default_value(DEFAULT_INTERVAL)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("watch-model")
                    .nick("Watch model")
                    .blurb("Reload the model, without stopping, when its file is replaced (write the new model elsewhere and rename it over the old one)")
                    .default_value(false)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("post-messages")
                    .nick("Post messages")
                    .blurb("Post an element message 'mobilenetdetect' with the detections of every inferred frame")
                    .default_value(false)
                    .mutable_playing()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        if let Err(e) = self.check_while_running(value, pspec) {
            gst::warning!(CAT, imp = self, "{e}");
            gst::element_imp_warning!(self, gst::LibraryError::Settings, ("{}; keeping the current value", e));
            return;
        }
        let mut settings = self.settings.lock().unwrap();
        let mut reload = true;
        match pspec.name() {
            "model" => settings.model = value.get().expect("type checked upstream"),
            "model-format" => settings.model_format = value.get().expect("type checked upstream"),
            "anchors" => settings.anchors = value.get().expect("type checked upstream"),
            "box-encoding" => settings.box_encoding = value.get().expect("type checked upstream"),
            "score-activation" => settings.score_activation = value.get().expect("type checked upstream"),
            "box-order" => settings.box_order = value.get().expect("type checked upstream"),
            "input-layout" => settings.input_layout = value.get().expect("type checked upstream"),
            "channel-order" => settings.channel_order = value.get().expect("type checked upstream"),
            "input-mean" => settings.input_mean = value.get().expect("type checked upstream"),
            "input-std" => settings.input_std = value.get().expect("type checked upstream"),
            "labels" => settings.labels = value.get().expect("type checked upstream"),
            "execution-provider" => {
                settings.execution_provider = value
                    .get::<Option<String>>()
                    .expect("type checked upstream")
                    .unwrap_or_else(|| DEFAULT_PROVIDERS.into())
            }
            "threads" => settings.threads = value.get().expect("type checked upstream"),
            other => {
                reload = false;
                match other {
                    "resize" => settings.resize = value.get().expect("type checked upstream"),
                    "score-threshold" => settings.score_threshold = value.get().expect("type checked upstream"),
                    "iou-threshold" => settings.iou_threshold = value.get().expect("type checked upstream"),
                    "max-detections" => settings.max_detections = value.get().expect("type checked upstream"),
                    "classes" => {
                        settings.classes = value
                            .get::<Option<String>>()
                            .expect("type checked upstream")
                            .unwrap_or_default()
                    }
                    "class-thresholds" => {
                        settings.class_thresholds = value
                            .get::<Option<String>>()
                            .expect("type checked upstream")
                            .unwrap_or_default()
                    }
                    "interval" => settings.interval = value.get().expect("type checked upstream"),
                    "post-messages" => settings.post_messages = value.get().expect("type checked upstream"),
                    "watch-model" => settings.watch_model = value.get().expect("type checked upstream"),
                    _ => unimplemented!("property {other}"),
                }
                settings.filter_version += 1;
            }
        }
        if reload {
            settings.model_version += 1;
        }
        gst::debug!(CAT, imp = self, "set {} to {:?}", pspec.name(), value);
        drop(settings);
        if reload {
            self.reload_if_running();
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = self.settings.lock().unwrap();
        match pspec.name() {
            "model" => s.model.to_value(),
            "model-format" => s.model_format.to_value(),
            "anchors" => s.anchors.to_value(),
            "box-encoding" => s.box_encoding.to_value(),
            "score-activation" => s.score_activation.to_value(),
            "box-order" => s.box_order.to_value(),
            "input-layout" => s.input_layout.to_value(),
            "channel-order" => s.channel_order.to_value(),
            "input-mean" => s.input_mean.to_value(),
            "input-std" => s.input_std.to_value(),
            "labels" => s.labels.to_value(),
            "execution-provider" => s.execution_provider.to_value(),
            "active-execution-provider" => {
                let p = self.active_provider.lock().unwrap();
                (!p.is_empty()).then(|| p.clone()).to_value()
            }
            "threads" => s.threads.to_value(),
            "resize" => s.resize.to_value(),
            "score-threshold" => s.score_threshold.to_value(),
            "iou-threshold" => s.iou_threshold.to_value(),
            "max-detections" => s.max_detections.to_value(),
            "classes" => s.classes.to_value(),
            "class-thresholds" => s.class_thresholds.to_value(),
            "interval" => s.interval.to_value(),
            "post-messages" => s.post_messages.to_value(),
            "watch-model" => s.watch_model.to_value(),
            other => unimplemented!("property {other}"),
        }
    }
}

impl GstObjectImpl for MobilenetDetect {}

impl ElementImpl for MobilenetDetect {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "MobileNet-SSD object detector",
                "Filter/Analyzer/Video",
                "Runs a MobileNet-SSD ONNX model through ONNX Runtime on each frame and attaches the detections as \
                 region-of-interest metadata",
                "mobilenetdetect developers",
            )
        });
        Some(&*METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static PAD_TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let caps = gst_video::VideoCapsBuilder::new()
                .format_list(crate::video::FORMATS)
                .build();
            vec![
                gst::PadTemplate::new("src", gst::PadDirection::Src, gst::PadPresence::Always, &caps).unwrap(),
                gst::PadTemplate::new("sink", gst::PadDirection::Sink, gst::PadPresence::Always, &caps).unwrap(),
            ]
        });
        PAD_TEMPLATES.as_ref()
    }
}

impl BaseTransformImpl for MobilenetDetect {
    const MODE: gst_base::subclass::BaseTransformMode = gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = false;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let settings = self.settings.lock().unwrap().clone();
        // A load still running from an earlier session must not swap in later.
        self.load_generation.fetch_add(1, Ordering::SeqCst);
        self.pending.lock().unwrap().take();
        let (model, post) = Self::load(&settings).map_err(|e| {
            gst::error!(CAT, imp = self, "{e}");
            load_error_message(&e)
        })?;
        let mut posts = Vec::new();
        self.announce_model(&model, settings.clone(), &mut posts);
        posts.push(Post::Notify("active-execution-provider"));
        *self.state.lock().unwrap() = Some(State {
            label_names: label_names(&model),
            model,
            post,
            post_version: settings.filter_version,
            info: None,
            pre: None,
            frame_index: 0,
            candidates: Vec::with_capacity(1024),
            latest: Vec::with_capacity(DEFAULT_MAX_DETECTIONS as usize),
        });
        self.running.store(true, Ordering::SeqCst);
        self.post(posts);
        if settings.watch_model {
            self.start_watcher(settings.model.clone().unwrap_or_default());
        }
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        self.running.store(false, Ordering::SeqCst);
        let watcher = self.watcher.lock().unwrap().take();
        if let Some(w) = watcher {
            w.stop.store(true, Ordering::SeqCst);
            let _ = w.thread.join();
        }
        self.load_generation.fetch_add(1, Ordering::SeqCst);
        // A load in progress finishes (and is dropped) before the element stops; never join from the loader
        // itself (an application may stop the pipeline from a handler of the loader's own warning).
        let loader = self.loader.lock().unwrap().thread.take();
        if let Some(thread) = loader
            && thread.thread().id() != std::thread::current().id()
        {
            let _ = thread.join();
        }
        self.pending.lock().unwrap().take();
        *self.state.lock().unwrap() = None;
        *self.model_labels.lock().unwrap() = None;
        *self.active_settings.lock().unwrap() = None;
        Ok(())
    }

    fn transform_ip(&self, buf: &mut gst::BufferRef) -> Result<gst::FlowSuccess, gst::FlowError> {
        let mut posts = Vec::new();
        let result = self.process_frame(buf, &mut posts);
        // Posted without any lock held.
        self.post(posts);
        result
    }
}

impl MobilenetDetect {
    /// While running, a value that cannot work (a class the model does not have, a malformed triplet) is
    /// refused so the stream goes on with the old one. Before start, `start` reports it as an error.
    fn check_while_running(&self, value: &glib::Value, pspec: &glib::ParamSpec) -> Result<(), String> {
        if !self.running.load(Ordering::SeqCst) {
            return Ok(());
        }
        let text = || value.get::<Option<String>>().ok().flatten().unwrap_or_default();
        match pspec.name() {
            name @ ("input-mean" | "input-std") => {
                let t = text();
                if t.trim().is_empty() {
                    return Ok(());
                }
                parse_triplet(&t)
                    .map(|_| ())
                    .map_err(|e| format!("invalid {name} '{t}': {e}"))
            }
            name @ ("classes" | "class-thresholds") => {
                let Some(labels) = self.model_labels.lock().unwrap().clone() else {
                    return Ok(());
                };
                let s = self.settings.lock().unwrap();
                let (classes, thresholds) = if name == "classes" {
                    (text(), s.class_thresholds.clone())
                } else {
                    (s.classes.clone(), text())
                };
                ClassGate::new(s.score_threshold, &classes, &thresholds, &labels)
                    .map(|_| ())
                    .map_err(|e| format!("invalid {name}: {e}"))
            }
            _ => Ok(()),
        }
    }

    fn process_frame(
        &self,
        buf: &mut gst::BufferRef,
        posts: &mut Vec<Post>,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let mut guard = self.state.lock().unwrap();
        let Some(state) = guard.as_mut() else {
            posts.push(Post::Error(gst::error_msg!(
                gst::CoreError::Negotiation,
                ["not started"]
            )));
            return Err(gst::FlowError::NotNegotiated);
        };
        self.take_pending(state, posts);
        let frame_settings = {
            let s = self.settings.lock().unwrap();
            if s.filter_version != state.post_version {
                // Checked by the setters against this model; a model swapped in since may still refuse it.
                match s.post_process(&state.model) {
                    Ok(p) => state.post = p,
                    Err(e) => posts.push(Post::Warning(
                        gst::LibraryError::Settings,
                        format!("ignoring the new class filter: {e}"),
                    )),
                }
                state.post_version = s.filter_version;
            }
            FrameSettings {
                resize: match s.resize {
                    ResizeChoice::Stretch => ResizeMode::Stretch,
                    ResizeChoice::Letterbox => ResizeMode::Letterbox,
                },
                interval: s.interval.max(1),
                post_messages: s.post_messages,
            }
        };
        let infer_now = state.frame_index % frame_settings.interval as u64 == 0;
        state.frame_index += 1;
        if infer_now {
            if let Err((error, flow)) = self.infer_frame(state, buf, &frame_settings) {
                posts.push(Post::Error(error));
                return Err(flow);
            }
            if frame_settings.post_messages {
                posts.push(Post::Message(self.detections_message(state, buf)));
            }
        }
        self.attach_metas(state, buf);
        Ok(gst::FlowSuccess::Ok)
    }
}

impl VideoFilterImpl for MobilenetDetect {
    fn set_info(
        &self,
        incaps: &gst::Caps,
        in_info: &gst_video::VideoInfo,
        _outcaps: &gst::Caps,
        _out_info: &gst_video::VideoInfo,
    ) -> Result<(), gst::LoggableError> {
        gst::debug!(CAT, imp = self, "negotiated {incaps}");
        if let Some(state) = self.state.lock().unwrap().as_mut() {
            if state.info.as_ref() != Some(in_info) {
                // Boxes computed on frames of another size or format must not land on the new frames
                // (interval > 1 carries them over): start again with an inference on the next frame.
                state.latest.clear();
                state.frame_index = 0;
            }
            state.info = Some(in_info.clone());
            state.pre = None;
        }
        Ok(())
    }
}
