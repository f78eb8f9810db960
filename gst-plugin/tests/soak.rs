//! Soak: many small frames through detect → json → capture with the process's memory sampled, and many
//! NULL → PLAYING → NULL cycles with its threads and open files counted. Nothing may grow.
//!
//! The suite runs a short variant; the full one (100,000 frames, 1,000 cycles) is
//! `MOBILENETDETECT_SOAK_FRAMES=100000 MOBILENETDETECT_SOAK_CYCLES=1000 scripts/test -E 'binary(soak)' --no-capture`.

mod common;
use common::*;
use detection_common::metadata as meta;
use gst::prelude::*;
use mobilenetdetect_testkit::models::{self, ImageInput};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

fn count_entries(dir: &str) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}

fn model() -> String {
    write_model(
        "soak-model",
        &models::decoded_model(
            ImageInput::nchw(32, 32),
            &[[0.25, 0.25, 0.75, 0.75], [0.1, 0.1, 0.3, 0.3]],
            &[vec![0.0, 0.9], vec![0.0, 0.6]],
            ("boxes", "scores"),
            &[(meta::KEY_LABELS, "BACKGROUND\nsign\n")],
        ),
    )
}

fn launch(model: &str, dir: &std::path::Path, frames: u64) -> String {
    format!(
        "videotestsrc num-buffers={frames} ! video/x-raw,format=I420,width=64,height=48 ! \
         mobilenetdetect name=d model={model} ! detectionjson location={} ! \
         detectioncapture location={} every-n-frames=50 ! fakesink name=sink",
        dir.join("frames.jsonl").display(),
        dir.join("dataset").display()
    )
}

#[test]
fn memory_stays_flat_over_many_frames() {
    let frames = setting("MOBILENETDETECT_SOAK_FRAMES", 20_000);
    let dir = temp_dir("soak-frames");
    let p = pipeline(&launch(&model(), &dir, frames));
    // Count frames at the sink; sample the resident size every 1/50 of the run.
    let seen = Arc::new(AtomicU64::new(0));
    let counter = seen.clone();
    let samples = Arc::new(std::sync::Mutex::new(Vec::<(u64, u64)>::new()));
    let recorded = samples.clone();
    let step = (frames / 50).max(1);
    p.by_name("sink")
        .unwrap()
        .static_pad("sink")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            let n = counter.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_multiple_of(step) {
                recorded.lock().unwrap().push((n, status_kib("VmRSS:")));
            }
            gst::PadProbeReturn::Ok
        });
    p.set_state(gst::State::Playing).unwrap();
    let msg = p
        .bus()
        .unwrap()
        .timed_pop_filtered(gst::ClockTime::NONE, &[gst::MessageType::Eos, gst::MessageType::Error])
        .unwrap();
    if let gst::MessageView::Error(e) = msg.view() {
        panic!("{} {:?}", e.error(), e.debug());
    }
    p.set_state(gst::State::Null).unwrap();
    assert_eq!(seen.load(Ordering::Relaxed), frames);
    assert_eq!(
        std::fs::read_to_string(dir.join("frames.jsonl"))
            .unwrap()
            .lines()
            .count() as u64,
        frames
    );

    // Warm-up is the first fifth (allocator arenas, thread pools, the capture's first files).
    let samples = samples.lock().unwrap().clone();
    let after: Vec<u64> = samples
        .iter()
        .filter(|(n, _)| *n > frames / 5)
        .map(|(_, kib)| *kib)
        .collect();
    let base = after[0];
    let peak = *after.iter().max().unwrap();
    eprintln!(
        "soak: {frames} frames, RSS after warm-up {base} KiB, peak {peak} KiB, end {} KiB, growth {} KiB",
        after.last().unwrap(),
        peak - base
    );
    assert!(
        peak - base <= 2048,
        "RSS grew by {} KiB after warm-up: {samples:?}",
        peak - base
    );
}

#[test]
fn start_stop_cycles_leak_no_threads_or_files() {
    let cycles = setting("MOBILENETDETECT_SOAK_CYCLES", 300);
    let dir = temp_dir("soak-cycles");
    let p = pipeline(&launch(&model(), &dir, 1_000_000));
    let bus = p.bus().unwrap();
    let counts = || (count_entries("/proc/self/task"), count_entries("/proc/self/fd"));
    let cycle = |_: usize| {
        p.set_state(gst::State::Playing).unwrap();
        let msg = bus
            .timed_pop_filtered(
                gst::ClockTime::from_seconds(30),
                &[gst::MessageType::AsyncDone, gst::MessageType::Error],
            )
            .expect("prerolled");
        if let gst::MessageView::Error(e) = msg.view() {
            panic!("{} {:?}", e.error(), e.debug());
        }
        p.set_state(gst::State::Null).unwrap();
    };
    // GStreamer's and ONNX Runtime's process-wide pools settle in the first cycles, and a pooled thread may
    // still be winding down just after a cycle: counts are taken as the lowest over a second of rest.
    let settled = || {
        (0..10).fold((usize::MAX, usize::MAX), |low, _| {
            std::thread::sleep(std::time::Duration::from_millis(100));
            let c = counts();
            (low.0.min(c.0), low.1.min(c.1))
        })
    };
    let warm_up = (cycles / 10).max(20) as usize;
    (0..warm_up).for_each(cycle);
    let before = settled();
    (warm_up..(cycles as usize).max(warm_up + 10)).for_each(cycle);
    let after = settled();
    eprintln!(
        "soak: {cycles} cycles, threads {} -> {}, open files {} -> {}",
        before.0, after.0, before.1, after.1
    );
    let names: Vec<String> = std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .map(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .unwrap_or_default()
                .trim()
                .to_string()
        })
        .collect();
    assert!(
        after.0 <= before.0,
        "threads grew from {} to {}: {names:?}",
        before.0,
        after.0
    );
    assert!(after.1 <= before.1, "open files grew from {} to {}", before.1, after.1);
}
