//! Live sources: a 30 fps live source in front of a model capped near 10 inferences/s (a delay injected
//! after each run). In `mode=live` frames keep the source's rate and the end-to-end latency stays bounded
//! over 300 frames; every frame carries the newest detections and the PTS of the frame they were computed on.
//! The default mode (`in-order`) is measured too: it documents what it does, falling further behind.

mod common;
use common::*;
use gst::prelude::*;
use std::sync::{Arc, Mutex, Once};

/// Milliseconds slept after each inference (read by the element at start).
const ADDED_DELAY_MS: u64 = 100;

fn init_slow_model() {
    static SLOW: Once = Once::new();
    SLOW.call_once(|| {
        // SAFETY: set once, before GStreamer or any other thread of the test reads the environment.
        unsafe { std::env::set_var("MOBILENETDETECT_TEST_INFERENCE_DELAY_MS", ADDED_DELAY_MS.to_string()) };
        init();
    });
}

struct Arrival {
    pts: gst::ClockTime,
    /// Running time at which the frame reached the sink.
    at: gst::ClockTime,
    inference_pts: Option<gst::ClockTime>,
}

struct Run {
    arrivals: Vec<Arrival>,
    /// The latency the detector answers it adds (its src pad's answer less the source's).
    element_latency: gst::ClockTime,
}

impl Run {
    fn latencies_ms(&self) -> Vec<f64> {
        self.arrivals
            .iter()
            .map(|a| a.at.saturating_sub(a.pts).nseconds() as f64 / 1e6)
            .collect()
    }

    fn frames_per_second(&self) -> f64 {
        let (first, last) = (self.arrivals.first().unwrap().at, self.arrivals.last().unwrap().at);
        (self.arrivals.len() - 1) as f64 / (last - first).seconds_f64()
    }
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

fn run(mode: &str, frames: u32) -> Run {
    init_slow_model();
    let model = write_model(
        &format!("live-{mode}"),
        &mobilenetdetect_testkit::ssdlite::build(&["stop", "yield", "speed-limit", "pedestrian"], 42),
    );
    let p = pipeline(&format!(
        "videotestsrc name=source is-live=true num-buffers={frames} pattern=ball ! \
         video/x-raw,format=I420,width=320,height=240,framerate=30/1 ! \
         mobilenetdetect name=detector model={model} score-threshold=0.0 threads=1 mode={mode} ! fakesink name=sink sync=true"
    ));
    let sink = p.by_name("sink").unwrap();
    let arrivals = Arc::new(Mutex::new(Vec::with_capacity(frames as usize)));
    let (a, s) = (arrivals.clone(), sink.clone());
    sink.static_pad("sink")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            let buf = info.buffer().unwrap();
            let now = s.clock().unwrap().time() - s.base_time().unwrap();
            let inference_pts = inference_pts(buf).map(gst::ClockTime::from_nseconds);
            a.lock().unwrap().push(Arrival {
                pts: buf.pts().unwrap(),
                at: now,
                inference_pts,
            });
            gst::PadProbeReturn::Ok
        });
    play_to_eos(&p);
    let min_latency = |element: &str| {
        let mut q = gst::query::Latency::new();
        let pad = p.by_name(element).unwrap().static_pad("src").unwrap();
        assert!(pad.query(&mut q), "{element} answers the latency query");
        let (live, min, _) = q.result();
        assert!(live);
        min
    };
    let element_latency = min_latency("detector") - min_latency("source");
    p.set_state(gst::State::Null).unwrap();
    let arrivals = std::mem::take(&mut *arrivals.lock().unwrap());
    assert_eq!(arrivals.len(), frames as usize, "every frame reaches the sink");
    Run {
        arrivals,
        element_latency,
    }
}

#[test]
fn live_mode_keeps_the_source_rate_and_a_bounded_latency() {
    let r = run("live", 300);
    let latency = r.latencies_ms();
    let fps = r.frames_per_second();
    let inferred: std::collections::BTreeSet<_> = r.arrivals.iter().filter_map(|a| a.inference_pts).collect();
    let (first, last) = (mean(&latency[10..60]), mean(&latency[250..]));
    let worst = latency.iter().cloned().fold(0.0, f64::max);
    eprintln!(
        "live: {fps:.1} frames/s out, {} frames inferred, latency first {first:.1} ms, last {last:.1} ms, worst \
         {worst:.1} ms, element latency {}",
        inferred.len(),
        r.element_latency
    );
    assert!(fps > 27.0, "frames keep the source's 30 fps: {fps:.1}");
    assert!(
        (20..=150).contains(&inferred.len()),
        "inference runs near its own pace (about 8/s), on {} frames",
        inferred.len()
    );
    assert!(
        last < first + 25.0,
        "latency does not grow: {first:.1} ms -> {last:.1} ms"
    );
    assert!(worst < 250.0, "latency stays bounded: worst {worst:.1} ms");
    assert!(
        r.element_latency < gst::ClockTime::from_mseconds(20),
        "live mode adds (almost) no latency: {}",
        r.element_latency
    );
    // Every frame after the first result carries detections of an earlier (or its own) frame, never older
    // than about two runs.
    let mut carried = 0;
    for a in &r.arrivals {
        if let Some(ip) = a.inference_pts {
            assert!(ip <= a.pts, "detections from the future: {ip} on {}", a.pts);
            let age = (a.pts - ip).mseconds();
            assert!(
                age <= 3 * ADDED_DELAY_MS + 100,
                "detections {age} ms old on frame {}",
                a.pts
            );
            carried += 1;
        }
    }
    assert!(carried > 250, "frames carry detections: {carried} of 300");
}

#[test]
fn in_order_mode_falls_behind_a_live_source_faster_than_the_model() {
    let r = run("in-order", 45);
    let latency = r.latencies_ms();
    let fps = r.frames_per_second();
    let (first, last) = (mean(&latency[..5]), mean(&latency[40..]));
    eprintln!(
        "in-order: {fps:.1} frames/s out, latency first {first:.1} ms, last {last:.1} ms, element latency {}",
        r.element_latency
    );
    // What the default does: every frame waits for its own inference, so output runs at the model's pace
    // and a live source's frames wait longer and longer.
    assert!(fps < 15.0, "output at the model's pace: {fps:.1} frames/s");
    assert!(last > first + 1000.0, "latency grows: {first:.1} ms -> {last:.1} ms");
    assert!(
        r.element_latency >= gst::ClockTime::from_mseconds(ADDED_DELAY_MS),
        "the element reports the time it holds a frame: {}",
        r.element_latency
    );
    for a in &r.arrivals {
        assert_eq!(
            a.inference_pts.unwrap_or(a.pts),
            a.pts,
            "each frame carries its own detections"
        );
    }
}
