//! The streaming side of `mobilenetdetect`: a frame comes in (preprocessed and sent to inference when its turn
//! comes), frames go out (in order, or at once in live mode) with their detections, and the latency the
//! element reports follows how long it holds them.

use super::frames::Inference;
use super::imp::{CAT, MobilenetDetect, Post, State};
use super::settings::FrameSettings;
use detection_inference::preprocess::Preprocessor;
use detection_inference::{Model, PostProcess};
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

impl MobilenetDetect {
    /// Fills the model's input tensors from `buf`, one per tile (the preprocessors are made again when the
    /// caps, model, resize mode or tile grid changed).
    fn preprocess(
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
        let (resize, tiles) = (settings.resize, settings.tiles);
        // A model without a fixed input size takes each tile at its own size.
        let input = &state.model.input;
        let tile = |i: u32| {
            let r = tiles.region(i, size.0, size.1);
            (r, input.tensor_spec(r.width, r.height))
        };
        let current = state.pre.len() == tiles.count() as usize
            && (0..).zip(&state.pre).all(|(i, p)| {
                let (r, spec) = tile(i);
                p.matches(format, size, r, colorimetry, &spec, resize)
            });
        if !current {
            state.pre = (0..tiles.count())
                .map(|i| {
                    let (r, spec) = tile(i);
                    Preprocessor::of_region(format, size, r, colorimetry, spec, resize)
                })
                .collect::<Result<_, _>>()
                .map_err(negotiation)?;
            state.frames.forget_spare_tensors();
        }
        let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buf, info).map_err(|_| {
            (
                gst::error_msg!(
                    gst::CoreError::Failed,
                    ["cannot map the video frame for reading (buffer smaller than its caps or video meta say)"]
                ),
                gst::FlowError::Error,
            )
        })?;
        crate::video::frame(&frame)
            .and_then(|f| state.pre.iter_mut().try_for_each(|pre| pre.process(&f)))
            .map_err(|e| {
                (
                    gst::error_msg!(gst::StreamError::Decode, ["{}", e]),
                    gst::FlowError::Error,
                )
            })
    }

    fn detections_message(&self, state: &State, pts: Option<gst::ClockTime>) -> gst::Message {
        let info = state.info.as_ref();
        let latest = &state.frames.latest;
        let detections = latest.detections.iter().map(|d| {
            gst::Structure::builder(crate::roimeta::DETECTION)
                .field("label", latest.label(d.class_id).as_ref())
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
            .field("timestamp", pts.map(|t| t.nseconds()).unwrap_or(u64::MAX))
            .field("frame-width", info.map(|i| i.width()).unwrap_or(0))
            .field("frame-height", info.map(|i| i.height()).unwrap_or(0))
            .field("detections", gst::List::new(detections))
            .build();
        gst::message::Element::builder(s).src(&*self.obj()).build()
    }

    /// A frame held `held` in the element: when frames are held well beyond the latency reported so far
    /// several times in a row (one late wake-up is not a trend), report more (a latency message makes the
    /// pipeline ask again).
    fn note_hold(&self, state: &mut State, held: Duration, posts: &mut Vec<Post>) {
        let reported = Duration::from_nanos(self.latency_ns.load(Ordering::Relaxed));
        if held <= reported.mul_f64(1.25) + Duration::from_millis(2) {
            state.longer_holds = None;
            return;
        }
        let (count, shortest) = state.longer_holds.unwrap_or((0, held));
        let (count, shortest) = (count + 1, shortest.min(held));
        if count < 3 {
            state.longer_holds = Some((count, shortest));
            return;
        }
        state.longer_holds = None;
        self.latency_ns.store(shortest.as_nanos() as u64, Ordering::Relaxed);
        gst::info!(
            CAT,
            imp = self,
            "frames are held {shortest:?} and more: reporting that latency"
        );
        posts.push(Post::Message(
            gst::message::Latency::builder().src(&*self.obj()).build(),
        ));
    }

    /// The time one run of `model` takes, measured on a blank tensor (which also takes ONNX Runtime's slow
    /// first run out of the stream). `None` when the run fails: the stream will say why.
    pub(super) fn warm_up(model: &Model, post: &PostProcess) -> Option<Duration> {
        let spec = model.input.tensor_spec(320, 320);
        let n = (spec.width * spec.height * 3) as usize;
        let (f32s, u8s) = match spec.dtype {
            detection_inference::preprocess::TensorType::F32 => (vec![0.0; n], Vec::new()),
            detection_inference::preprocess::TensorType::U8 => (Vec::new(), vec![0; n]),
        };
        let mut out = Vec::new();
        let started = Instant::now();
        model.detect(&spec, &f32s, &u8s, post, &mut out).ok()?;
        Some(started.elapsed())
    }

    /// A frame arrives: maybe preprocess it and send it to inference, then queue it for output.
    pub(super) fn accept_frame(
        &self,
        buf: gst::Buffer,
        arrived: Instant,
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
                // The stable model in shadow filters as the candidate does, or their agreement would differ.
                if let Some(shadow) = state.shadow.as_mut()
                    && let Ok(p) = s.post_process(&shadow.model)
                {
                    shadow.post = Arc::new(p);
                }
                match s.post_process(&state.model) {
                    Ok(p) => state.post = Arc::new(p),
                    Err(e) => posts.push(Post::Warning(
                        gst::LibraryError::Settings,
                        format!("ignoring the new class filter: {e}"),
                    )),
                }
                state.post_version = s.filter_version;
            }
            FrameSettings {
                resize: s.resize.mode(),
                tiles: s.tiles.grid(),
                interval: s.interval.max(1),
                post_messages: s.post_messages,
            }
        };
        let fail = |posts: &mut Vec<Post>, (error, flow): (gst::ErrorMessage, gst::FlowError)| {
            posts.push(Post::Error(error));
            Err(flow)
        };
        let infer_now = if state.live {
            // Results that finished since the last frame first, so this frame carries the newest.
            match state.frames.collect_live() {
                Ok(true) if frame_settings.post_messages => {
                    posts.push(Post::Message(self.detections_message(state, state.frames.latest.pts)))
                }
                Ok(_) => {}
                Err(e) => return fail(posts, inference_error(e)),
            }
            state.since_request = state.since_request.saturating_add(1);
            state.frames.can_request() && state.since_request >= frame_settings.interval as u64
        } else {
            state.frame_index += 1;
            (state.frame_index - 1) % frame_settings.interval as u64 == 0
        };
        if infer_now {
            if let Err(e) = Self::preprocess(state, &buf, &frame_settings) {
                return fail(posts, e);
            }
            state.since_request = 0;
        }
        let shadow = match &state.shadow {
            Some(s) if infer_now => {
                state.since_shadow += 1;
                let due = state.since_shadow >= s.every;
                if due {
                    state.since_shadow = 0;
                }
                due.then_some(s)
            }
            _ => None,
        };
        let infer = infer_now.then(|| Inference {
            model: &state.model,
            post: &state.post,
            pre: &mut state.pre,
            labels: &state.label_names,
            shadow,
        });
        if state.live {
            state.frames.push_live(buf, arrived, infer);
        } else {
            state.frames.push(buf, arrived, infer);
        }
        Ok(gst::FlowSuccess::Ok)
    }

    /// The next frame that may leave (see `Frames::next_output`).
    pub(super) fn next_output(
        &self,
        draining: bool,
        posts: &mut Vec<Post>,
    ) -> Result<Option<gst::Buffer>, gst::FlowError> {
        let mut guard = self.state.lock().unwrap();
        let Some(state) = guard.as_mut() else {
            return Ok(None);
        };
        match state.frames.next_output(draining) {
            Ok(Some(out)) => {
                if out.inferred && self.settings.lock().unwrap().post_messages {
                    posts.push(Post::Message(self.detections_message(state, out.buffer.pts())));
                }
                self.note_hold(state, out.held, posts);
                Ok(Some(out.buffer))
            }
            Ok(None) => Ok(None),
            Err(e) => {
                let (error, flow) = inference_error(e);
                posts.push(Post::Error(error));
                Err(flow)
            }
        }
    }

    /// Sends every frame still held downstream, in order (before a serialized event or query).
    pub(super) fn drain(&self) {
        loop {
            let mut posts = Vec::new();
            let out = self.next_output(true, &mut posts);
            self.post(posts);
            match out {
                Ok(Some(buf)) => {
                    if let Err(flow) = self.obj().src_pad().push(buf) {
                        gst::debug!(CAT, imp = self, "draining stopped: {flow:?}");
                        return;
                    }
                }
                Ok(None) | Err(_) => return,
            }
        }
    }
}

fn inference_error(e: String) -> (gst::ErrorMessage, gst::FlowError) {
    (
        gst::error_msg!(gst::StreamError::Failed, ["{}", e]),
        gst::FlowError::Error,
    )
}
