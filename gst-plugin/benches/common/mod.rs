//! What the benchmarks share: child processes (each measurement in its own process, so that peak memory is
//! its own), peak memory, the bare ONNX Runtime loop and playing a pipeline to EOS.
#![allow(dead_code)]

use gst::prelude::*;
use std::process::Command;
use std::time::Instant;

pub fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The SSDLite-MobileNetV2 300x300 input: NCHW float RGB, (pixel - 127.5) / 127.5.
pub fn ssdlite_tensor_spec() -> detection_inference::preprocess::TensorSpec {
    use detection_common::metadata::{ChannelOrder, InputLayout};
    use detection_inference::preprocess::{TensorSpec, TensorType};
    TensorSpec {
        width: 300,
        height: 300,
        layout: InputLayout::Nchw,
        dtype: TensorType::F32,
        channel_order: ChannelOrder::Rgb,
        mean: [127.5; 3],
        std: [127.5; 3],
    }
}

/// Peak resident memory of this process (VmHWM), in MB.
pub fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// A bare ONNX Runtime session (`threads` intra-op threads) run back to back on a prepared 300x300 tensor:
/// (frames/s, peak MB).
pub fn bare_ort(model: &str, threads: usize, frames: usize) -> (f64, f64) {
    let input: Vec<f32> = (0..3 * 300 * 300).map(|i| ((i % 255) as f32 - 127.5) / 127.5).collect();
    bare_ort_on(model, threads, frames, &[input])
}

/// The same on `inputs` (NCHW 1x3x300x300 tensors, taken in turn).
pub fn bare_ort_on(model: &str, threads: usize, frames: usize, inputs: &[Vec<f32>]) -> (f64, f64) {
    let env = detection_inference::runtime::environment().expect("ONNX Runtime (run scripts/setup)");
    let mut session = ort::session::Session::builder(env)
        .unwrap()
        .with_intra_threads(threads)
        .unwrap()
        .commit_from_file(model)
        .unwrap();
    let mut next = 0;
    let mut run = || {
        let input = &inputs[next % inputs.len()];
        next += 1;
        let t = ort::value::TensorRef::from_array_view(([1usize, 3, 300, 300], &input[..])).unwrap();
        let out = session.run(ort::inputs![t]).unwrap();
        let (_, scores) = out[1].try_extract_tensor::<f32>().unwrap();
        std::hint::black_box(scores[0]);
    };
    for _ in 0..5 {
        run();
    }
    let start = Instant::now();
    for _ in 0..frames {
        run();
    }
    (frames as f64 / start.elapsed().as_secs_f64(), peak_rss_mb())
}

/// Plays `p` to EOS (an error fails the benchmark) and stops it.
pub fn play_to_eos(p: &gst::Pipeline) {
    p.set_state(gst::State::Playing).unwrap();
    let bus = p.bus().unwrap();
    for msg in bus.iter_timed(gst::ClockTime::NONE) {
        match msg.view() {
            gst::MessageView::Eos(_) => break,
            gst::MessageView::Error(e) => panic!("{} {:?}", e.error(), e.debug()),
            _ => {}
        }
    }
    p.set_state(gst::State::Null).unwrap();
}

/// Frames/s of a pipeline with a sink named `sink`, between its `warmup`-th buffer and its last.
pub fn pipeline_frames_per_second(launch: &str, warmup: usize) -> f64 {
    let p = gst::parse::launch(launch).unwrap().downcast::<gst::Pipeline>().unwrap();
    let times = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let t = times.clone();
    p.by_name("sink")
        .unwrap()
        .static_pad("sink")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            t.lock().unwrap().push(Instant::now());
            gst::PadProbeReturn::Ok
        });
    play_to_eos(&p);
    let times = times.lock().unwrap();
    let span = times[times.len() - 1].duration_since(times[warmup - 1]);
    (times.len() - warmup) as f64 / span.as_secs_f64()
}

/// Runs this benchmark binary again with `args`; the child prints `RESULT <frames/s> <peak MB>`.
pub fn run_child(args: &[String]) -> (f64, f64) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(args)
        .output()
        .expect("child runs");
    parse_result(&out, &args.join(" "))
}

/// Reads a child's `RESULT <frames/s> <peak MB>` line.
pub fn parse_result(out: &std::process::Output, what: &str) -> (f64, f64) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().find(|l| l.starts_with("RESULT ")).unwrap_or_else(|| {
        panic!("{what} failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    });
    let v: Vec<f64> = line.split_whitespace().skip(1).map(|x| x.parse().unwrap()).collect();
    (v[0], v[1])
}

/// The median of a few measurements (benchmarks on a shared 2-core machine are noisy).
pub fn median(mut v: Vec<(f64, f64)>) -> (f64, f64) {
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    v[v.len() / 2]
}
