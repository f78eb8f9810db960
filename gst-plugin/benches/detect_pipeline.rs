//! Benchmark (not a test): the cost of running a detector inside a GStreamer pipeline versus a bare ONNX Runtime
//! session, and the element's preprocessing versus `videoconvert ! videoscale`.
//!
//!     cargo bench -p gst-plugin-mobilenetdetect --bench detect_pipeline
//!
//! Environment: BENCH_FRAMES (default 150), BENCH_THREADS (ONNX Runtime intra-op threads, default 2).
//! Each inference measurement runs in a child process of its own so that peak memory (VmHWM) is its own.

mod common;
use common::*;
use detection_inference::pixels::{Colorimetry, Frame, PixelFormat};
use detection_inference::preprocess::{Preprocessor, ResizeMode};
use gst::prelude::*;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// (b) videotestsrc ! mobilenetdetect ! fakesink, 1280x720 NV12; frames/s between the 6th and the last buffer.
fn child_pipeline(model: &str, threads: usize, frames: usize) -> (f64, f64) {
    gst::init().unwrap();
    gstmobilenetdetect::plugin_register_static().unwrap();
    let warmup = 5;
    let fps = pipeline_frames_per_second(
        &format!(
            "videotestsrc num-buffers={} pattern=solid-color foreground-color=0xff5a8cc8 ! video/x-raw,format=NV12,width=1280,height=720,framerate=30/1 ! \
             mobilenetdetect model={model} threads={threads} ! fakesink name=sink sync=false",
            frames + warmup
        ),
        warmup,
    );
    (fps, peak_rss_mb())
}

/// N pipelines' worth of branches in one pipeline (one process): frames/s over all streams and peak memory.
fn child_streams(model: &str, threads: usize, frames: usize, streams: usize) -> (f64, f64) {
    gst::init().unwrap();
    gstmobilenetdetect::plugin_register_static().unwrap();
    let branch = format!(
        "videotestsrc num-buffers={frames} pattern=ball ! video/x-raw,format=NV12,width=640,height=480 ! \
         mobilenetdetect model={model} threads={threads} ! fakesink sync=false"
    );
    let launch = vec![branch; streams].join("  ");
    let p = gst::parse::launch(&launch)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let started = Instant::now();
    play_to_eos(&p);
    let seconds = started.elapsed().as_secs_f64();
    ((streams * frames) as f64 / seconds, peak_rss_mb())
}

/// A 1920x1080 frame with content (a gradient), mapped as the element would see it.
fn test_frame(format: gst_video::VideoFormat) -> (gst_video::VideoInfo, gst::Buffer) {
    let info = gst_video::VideoInfo::builder(format, 1920, 1080).build().unwrap();
    let data: Vec<u8> = (0..info.size()).map(|i| (i * 7 % 251) as u8).collect();
    (info, gst::Buffer::from_mut_slice(data))
}

fn ours_ms_per_frame(format: gst_video::VideoFormat, iterations: usize) -> f64 {
    let (info, buf) = test_frame(format);
    let spec = ssdlite_tensor_spec();
    let pixel_format = match format {
        gst_video::VideoFormat::Nv12 => PixelFormat::Nv12,
        gst_video::VideoFormat::I420 => PixelFormat::I420,
        gst_video::VideoFormat::Rgbx => PixelFormat::Rgbx,
        gst_video::VideoFormat::Rgb => PixelFormat::Rgb,
        other => panic!("no pixel format for {other:?} in this benchmark"),
    };
    let size = (info.width(), info.height());
    let mut pre = Preprocessor::new(
        pixel_format,
        size,
        Colorimetry::BT601_LIMITED,
        spec,
        ResizeMode::Stretch,
    )
    .unwrap();
    let map = buf.map_readable().unwrap();
    let mut planes: [(&[u8], i32); 3] = [(&[], 0); 3];
    for (i, plane) in planes.iter_mut().enumerate().take(info.n_planes() as usize) {
        *plane = (&map[info.offset()[i]..], info.stride()[i]);
    }
    let frame = Frame {
        format: pixel_format,
        width: size.0,
        height: size.1,
        colorimetry: Colorimetry::BT601_LIMITED,
        planes,
    };
    for _ in 0..10 {
        pre.process(&frame).unwrap();
    }
    let start = Instant::now();
    for _ in 0..iterations {
        pre.process(&frame).unwrap();
        std::hint::black_box(pre.out.f32s[0]);
    }
    start.elapsed().as_secs_f64() * 1000.0 / iterations as f64
}

/// Time spent inside `videoconvert ! videoscale` per frame, measured between pad probes on the same thread.
fn videoconvert_ms_per_frame(format: &str, frames: usize) -> f64 {
    let p = gst::parse::launch(&format!(
        "videotestsrc num-buffers={frames} ! video/x-raw,format={format},width=1920,height=1080 ! \
         videoconvert name=c ! videoscale name=s ! video/x-raw,format=RGB,width=300,height=300 ! fakesink sync=false"
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let entered = Arc::new(Mutex::new(None::<Instant>));
    let total = Arc::new(Mutex::new((Duration::ZERO, 0usize)));
    let e = entered.clone();
    p.by_name("c")
        .unwrap()
        .static_pad("sink")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            *e.lock().unwrap() = Some(Instant::now());
            gst::PadProbeReturn::Ok
        });
    let (e, t) = (entered.clone(), total.clone());
    p.by_name("s")
        .unwrap()
        .static_pad("src")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            if let Some(start) = e.lock().unwrap().take() {
                let mut t = t.lock().unwrap();
                t.0 += start.elapsed();
                t.1 += 1;
            }
            gst::PadProbeReturn::Ok
        });
    p.set_state(gst::State::Playing).unwrap();
    for msg in p.bus().unwrap().iter_timed(gst::ClockTime::NONE) {
        match msg.view() {
            gst::MessageView::Eos(_) => break,
            gst::MessageView::Error(e) => panic!("{} {:?}", e.error(), e.debug()),
            _ => {}
        }
    }
    p.set_state(gst::State::Null).unwrap();
    let (d, n) = *total.lock().unwrap();
    d.as_secs_f64() * 1000.0 / n as f64
}

fn child(mode: &str, model: &str, threads: usize, frames: usize) -> (f64, f64) {
    run_child(&[
        mode.to_string(),
        model.to_string(),
        threads.to_string(),
        frames.to_string(),
    ])
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--bench")).collect();
    if let [mode, model, threads, frames] = args.as_slice() {
        let (threads, frames) = (threads.parse().unwrap(), frames.parse().unwrap());
        let (fps, mb) = match mode.as_str() {
            "bare-ort" => bare_ort(model, threads, frames),
            "pipeline" => child_pipeline(model, threads, frames),
            streams if streams.starts_with("streams-") => {
                child_streams(model, threads, frames, streams["streams-".len()..].parse().unwrap())
            }
            other => panic!("unknown mode {other}"),
        };
        println!("RESULT {fps} {mb}");
        return;
    }
    let frames = env_or("BENCH_FRAMES", 150);
    let threads = env_or("BENCH_THREADS", 2);
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("bench");
    std::fs::create_dir_all(&dir).unwrap();
    let model = dir.join("ssdlite_mobilenet_v2_300.onnx");
    let labels = ["stop", "yield", "speed-limit", "pedestrian"];
    detection_common::files::write_atomically(&model, &mobilenetdetect_testkit::ssdlite::build(&labels, 42)).unwrap();
    let model = model.display().to_string();

    println!("SSDLite-MobileNetV2 300x300, {frames} frames, {threads} ONNX Runtime threads");
    let (ort_fps, ort_mb) = child("bare-ort", &model, threads, frames);
    let (gst_fps, gst_mb) = child("pipeline", &model, threads, frames);
    println!("{:<52} {:>10} {:>14}", "", "frames/s", "peak memory");
    println!(
        "{:<52} {:>10.2} {:>11.1} MB",
        "(a) bare ONNX Runtime session, prepared tensor", ort_fps, ort_mb
    );
    println!(
        "{:<52} {:>10.2} {:>11.1} MB",
        "(b) videotestsrc ! mobilenetdetect ! fakesink (NV12 720p)", gst_fps, gst_mb
    );
    println!(
        "ratio (b)/(a): {:.3} of the frames/s (goal >= 0.97), {:+.1} MB memory (goal <= +30 MB)",
        gst_fps / ort_fps,
        gst_mb - ort_mb
    );

    // Several cameras in one process: the elements share one loaded model.
    println!();
    let per_stream = (frames / 2).max(20);
    let (one_fps, one_mb) = child("streams-1", &model, threads, per_stream);
    let (four_fps, four_mb) = child("streams-4", &model, threads, per_stream);
    println!(
        "streams (videotestsrc 640x480 NV12 ! mobilenetdetect ! fakesink each, {per_stream} frames per stream, one process)"
    );
    println!("  1 stream : {one_fps:>7.2} frames/s in all, peak memory {one_mb:>6.1} MB");
    println!("  4 streams: {four_fps:>7.2} frames/s in all, peak memory {four_mb:>6.1} MB");
    println!(
        "  memory 4 streams / 1 stream: {:.2}x (goal <= 1.3x); frames/s in all: {:.2}x",
        four_mb / one_mb,
        four_fps / one_fps
    );

    gst::init().unwrap();
    println!();
    println!("preprocessing 1920x1080 -> 300x300, per frame");
    for (format, name) in [
        (gst_video::VideoFormat::Nv12, "NV12"),
        (gst_video::VideoFormat::Rgbx, "RGBx"),
    ] {
        let ours = ours_ms_per_frame(format, 200);
        let theirs = videoconvert_ms_per_frame(name, 100);
        println!(
            "{name}: mobilenetdetect {ours:.3} ms (float NCHW tensor, normalised) | videoconvert ! videoscale {theirs:.3} ms \
             (packed RGB) | {:.1}x faster (goal >= 3x, <= 1 ms)",
            theirs / ours
        );
    }
}
