//! `detectioncapture`: a VOC dataset the trainer reads as is, capture policies, resumed numbering, limits,
//! EOS held until everything is on disk, and clear errors.

mod common;
use common::*;
use detection_common::metadata as meta;
use detection_common::voc::{Dataset, Split};
use gst::prelude::*;
use mobilenetdetect_testkit::models::{self, ImageInput};

fn run(launch: &str) -> gst::Pipeline {
    let p = pipeline(launch);
    play_to_eos(&p);
    p
}

#[test]
fn a_full_queue_skips_live_frames_and_holds_non_live_ones() {
    // Big frames at quality 100 through a one-slot queue: the writer cannot keep up with every frame.
    let launch = |live: bool, dir: &std::path::Path| {
        format!(
            "detecttestsrc is-live={live} num-buffers=40 num-objects=3 seed=5 ! \
             video/x-raw,format=RGBx,width=1920,height=1080,framerate=300/1 ! \
             detectioncapture name=c location={} source=ground-truth queue-size=1 quality=100 ! fakesink",
            dir.display()
        )
    };
    let dir = temp_dir("capture-nonlive").join("dataset");
    let p = run(&launch(false, &dir));
    let c = p.by_name("c").unwrap();
    assert_eq!(c.property::<u64>("dropped"), 0, "a non-live source waits");
    assert_eq!(c.property::<u64>("captured"), 40);
    p.set_state(gst::State::Null).unwrap();

    let dir = temp_dir("capture-live").join("dataset");
    let p = run(&launch(true, &dir));
    let c = p.by_name("c").unwrap();
    let (captured, dropped) = (c.property::<u64>("captured"), c.property::<u64>("dropped"));
    p.set_state(gst::State::Null).unwrap();
    assert!(
        dropped > 0,
        "a live source's frames are skipped when the disk falls behind"
    );
    assert_eq!(captured + dropped, 40, "every frame is either saved or counted");
    assert_eq!(Dataset::open(&dir).unwrap().samples.len() as u64, captured);
}

#[test]
fn ground_truth_capture_is_a_dataset_the_trainer_reads() {
    let dir = temp_dir("capture-gt").join("dataset");
    let launch = format!(
        "detecttestsrc num-buffers=30 num-objects=3 seed=4 ! video/x-raw,format=NV12,width=160,height=120 ! \
         detectioncapture name=c location={} source=ground-truth every-n-frames=3 ! fakesink",
        dir.display()
    );
    let p = run(&launch);
    // EOS was held until every sample was written: everything is there now.
    let c = p.by_name("c").unwrap();
    assert_eq!(c.property::<u64>("captured"), 10);
    assert_eq!(c.property::<u64>("dropped"), 0);
    p.set_state(gst::State::Null).unwrap();
    let ds = Dataset::open(&dir).unwrap();
    assert!(ds.problems.is_empty(), "{:?}", ds.problems);
    assert_eq!(ds.samples.len(), 10);
    assert!(ds.has_image_sets);
    for s in &ds.samples {
        assert_eq!(s.annotation.objects.len(), 3);
        assert!(
            s.annotation.objects.iter().all(|o| o.confidence.is_none()),
            "ground truth has no confidence"
        );
        let img = image::open(&s.image).unwrap();
        assert_eq!((img.width(), img.height()), (160, 120));
    }
    assert_eq!(ds.samples[0].id, "frame-000000");
    let trainval = std::fs::read_to_string(dir.join("ImageSets/Main/trainval.txt")).unwrap();
    assert_eq!(trainval.lines().count(), 10);
    assert!(
        ds.samples
            .iter()
            .all(|s| s.split == Split::Train || s.split == Split::Val)
    );
    // labels.txt: background first, then the source's classes by id.
    let labels = std::fs::read_to_string(dir.join("labels.txt")).unwrap();
    assert!(labels.starts_with("BACKGROUND\nstop\n"), "{labels}");

    // A restart continues the numbering and keeps what is there.
    let p = run(&launch);
    p.set_state(gst::State::Null).unwrap();
    let ds = Dataset::open(&dir).unwrap();
    assert_eq!(ds.samples.len(), 20);
    assert!(ds.samples.iter().any(|s| s.id == "frame-000019"));
    assert!(ds.problems.is_empty(), "{:?}", ds.problems);
}

fn confident_model(name: &str, confidence: f32) -> String {
    write_model(
        name,
        &models::decoded_model(
            ImageInput::nchw(32, 32),
            &[[0.1, 0.1, 0.6, 0.6]],
            &[vec![0.0, confidence]],
            ("boxes", "scores"),
            &[(meta::KEY_LABELS, "BACKGROUND\nsign\n")],
        ),
    )
}

fn capture_count(name: &str, source: &str, props: &str) -> (u64, Dataset) {
    let dir = temp_dir(name).join("dataset");
    let p = run(&format!(
        "{source} ! detectioncapture name=c location={} {props} ! fakesink",
        dir.display()
    ));
    let n = p.by_name("c").unwrap().property::<u64>("captured");
    p.set_state(gst::State::Null).unwrap();
    (n, Dataset::open(&dir).unwrap())
}

#[test]
fn uncertain_band_keeps_hard_examples_with_their_confidence() {
    let model = confident_model("capture-band", 0.6);
    let source = format!("videotestsrc num-buffers=8 ! video/x-raw,width=64,height=64 ! mobilenetdetect model={model}");
    let (n, ds) = capture_count("capture-band-in", &source, "uncertain-low=0.5 uncertain-high=0.7");
    assert_eq!(n, 8);
    let o = &ds.samples[0].annotation.objects[0];
    assert_eq!(o.name, "sign");
    assert!((o.confidence.unwrap() - 0.6).abs() < 1e-6);
    assert_eq!((o.xmin, o.ymin, o.xmax, o.ymax), (6.0, 6.0, 38.0, 38.0));
    let (n, _) = capture_count("capture-band-out", &source, "uncertain-low=0.8 uncertain-high=0.9");
    assert_eq!(n, 0);
    let (n, _) = capture_count("capture-band-class", &source, "classes=stop");
    assert_eq!(n, 0, "only frames with a wanted class");
}

#[test]
fn negatives_at_a_rate_and_limits() {
    let source = "videotestsrc num-buffers=20 ! video/x-raw,width=32,height=32";
    let (n, ds) = capture_count("capture-neg", source, "negative-rate=0.25");
    assert_eq!(n, 5);
    assert!(ds.samples.iter().all(|s| s.annotation.objects.is_empty()));
    let (n, _) = capture_count("capture-none", source, "");
    assert_eq!(n, 0, "no negatives by default");
    let gt = "detecttestsrc num-buffers=20 ! video/x-raw,width=64,height=64";
    let (n, _) = capture_count("capture-max", gt, "source=ground-truth max-frames=7");
    assert_eq!(n, 7);
    let (n, _) = capture_count("capture-interval", gt, "source=ground-truth min-interval=200000000");
    assert_eq!(n, 4, "20 frames at 30 fps span 633 ms: captures at 0, 200, 400, 600 ms");
}

#[test]
fn unwritable_folders_fail_the_state_change() {
    let p = pipeline("videotestsrc num-buffers=1 ! detectioncapture location=/proc/forbidden/dataset ! fakesink");
    let e = start_error(&p).expect("must fail");
    assert!(e.contains("/proc/forbidden/dataset"), "{e}");
    let p = pipeline("videotestsrc num-buffers=1 ! detectioncapture ! fakesink");
    assert!(start_error(&p).expect("must fail").contains("location"));
}
