use super::destination::{Destination, ElementReport, SampleWriter};
use super::selection::{Select, mark_disagreements};
use super::settings::Settings;
use super::tracks::TrackMemory;
use super::upload::{BucketWriter, SpoolChoice};
use super::writer::{DatasetWriter, Sample, SavedBox};
use crate::background::{Refused, Writer};
use crate::roimeta::{BoxSource, boxes};
use detection_common::labels::{ClassRef, parse_class_list};
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::prelude::*;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

pub(super) static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "detectioncapture",
        gst::DebugColorFlags::empty(),
        Some("Captures a VOC dataset"),
    )
});

const FORMATS: &[gst_video::VideoFormat] = &crate::video::FORMATS;
struct State {
    /// Samples are written on this thread; EOS waits until every queued sample is on disk.
    writer: Writer<Sample>,
    frame: u64,
    last_capture: Option<gst::ClockTime>,
    negative_credit: f32,
    queued: u64,
    limit_announced: bool,
    /// From the negotiated caps; each saved sample keeps a copy.
    info: Option<gst_video::VideoInfo>,
    classes: Vec<ClassRef>,
    /// Whether upstream is live, asked the first time the queue is full.
    live: Option<bool>,
    /// What the track policy remembers.
    tracks: TrackMemory,
    /// The reference detector's boxes of the current frame (kept to reuse its allocation).
    reference: Vec<SavedBox>,
}

#[derive(Default)]
pub struct DetectionCapture {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
    pub(super) captured: Arc<AtomicU64>,
    pub(super) bytes: Arc<AtomicU64>,
    /// Selected samples skipped: the writer queue or the upload spool was full.
    pub(super) dropped: AtomicU64,
    /// Selected samples that could not be written (the writer went on with later ones).
    pub(super) lost: AtomicU64,
    /// s3://: samples uploaded since start, and samples waiting in the spool.
    pub(super) uploaded: AtomicU64,
    pub(super) spooled: AtomicU64,
}

impl DetectionCapture {
    /// Asks upstream whether it is live (a camera) or not (a file): only a live source's frames are skipped
    /// when the writer falls behind.
    fn upstream_is_live(&self) -> bool {
        let mut q = gst::query::Latency::new();
        self.obj().sink_pad().peer_query(&mut q) && q.result().0
    }

    /// Whether this frame is kept, by the policies; the boxes to save go to `out`.
    fn select(
        &self,
        s: &Settings,
        state: &mut State,
        buf: &gst::BufferRef,
        size: (u32, u32),
        out: &mut Vec<SavedBox>,
    ) -> bool {
        let frame = state.frame;
        state.frame += 1;
        if s.every_n_frames > 1 && !frame.is_multiple_of(s.every_n_frames as u64) {
            return false;
        }
        out.clear();
        let wanted = |label: &str, id: u32| {
            state.classes.is_empty()
                || state.classes.iter().any(|c| match c {
                    ClassRef::Id(i) => *i == id as usize,
                    ClassRef::Name(n) => n.eq_ignore_ascii_case(label),
                })
        };
        let ground_truth = s.source == BoxSource::GroundTruth;
        // A class id far beyond any label set is damaged metadata: labels.txt would need a line per id.
        let plausible = |id: u32| id as usize <= detection_common::labels::MAX_CLASS_ID;
        let mut tracks = std::mem::take(&mut state.tracks.frame_tracks);
        tracks.clear();
        let (mut untracked, mut missed) = (false, false);
        for b in boxes(buf, s.source, size).filter(|b| plausible(b.class_id)) {
            // A prediction is not a detection: no confidence, and only the missed policy looks at it.
            let confidence = (!ground_truth && !b.missed).then_some(b.confidence as f32);
            if b.missed {
                missed |= s.select.contains(Select::MISSED) && wanted(b.label, b.class_id);
            } else {
                let qualifies = s.select.contains(Select::UNCERTAIN)
                    && wanted(b.label, b.class_id)
                    && confidence.is_none_or(|c| c >= s.uncertain_low && c <= s.uncertain_high);
                match b.track_id {
                    Some(id) if qualifies => tracks.push((id, confidence)),
                    None if qualifies => untracked = true,
                    _ => {}
                }
            }
            out.push(SavedBox {
                // A label is one line of labels.txt and XML text: no control characters.
                label: detection_common::labels::clean_label(b.label, b.class_id as usize),
                class_id: b.class_id,
                confidence,
                rect: b.rect,
                review: b.missed.then_some("missed"),
            });
        }
        if s.select.contains(Select::DISAGREEMENT) && s.source != BoxSource::Reference {
            let mut reference = std::mem::take(&mut state.reference);
            reference.clear();
            reference.extend(
                boxes(buf, BoxSource::Reference, size)
                    .filter(|b| plausible(b.class_id) && wanted(b.label, b.class_id))
                    .map(|b| SavedBox {
                        label: detection_common::labels::clean_label(b.label, b.class_id as usize),
                        class_id: b.class_id,
                        confidence: Some(b.confidence as f32),
                        rect: b.rect,
                        review: Some("disagreement"),
                    }),
            );
            let disputed = mark_disagreements(out, &mut reference, s.disagreement_iou, |b| {
                wanted(&b.label, b.class_id)
            });
            state.reference = reference;
            // A disputed frame is saved as it is, like an untracked hard example.
            untracked |= disputed;
        }
        // A missed object is never one track's best frame to wait for: the frame is saved as it is.
        untracked |= missed;
        let keep = if out.is_empty() && s.select.contains(Select::UNCERTAIN) {
            // Negatives at a set rate, spread evenly.
            state.negative_credit += s.negative_rate;
            if state.negative_credit >= 1.0 {
                state.negative_credit -= 1.0;
                true
            } else {
                false
            }
        } else {
            // A hard example: a box of a wanted class in the uncertain band, or a missed object.
            !tracks.is_empty() || untracked
        };
        state.tracks.frame_tracks = tracks;
        state.tracks.frame_untracked = untracked;
        if !keep {
            return false;
        }
        if s.min_interval > 0 {
            let segment = self.obj().segment();
            let now = segment
                .downcast_ref::<gst::ClockTime>()
                .and_then(|seg| seg.to_running_time(buf.pts()))
                .or(buf.pts());
            if let (Some(now), Some(last)) = (now, state.last_capture)
                && now.nseconds() < last.nseconds().saturating_add(s.min_interval)
            {
                return false;
            }
            state.last_capture = now;
        }
        true
    }

    /// Queues a sample for the writer: back-pressure for a non-live source, a counted skip for a live one.
    fn enqueue(&self, sample: Sample) -> Result<(), gst::FlowError> {
        let mut guard = self.state.lock().unwrap();
        let state = guard.as_mut().ok_or(gst::FlowError::Flushing)?;
        match state.writer.queue.offer(sample) {
            Ok(()) => state.queued += 1,
            Err(Refused::Full(sample)) if !*state.live.get_or_insert_with(|| self.upstream_is_live()) => {
                // A non-live source (a file, a test clip) can wait for the disk: back-pressure, nothing lost.
                let queue = state.writer.queue.clone();
                drop(guard);
                if queue.send(sample).is_err() {
                    gst::element_imp_error!(self, gst::ResourceError::Write, ["the capture writer stopped"]);
                    return Err(gst::FlowError::Error);
                }
                if let Some(state) = self.state.lock().unwrap().as_mut() {
                    state.queued += 1;
                }
            }
            Err(Refused::Full(_)) => {
                // A live source must never stall: skip the frame and count it.
                drop(guard);
                let n = self.dropped.fetch_add(1, Ordering::SeqCst) + 1;
                gst::warning!(CAT, imp = self, "writer queue full, frame skipped ({n} so far)");
                if n == 1 || n.is_multiple_of(100) {
                    gst::element_imp_warning!(
                        self,
                        gst::ResourceError::Write,
                        ("the disk is not keeping up: {} frames skipped so far", n)
                    );
                }
                self.obj().notify("dropped");
            }
            Err(Refused::Stopped) => {
                drop(guard);
                gst::element_imp_error!(self, gst::ResourceError::Write, ["the capture writer stopped"]);
                return Err(gst::FlowError::Error);
            }
        }
        Ok(())
    }

    /// At EOS: the held frames of every track still alive.
    fn flush_candidates(&self) {
        let samples = match self.state.lock().unwrap().as_mut() {
            Some(state) => state.tracks.ended(None),
            None => return,
        };
        for sample in samples {
            if self.enqueue(sample).is_err() {
                break;
            }
        }
    }

    fn drain(&self) {
        let queue = self.state.lock().unwrap().as_ref().map(|s| s.writer.queue.clone());
        if let Some(queue) = queue {
            queue.drain();
        }
    }
}

#[glib::object_subclass]
impl ObjectSubclass for DetectionCapture {
    const NAME: &'static str = "GstDetectionCapture";
    type Type = super::DetectionCapture;
    type ParentType = gst_base::BaseTransform;
}

impl ObjectImpl for DetectionCapture {
    fn constructed(&self) {
        self.parent_constructed();
        let counters = crate::metrics::Properties(&[
            (
                "captured",
                "detectioncapture_written_total",
                "counter",
                "Samples written since start",
            ),
            (
                "dropped",
                "detectioncapture_dropped_total",
                "counter",
                "Selected frames skipped: the writer queue or upload spool was full",
            ),
            (
                "lost",
                "detectioncapture_lost_total",
                "counter",
                "Selected frames that could not be written",
            ),
            (
                "uploaded",
                "detectioncapture_uploaded_total",
                "counter",
                "s3://: samples uploaded since start",
            ),
            (
                "spooled",
                "detectioncapture_spooled",
                "gauge",
                "s3://: samples waiting in the spool for upload",
            ),
        ]);
        crate::metrics::register(self.obj().upcast_ref(), std::sync::Arc::new(counters));
    }

    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> =
            LazyLock::new(|| Settings::specs().into_iter().chain(counter_specs()).collect());
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = self.settings.lock().unwrap();
        if !s.set(pspec.name(), value) {
            unimplemented!("property {}", pspec.name());
        }
        if pspec.name() == "classes" {
            let classes = parse_class_list(&s.classes);
            drop(s);
            if let Some(state) = self.state.lock().unwrap().as_mut() {
                state.classes = classes;
            }
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let counter = match pspec.name() {
            "captured" => &*self.captured,
            "dropped" => &self.dropped,
            "lost" => &self.lost,
            "uploaded" => &self.uploaded,
            "spooled" => &self.spooled,
            name => {
                let s = self.settings.lock().unwrap();
                return s.get(name).unwrap_or_else(|| unimplemented!("property {name}"));
            }
        };
        counter.load(Ordering::SeqCst).to_value()
    }
}

/// The read-only counters.
fn counter_specs() -> Vec<glib::ParamSpec> {
    vec![
        glib::ParamSpecUInt64::builder("uploaded")
            .nick("Uploaded")
            .blurb("s3://: samples uploaded since start")
            .read_only()
            .build(),
        glib::ParamSpecUInt64::builder("spooled")
            .nick("Spooled")
            .blurb("s3://: samples waiting in the spool for upload")
            .read_only()
            .build(),
        glib::ParamSpecUInt64::builder("captured")
            .nick("Captured")
            .blurb("Samples written since start")
            .read_only()
            .build(),
        glib::ParamSpecUInt64::builder("dropped")
            .nick("Dropped")
            .blurb("Selected frames skipped because the writer queue (or, for s3://, the upload spool) was full")
            .read_only()
            .build(),
        glib::ParamSpecUInt64::builder("lost")
            .nick("Lost")
            .blurb(
                "Selected frames that could not be written (disk full, permissions): each is warned about, \
                     leaves nothing half-written, and capture goes on with the next ones",
            )
            .read_only()
            .build(),
    ]
}

impl GstObjectImpl for DetectionCapture {}

impl ElementImpl for DetectionCapture {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Detection capture",
                "Sink/Analyzer/Video",
                "Saves chosen frames and their boxes as a Pascal VOC dataset for retraining, without stalling the stream",
                "mobilenetdetect developers",
            )
        });
        Some(&*METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static PAD_TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let caps = gst_video::VideoCapsBuilder::new()
                .format_list(FORMATS.iter().copied())
                .build();
            vec![
                gst::PadTemplate::new("src", gst::PadDirection::Src, gst::PadPresence::Always, &caps).unwrap(),
                gst::PadTemplate::new("sink", gst::PadDirection::Sink, gst::PadPresence::Always, &caps).unwrap(),
            ]
        });
        PAD_TEMPLATES.as_ref()
    }
}

impl BaseTransformImpl for DetectionCapture {
    const MODE: gst_base::subclass::BaseTransformMode = gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = true;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = true;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let s = self.settings.lock().unwrap().clone();
        let location = s.location.clone().filter(|l| !l.is_empty()).ok_or_else(|| {
            gst::error_msg!(
                gst::ResourceError::NotFound,
                ["no location set: set 'location' to the dataset folder or an s3://BUCKET/PREFIX"]
            )
        })?;
        let initial_labels: Vec<String> = if !s.labels.is_empty() && std::path::Path::new(&s.labels).is_file() {
            let l = detection_common::labels::Labels::read_file(std::path::Path::new(&s.labels))
                .map_err(|e| gst::error_msg!(gst::ResourceError::OpenRead, ["{}", e]))?;
            l.foreground().to_vec()
        } else {
            s.labels
                .split(',')
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect()
        };
        self.captured.store(0, Ordering::SeqCst);
        self.dropped.store(0, Ordering::SeqCst);
        self.lost.store(0, Ordering::SeqCst);
        self.uploaded.store(0, Ordering::SeqCst);
        let (destination, existing) = if detection_storage::is_s3(&location) {
            let spool = s.spool.as_ref().map(PathBuf::from);
            let choice = SpoolChoice {
                device_id: &s.device_id,
                folder: spool.as_deref(),
                limit: s.spool_size,
            };
            let report = ElementReport(self.obj().clone());
            let writer = BucketWriter::open(&location, &s.s3.0, choice, s.quality as u8, &initial_labels, report)
                .map_err(|e| gst::error_msg!(gst::ResourceError::OpenWrite, ["{}", e]))?;
            gst::info!(
                CAT,
                imp = self,
                "capturing into {location} at {} as {} through the spool {} ({} samples waiting)",
                writer.endpoint(),
                writer.writer_id(),
                writer.spool_dir().display(),
                writer.waiting()
            );
            self.bytes.store(0, Ordering::SeqCst);
            self.spooled.store(writer.waiting() as u64, Ordering::SeqCst);
            (Destination::Bucket(Box::new(writer)), 0)
        } else {
            let folder = PathBuf::from(&location);
            let writer = DatasetWriter::open(&folder, s.quality as u8, &initial_labels)
                .map_err(|e| gst::error_msg!(gst::ResourceError::OpenWrite, ["{}", e]))?;
            gst::info!(
                CAT,
                imp = self,
                "capturing into {} from sample {}",
                folder.display(),
                writer.next_index()
            );
            self.bytes.store(writer.bytes, Ordering::SeqCst);
            let existing = writer.next_index();
            (Destination::Folder(writer), existing)
        };
        let eos_timeout = std::time::Duration::from_millis(s.eos_timeout_ms.into());
        let samples = SampleWriter::new(self.obj().clone(), destination, eos_timeout);
        let writer = Writer::start("detectioncapture-writer", s.queue_size as usize, samples)
            .map_err(|e| gst::error_msg!(gst::CoreError::Thread, ["cannot start the writer thread: {}", e]))?;
        *self.state.lock().unwrap() = Some(State {
            writer,
            frame: 0,
            last_capture: None,
            negative_credit: 0.0,
            queued: existing,
            limit_announced: false,
            info: None,
            classes: parse_class_list(&s.classes),
            live: None,
            tracks: TrackMemory::default(),
            reference: Vec::new(),
        });
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        let state = self.state.lock().unwrap().take();
        if let Some(state) = state {
            state.writer.stop();
        }
        Ok(())
    }

    fn set_caps(&self, incaps: &gst::Caps, outcaps: &gst::Caps) -> Result<(), gst::LoggableError> {
        let info =
            gst_video::VideoInfo::from_caps(incaps).map_err(|_| gst::loggable_error!(CAT, "bad caps {incaps}"))?;
        if let Some(state) = self.state.lock().unwrap().as_mut() {
            state.info = Some(info);
        }
        self.parent_set_caps(incaps, outcaps)
    }

    fn sink_event(&self, event: gst::Event) -> bool {
        if let gst::EventView::Eos(_) = event.view() {
            // EOS goes on only once every queued sample is on disk, held track frames included.
            self.flush_candidates();
            self.drain();
        }
        self.parent_sink_event(event)
    }

    fn transform_ip_passthrough(&self, buf: &gst::Buffer) -> Result<gst::FlowSuccess, gst::FlowError> {
        let s = self.settings.lock().unwrap().clone();
        let mut guard = self.state.lock().unwrap();
        let state = guard.as_mut().ok_or(gst::FlowError::Flushing)?;
        let info = state.info.clone().ok_or(gst::FlowError::NotNegotiated)?;
        let at_limit = (s.max_frames > 0 && state.queued >= s.max_frames as u64)
            || (s.max_bytes > 0 && self.bytes.load(Ordering::SeqCst) >= s.max_bytes);
        if at_limit {
            if !state.limit_announced {
                state.limit_announced = true;
                let samples = state.queued;
                // Posted without the state lock: a synchronous bus handler may set properties.
                drop(guard);
                gst::info!(CAT, imp = self, "capture limit reached ({samples} samples)");
                let _ = self.obj().post_message(
                    gst::message::Element::builder(
                        gst::Structure::builder("detectioncapture-limit")
                            .field("samples", samples)
                            .build(),
                    )
                    .src(&*self.obj())
                    .build(),
                );
            }
            return Ok(gst::FlowSuccess::Ok);
        }
        let mut chosen = Vec::new();
        if !self.select(&s, state, buf.as_ref(), (info.width(), info.height()), &mut chosen) {
            return Ok(gst::FlowSuccess::Ok);
        }
        let sample = Sample {
            buffer: buf.clone(),
            info,
            boxes: chosen,
            region: None,
        };
        let frame = state.frame.saturating_sub(1);
        let samples = state
            .tracks
            .choose(s.track_policy, (s.uncertain_low, s.uncertain_high), frame, sample)?;
        drop(guard);
        let grid = s.tiles.grid();
        for sample in samples {
            if grid.count() > 1 {
                for tile in sample.tiles(&grid) {
                    self.enqueue(tile)?;
                }
            } else {
                self.enqueue(sample)?;
            }
        }
        Ok(gst::FlowSuccess::Ok)
    }
}
