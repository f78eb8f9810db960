//! Frames between their arrival and their departure, and the inferences that run meanwhile.
//!
//! In order (`mode=in-order`): a frame picked for inference is preprocessed on the streaming thread and its
//! tensor goes to the worker pool; the frame is held until its detections are back, frames behind it wait
//! their turn, and the streaming thread goes on with the next frame as long as fewer than `inflight` runs are
//! going. With `inflight=1` a frame never outlives its own chain call (today's behaviour).
//!
//! Live (`mode=live`): no frame is held. A frame is sent to inference only when a worker is free, so the one
//! inferred is always the newest; finished results replace the latest detections only when newer.

use super::canary::CanaryStats;
use super::imp::CAT;
use super::metrics::DetectMetrics;
use detection_common::{BBox, Detection};
use detection_inference::pool::{Finished, InferencePool, Request};
use detection_inference::preprocess::{Preprocessor, TensorOut};
use detection_inference::tiles::{TileDetection, TileJoiner};
use detection_inference::{Model, PostProcess};
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// A detection mapped to the frame, ready to become metadata.
#[derive(Debug, Clone)]
pub(super) struct FrameDetection {
    pub(super) class_id: u32,
    pub(super) score: f32,
    /// Normalised to the frame (0..1).
    pub(super) norm: BBox,
    /// Integer pixel rectangle (x, y, width, height).
    pub(super) rect: (u32, u32, u32, u32),
}

/// Label per class id of one model (ids without a label are shown as "class-N").
pub(super) type LabelNames = Arc<Vec<String>>;

pub(super) fn label_names(model: &Model) -> LabelNames {
    Arc::new(
        (0..model.labels.len().max(1))
            .map(|i| {
                model
                    .labels
                    .name(i)
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("class-{i}"))
            })
            .collect(),
    )
}

/// On a canary device, the stable model run beside the candidate on 1 frame in `every`.
pub(super) struct Shadow {
    pub(super) model: Arc<Model>,
    pub(super) post: Arc<PostProcess>,
    pub(super) every: u32,
    pub(super) labels: LabelNames,
}

/// Shadow runs waiting for their comparison at most (1 in `every` inferred frames; a few are ever in flight).
const SHADOW_RUNS_KEPT: usize = 8;

/// One frame run through both models: each side's boxes (class ids, boxes normalised to the tensor) until
/// both have finished.
struct ShadowRun {
    id: u64,
    main_id: u64,
    main: Option<(LabelNames, Vec<(u32, BBox)>)>,
    stable_labels: LabelNames,
    stable: Option<(Vec<(u32, BBox)>, Duration)>,
}

/// The newest finished detections, which frames carry until newer ones finish.
pub(super) struct Latest {
    pub(super) detections: Vec<FrameDetection>,
    /// The PTS of the frame they were computed on.
    pub(super) pts: Option<gst::ClockTime>,
    /// The labels of the model that computed them (a model swapped in meanwhile has its own).
    pub(super) labels: LabelNames,
    /// The request they came from: in live mode an older result never replaces a newer one.
    id: Option<u64>,
    /// Attached as the pipeline's detections, or as a reference model's boxes (`role=reference`).
    pub(super) reference: bool,
}

fn label_of(labels: &LabelNames, class_id: u32) -> std::borrow::Cow<'_, str> {
    match labels.get(class_id as usize) {
        Some(l) if class_id > 0 => l.into(),
        _ => format!("class-{class_id}").into(),
    }
}

impl Latest {
    pub(super) fn label(&self, class_id: u32) -> std::borrow::Cow<'_, str> {
        label_of(&self.labels, class_id)
    }

    pub(super) fn clear(&mut self) {
        self.detections.clear();
        self.pts = None;
    }

    pub(super) fn attach(&self, buf: &mut gst::BufferRef) {
        let detections = self.detections.iter().map(|d| crate::roimeta::NewDetection {
            label: self.label(d.class_id),
            class_id: d.class_id,
            confidence: d.score,
            rect: d.rect,
            norm: d.norm,
            inference_pts: self.pts,
            track_id: None,
            first_seen: None,
            missed: false,
        });
        if self.reference {
            crate::roimeta::attach_boxes(buf, crate::roimeta::REFERENCE, detections);
        } else {
            crate::roimeta::attach_detections(buf, detections);
        }
    }
}

/// What a result needs that the inference does not carry. A frame's inference is one run per tile (one run
/// when not tiled), under the ids `id..id + parts`.
struct Pending {
    id: u64,
    parts: u32,
    pts: Option<gst::ClockTime>,
    labels: LabelNames,
    max_detections: usize,
}

impl Pending {
    fn owns(&self, id: u64) -> bool {
        (self.id..self.id + self.parts as u64).contains(&id)
    }
}

struct Held {
    buffer: gst::Buffer,
    request: Option<Pending>,
    arrived: Instant,
}

/// A frame on its way out.
pub(super) struct Output {
    pub(super) buffer: gst::Buffer,
    /// It brought new detections (it was inferred).
    pub(super) inferred: bool,
    /// How long it was in the element.
    pub(super) held: Duration,
}

pub(super) struct Frames {
    pool: InferencePool,
    held: VecDeque<Held>,
    /// Live mode: the requests in flight.
    live: VecDeque<Pending>,
    next_id: u64,
    spare_tensors: Vec<TensorOut>,
    spare_lists: Vec<Vec<Detection>>,
    /// Finished runs of frames not yet applied (in order: waiting for their turn or their other tiles).
    finished: Vec<Finished>,
    /// A tiled frame's detections in frame pixels before and after joining them (reused frame after frame).
    tile_detections: Vec<TileDetection>,
    joiner: TileJoiner,
    joined: Vec<Detection>,
    pub(super) latest: Latest,
    metrics: Arc<DetectMetrics>,
    /// Shadow runs not yet compared.
    shadows: Vec<ShadowRun>,
    stats: Arc<CanaryStats>,
}

impl Frames {
    pub(super) fn new(
        inflight: usize,
        added_delay: Duration,
        labels: LabelNames,
        metrics: Arc<DetectMetrics>,
        stats: Arc<CanaryStats>,
    ) -> std::io::Result<Self> {
        Ok(Self {
            pool: InferencePool::new(inflight, "mobilenetdetect", added_delay)?,
            held: VecDeque::with_capacity(inflight * 2),
            live: VecDeque::with_capacity(inflight),
            next_id: 0,
            spare_tensors: Vec::with_capacity(inflight + 1),
            spare_lists: Vec::with_capacity(inflight + 1),
            finished: Vec::with_capacity(inflight + 1),
            tile_detections: Vec::new(),
            joiner: TileJoiner::default(),
            joined: Vec::new(),
            latest: Latest {
                detections: Vec::with_capacity(super::settings::DEFAULT_MAX_DETECTIONS as usize),
                pts: None,
                labels,
                id: None,
                reference: false,
            },
            metrics,
            shadows: Vec::with_capacity(inflight + 1),
            stats,
        })
    }

    /// How many frames can be inferred at once.
    pub(super) fn capacity(&self) -> usize {
        self.pool.capacity()
    }

    /// Whether a worker is free for another frame.
    pub(super) fn can_request(&self) -> bool {
        self.pool.in_flight() < self.pool.capacity()
    }

    /// Tensors made for another model or frame size are of no more use.
    pub(super) fn forget_spare_tensors(&mut self) {
        self.spare_tensors.clear();
    }

    /// Sends the tensors `pre` has just filled (one per tile) to inference, and a copy of the first to the
    /// shadow model, if given; returns what the frame's entry needs.
    fn request(&mut self, i: Inference<'_>, pts: Option<gst::ClockTime>) -> Pending {
        let id = self.next_id;
        self.next_id += i.pre.len() as u64;
        let shadow_tensor = i.shadow.map(|_| {
            let spare = self.spare_tensor_for(&i.pre[0].out);
            i.pre[0].out.copy_into(spare)
        });
        for (part, pre) in (0..).zip(i.pre.iter_mut()) {
            let spare = self.spare_tensor_for(&pre.out);
            self.pool.submit(Request {
                id: id + part,
                model: i.model.clone(),
                post: i.post.clone(),
                tensor: pre.take_output(spare),
                detections: self.spare_lists.pop().unwrap_or_default(),
            });
        }
        if let (Some(shadow), Some(tensor)) = (i.shadow, shadow_tensor) {
            let shadow_id = self.next_id;
            self.next_id += 1;
            self.pool.submit(Request {
                id: shadow_id,
                model: shadow.model.clone(),
                post: shadow.post.clone(),
                tensor,
                detections: self.spare_lists.pop().unwrap_or_default(),
            });
            // A run whose frame's own result was dropped unseen (new caps in live mode, a newer result first)
            // never completes: only the newest few are kept.
            if self.shadows.len() >= SHADOW_RUNS_KEPT {
                self.shadows.remove(0);
            }
            self.shadows.push(ShadowRun {
                id: shadow_id,
                main_id: id,
                main: None,
                stable_labels: shadow.labels.clone(),
                stable: None,
            });
        }
        Pending {
            id,
            parts: i.pre.len() as u32,
            pts,
            labels: i.labels.clone(),
            max_detections: i.post.max_detections,
        }
    }

    /// A spare tensor of the same shape as `like` (tiles of a model without a fixed input size may differ),
    /// else any: a mismatch is replaced by a new one.
    fn spare_tensor_for(&mut self, like: &TensorOut) -> Option<TensorOut> {
        match self.spare_tensors.iter().rposition(|t| like.same_kind(t)) {
            Some(at) => Some(self.spare_tensors.swap_remove(at)),
            None => self.spare_tensors.pop(),
        }
    }

    /// A finished shadow run is kept until its frame's own run is done, then compared; any other result is
    /// given back.
    fn take_shadow(&mut self, f: Finished) -> Option<Finished> {
        let Some(at) = self.shadows.iter().position(|s| s.id == f.id) else {
            return Some(f);
        };
        if let Some(e) = &f.error {
            gst::warning!(CAT, "the stable model's shadow run failed: {e}");
            self.stats.failed_shadow_run();
            self.shadows.remove(at);
        } else {
            let boxes = f.detections.iter().map(|d| (d.class_id, d.bbox)).collect();
            self.shadows[at].stable = Some((boxes, f.run_time));
            self.compare_shadow(at);
        }
        self.recycle(f);
        None
    }

    /// Both runs of a shadowed frame are in: how far they agree goes to the verdict.
    fn compare_shadow(&mut self, at: usize) {
        let run = &self.shadows[at];
        let (Some((main_labels, main)), Some((stable, run_time))) = (&run.main, &run.stable) else {
            return;
        };
        fn named<'a>(labels: &'a LabelNames, boxes: &[(u32, BBox)]) -> Vec<(&'a str, BBox)> {
            // `label_names` names every id the model has.
            let name = |c: u32| labels.get(c as usize).map_or("?", String::as_str);
            boxes.iter().map(|(c, b)| (name(*c), *b)).collect()
        }
        let agreement =
            detection_common::release::agreement(&named(main_labels, main), &named(&run.stable_labels, stable));
        self.stats.shadow(*run_time, stable.len(), agreement);
        self.shadows.remove(at);
    }

    /// In order: queues a frame for output, with the inference of `pre`'s tensor if `infer` is given.
    pub(super) fn push(&mut self, buffer: gst::Buffer, arrived: Instant, infer: Option<Inference<'_>>) {
        let request = infer.map(|i| self.request(i, buffer.pts()));
        self.held.push_back(Held {
            buffer,
            request,
            arrived,
        });
    }

    /// Live mode: queues a frame for output at once, with the inference of `pre`'s tensor if `infer` is given.
    pub(super) fn push_live(&mut self, buffer: gst::Buffer, arrived: Instant, infer: Option<Inference<'_>>) {
        if let Some(i) = infer {
            let r = self.request(i, buffer.pts());
            self.live.push_back(r);
        }
        self.held.push_back(Held {
            buffer,
            request: None,
            arrived,
        });
    }

    /// Live mode: takes the results that have finished; `true` when the latest detections changed.
    pub(super) fn collect_live(&mut self) -> Result<bool, String> {
        let mut changed = false;
        while let Some(f) = self.pool.try_finished() {
            let Some(f) = self.take_shadow(f) else { continue };
            let Some(at) = self.live.iter().position(|p| p.owns(f.id)) else {
                self.recycle(f);
                continue;
            };
            self.finished.push(f);
            if !self.all_parts_in(&self.live[at]) {
                continue;
            }
            let pending = self.live.remove(at).expect("position is in range");
            if self.latest.id.is_some_and(|id| id > pending.id) {
                self.recycle_parts(&pending);
                continue;
            }
            self.apply(pending)?;
            changed = true;
        }
        Ok(changed)
    }

    /// The next frame that may leave, with its detections attached. In order, the oldest frame waits for its
    /// inference only while `inflight` runs are going or when `draining` (before an event, at EOS).
    pub(super) fn next_output(&mut self, draining: bool) -> Result<Option<Output>, String> {
        loop {
            let Some(front) = self.held.front() else {
                return Ok(None);
            };
            if front.request.as_ref().is_some_and(|p| !self.all_parts_in(p)) {
                if !draining && self.can_request() {
                    return Ok(None);
                }
                let f = self
                    .pool
                    .wait_finished()
                    .ok_or("an inference result went missing (no run in flight)")?;
                let Some(f) = self.take_shadow(f) else { continue };
                if self
                    .held
                    .iter()
                    .any(|h| h.request.as_ref().is_some_and(|p| p.owns(f.id)))
                {
                    self.finished.push(f);
                } else {
                    self.recycle(f);
                }
                continue;
            }
            let h = self.held.pop_front().expect("front exists");
            let inferred = match h.request {
                Some(p) => {
                    self.apply(p)?;
                    true
                }
                None => false,
            };
            let mut buffer = h.buffer;
            self.latest.attach(buffer.make_mut());
            self.metrics.frames.fetch_add(1, Ordering::Relaxed);
            self.stats.frame();
            return Ok(Some(Output {
                buffer,
                inferred,
                held: h.arrived.elapsed(),
            }));
        }
    }

    /// New caps (another frame size or format): live runs still in flight were computed on the old frames, so
    /// their results are dropped when they finish (in order, the caps event already drained every frame).
    pub(super) fn forget_live_requests(&mut self) {
        // Only the live requests' finished tiles: in order, held frames may still own some (a drain that
        // stopped on a flow error).
        while let Some(p) = self.live.pop_front() {
            self.recycle_parts(&p);
        }
        self.latest.clear();
    }

    /// Another model pair was swapped in: shadow runs of the old pair are not compared (their results are
    /// recycled unseen when they finish).
    pub(super) fn forget_shadows(&mut self) {
        self.shadows.clear();
    }

    /// After a flush: frames held are dropped and runs in flight finish unseen.
    pub(super) fn discard(&mut self) {
        self.held.clear();
        self.live.clear();
        self.shadows.clear();
        while let Some(f) = self.finished.pop() {
            self.recycle(f);
        }
        while let Some(f) = self.pool.wait_finished() {
            self.recycle(f);
        }
        self.latest.clear();
        self.latest.id = None;
    }

    /// A frame's finished runs (waiting in `finished`) become the latest detections, mapped to the frame; a
    /// tiled frame's detections are joined across tile borders.
    fn apply(&mut self, pending: Pending) -> Result<(), String> {
        if let Some(e) = self.finished.iter().filter(|f| pending.owns(f.id)).find_map(|f| {
            let path = f.model.path.display();
            f.error.as_ref().map(|e| format!("{path}: {e}"))
        }) {
            self.stats.failed_run();
            self.recycle_parts(&pending);
            return Err(e);
        }
        let mut frame_size = None;
        self.tile_detections.clear();
        for f in self.finished.iter().filter(|f| pending.owns(f.id)) {
            self.metrics.inferences.fetch_add(1, Ordering::Relaxed);
            self.metrics.inference_seconds.observe(f.run_time);
            let g = f.tensor.geometry;
            frame_size = Some((g.frame_width as f32, g.frame_height as f32));
            let tile = (f.id - pending.id) as usize;
            let mut nonfinite = 0;
            for d in &f.detections {
                let b = &d.bbox;
                if ![d.score, b.x0, b.y0, b.x1, b.y1].iter().all(|v| v.is_finite()) {
                    nonfinite += 1;
                    continue;
                }
                let in_frame = Detection {
                    bbox: g.to_frame(b),
                    ..*d
                };
                let t = TileDetection::new(tile, &g.region, g.frame_width, g.frame_height, in_frame);
                self.tile_detections.push(t);
            }
            let finite = f.detections.len() - nonfinite;
            self.stats.inference(f.run_time, finite, nonfinite);
            gst::log!(CAT, "inference {:?}, {finite} detections", f.run_time);
        }
        let latest = &mut self.latest;
        latest.detections.clear();
        latest.pts = pending.pts;
        latest.labels = pending.labels.clone();
        latest.id = Some(pending.id);
        self.joined.clear();
        if pending.parts > 1 {
            self.joiner
                .join(&mut self.tile_detections, pending.max_detections, &mut self.joined);
        } else {
            self.joined.extend(self.tile_detections.iter().map(|t| t.detection));
        }
        let (fw, fh) = frame_size.unwrap_or((1.0, 1.0));
        for d in &self.joined {
            let px = &d.bbox;
            let (x0, y0, x1, y1) = (px.x0.round(), px.y0.round(), px.x1.round(), px.y1.round());
            if x1 <= x0 || y1 <= y0 {
                continue;
            }
            self.metrics.detected(&latest.label(d.class_id));
            latest.detections.push(FrameDetection {
                class_id: d.class_id,
                score: d.score,
                norm: px.scale(1.0 / fw, 1.0 / fh),
                rect: (x0 as u32, y0 as u32, (x1 - x0) as u32, (y1 - y0) as u32),
            });
        }
        // A canary's shadow ran on the first tile: compared with that tile's own boxes.
        if let Some(at) = self.shadows.iter().position(|s| s.main_id == pending.id)
            && let Some(f) = self.finished.iter().find(|f| f.id == pending.id)
        {
            let boxes = f.detections.iter().map(|d| (d.class_id, d.bbox)).collect();
            self.shadows[at].main = Some((latest.labels.clone(), boxes));
            self.compare_shadow(at);
        }
        self.recycle_parts(&pending);
        Ok(())
    }

    /// Whether every run of a frame has finished.
    fn all_parts_in(&self, pending: &Pending) -> bool {
        self.finished.iter().filter(|f| pending.owns(f.id)).count() == pending.parts as usize
    }

    /// Gives back the tensors and lists of a frame's finished runs.
    fn recycle_parts(&mut self, pending: &Pending) {
        let mut i = 0;
        while i < self.finished.len() {
            if pending.owns(self.finished[i].id) {
                let f = self.finished.swap_remove(i);
                self.recycle(f);
            } else {
                i += 1;
            }
        }
    }

    fn recycle(&mut self, f: Finished) {
        self.spare_tensors.push(f.tensor);
        self.spare_lists.push(f.detections);
    }
}

/// What a frame picked for inference brings.
pub(super) struct Inference<'a> {
    pub(super) model: &'a Arc<Model>,
    pub(super) post: &'a Arc<PostProcess>,
    /// One per tile (one for the whole frame when not tiled), each with its tensor just filled.
    pub(super) pre: &'a mut [Preprocessor],
    pub(super) labels: &'a LabelNames,
    /// Also run the stable model on this frame (a canary's shadow run).
    pub(super) shadow: Option<&'a Shadow>,
}
