use crate::roimeta::{NewDetection, attach_detections, rect_bbox, take_detections};
use detection_common::track::{TrackInput, TrackState, Tracker, TrackerConfig};
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::prelude::*;
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "detectiontrack",
        gst::DebugColorFlags::empty(),
        Some("Multi-object tracker"),
    )
});

#[derive(Debug, Clone)]
struct Settings {
    tracker: TrackerConfig,
    predict: bool,
    hold_frames: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            tracker: TrackerConfig::default(),
            predict: true,
            hold_frames: DEFAULT_HOLD_FRAMES,
        }
    }
}

struct State {
    tracker: Tracker,
    /// Frame size from the caps, to normalise predicted boxes.
    size: (u32, u32),
    /// The label of each class id seen, for predicted boxes.
    labels: HashMap<u32, String>,
    inputs: Vec<TrackInput>,
    /// When each live track was first seen (buffer PTS).
    first_seen: HashMap<u64, gst::ClockTime>,
}

impl State {
    fn start_over(&mut self) {
        self.tracker.start_over();
        self.first_seen.clear();
    }

    /// The predicted boxes of tracks with an id that are tracked (`min_missed` 0) or missed for between
    /// `min_missed` and `max_missed` frames.
    fn predicted_boxes(
        &self,
        pts: Option<gst::ClockTime>,
        max_missed: u32,
        min_missed: u32,
    ) -> Vec<NewDetection<'static>> {
        let (w, h) = self.size;
        self.tracker
            .tracks()
            .iter()
            .filter(|t| t.id != 0 && t.state != TrackState::Tentative)
            .filter(|t| (min_missed..=max_missed).contains(&t.missed()))
            .filter(|t| min_missed > 0 || t.state == TrackState::Tracked)
            .filter_map(|t| {
                let b = t.bbox().clamp(0.0, w as f32, h as f32);
                let (x0, y0, x1, y1) = (b.x0.round(), b.y0.round(), b.x1.round(), b.y1.round());
                (x1 > x0 && y1 > y0).then(|| NewDetection {
                    label: Cow::Owned(
                        self.labels
                            .get(&t.class_id)
                            .cloned()
                            .unwrap_or_else(|| format!("class-{}", t.class_id)),
                    ),
                    class_id: t.class_id,
                    confidence: t.score,
                    rect: (x0 as u32, y0 as u32, (x1 - x0) as u32, (y1 - y0) as u32),
                    norm: b.scale(1.0 / w.max(1) as f32, 1.0 / h.max(1) as f32),
                    inference_pts: pts,
                    track_id: Some(t.id),
                    first_seen: self.first_seen.get(&t.id).copied(),
                    // Held after a miss (not a frame the detector skipped).
                    missed: min_missed > 0,
                })
            })
            .collect()
    }
}

/// Frames a missed object is still reported by default.
const DEFAULT_HOLD_FRAMES: u32 = 0;

#[derive(Default)]
pub struct DetectionTrack {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
    metrics: Arc<TrackMetrics>,
}

/// What the tracker counts for the Prometheus endpoint (`crate::metrics`).
#[derive(Default)]
struct TrackMetrics {
    frames: AtomicU64,
    /// Tracks with an id alive after the last frame.
    tracks: AtomicU64,
    /// Ids given out since start.
    started: AtomicU64,
}

impl crate::metrics::Source for TrackMetrics {
    fn write(&self, element: &gst::Element, out: &mut crate::metrics::Exposition) {
        for (metric, value) in [
            (
                (
                    "detectiontrack_frames_total",
                    "counter",
                    "Frames that passed through the tracker",
                ),
                &self.frames,
            ),
            (
                (
                    "detectiontrack_tracks",
                    "gauge",
                    "Tracks with an id after the last frame",
                ),
                &self.tracks,
            ),
            (
                ("detectiontrack_tracks_started_total", "counter", "Track ids given out"),
                &self.started,
            ),
        ] {
            out.sample(element, metric, &[], value.load(Ordering::Relaxed) as f64);
        }
    }
}

#[glib::object_subclass]
impl ObjectSubclass for DetectionTrack {
    const NAME: &'static str = "GstDetectionTrack";
    type Type = super::DetectionTrack;
    type ParentType = gst_base::BaseTransform;
}

impl ObjectImpl for DetectionTrack {
    fn constructed(&self) {
        self.parent_constructed();
        crate::metrics::register(self.obj().upcast_ref(), self.metrics.clone());
    }

    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            let d = TrackerConfig::default();
            let score = |name: &str, nick: &str, blurb: &str, default: f32| {
                glib::ParamSpecFloat::builder(name)
                    .nick(nick)
                    .blurb(blurb)
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(default)
                    .mutable_ready()
                    .build()
            };
            vec![
                score(
                    "high-threshold",
                    "High score threshold",
                    "Detections at or above this confidence are matched first (lost tracks included) and may \
                     start tracks",
                    d.high_threshold,
                ),
                score(
                    "low-threshold",
                    "Low score threshold",
                    "Detections between this and high-threshold only continue tracked objects (through \
                     occlusion and blur); below it they are ignored",
                    d.low_threshold,
                ),
                score(
                    "new-track-threshold",
                    "New track threshold",
                    "A new track needs a detection at least this confident",
                    d.new_track_threshold,
                ),
                score(
                    "match-iou",
                    "Match IoU",
                    "Minimum overlap of a track's predicted box and a confident detection to match",
                    d.match_iou,
                ),
                score(
                    "low-match-iou",
                    "Low-score match IoU",
                    "Minimum overlap of a track's predicted box and a low-score detection to match",
                    d.low_match_iou,
                ),
                glib::ParamSpecUInt::builder("lost-frames")
                    .nick("Lost frames")
                    .blurb("Frames a track that is no longer detected is kept (and predicted) before it ends")
                    .maximum(100_000)
                    .default_value(d.lost_frames)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("min-hits")
                    .nick("Minimum hits")
                    .blurb("Consecutive detections a new object needs before it gets a track id (1: at once)")
                    .minimum(1)
                    .maximum(1000)
                    .default_value(d.min_hits)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("cross-class")
                    .nick("Across classes")
                    .blurb(
                        "A detection may continue a track of another class (a far object whose class flips keeps \
                            its id), and each tracked box is reported with its track's class: a vote over its recent \
                            detections weighted by score, a class that leads it 1.5:1 being another object (a new \
                            id); false: tracks stay within a class",
                    )
                    .default_value(d.cross_class)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("hold-frames")
                    .nick("Hold frames")
                    .blurb(
                        "A tracked object the detector misses is still reported, at its predicted box, for up to \
                            this many frames (a detector's flicker is not the object leaving); 0: only detected boxes",
                    )
                    .maximum(1000)
                    .default_value(DEFAULT_HOLD_FRAMES)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("predict")
                    .nick("Predict skipped frames")
                    .blurb(
                        "On frames the detector skipped (mobilenetdetect interval > 1: detections computed on an \
                            earlier frame), replace the carried-over boxes with the tracks' predicted boxes",
                    )
                    .default_value(true)
                    .mutable_ready()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = self.settings.lock().unwrap();
        let t = &mut s.tracker;
        match pspec.name() {
            "high-threshold" => t.high_threshold = value.get().expect("type checked upstream"),
            "low-threshold" => t.low_threshold = value.get().expect("type checked upstream"),
            "new-track-threshold" => t.new_track_threshold = value.get().expect("type checked upstream"),
            "match-iou" => t.match_iou = value.get().expect("type checked upstream"),
            "low-match-iou" => t.low_match_iou = value.get().expect("type checked upstream"),
            "lost-frames" => t.lost_frames = value.get().expect("type checked upstream"),
            "min-hits" => t.min_hits = value.get().expect("type checked upstream"),
            "cross-class" => t.cross_class = value.get().expect("type checked upstream"),
            "predict" => s.predict = value.get().expect("type checked upstream"),
            "hold-frames" => s.hold_frames = value.get().expect("type checked upstream"),
            other => unimplemented!("property {other}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = self.settings.lock().unwrap();
        let t = &s.tracker;
        match pspec.name() {
            "high-threshold" => t.high_threshold.to_value(),
            "low-threshold" => t.low_threshold.to_value(),
            "new-track-threshold" => t.new_track_threshold.to_value(),
            "match-iou" => t.match_iou.to_value(),
            "low-match-iou" => t.low_match_iou.to_value(),
            "lost-frames" => t.lost_frames.to_value(),
            "min-hits" => t.min_hits.to_value(),
            "cross-class" => t.cross_class.to_value(),
            "predict" => s.predict.to_value(),
            "hold-frames" => s.hold_frames.to_value(),
            other => unimplemented!("property {other}"),
        }
    }
}

impl GstObjectImpl for DetectionTrack {}

impl ElementImpl for DetectionTrack {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Detection tracker",
                "Filter/Analyzer/Video",
                "Gives each detection a track id that stays with the object (ByteTrack-style association with a \
                 Kalman motion model) and predicts boxes on frames the detector skipped",
                "mobilenetdetect developers",
            )
        });
        Some(&*METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static PAD_TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(crate::video::any_video_templates);
        PAD_TEMPLATES.as_ref()
    }
}

impl BaseTransformImpl for DetectionTrack {
    const MODE: gst_base::subclass::BaseTransformMode = gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = false;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let config = self.settings.lock().unwrap().tracker;
        if config.low_threshold > config.high_threshold {
            return Err(gst::error_msg!(
                gst::LibraryError::Settings,
                [
                    "low-threshold {} is above high-threshold {}",
                    config.low_threshold,
                    config.high_threshold
                ]
            ));
        }
        *self.state.lock().unwrap() = Some(State {
            tracker: Tracker::new(config),
            size: (0, 0),
            labels: HashMap::new(),
            inputs: Vec::with_capacity(128),
            first_seen: HashMap::new(),
        });
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        *self.state.lock().unwrap() = None;
        Ok(())
    }

    fn set_caps(&self, incaps: &gst::Caps, outcaps: &gst::Caps) -> Result<(), gst::LoggableError> {
        let info =
            gst_video::VideoInfo::from_caps(incaps).map_err(|_| gst::loggable_error!(CAT, "bad caps {incaps}"))?;
        if let Some(state) = self.state.lock().unwrap().as_mut() {
            if state.size != (info.width(), info.height()) && state.size != (0, 0) {
                // Boxes of another frame size do not continue: their tracks end, but ids are never reused
                // (a consumer, e.g. detectioncapture track-policy=first, takes an id for one object).
                state.start_over();
            }
            state.size = (info.width(), info.height());
        }
        self.parent_set_caps(incaps, outcaps)
    }

    fn sink_event(&self, event: gst::Event) -> bool {
        // Another stream joins (concat, a source switch) or a seek jumped: the objects seen so far do not
        // continue into it. Their tracks end; ids go on from where they were.
        if matches!(
            event.view(),
            gst::EventView::StreamStart(_) | gst::EventView::FlushStop(_)
        ) && let Some(state) = self.state.lock().unwrap().as_mut()
        {
            state.start_over();
        }
        self.parent_sink_event(event)
    }

    fn transform_ip(&self, buf: &mut gst::BufferRef) -> Result<gst::FlowSuccess, gst::FlowError> {
        let (predict, hold_frames) = {
            let s = self.settings.lock().unwrap();
            (s.predict, s.hold_frames)
        };
        let mut guard = self.state.lock().unwrap();
        let state = guard.as_mut().ok_or(gst::FlowError::Flushing)?;
        let mut detections = take_detections(buf);
        // Detections computed on an earlier frame (the detector skipped this one) are not new evidence.
        let carried = !detections.is_empty()
            && detections
                .iter()
                .all(|d| d.inference_pts.is_some() && d.inference_pts != buf.pts());
        if carried {
            state.tracker.predict_only();
            if predict {
                let predicted = state.predicted_boxes(buf.pts(), u32::MAX, 0);
                gst::trace!(
                    CAT,
                    imp = self,
                    "predicted {} boxes on a skipped frame",
                    predicted.len()
                );
                attach_detections(buf, predicted.into_iter());
                self.metrics.frames.fetch_add(1, Ordering::Relaxed);
                return Ok(gst::FlowSuccess::Ok);
            }
        } else {
            state.inputs.clear();
            for d in &detections {
                state.inputs.push(TrackInput {
                    class_id: d.class_id,
                    score: d.confidence,
                    bbox: rect_bbox(d.rect),
                });
                state.labels.entry(d.class_id).or_insert_with(|| d.label.to_string());
            }
            let ids = state.tracker.update(&state.inputs);
            let now = buf.pts().unwrap_or(gst::ClockTime::ZERO);
            for (d, id) in detections.iter_mut().zip(ids) {
                d.track_id = id;
                d.first_seen = id.map(|id| {
                    *state.first_seen.entry(id).or_insert_with(|| {
                        self.metrics.started.fetch_add(1, Ordering::Relaxed);
                        now
                    })
                });
                // The track's class, voted over its detections, rather than this frame's (within a class
                // they are the same).
                let voted = id
                    .filter(|_| state.tracker.config.cross_class)
                    .and_then(|id| state.tracker.tracks().iter().find(|t| t.id == id))
                    .map(|t| t.class_id);
                if let Some(class_id) = voted.filter(|c| *c != d.class_id)
                    && let Some(label) = state.labels.get(&class_id)
                {
                    d.class_id = class_id;
                    d.label = Cow::Owned(label.clone());
                }
            }
            let tracker = &state.tracker;
            state
                .first_seen
                .retain(|id, _| tracker.tracks().iter().any(|t| t.id == *id));
            self.metrics
                .tracks
                .store(state.first_seen.len() as u64, Ordering::Relaxed);
            if hold_frames > 0 {
                // Objects missed on this frame for a short while: reported where they are predicted to be.
                detections.extend(state.predicted_boxes(buf.pts(), hold_frames, 1));
            }
        }
        drop(guard);
        attach_detections(buf, detections.into_iter());
        self.metrics.frames.fetch_add(1, Ordering::Relaxed);
        Ok(gst::FlowSuccess::Ok)
    }
}
