use super::canary::{CanaryStats, VerdictPublisher};
use super::frames::{Frames, LabelNames, Shadow, label_names};
use super::loader::ModelLoader;
use super::metrics::DetectMetrics;
use super::settings::*;
use detection_common::metadata::parse_triplet;
use detection_inference::preprocess::Preprocessor;
use detection_inference::{ClassGate, LoadError, Model, PostProcess};
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::prelude::*;
use gst_video::subclass::prelude::*;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

pub(super) static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "mobilenetdetect",
        gst::DebugColorFlags::empty(),
        Some("MobileNet-SSD detector"),
    )
});

/// Environment variable: milliseconds slept after each inference, a test's way to make a model slow
/// without using CPU (live-mode tests).
const ADDED_DELAY_ENV: &str = "MOBILENETDETECT_TEST_INFERENCE_DELAY_MS";

pub(super) struct State {
    /// Shared with every other element running the same model with the same options.
    pub(super) model: Arc<Model>,
    pub(super) post: Arc<PostProcess>,
    /// The `filter_version` `post` was built from.
    pub(super) post_version: u64,
    pub(super) info: Option<gst_video::VideoInfo>,
    /// One per tile (one for the whole frame when not tiled), made for the current caps, model and grid.
    pub(super) pre: Vec<Preprocessor>,
    pub(super) frame_index: u64,
    /// Live mode: frames since the last one sent to inference.
    pub(super) since_request: u64,
    pub(super) label_names: LabelNames,
    pub(super) live: bool,
    pub(super) frames: Frames,
    /// Consecutive frames held longer than the latency reported, and the shortest of those holds.
    pub(super) longer_holds: Option<(u32, Duration)>,
    /// A canary's stable model in shadow, and the inferred frames since its last run.
    pub(super) shadow: Option<Shadow>,
    pub(super) since_shadow: u32,
}

/// A model ready to run, with what came with it.
pub(super) struct Loaded {
    pub(super) model: Arc<Model>,
    pub(super) post: PostProcess,
    /// The stable model to run in shadow (a canary device under a release manifest).
    pub(super) shadow: Option<Shadow>,
    pub(super) release: Release,
    pub(super) warnings: Vec<String>,
}

/// What the `model` property resolved to, for the watcher and the verdicts.
#[derive(Debug, Clone)]
pub(super) struct Release {
    /// The local file of the object `model` names (a manifest's copy, for a manifest).
    pub(super) source: std::path::PathBuf,
    /// The model's name in the manifest (else the `model` property).
    pub(super) name: String,
    pub(super) canary: bool,
}

/// The model in use, as the setters and the watcher see it.
struct RunningModel {
    /// What the `model` property resolved to (for an s3:// model, `source` is the local copy of the version
    /// this element runs).
    release: Release,
    /// To check a class filter set while running.
    labels: Arc<detection_common::labels::Labels>,
    /// The model-related settings it was loaded with: restored when a reload with new ones fails.
    settings: Settings,
}

#[derive(Default)]
pub struct MobilenetDetect {
    pub(super) settings: Mutex<Settings>,
    pub(super) state: Mutex<Option<State>>,
    active_provider: Mutex<String>,
    /// Between start and stop. Setters and the watcher read this instead of locking the state, which the
    /// streaming thread holds during inference (a setter called from a synchronous bus handler must not wait).
    running: std::sync::atomic::AtomicBool,
    /// What the setters need to know about the model in use, without taking the state lock.
    running_model: Mutex<Option<RunningModel>>,
    pub(super) loader: ModelLoader,
    /// The latency this element adds, in nanoseconds, as answered to latency queries: an estimate from a
    /// warm-up run at start, raised (with a latency message) when frames are held longer.
    pub(super) latency_ns: AtomicU64,
    /// Shared with the metrics endpoint and the frames' bookkeeping.
    pub(super) metrics: Arc<DetectMetrics>,
    metrics_address: Mutex<Option<String>>,
    /// What the verdicts report, and the thread that publishes them (`verdicts=`).
    pub(super) canary: Arc<CanaryStats>,
    verdicts: Mutex<Option<VerdictPublisher>>,
}

/// Something to post once the streaming thread has let go of the state lock: a handler that runs
/// synchronously on the bus may call back into the element.
pub(super) enum Post {
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
    /// Loads the model the settings name; an s3:// model is downloaded first (at start, `at_start`, an
    /// unreachable bucket falls back to the copy downloaded earlier, with the warning returned).
    /// `cancel` abandons a download in progress (the element is stopping).
    pub(super) fn load(
        settings: &Settings,
        at_start: bool,
        cancel: &detection_storage::Cancel,
    ) -> Result<Loaded, LoadError> {
        let mut opts = settings.model_options()?;
        let location = settings.model.as_deref().map(str::trim).unwrap_or_default().to_string();
        let device = settings.release.device_id();
        let resolved = super::release::resolve(&location, &device, &settings.s3.0, at_start, cancel)?;
        opts.path = resolved.path.clone();
        let model = Model::shared(&opts)?;
        let post = settings.post_process(&model).map_err(LoadError::Settings)?;
        let mut warnings = resolved.warnings.clone();
        let shadow = match &resolved.shadow {
            Some((path, every)) => {
                let stable = Model::shared(&detection_inference::ModelOptions {
                    path: path.clone(),
                    no_spinning: true,
                    ..opts.clone()
                })?;
                if stable.input == model.input {
                    Some(Shadow {
                        post: Arc::new(settings.post_process(&stable).map_err(LoadError::Settings)?),
                        labels: label_names(&stable),
                        model: stable,
                        every: (*every).max(1),
                    })
                } else {
                    warnings.push(format!(
                        "{location}: the stable model {} takes another input than the candidate {}: no shadow \
                         runs, so this device cannot judge their agreement",
                        stable.path.display(),
                        model.path.display()
                    ));
                    None
                }
            }
            None => None,
        };
        super::release::mark_loaded(&resolved)?;
        Ok(Loaded {
            model,
            post,
            shadow,
            release: Release {
                source: resolved.source,
                name: resolved.name,
                canary: resolved.canary,
            },
            warnings,
        })
    }

    /// Records a model that is now in use; what the user should hear about goes to `posts`.
    fn announce_model(&self, model: &Model, release: Release, settings: Settings, posts: &mut Vec<Post>) {
        gst::info!(CAT, imp = self, "loaded {:?}", model);
        for w in &model.warnings {
            gst::warning!(CAT, imp = self, "{}", w);
            posts.push(Post::Warning(gst::LibraryError::Init, w.clone()));
        }
        *self.active_provider.lock().unwrap() = model.provider.to_string();
        *self.metrics.model.lock().unwrap() = model.path.display().to_string();
        self.canary.restart(&release.name, release.canary);
        *self.running_model.lock().unwrap() = Some(RunningModel {
            release,
            labels: Arc::new(model.labels.clone()),
            settings,
        });
    }

    pub(super) fn post(&self, posts: Vec<Post>) {
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
            inflight: s.inflight,
            mode: s.mode,
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

    /// The local file of what the `model` property names (the model, or its release manifest) for the version
    /// this element runs (or has loaded and swaps in at the next frame).
    pub(super) fn running_model_path(&self) -> Option<std::path::PathBuf> {
        self.running_model
            .lock()
            .unwrap()
            .as_ref()
            .map(|m| m.release.source.clone())
    }

    /// Swaps in a model loaded in the background, if one is ready.
    pub(super) fn take_pending(&self, state: &mut State, posts: &mut Vec<Post>) {
        if let Some(p) = self.loader.take_ready() {
            let same_models = Arc::ptr_eq(&p.model, &state.model)
                && match (&p.shadow, &state.shadow) {
                    (Some(a), Some(b)) => Arc::ptr_eq(&a.model, &b.model),
                    (a, b) => a.is_none() && b.is_none(),
                };
            let manifest = p.settings.model.as_deref().is_some_and(super::release::is_manifest);
            if same_models && manifest {
                // A new manifest that assigns this device what it already runs: nothing to swap (a new shadow
                // rate applies from now on).
                if let Some(running) = self.running_model.lock().unwrap().as_mut() {
                    if (&running.release.name, running.release.canary) != (&p.release.name, p.release.canary) {
                        self.canary.restart(&p.release.name, p.release.canary);
                    }
                    running.release = p.release;
                    running.settings = p.settings;
                }
                state.post = Arc::new(p.post);
                state.shadow = p.shadow;
                return;
            }
            self.announce_model(&p.model, p.release, p.settings, posts);
            if let Some(shadow) = &p.shadow {
                shadow.model.allow_runs_at_once(state.frames.capacity());
            }
            state.shadow = p.shadow;
            state.since_shadow = 0;
            state.frames.forget_shadows();
            posts.push(Post::Notify("active-execution-provider"));
            state.label_names = label_names(&p.model);
            p.model.allow_runs_at_once(state.frames.capacity());
            state.model = p.model;
            state.post = Arc::new(p.post);
            state.pre.clear();
            state.frames.latest.clear();
            state.frames.forget_spare_tensors();
            self.metrics.swaps.fetch_add(1, Ordering::Relaxed);
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
}

#[glib::object_subclass]
impl ObjectSubclass for MobilenetDetect {
    const NAME: &'static str = "GstMobilenetDetect";
    type Type = super::MobilenetDetect;
    type ParentType = gst_video::VideoFilter;
}

impl ObjectImpl for MobilenetDetect {
    fn constructed(&self) {
        self.parent_constructed();
        crate::metrics::register(self.obj().upcast_ref(), self.metrics.clone());
    }

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
        if pspec.name() == "metrics-address" {
            let address: Option<String> = value.get().expect("type checked upstream");
            if let Some(address) = address.as_deref().filter(|a| !a.is_empty()) {
                match crate::metrics::serve(address) {
                    Ok(bound) => gst::info!(CAT, imp = self, "metrics at http://{bound}/metrics"),
                    Err(e) => gst::element_imp_warning!(self, gst::ResourceError::OpenWrite, ("{}", e)),
                }
            }
            *self.metrics_address.lock().unwrap() = address;
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
            // Take effect at the next start.
            "inflight" | "mode" | "role" => {
                reload = false;
                match pspec.name() {
                    "inflight" => settings.inflight = value.get().expect("type checked upstream"),
                    "role" => settings.role = value.get().expect("type checked upstream"),
                    _ => settings.mode = value.get().expect("type checked upstream"),
                }
            }
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
                    "watch-interval" => settings.watch_interval = value.get().expect("type checked upstream"),
                    other if settings.s3.set(other, value) => {}
                    other if settings.release.set(other, value) => {}
                    other if settings.tiles.set(other, value) => {}
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
        if pspec.name() == "metrics-address" {
            return self.metrics_address.lock().unwrap().to_value();
        }
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
            "inflight" => s.inflight.to_value(),
            "mode" => s.mode.to_value(),
            "role" => s.role.to_value(),
            "resize" => s.resize.to_value(),
            "score-threshold" => s.score_threshold.to_value(),
            "iou-threshold" => s.iou_threshold.to_value(),
            "max-detections" => s.max_detections.to_value(),
            "classes" => s.classes.to_value(),
            "class-thresholds" => s.class_thresholds.to_value(),
            "interval" => s.interval.to_value(),
            "post-messages" => s.post_messages.to_value(),
            "watch-model" => s.watch_model.to_value(),
            "watch-interval" => s.watch_interval.to_value(),
            other => {
                s.s3.get(other)
                    .or_else(|| s.release.get(other))
                    .or_else(|| s.tiles.get(other))
                    .unwrap_or_else(|| unimplemented!("property {other}"))
            }
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
        let loaded = Self::load(&settings, true, &self.loader.cancel()).map_err(|e| {
            gst::error!(CAT, imp = self, "{e}");
            load_error_message(&e)
        })?;
        for w in &loaded.warnings {
            gst::warning!(CAT, imp = self, "{w}");
            gst::element_imp_warning!(self, gst::ResourceError::Read, ("{}", w));
        }
        let Loaded {
            model,
            post,
            shadow,
            release,
            ..
        } = loaded;
        let post = Arc::new(post);
        model.allow_runs_at_once(settings.inflight as usize);
        if let Some(s) = &shadow {
            s.model.allow_runs_at_once(settings.inflight as usize);
        }
        let live = settings.mode == ModeChoice::Live;
        // In order, a frame is held for about one run; live, frames are not held.
        let estimate = Self::warm_up(&model, &post).filter(|_| !live).unwrap_or_default();
        self.latency_ns.store(estimate.as_nanos() as u64, Ordering::Relaxed);
        let added_delay = std::env::var(ADDED_DELAY_ENV)
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_millis)
            .unwrap_or_default();
        let labels = label_names(&model);
        let mut frames = Frames::new(
            settings.inflight.max(1) as usize,
            added_delay,
            labels.clone(),
            self.metrics.clone(),
            self.canary.clone(),
        )
        .map_err(|e| {
            gst::error_msg!(
                gst::ResourceError::NoSpaceLeft,
                ["cannot start the inference threads: {}", e]
            )
        })?;
        frames.latest.reference = settings.role == RoleChoice::Reference;
        gst::info!(
            CAT,
            imp = self,
            "{} mode, {} frame(s) in flight, runs {}, one run took {estimate:?}",
            if live { "live" } else { "in-order" },
            settings.inflight,
            if model.concurrent_runs() { "at once" } else { "in turn" }
        );
        let mut posts = Vec::new();
        self.announce_model(&model, release, settings.clone(), &mut posts);
        posts.push(Post::Notify("active-execution-provider"));
        *self.state.lock().unwrap() = Some(State {
            label_names: labels,
            model,
            post,
            post_version: settings.filter_version,
            info: None,
            pre: Vec::new(),
            frame_index: 0,
            since_request: u64::MAX,
            live,
            frames,
            longer_holds: None,
            shadow,
            since_shadow: 0,
        });
        self.running.store(true, Ordering::SeqCst);
        self.post(posts);
        if settings.watch_model {
            self.loader
                .watch(&self.obj(), settings.model.clone().unwrap_or_default());
        }
        if let Some(location) = &settings.release.verdicts {
            let interval = Duration::from_millis(settings.watch_interval.into());
            match VerdictPublisher::start(
                location,
                settings.release.device_id(),
                interval,
                self.canary.clone(),
                &self.obj(),
            ) {
                Ok(p) => *self.verdicts.lock().unwrap() = Some(p),
                Err(e) => {
                    self.stop()?;
                    return Err(gst::error_msg!(gst::ResourceError::Settings, ["{}", e]));
                }
            }
        }
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        self.running.store(false, Ordering::SeqCst);
        // A load in progress finishes (and is dropped) before the element stops.
        self.loader.stop();
        // Runs in flight finish before the state (and its inference threads) goes.
        *self.state.lock().unwrap() = None;
        // The last verdict counts every frame that left.
        if let Some(p) = self.verdicts.lock().unwrap().take() {
            p.stop();
        }
        *self.running_model.lock().unwrap() = None;
        Ok(())
    }

    fn submit_input_buffer(&self, is_discont: bool, inbuf: gst::Buffer) -> Result<gst::FlowSuccess, gst::FlowError> {
        let arrived = Instant::now();
        // The base class's bookkeeping (renegotiation, QoS) first; it may drop the buffer.
        self.parent_submit_input_buffer(is_discont, inbuf)?;
        let Some(buf) = self.take_queued_buffer() else {
            return Ok(gst::FlowSuccess::Ok);
        };
        let mut posts = Vec::new();
        let result = self.accept_frame(buf, arrived, &mut posts);
        // Posted without any lock held.
        self.post(posts);
        result
    }

    fn generate_output(&self) -> Result<gst_base::subclass::base_transform::GenerateOutputSuccess, gst::FlowError> {
        let mut posts = Vec::new();
        let out = self.next_output(false, &mut posts);
        self.post(posts);
        Ok(match out? {
            Some(buf) => gst_base::subclass::base_transform::GenerateOutputSuccess::Buffer(buf),
            None => gst_base::subclass::base_transform::GenerateOutputSuccess::NoOutput,
        })
    }

    fn sink_event(&self, event: gst::Event) -> bool {
        match event.view() {
            gst::EventView::FlushStop(_) => {
                if let Some(state) = self.state.lock().unwrap().as_mut() {
                    state.frames.discard();
                    state.frame_index = 0;
                    state.since_request = u64::MAX;
                }
            }
            // Frames held go out before whatever follows them in the stream (caps, segment, EOS...).
            _ if event.is_serialized() => self.drain(),
            _ => {}
        }
        self.parent_sink_event(event)
    }

    fn query(&self, direction: gst::PadDirection, query: &mut gst::QueryRef) -> bool {
        if direction == gst::PadDirection::Sink && matches!(query.view(), gst::QueryView::Drain(_)) {
            self.drain();
        }
        if direction != gst::PadDirection::Src || !matches!(query.view(), gst::QueryView::Latency(_)) {
            return BaseTransformImplExt::parent_query(self, direction, query);
        }
        if !BaseTransformImplExt::parent_query(self, direction, query) {
            return false;
        }
        if let gst::QueryViewMut::Latency(q) = query.view_mut() {
            let ours = gst::ClockTime::from_nseconds(self.latency_ns.load(Ordering::Relaxed));
            let (live, min, max) = q.result();
            gst::debug!(
                CAT,
                imp = self,
                "adding {ours} to the latency upstream ({min}, {max:?})"
            );
            q.set(live, min + ours, max.map(|m| m + ours));
        }
        true
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
                // (interval > 1 carries them over, live runs finish later): start again with an inference on
                // the next frame.
                state.frames.forget_live_requests();
                state.frame_index = 0;
                state.since_request = u64::MAX;
            }
            state.info = Some(in_info.clone());
            state.pre.clear();
        }
        Ok(())
    }
}
