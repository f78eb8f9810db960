use super::loader::ModelLoader;
use super::settings::*;
use detection_common::metadata::parse_triplet;
use detection_common::{BBox, Detection};
use detection_inference::preprocess::{Geometry, Preprocessor};
use detection_inference::{ClassGate, LoadError, Model, PostProcess};
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::prelude::*;
use gst_video::subclass::prelude::*;

use std::sync::atomic::Ordering;
use std::sync::{Arc, LazyLock, Mutex};

pub(super) static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "mobilenetdetect",
        gst::DebugColorFlags::empty(),
        Some("MobileNet-SSD detector"),
    )
});

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
    /// Shared with every other element running the same model with the same options.
    model: Arc<Model>,
    post: PostProcess,
    /// The `filter_version` `post` was built from.
    post_version: u64,
    info: Option<gst_video::VideoInfo>,
    pre: Option<Preprocessor>,
    frame_index: u64,
    candidates: Vec<Detection>,
    latest: Vec<FrameDetection>,
    /// The PTS of the frame `latest` was computed on.
    latest_pts: Option<gst::ClockTime>,
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

/// The model in use, as the setters see it.
struct RunningModel {
    /// To check a class filter set while running.
    labels: Arc<detection_common::labels::Labels>,
    /// The model-related settings it was loaded with: restored when a reload with new ones fails.
    settings: Settings,
}

#[derive(Default)]
pub struct MobilenetDetect {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
    active_provider: Mutex<String>,
    /// Between start and stop. Setters and the watcher read this instead of locking the state, which the
    /// streaming thread holds during inference (a setter called from a synchronous bus handler must not wait).
    running: std::sync::atomic::AtomicBool,
    /// What the setters need to know about the model in use, without taking the state lock.
    running_model: Mutex<Option<RunningModel>>,
    pub(super) loader: ModelLoader,
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
    pub(super) fn load(settings: &Settings) -> Result<(Arc<Model>, PostProcess), LoadError> {
        let opts = settings.model_options()?;
        let model = Model::shared(&opts)?;
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
        *self.running_model.lock().unwrap() = Some(RunningModel {
            labels: Arc::new(model.labels.clone()),
            settings,
        });
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
    pub(super) fn restore_active_settings(&self, failed: &Settings) {
        let Some(active) = self.running_model.lock().unwrap().as_ref().map(|m| m.settings.clone()) else {
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

    /// Starts loading the model the current settings describe in the background, when running.
    fn reload_if_running(&self) {
        if self.is_running() {
            self.loader.request(&self.obj());
        }
    }

    pub(super) fn is_running(&self) -> bool {
        self.running.load(Ordering::SeqCst)
    }

    pub(super) fn settings(&self) -> Settings {
        self.settings.lock().unwrap().clone()
    }

    /// Swaps in a model loaded in the background, if one is ready.
    fn take_pending(&self, state: &mut State, posts: &mut Vec<Post>) {
        if let Some(p) = self.loader.take_ready() {
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
        state.latest_pts = buf.pts();
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
        let detections = state.latest.iter().map(|d| crate::roimeta::NewDetection {
            label: state.label(d.class_id),
            class_id: d.class_id,
            confidence: d.score,
            rect: d.rect,
            norm: d.norm,
            inference_pts: state.latest_pts,
            track_id: None,
            first_seen: None,
        });
        crate::roimeta::attach_detections(buf, detections);
    }
}

#[glib::object_subclass]
impl ObjectSubclass for MobilenetDetect {
    const NAME: &'static str = "GstMobilenetDetect";
    type Type = super::MobilenetDetect;
    type ParentType = gst_video::VideoFilter;
}

impl ObjectImpl for MobilenetDetect {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(param_specs);
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
        self.loader.reset();
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
            latest_pts: None,
        });
        self.running.store(true, Ordering::SeqCst);
        self.post(posts);
        if settings.watch_model {
            self.loader
                .watch(&self.obj(), settings.model.clone().unwrap_or_default());
        }
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        self.running.store(false, Ordering::SeqCst);
        // A load in progress finishes (and is dropped) before the element stops.
        self.loader.stop();
        *self.state.lock().unwrap() = None;
        *self.running_model.lock().unwrap() = None;
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
                let Some(labels) = self.running_model.lock().unwrap().as_ref().map(|m| m.labels.clone()) else {
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
                resize: s.resize.mode(),
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
