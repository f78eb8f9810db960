//! Helpers shared by the element tests.
#![allow(dead_code)]

use gst::glib;
use gst::prelude::*;
use std::path::PathBuf;
use std::sync::Once;

pub fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        // Test this build: keep an installed copy of the plugin (per-user folder) out of the registry.
        let isolated = std::env::temp_dir().join("mobilenetdetect-test-gst");
        std::fs::create_dir_all(&isolated).unwrap();
        // SAFETY: set once, before GStreamer or any other thread of the test reads the environment.
        unsafe {
            std::env::set_var("XDG_DATA_HOME", &isolated);
            std::env::set_var("GST_REGISTRY", isolated.join("registry.bin"));
        }
        gst::init().unwrap();
        gstmobilenetdetect::plugin_register_static().expect("register plugin");
    });
}

/// A unique temporary folder for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mobilenetdetect-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub fn write_model(name: &str, bytes: &[u8]) -> String {
    let p = temp_dir(name).join("model.onnx");
    std::fs::write(&p, bytes).unwrap();
    p.display().to_string()
}

/// A decoded-output model (64x64 input) that finds `boxes` objects of `label` at fixed places in every frame,
/// with confidence 0.9: tells frames of one model from another's by their labels.
pub fn labelled_model_bytes(label: &str, boxes: usize) -> Vec<u8> {
    use mobilenetdetect_testkit::models::{ImageInput, decoded_model};
    let b: Vec<[f32; 4]> = (0..boxes)
        .map(|i| [0.1 + 0.4 * i as f32, 0.1, 0.4 + 0.4 * i as f32, 0.5])
        .collect();
    let s: Vec<Vec<f32>> = (0..boxes).map(|_| vec![0.0, 0.9]).collect();
    let labels = format!("BACKGROUND\n{label}\n");
    decoded_model(
        ImageInput::nchw(64, 64),
        &b,
        &s,
        ("boxes", "scores"),
        &[(detection_common::metadata::KEY_LABELS, &labels)],
    )
}

/// Frames recorded as (offset, labels) across a model swap: no offset is missing, every frame ran on one whole
/// model (its labels are `before`'s or `after`'s), and from the first frame of `after` on, every frame is.
pub fn assert_swapped_without_loss(seen: &[(u64, Vec<String>)], before: &[&str], after: &[&str]) {
    for (i, (offset, labels)) in seen.iter().enumerate() {
        assert_eq!(*offset, i as u64, "no frame lost");
        assert!(
            labels == before || labels == after,
            "frame {i} ran on one whole model: {labels:?}"
        );
    }
    let first_new = seen.iter().position(|(_, l)| l == after).expect("the new model ran");
    assert!(
        seen[first_new..].iter().all(|(_, l)| l == after),
        "later frames use the new model"
    );
}

/// Calls `f` with every buffer that reaches the sink pad of element `sink` in `p`.
pub fn on_buffers(p: &gst::Pipeline, sink: &str, f: impl Fn(&gst::BufferRef) + Send + Sync + 'static) {
    p.by_name(sink)
        .unwrap()
        .static_pad("sink")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let Some(buf) = info.buffer() {
                f(buf);
            }
            gst::PadProbeReturn::Ok
        });
}

/// One ROI meta read back from a buffer.
#[derive(Debug, Clone, PartialEq)]
pub struct Roi {
    pub label: String,
    pub class_id: u32,
    pub confidence: f64,
    pub rect: (u32, u32, u32, u32),
    pub norm: [f64; 4],
}

/// The detector's ROI metas on a buffer (ground-truth metas from a labelled source are skipped).
pub fn rois(buf: &gst::BufferRef) -> Vec<Roi> {
    buf.iter_meta::<gst_video::VideoRegionOfInterestMeta>()
        .filter_map(|m| {
            let p = m.param("detection")?;
            let f = |k: &str| p.get::<f64>(k).unwrap();
            let label: String = p.get("label").unwrap();
            assert_eq!(m.roi_type(), label, "roi type is the label");
            Some(Roi {
                label,
                class_id: p.get("class-id").unwrap(),
                confidence: f("confidence"),
                rect: m.rect(),
                norm: [f("x-min"), f("y-min"), f("x-max"), f("y-max")],
            })
        })
        .collect()
}

/// The `inference-pts` (ns) of the detector's first box on a buffer: which frame its detections came from.
pub fn inference_pts(buf: &gst::BufferRef) -> Option<u64> {
    buf.iter_meta::<gst_video::VideoRegionOfInterestMeta>()
        .filter_map(|m| m.param("detection")?.get::<u64>("inference-pts").ok())
        .next()
}

pub fn by_label<'a>(rois: &'a [Roi], label: &str) -> &'a Roi {
    rois.iter()
        .find(|r| r.label == label)
        .unwrap_or_else(|| panic!("no {label} in {rois:?}"))
}

/// A frame of `format` filled with one RGB colour, with the given extra bytes of padding per row.
/// Padding bytes are 0xAB so a reader that ignores strides sees garbage.
pub fn solid_frame(
    format: gst_video::VideoFormat,
    width: u32,
    height: u32,
    rgb: [u8; 3],
    row_padding: u32,
) -> gst::Buffer {
    use gst_video::VideoFormat as F;
    let finfo = gst_video::VideoFormatInfo::from_format(format);
    let n_planes = finfo.n_planes() as usize;
    let mut strides = [0i32; 4];
    let mut offsets = [0usize; 4];
    let mut size = 0usize;
    for p in 0..n_planes {
        let comp = (0..finfo.n_components())
            .find(|&c| finfo.plane()[c as usize] == p as u32)
            .unwrap();
        let pw = finfo.scale_width(comp as u8, width) as usize;
        let ph = finfo.scale_height(comp as u8, height) as usize;
        let bytes_per_px = match (format, p) {
            (F::Rgb | F::Bgr, _) => 3,
            (F::Nv12, 1) => 2,
            (F::Nv12 | F::I420, _) => 1,
            _ => 4,
        };
        strides[p] = (pw * bytes_per_px) as i32 + row_padding as i32;
        offsets[p] = size;
        size += strides[p] as usize * ph;
    }
    let mut data = vec![0xABu8; size];
    let [r, g, b] = rgb;
    // BT.601 limited range, what GStreamer assumes for SD sizes.
    let (rf, gf, bf) = (r as f32, g as f32, b as f32);
    let y = (16.0 + 0.257 * rf + 0.504 * gf + 0.098 * bf).round() as u8;
    let u = (128.0 - 0.148 * rf - 0.291 * gf + 0.439 * bf).round() as u8;
    let v = (128.0 + 0.439 * rf - 0.368 * gf - 0.071 * bf).round() as u8;
    let pixel: Vec<u8> = match format {
        F::Rgb => vec![r, g, b],
        F::Bgr => vec![b, g, r],
        F::Rgbx | F::Rgba => vec![r, g, b, 255],
        F::Bgrx | F::Bgra => vec![b, g, r, 255],
        F::Xrgb | F::Argb => vec![255, r, g, b],
        F::Xbgr | F::Abgr => vec![255, b, g, r],
        _ => vec![],
    };
    for p in 0..n_planes {
        let comp = (0..finfo.n_components())
            .find(|&c| finfo.plane()[c as usize] == p as u32)
            .unwrap();
        let pw = finfo.scale_width(comp as u8, width) as usize;
        let ph = finfo.scale_height(comp as u8, height) as usize;
        for row in 0..ph {
            let start = offsets[p] + row * strides[p] as usize;
            for x in 0..pw {
                match (format, p) {
                    (F::Nv12 | F::I420, 0) => data[start + x] = y,
                    (F::Nv12, 1) => data[start + 2 * x..start + 2 * x + 2].copy_from_slice(&[u, v]),
                    (F::I420, 1) => data[start + x] = u,
                    (F::I420, 2) => data[start + x] = v,
                    _ => {
                        let n = pixel.len();
                        data[start + x * n..start + x * n + n].copy_from_slice(&pixel)
                    }
                }
            }
        }
    }
    let mut buf = gst::Buffer::from_mut_slice(data);
    {
        let b = buf.get_mut().unwrap();
        gst_video::VideoMeta::add_full(
            b,
            gst_video::VideoFrameFlags::empty(),
            format,
            width,
            height,
            &offsets[..n_planes],
            &strides[..n_planes],
        )
        .unwrap();
    }
    buf
}

/// Caps for `solid_frame` buffers; YUV formats are declared BT.601 (what `solid_frame` encodes) at every size.
pub fn caps(format: gst_video::VideoFormat, width: u32, height: u32) -> gst::Caps {
    let mut caps = gst_video::VideoCapsBuilder::new()
        .format(format)
        .width(width as i32)
        .height(height as i32)
        .framerate(gst::Fraction::new(30, 1))
        .build();
    if gst_video::VideoFormatInfo::from_format(format).is_yuv() {
        caps.get_mut().unwrap().set("colorimetry", "bt601");
    }
    caps
}

/// A harness around a configured element, caps set.
pub fn harness(element: &gst::Element, caps_: &gst::Caps) -> gst_check::Harness {
    let mut h = gst_check::Harness::with_element(element, Some("sink"), Some("src"));
    h.set_src_caps(caps_.clone());
    h
}

pub fn element(props: &[(&str, &dyn ToValue)]) -> gst::Element {
    init();
    let e = gst::ElementFactory::make("mobilenetdetect").build().unwrap();
    for (k, v) in props {
        let value = v.to_value();
        let pspec = e.find_property(k).unwrap_or_else(|| panic!("no property {k}"));
        // Enum properties are given by nick, as on a gst-launch line.
        match value.get::<&str>() {
            Ok(s) if pspec.value_type() != glib::Type::STRING => e.set_property_from_str(k, s),
            _ => e.set_property(k, value),
        }
    }
    e
}

/// Builds a one-element pipeline `src ! mobilenetdetect ! fakesink` from a launch line.
pub fn pipeline(launch: &str) -> gst::Pipeline {
    init();
    gst::parse::launch(launch).unwrap().downcast::<gst::Pipeline>().unwrap()
}

/// Plays a pipeline to EOS; an error message, or no EOS within two minutes, fails the test with its text.
pub fn play_to_eos(p: &gst::Pipeline) {
    p.set_state(gst::State::Playing).unwrap();
    wait_eos(p, 120);
}

/// Waits (at most `seconds`) for a playing pipeline's EOS; an error message, or none within the time, fails the
/// test with its text.
pub fn wait_eos(p: &gst::Pipeline, seconds: u64) {
    let msg = p
        .bus()
        .unwrap()
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(seconds),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .unwrap_or_else(|| panic!("no EOS within {seconds} s"));
    if let gst::MessageView::Error(e) = msg.view() {
        panic!("{} {:?}", e.error(), e.debug());
    }
}

/// Takes a pipeline to PAUSED; returns the error message text if the state change failed (and checks that
/// it failed with an error message), or None when it worked.
pub fn start_error(p: &gst::Pipeline) -> Option<String> {
    let res = p.set_state(gst::State::Paused);
    let bus = p.bus().unwrap();
    let out = if res.is_err() {
        let msg = bus.timed_pop_filtered(gst::ClockTime::from_seconds(5), &[gst::MessageType::Error]);
        match msg.as_ref().map(|m| m.view()) {
            Some(gst::MessageView::Error(e)) => Some(format!("{} | {}", e.error(), e.debug().unwrap_or_default())),
            _ => panic!("state change failed without an error message"),
        }
    } else {
        assert!(bus.pop_filtered(&[gst::MessageType::Error]).is_none());
        None
    };
    let _ = p.set_state(gst::State::Null);
    out
}

/// `gst-launch-1.0 -q` with this build of the plugin (not an installed copy), stdout discarded and stderr
/// captured: for tests that need a second process or a real terminal program.
pub fn gst_launch(pipeline: &str) -> std::process::Command {
    let mut c = std::process::Command::new("gst-launch-1.0");
    c.arg("-q").args(pipeline.split_whitespace());
    with_this_plugin(&mut c);
    c
}

/// Points a command's GStreamer at this build of the plugin, in a registry of its own.
pub fn with_this_plugin(c: &mut std::process::Command) {
    let exe = std::env::current_exe().unwrap();
    let build_dir = exe.parent().and_then(std::path::Path::parent).unwrap();
    assert!(
        build_dir.join("libgstmobilenetdetect.so").is_file(),
        "build the plugin first (cargo build -p gst-plugin-mobilenetdetect)"
    );
    let isolated = std::env::temp_dir().join(format!("mobilenetdetect-test-launch-{}", std::process::id()));
    std::fs::create_dir_all(&isolated).unwrap();
    c.env("GST_PLUGIN_PATH", build_dir)
        .env("GST_REGISTRY", isolated.join("registry.bin"))
        .env("XDG_DATA_HOME", &isolated)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
}

/// Every message a subscriber got, in arrival order: the JSON value (a payload that is not JSON becomes a
/// string holding it, for the test to fail on).
pub type Messages = std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>;

/// A subscriber to `topic` (wildcards allowed) with a persistent session named `client`, taking messages of up
/// to 64 MiB.
pub fn subscribe_json(port: u16, topic: &str, client: &str) -> Messages {
    use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
    let mut options = MqttOptions::new(client, "127.0.0.1", port);
    options
        .set_clean_session(false)
        .set_keep_alive(std::time::Duration::from_secs(5))
        .set_max_packet_size(64 << 20, 1 << 20);
    let (client, mut connection) = Client::new(options, 16);
    let got: Messages = Default::default();
    let g = got.clone();
    let topic = topic.to_string();
    std::thread::spawn(move || {
        for event in connection.iter() {
            match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    let _ = client.try_subscribe(&topic, QoS::AtLeastOnce);
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let v = serde_json::from_slice(&p.payload)
                        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&p.payload).into()));
                    g.lock().unwrap().push(v);
                }
                Ok(_) => {}
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(200)),
            }
        }
    });
    got
}

/// The frame numbers of `messages`, in arrival order.
pub fn frame_numbers(messages: &Messages) -> Vec<u64> {
    messages
        .lock()
        .unwrap()
        .iter()
        .map(|v| v["frame"].as_u64().unwrap_or_else(|| panic!("not a frame line: {v}")))
        .collect()
}

/// Waits (at most `within`) until `done` holds for the messages so far.
pub fn wait_for_messages(
    messages: &Messages,
    within: std::time::Duration,
    done: impl Fn(&[serde_json::Value]) -> bool,
) {
    let deadline = std::time::Instant::now() + within;
    while !done(&messages.lock().unwrap()) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// An MQTT outbox's segment files, in order.
pub fn outbox_segments(outbox: &std::path::Path) -> Vec<(u64, PathBuf)> {
    let mut segments: Vec<(u64, PathBuf)> = std::fs::read_dir(outbox)
        .map(|d| {
            d.flatten()
                .filter_map(|e| Some((e.file_name().to_str()?.strip_suffix(".jsonl")?.parse().ok()?, e.path())))
                .collect()
        })
        .unwrap_or_default();
    segments.sort();
    segments
}

/// Every complete line an MQTT outbox's segments hold, acknowledged or not.
pub fn outbox_lines(outbox: &std::path::Path) -> Vec<String> {
    outbox_segments(outbox)
        .into_iter()
        .flat_map(|(_, path)| {
            let text = std::fs::read_to_string(path).unwrap();
            text.split_inclusive('\n')
                .filter(|l| l.ends_with('\n'))
                .map(|l| l.trim_end().to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The lines an MQTT outbox folder holds that the broker has not acknowledged (after its `sent` cursor).
pub fn unacknowledged_lines(outbox: &std::path::Path) -> Vec<String> {
    let cursor = std::fs::read_to_string(outbox.join("sent")).unwrap_or_default();
    let mut numbers = cursor.split_whitespace().map(|n| n.parse::<u64>().unwrap());
    let (segment, offset) = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
    let mut lines = Vec::new();
    for (n, path) in outbox_segments(outbox).into_iter().filter(|(n, _)| *n >= segment) {
        let bytes = std::fs::read(path).unwrap();
        let from = if n == segment { offset as usize } else { 0 };
        let text = String::from_utf8(bytes[from.min(bytes.len())..].to_vec()).unwrap();
        lines.extend(text.lines().map(str::to_string));
    }
    lines
}
