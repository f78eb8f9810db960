//! `detectioncapture` under faults: several writers on one folder (one process and several), `kill -9` at
//! random moments, a write error that passes. The dataset stays valid for the trainer throughout, and every
//! sample in it is complete and is the frame it claims to be.

mod common;
use common::*;
use detection_common::voc::Dataset;
use gst::prelude::*;
use gst_video::prelude::*;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

/// Frames large enough that the writer is always busy (JPEG encoding takes milliseconds), so a kill lands
/// inside a write more often than between two.
const W: u32 = 640;
const H: u32 = 480;
/// Frames are compared on every STEP-th pixel in each direction (enough to tell frames apart, and it keeps
/// 400 reference frames in a few MB).
const STEP: usize = 4;

fn source(seed: u64, frames: u32) -> String {
    format!(
        "detecttestsrc seed={seed} num-buffers={frames} num-objects=3 ! video/x-raw,format=RGB,width={W},height={H}"
    )
}

/// Every STEP-th pixel of every STEP-th row of a packed RGB image.
fn subsample(rgb: &[u8], stride: usize) -> Vec<u8> {
    (0..H as usize)
        .step_by(STEP)
        .flat_map(|y| {
            (0..W as usize)
                .step_by(STEP)
                .flat_map(move |x| rgb[y * stride + x * 3..y * stride + x * 3 + 3].to_vec())
        })
        .collect()
}

fn run_to_end(launch: &str) -> gst::Pipeline {
    let p = pipeline(launch);
    play_to_eos(&p);
    p
}

type Key = Vec<(String, u32, u32, u32, u32)>;

/// The source's frames (packed RGB) by their ground-truth boxes, regenerated from the same seed.
fn reference_frames(seed: u64, frames: u32) -> HashMap<Key, Vec<Vec<u8>>> {
    init();
    let p = pipeline(&format!("{} ! appsink name=sink sync=false", source(seed, frames)));
    let sink = p.by_name("sink").unwrap().downcast::<gst_app::AppSink>().unwrap();
    p.set_state(gst::State::Playing).unwrap();
    let mut by_key: HashMap<Key, Vec<Vec<u8>>> = HashMap::new();
    while let Ok(sample) = sink.pull_sample() {
        let buf = sample.buffer().unwrap();
        // The source's ground truth, clipped to the frame as the capture element clips it.
        let key: Key = buf
            .iter_meta::<gst_video::VideoRegionOfInterestMeta>()
            .filter_map(|m| {
                let class_id = m.param("ground-truth")?.get::<u32>("class-id").ok()?;
                let (x, y, w, h) = m.rect();
                let (x1, y1) = ((x + w).min(W), (y + h).min(H));
                (x1 > x && y1 > y).then(|| {
                    (
                        detection_common::labels::clean_label(m.roi_type(), class_id as usize),
                        x,
                        y,
                        x1,
                        y1,
                    )
                })
            })
            .collect();
        let info = gst_video::VideoInfo::from_caps(sample.caps().unwrap()).unwrap();
        let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buf, &info).unwrap();
        let rgb = subsample(frame.plane_data(0).unwrap(), frame.plane_stride()[0] as usize);
        if !key.is_empty() {
            by_key.entry(key).or_default().push(rgb);
        }
    }
    p.set_state(gst::State::Null).unwrap();
    by_key
}

/// Checks what `mobilenet-trainer check` checks (every annotation valid, every image present and listed), and
/// more: each image decodes whole and equals a frame of the source with exactly the saved boxes.
fn assert_every_sample_is_its_frame(dir: &Path, reference: &HashMap<Key, Vec<Vec<u8>>>) -> usize {
    let ds = Dataset::open(dir).unwrap();
    assert!(ds.problems.is_empty(), "{:?}", ds.problems);
    for s in &ds.samples {
        let key: Key = s
            .annotation
            .objects
            .iter()
            .map(|o| {
                (
                    o.name.clone(),
                    o.xmin as u32,
                    o.ymin as u32,
                    o.xmax as u32,
                    o.ymax as u32,
                )
            })
            .collect();
        let candidates = reference
            .get(&key)
            .unwrap_or_else(|| panic!("{}: boxes {key:?} belong to no frame of the source", s.id));
        let img = image::open(&s.image)
            .unwrap_or_else(|e| panic!("{} does not decode: {e}", s.image.display()))
            .to_rgb8();
        assert_eq!(img.dimensions(), (W, H));
        let saved = subsample(img.as_raw(), W as usize * 3);
        let best = candidates
            .iter()
            .map(|rgb| {
                rgb.iter()
                    .zip(&saved)
                    .map(|(a, b)| (*a as i32 - *b as i32).unsigned_abs() as u64)
                    .sum::<u64>() as f64
                    / rgb.len() as f64
            })
            .fold(f64::INFINITY, f64::min);
        assert!(
            best < 6.0,
            "{} is not its frame (mean difference {best:.1})",
            s.image.display()
        );
    }
    ds.samples.len()
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn writers_in_one_process_and_in_another_share_one_folder() {
    init();
    let dir = temp_dir("capture-shared").join("dataset");
    let frames = 40;
    let child: Child = gst_launch(&format!(
        "{} ! detectioncapture location={} source=ground-truth ! fakesink",
        source(4, frames),
        dir.display()
    ))
    .spawn()
    .expect("gst-launch-1.0 starts");
    let p = run_to_end(&format!(
        "{} ! tee name=t t. ! queue ! detectioncapture name=a location={d} source=ground-truth ! fakesink \
         t. ! queue ! detectioncapture name=b location={d} source=ground-truth ! fakesink",
        source(4, frames),
        d = dir.display()
    ));
    let (a, b) = (
        p.by_name("a").unwrap().property::<u64>("captured"),
        p.by_name("b").unwrap().property::<u64>("captured"),
    );
    p.set_state(gst::State::Null).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(a, b);
    assert!(a > 20, "most frames show an object");

    // Three writers of the same clip: three times the samples, none overwritten, every list consistent.
    let reference = reference_frames(4, frames);
    assert_eq!(assert_every_sample_is_its_frame(&dir, &reference) as u64, 3 * a);
    let sets = dir.join("ImageSets/Main");
    let trainval = lines(&sets.join("trainval.txt"));
    let unique: std::collections::HashSet<_> = trainval.iter().collect();
    assert_eq!((trainval.len(), unique.len()), (3 * a as usize, 3 * a as usize));
    assert_eq!(
        lines(&sets.join("train.txt")).len() + lines(&sets.join("val.txt")).len(),
        trainval.len()
    );
    let labels = lines(&dir.join("labels.txt"));
    assert_eq!(labels[0], "BACKGROUND");
    let distinct: std::collections::HashSet<_> = labels.iter().collect();
    assert_eq!(distinct.len(), labels.len(), "{labels:?}");
}

/// A small pseudo-random sequence (the seed is printed, so a failing run can be repeated).
struct Lcg(u64);
impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

#[test]
fn kill_minus_9_at_random_moments_leaves_a_valid_dataset() {
    init();
    let runs: u32 = std::env::var("MOBILENETDETECT_KILL_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let seed = std::env::var("MOBILENETDETECT_KILL_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("kill -9 test: {runs} runs, MOBILENETDETECT_KILL_SEED={seed}");
    let mut rng = Lcg(seed);
    let dir: PathBuf = temp_dir("capture-kill").join("dataset");
    let frames = 400;
    let launch = format!(
        "{} ! detectioncapture location={} source=ground-truth queue-size=4 ! fakesink",
        source(6, frames),
        dir.display()
    );
    let mut killed_mid_run = 0;
    for _ in 0..runs {
        let mut child = gst_launch(&launch).spawn().expect("gst-launch-1.0 starts");
        std::thread::sleep(Duration::from_millis(150 + rng.below(1200)));
        if child.try_wait().unwrap().is_none() {
            killed_mid_run += 1;
        }
        // SIGKILL: no destructor, no EOS, no flush.
        let _ = child.kill();
        let _ = child.wait();
    }
    assert!(
        killed_mid_run >= runs / 2,
        "only {killed_mid_run} of {runs} runs were killed while capturing"
    );
    let reference = reference_frames(6, frames);
    let after_kills = assert_every_sample_is_its_frame(&dir, &reference);
    assert!(after_kills > 0);

    // A writer started after the crashes continues the dataset and tidies what the dead ones left.
    let started = Instant::now();
    let out = gst_launch(&launch).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(started.elapsed() < Duration::from_secs(120));
    let total = assert_every_sample_is_its_frame(&dir, &reference);
    assert!(total > after_kills);
    eprintln!(
        "kill -9 test: {killed_mid_run} of {runs} runs killed while capturing; {after_kills} complete samples \
         after them, {total} after a clean run"
    );
    for sub in ["Annotations", "JPEGImages"] {
        let leftovers: Vec<_> = std::fs::read_dir(dir.join(sub))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{sub}: {leftovers:?}");
    }
}

#[test]
fn a_write_error_loses_only_those_samples_and_capture_goes_on() {
    init();
    let dir = temp_dir("capture-transient").join("dataset");
    let element = gst::ElementFactory::make("detectioncapture")
        .property("location", dir.display().to_string())
        .property("negative-rate", 1.0f32)
        .build()
        .unwrap();
    let mut h = gst_check::Harness::with_element(&element, Some("sink"), Some("src"));
    h.set_src_caps(caps(gst_video::VideoFormat::Rgbx, 32, 24));
    let wait_for = |property: &str, n: u64| {
        let until = Instant::now() + Duration::from_secs(30);
        while element.property::<u64>(property) < n {
            assert!(Instant::now() < until, "{property} stayed below {n}");
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    let push = |h: &mut gst_check::Harness, n: usize| {
        for _ in 0..n {
            h.push(solid_frame(gst_video::VideoFormat::Rgbx, 32, 24, [200, 40, 40], 0))
                .unwrap();
        }
    };
    push(&mut h, 5);
    wait_for("captured", 5);
    // The images folder goes away (an unmounted card, a changed permission): those samples cannot be written.
    let images = dir.join("JPEGImages");
    std::fs::rename(&images, dir.join("elsewhere")).unwrap();
    push(&mut h, 4);
    wait_for("lost", 4);
    std::fs::rename(dir.join("elsewhere"), &images).unwrap();
    push(&mut h, 5);
    assert!(h.push_event(gst::event::Eos::new()));
    assert_eq!(element.property::<u64>("captured"), 10);
    assert_eq!(element.property::<u64>("lost"), 4);
    drop(h);
    let ds = Dataset::open(&dir).unwrap();
    assert!(ds.problems.is_empty(), "{:?}", ds.problems);
    assert_eq!(ds.samples.len(), 10);
}

#[test]
fn extreme_capture_settings_neither_panic_nor_stall() {
    let dir = temp_dir("capture-extreme").join("dataset");
    let p = run_to_end(&format!(
        "{} ! detectioncapture name=c location={} source=ground-truth min-interval={} every-n-frames=1000000 \
         max-bytes=18446744073709551615 ! fakesink",
        source(2, 30),
        dir.display(),
        u64::MAX - 1
    ));
    // Only the first frame passes every-n-frames; min-interval near its maximum never overflows.
    assert_eq!(p.by_name("c").unwrap().property::<u64>("captured"), 1);
    p.set_state(gst::State::Null).unwrap();
}

#[test]
fn a_full_disk_mid_run_loses_only_the_samples_that_did_not_fit() {
    init();
    let root = temp_dir("capture-full");
    let launch = |dir: &Path| {
        format!(
            "{} ! detectioncapture location={} source=ground-truth ! fakesink",
            source(8, 60),
            dir.display()
        )
    };
    // The same clip without a limit: the size every sample's JPEG will have.
    let free = root.join("free");
    let out = gst_launch(&launch(&free)).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut sizes: Vec<u64> = std::fs::read_dir(free.join("JPEGImages"))
        .unwrap()
        .flatten()
        .map(|e| e.metadata().unwrap().len())
        .collect();
    sizes.sort();
    // A file size limit (RLIMIT_FSIZE, as `ulimit -f`) at the median: writing any larger JPEG fails partway
    // with EFBIG, as a full disk does with ENOSPC.
    let limit_kib = sizes[sizes.len() / 2] / 1024;
    let fits = sizes.iter().filter(|&&s| s <= limit_kib * 1024).count();
    assert!(fits > 0 && fits < sizes.len(), "{sizes:?}");
    let full = root.join("full");
    let mut c = std::process::Command::new("bash");
    c.arg("-c")
        .arg(format!(
            "trap '' XFSZ; ulimit -f {limit_kib}; exec gst-launch-1.0 -q {}",
            launch(&full)
        ))
        .env("GST_DEBUG", "detectioncapture:2");
    with_this_plugin(&mut c);
    let out = c.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the pipeline goes on to EOS: {stderr}");
    assert!(stderr.contains("sample lost"), "{stderr}");
    let reference = reference_frames(8, 60);
    assert_eq!(assert_every_sample_is_its_frame(&full, &reference), fits);
    let partial: Vec<_> = std::fs::read_dir(full.join("JPEGImages"))
        .unwrap()
        .flatten()
        .filter(|e| e.metadata().unwrap().len() > limit_kib * 1024)
        .collect();
    assert!(partial.is_empty(), "no partial file is left behind");
}
