//! The Prometheus endpoint (issue 22, item 3), scraped by a real Prometheus server (Debian's package, on
//! 127.0.0.1): turned on by an environment variable with the pipeline unchanged, its frame counters equal the
//! frames that passed, and a `gst-launch-1.0` process serves it too.

mod common;
use common::*;
use gst::prelude::*;
use mobilenetdetect_testkit::servers::{Prometheus, free_port, http_get};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The value of the one series `query` selects, as Prometheus's HTTP API answers it.
fn query(prometheus: &Prometheus, query: &str) -> Option<f64> {
    let body = prometheus.get(&format!("/api/v1/query?query={query}"));
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    let result = v["data"]["result"].as_array()?;
    (result.len() == 1).then_some(())?;
    result[0]["value"][1].as_str()?.parse().ok()
}

/// Polls `query` until it equals `want` (Prometheus scrapes every 500 ms); the last value seen otherwise.
fn scraped(prometheus: &Prometheus, q: &str, want: f64) -> Option<f64> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = None;
    while Instant::now() < deadline {
        last = query(prometheus, q);
        if last == Some(want) {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    last
}

#[test]
fn prometheus_scrapes_a_running_pipeline_and_its_frame_counters_equal_the_frames_that_passed() {
    let d = temp_dir("metrics");
    let port = free_port();
    // SAFETY: set before GStreamer starts and before any element (which reads it) exists.
    unsafe { std::env::set_var("MOBILENETDETECT_METRICS_ADDRESS", format!("127.0.0.1:{port}")) };
    let Some(prometheus) = Prometheus::start(&d, &[format!("127.0.0.1:{port}")]) else {
        return;
    };
    let model = write_model(
        "metrics-ball",
        &mobilenetdetect_testkit::models::blob_detector_model(320, 240, "ball"),
    );
    let p = pipeline(&format!(
        "detecttestsrc is-live=true num-buffers=120 ! video/x-raw,width=320,height=240,framerate=30/1 ! \
         mobilenetdetect name=detector model={model} inflight=2 ! detectiontrack ! \
         detectioncapture name=capture location={} source=ground-truth every-n-frames=10 negative-rate=1 ! fakesink name=sink",
        d.join("captures").display()
    ));
    let passed = Arc::new(AtomicU64::new(0));
    let counter = passed.clone();
    on_buffers(&p, "sink", move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    p.set_state(gst::State::Playing).unwrap();
    // Scraped while it runs: the series exists before the end.
    let deadline = Instant::now() + Duration::from_secs(20);
    while query(&prometheus, "mobilenetdetect_frames_total").is_none_or(|v| v <= 0.0) {
        assert!(Instant::now() < deadline, "Prometheus never scraped a frame count");
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_eos(&p, 60);
    // The elements stay alive (the pipeline is at EOS, not stopped) for the last scrapes.
    let frames = passed.load(Ordering::SeqCst) as f64;
    assert_eq!(frames, 120.0);
    assert_eq!(
        scraped(&prometheus, "mobilenetdetect_frames_total", frames),
        Some(frames)
    );
    assert_eq!(
        scraped(&prometheus, "detectiontrack_frames_total", frames),
        Some(frames)
    );
    let captured = p.by_name("capture").unwrap().property::<u64>("captured") as f64;
    assert_eq!(captured, 12.0);
    assert_eq!(
        scraped(&prometheus, "detectioncapture_written_total", captured),
        Some(captured)
    );
    let inferences = query(&prometheus, "mobilenetdetect_inferences_total").unwrap();
    assert_eq!(inferences, frames, "every frame is inferred by default");
    assert_eq!(
        query(&prometheus, "mobilenetdetect_inference_seconds_count"),
        Some(inferences)
    );
    // Labels say which element of which pipeline; the model in use is an info series.
    let own = http_get(port, "/metrics");
    assert!(
        own.contains("# TYPE mobilenetdetect_inference_seconds histogram"),
        "{own}"
    );
    assert!(
        own.contains("mobilenetdetect_frames_total{element=\"detector\",pipeline=\""),
        "{own}"
    );
    assert!(
        own.contains("mobilenetdetect_model_info{element=\"detector\"")
            && own.contains(&format!("model=\"{model}\"}} 1")),
        "{own}"
    );
    assert!(http_get(port, "/").contains("only /metrics"));
    p.set_state(gst::State::Null).unwrap();
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn gst_launch_serves_metrics_when_the_environment_names_an_address() {
    let port = free_port();
    let model = write_model(
        "metrics-launch",
        &mobilenetdetect_testkit::models::blob_detector_model(320, 240, "ball"),
    );
    let mut launch = gst_launch(&format!(
        "detecttestsrc is-live=true num-buffers=90 ! video/x-raw,width=320,height=240,framerate=30/1 ! \
         mobilenetdetect model={model} ! fakesink"
    ));
    launch.env("MOBILENETDETECT_METRICS_ADDRESS", format!("127.0.0.1:{port}"));
    let mut child = launch.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = String::new();
    while Instant::now() < deadline {
        seen = http_get(port, "/metrics");
        let frames = seen
            .lines()
            .find(|l| l.starts_with("mobilenetdetect_frames_total{"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok());
        if frames.is_some_and(|f| f > 0.0) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = child.wait().unwrap();
    assert!(status.success());
    assert!(
        seen.contains("mobilenetdetect_frames_total{element=\"mobilenetdetect0\""),
        "{seen}"
    );
}
