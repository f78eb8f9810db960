//! Benchmark (not a test): frames/s and peak memory of `mobilenetdetect` at its `inflight`/`threads` splits
//! against (a) a bare ONNX Runtime loop on prepared tensors with the same total threads and (b) the loop a
//! Python user writes with OpenCV and onnxruntime, all on the SSDLite-MobileNetV2 300x300 graph and 768x576
//! I420 frames read from a raw file. Goals: best split >= 1.0x of (a), >= 1.3x of (b).
//!
//!     benchmarks/inference_speed          (sets up the Python side, then runs this)
//!     cargo bench -p gst-plugin-mobilenetdetect --bench concurrent_inference
//!
//! Environment: BENCH_FRAMES (default 150), BENCH_THREADS (total threads, default 2), BENCH_REPEATS (default
//! 3: each figure is the median of that many runs, each in a child process of its own), BENCH_PYTHON (a python
//! with numpy, opencv and onnxruntime; (b) is skipped without one).

mod common;
use common::*;
use gst::prelude::*;
use std::process::Command;

const WIDTH: u32 = 768;
const HEIGHT: u32 = 576;
const WARMUP: usize = 5;

/// The element reading the raw file: frames/s from the WARMUP-th buffer on, and peak memory.
fn element(model: &str, raw: &str, inflight: usize, threads: usize) -> (f64, f64) {
    gst::init().unwrap();
    gstmobilenetdetect::plugin_register_static().unwrap();
    // One read per frame (filesrc's default is 4 KB blocks).
    let fps = pipeline_frames_per_second(
        &format!(
            "filesrc location={raw} blocksize={} ! rawvideoparse format=i420 width={WIDTH} height={HEIGHT} framerate=25/1 ! \
             mobilenetdetect model={model} inflight={inflight} threads={threads} ! fakesink name=sink sync=false",
            WIDTH * HEIGHT * 3 / 2
        ),
        WARMUP,
    );
    (fps, peak_rss_mb())
}

/// The raw file's frames as the model's input tensors, prepared before anything is timed.
fn tensors(raw: &str) -> Vec<Vec<f32>> {
    use detection_inference::pixels::{Colorimetry, Frame, PixelFormat};
    use detection_inference::preprocess::{Preprocessor, ResizeMode};
    let spec = ssdlite_tensor_spec();
    let colorimetry = Colorimetry::BT601_LIMITED;
    let mut pre = Preprocessor::new(
        PixelFormat::I420,
        (WIDTH, HEIGHT),
        colorimetry,
        spec,
        ResizeMode::Stretch,
    )
    .unwrap();
    let (w, h) = (WIDTH as usize, HEIGHT as usize);
    let mut data = vec![0; w * h * 3 / 2 * 25];
    std::io::Read::read_exact(&mut std::fs::File::open(raw).unwrap(), &mut data).unwrap();
    // 25 distinct frames are enough variety and keep their memory small.
    data.chunks_exact(w * h * 3 / 2)
        .take(25)
        .map(|f| {
            let (y, uv) = f.split_at(w * h);
            let (u, v) = uv.split_at(w * h / 4);
            let frame = Frame {
                format: PixelFormat::I420,
                width: WIDTH,
                height: HEIGHT,
                colorimetry,
                planes: [(y, WIDTH as i32), (u, WIDTH as i32 / 2), (v, WIDTH as i32 / 2)],
            };
            pre.process(&frame).unwrap();
            pre.out.f32s.clone()
        })
        .collect()
}

/// The bare loop through `detection_inference::Model::detect` (ONNX Runtime's C API run, decoding, NMS).
fn model_detect(model: &str, inputs: &[Vec<f32>], threads: u32, frames: usize) -> (f64, f64) {
    use detection_inference::{ClassGate, Model, ModelOptions, PostProcess, Provider};
    let model = Model::load(&ModelOptions {
        path: model.into(),
        providers: vec![Provider::Cpu],
        threads,
        ..Default::default()
    })
    .unwrap();
    let post = PostProcess {
        gate: ClassGate::new(0.5, "", "", &model.labels).unwrap(),
        iou_threshold: 0.45,
        max_detections: 100,
    };
    let spec = model.input.tensor_spec(300, 300);
    let mut out = Vec::new();
    let mut run = |i: usize| {
        model
            .detect(&spec, &inputs[i % inputs.len()], &[], &post, &mut out)
            .unwrap()
    };
    (0..5).for_each(&mut run);
    let start = std::time::Instant::now();
    (0..frames).for_each(&mut run);
    (frames as f64 / start.elapsed().as_secs_f64(), peak_rss_mb())
}

/// `frames` I420 frames with moving content, written as one raw file.
fn write_raw(path: &std::path::Path, frames: usize) {
    gst::init().unwrap();
    let p = gst::parse::launch(&format!(
        "videotestsrc num-buffers={frames} pattern=ball ! video/x-raw,format=I420,width={WIDTH},height={HEIGHT} ! \
         filesink location={}",
        path.display()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    play_to_eos(&p);
}

fn python_loop(python: &str, model: &str, raw: &str, threads: usize) -> (f64, f64) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../benchmarks/opencv_loop.py");
    let out = Command::new(python)
        .args([
            script,
            model,
            raw,
            &WIDTH.to_string(),
            &HEIGHT.to_string(),
            &threads.to_string(),
        ])
        .args(["--warmup", &WARMUP.to_string()])
        .output()
        .expect("python runs");
    parse_result(&out, "the Python OpenCV + onnxruntime loop")
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--bench")).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["bare-ort", model, raw, threads, frames] => {
            let inputs = tensors(raw);
            let (fps, mb) = bare_ort_on(model, threads.parse().unwrap(), frames.parse().unwrap(), &inputs);
            println!("RESULT {fps} {mb}");
            return;
        }
        ["model-detect", model, raw, threads, frames] => {
            let (fps, mb) = model_detect(model, &tensors(raw), threads.parse().unwrap(), frames.parse().unwrap());
            println!("RESULT {fps} {mb}");
            return;
        }
        ["element", model, raw, inflight, threads] => {
            let (fps, mb) = element(model, raw, inflight.parse().unwrap(), threads.parse().unwrap());
            println!("RESULT {fps} {mb}");
            return;
        }
        _ => {}
    }
    let frames = env_or("BENCH_FRAMES", 150);
    let threads = env_or("BENCH_THREADS", 2);
    let repeats = env_or("BENCH_REPEATS", 3).max(1);
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("bench-inflight");
    std::fs::create_dir_all(&dir).unwrap();
    let model = dir.join("ssdlite_mobilenet_v2_300.onnx");
    let labels = ["stop", "yield", "speed-limit", "pedestrian"];
    // Background prior 10: about 20-35 anchors pass the 0.5 threshold per frame, as with a trained detector
    // (random weights alone pass most of the 1917, and NMS would dominate both loops).
    let bytes = mobilenetdetect_testkit::ssdlite::build_with_background_prior(&labels, 42, 10.0);
    detection_common::files::write_atomically(&model, &bytes).unwrap();
    let raw = dir.join(format!("frames_{WIDTH}x{HEIGHT}_i420.raw"));
    write_raw(&raw, frames + WARMUP);
    let (model, raw) = (model.display().to_string(), raw.display().to_string());

    println!(
        "SSDLite-MobileNetV2 300x300, {frames} frames of {WIDTH}x{HEIGHT} I420 from a raw file, {threads} threads in \
         all; {repeats} rounds, each running every loop once in turn (a slow spell of the machine hits all of them)"
    );
    let s = |v: &dyn ToString| v.to_string();
    let python = std::env::var("BENCH_PYTHON").ok();
    // (name, what runs it); the first is (a), the Python loop (b) when there is a python for it.
    type Loop<'a> = (String, Box<dyn Fn() -> (f64, f64) + 'a>);
    let mut loops: Vec<Loop> = vec![
        (
            format!("(a) bare ONNX Runtime loop, prepared tensors, {threads} threads"),
            Box::new(|| run_child(&[s(&"bare-ort"), model.clone(), raw.clone(), s(&threads), s(&frames)])),
        ),
        (
            "    the same through Model::detect (+ decoding and NMS)".into(),
            Box::new(|| run_child(&[s(&"model-detect"), model.clone(), raw.clone(), s(&threads), s(&frames)])),
        ),
    ];
    if let Some(py) = python.as_deref() {
        loops.push((
            "(b) Python: OpenCV cvtColor+resize, onnxruntime, numpy".into(),
            Box::new(|| python_loop(py, &model, &raw, threads)),
        ));
    }
    let first_element = loops.len();
    // One request with all threads, one thread per request, and one frame more in flight than threads.
    for inflight in 1..=threads + 1 {
        let per_request = (threads / inflight).max(1);
        let (model, raw) = (&model, &raw);
        loops.push((
            format!("mobilenetdetect inflight={inflight} threads={per_request}"),
            Box::new(move || run_child(&[s(&"element"), model.clone(), raw.clone(), s(&inflight), s(&per_request)])),
        ));
    }
    let mut rounds: Vec<Vec<(f64, f64)>> = Vec::new();
    for round in 1..=repeats {
        eprintln!("round {round} of {repeats}");
        rounds.push(loops.iter().map(|(_, run)| run()).collect());
    }
    let column = |i: usize| median(rounds.iter().map(|r| r[i]).collect());
    println!("{:<58} {:>9} {:>12}", "", "frames/s", "peak memory");
    for (i, (name, _)) in loops.iter().enumerate() {
        let (fps, mb) = column(i);
        println!("{name:<58} {fps:>9.2} {mb:>9.1} MB");
    }
    if python.is_none() {
        println!(
            "(b) skipped: set BENCH_PYTHON to a python with numpy, opencv and onnxruntime (benchmarks/inference_speed does)"
        );
    }
    let best = (first_element..loops.len())
        .max_by(|&a, &b| column(a).0.total_cmp(&column(b).0))
        .expect("element loops");
    // Ratios within each round (same spell of the machine), then their median.
    let ratio = |other: usize| {
        let mut r: Vec<f64> = rounds.iter().map(|round| round[best].0 / round[other].0).collect();
        r.sort_by(f64::total_cmp);
        (r[r.len() / 2], r[0], r[r.len() - 1])
    };
    println!();
    let (ratio_a, lo, hi) = ratio(0);
    println!(
        "best: {} at {:.2} frames/s: {ratio_a:.2}x of (a) (rounds {lo:.2}-{hi:.2}; goal >= 1.0x), memory {:+.1} MB",
        loops[best].0,
        column(best).0,
        column(best).1 - column(0).1
    );
    if python.is_some() {
        let (ratio_b, lo, hi) = ratio(2);
        println!(
            "      {ratio_b:.2}x of (b) (rounds {lo:.2}-{hi:.2}; goal >= 1.3x), memory {:+.1} MB",
            column(best).1 - column(2).1
        );
    }
}
