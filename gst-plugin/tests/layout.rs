//! Buffers as decoders and cameras produce them: rows padded past the width, or packed tighter than the
//! layout the caps imply, described by a GstVideoMeta. Detect, capture, JSON and overlay all read such frames
//! by their own strides: the saved JPEG equals the frame, the boxes are right, nothing panics.

mod common;
use common::*;
use detection_common::metadata as meta;
use detection_common::voc::Dataset;
use gst_video::VideoFormat as F;
use mobilenetdetect_testkit::models::{self, ImageInput};

/// The test picture: a diagonal gradient in every channel, so a row read at the wrong offset shows.
fn pattern(x: u32, y: u32, w: u32, h: u32) -> [u8; 3] {
    [
        (x * 255 / w.max(2).saturating_sub(1).max(1)) as u8,
        (y * 255 / h.max(2).saturating_sub(1).max(1)) as u8,
        (((x + y) * 4) % 200 + 30) as u8,
    ]
}

fn yuv([r, g, b]: [u8; 3]) -> [u8; 3] {
    let (r, g, b) = (r as f32, g as f32, b as f32);
    [
        (16.0 + 0.257 * r + 0.504 * g + 0.098 * b).round() as u8,
        (128.0 - 0.148 * r - 0.291 * g + 0.439 * b).round() as u8,
        (128.0 + 0.439 * r - 0.368 * g - 0.071 * b).round() as u8,
    ]
}

/// A frame of the test pattern with `padding` bytes after each row of each plane (0: packed as tight as the
/// format allows, e.g. RGB rows of 3 * width bytes, less than the 4-byte aligned default), described by a meta.
fn pattern_frame(format: F, w: u32, h: u32, padding: usize) -> gst::Buffer {
    let (cw, ch) = (w.div_ceil(2) as usize, h.div_ceil(2) as usize);
    let (wu, hu) = (w as usize, h as usize);
    let planes: Vec<(usize, usize)> = match format {
        F::Rgb => vec![(wu * 3, hu)],
        F::Rgbx => vec![(wu * 4, hu)],
        F::Nv12 => vec![(wu, hu), (cw * 2, ch)],
        F::I420 => vec![(wu, hu), (cw, ch), (cw, ch)],
        other => panic!("{other:?}"),
    };
    let strides: Vec<usize> = planes.iter().map(|(row, _)| row + padding).collect();
    let mut offsets = Vec::new();
    let mut size = 0;
    for ((_, rows), stride) in planes.iter().zip(&strides) {
        offsets.push(size);
        size += stride * rows;
    }
    let mut data = vec![0xABu8; size];
    for y in 0..hu {
        for x in 0..wu {
            let rgb = pattern(x as u32, y as u32, w, h);
            match format {
                F::Rgb | F::Rgbx => {
                    let n = if format == F::Rgb { 3 } else { 4 };
                    let o = offsets[0] + y * strides[0] + x * n;
                    data[o..o + 3].copy_from_slice(&rgb);
                }
                _ => {
                    let [yy, u, v] = yuv(rgb);
                    data[offsets[0] + y * strides[0] + x] = yy;
                    if x % 2 == 0 && y % 2 == 0 {
                        let (cx, cy) = (x / 2, y / 2);
                        if format == F::Nv12 {
                            let o = offsets[1] + cy * strides[1] + 2 * cx;
                            data[o..o + 2].copy_from_slice(&[u, v]);
                        } else {
                            data[offsets[1] + cy * strides[1] + cx] = u;
                            data[offsets[2] + cy * strides[2] + cx] = v;
                        }
                    }
                }
            }
        }
    }
    let mut buf = gst::Buffer::from_mut_slice(data);
    let strides: Vec<i32> = strides.iter().map(|s| *s as i32).collect();
    gst_video::VideoMeta::add_full(
        buf.get_mut().unwrap(),
        gst_video::VideoFrameFlags::empty(),
        format,
        w,
        h,
        &offsets,
        &strides,
    )
    .unwrap();
    buf
}

/// Mean absolute difference between a decoded JPEG and the pattern.
fn difference_from_pattern(jpeg: &std::path::Path, w: u32, h: u32) -> f64 {
    let img = image::open(jpeg).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (w, h), "{}", jpeg.display());
    let mut total = 0u64;
    for (x, y, p) in img.enumerate_pixels() {
        let want = pattern(x, y, w, h);
        total += (0..3)
            .map(|c| (p[c] as i32 - want[c] as i32).unsigned_abs() as u64)
            .sum::<u64>();
    }
    total as f64 / (w * h * 3) as f64
}

#[test]
fn padded_and_tight_rows_pass_detect_capture_json_and_overlay() {
    init();
    let model = write_model(
        "layout-model",
        &models::decoded_model(
            ImageInput::nchw(32, 32),
            &[[0.25, 0.25, 0.75, 0.75]],
            &[vec![0.0, 0.9]],
            ("boxes", "scores"),
            &[(meta::KEY_LABELS, "BACKGROUND\nsign\n")],
        ),
    );
    // Padded RGBx / NV12 / I420 as hardware decoders hand them out, and tight RGB (odd width: rows of 3 * 31
    // bytes where the caps' default layout expects 96).
    for (format, w, h, padding) in [
        (F::Rgbx, 64, 48, 64),
        (F::Nv12, 64, 48, 32),
        (F::I420, 62, 46, 24),
        (F::Rgb, 31, 20, 0),
    ] {
        let dir = temp_dir(&format!("layout-{format:?}"));
        let dataset = dir.join("dataset");
        let json = dir.join("frames.jsonl");
        let mut h_ = gst_check::Harness::new_parse(&format!(
            "mobilenetdetect model={model} ! detectioncapture location={} ! detectionjson location={} ! \
             detectionoverlay show-labels=false",
            dataset.display(),
            json.display()
        ));
        h_.set_src_caps(caps(format, w, h));
        let frames = 3;
        let mut outputs = Vec::new();
        for _ in 0..frames {
            h_.push(pattern_frame(format, w, h, padding)).unwrap();
            outputs.push(h_.pull().unwrap());
        }
        assert!(h_.push_event(gst::event::Eos::new()));
        drop(h_);

        // Capture: every frame saved, and each JPEG is the frame, not a sheared or garbled copy.
        let ds = Dataset::open(&dataset).unwrap();
        assert!(ds.problems.is_empty(), "{format:?}: {:?}", ds.problems);
        assert_eq!(ds.samples.len(), frames, "{format:?}");
        for s in &ds.samples {
            let mad = difference_from_pattern(&s.image, w, h);
            assert!(
                mad < 6.0,
                "{format:?}: {} differs from the frame by {mad:.1} on average",
                s.image.display()
            );
        }
        // Boxes: the model's box is the middle half of the frame.
        let want = (
            (w as f32 * 0.25).round() as u32,
            (h as f32 * 0.25).round() as u32,
            (w as f32 * 0.75).round() as u32,
            (h as f32 * 0.75).round() as u32,
        );
        let o = &ds.samples[0].annotation.objects[0];
        assert_eq!(
            (o.xmin as u32, o.ymin as u32, o.xmax as u32, o.ymax as u32),
            want,
            "{format:?}"
        );
        let lines = std::fs::read_to_string(&json).unwrap();
        assert_eq!(lines.lines().count(), frames);
        for line in lines.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let d = &v["detections"][0];
            assert_eq!(d["x"].as_u64().unwrap() as u32, want.0, "{format:?}: {line}");
            assert_eq!(
                d["width"].as_u64().unwrap() as u32,
                want.2 - want.0,
                "{format:?}: {line}"
            );
        }
        // Overlay: drew on the frame inside its own rows; the padding bytes are untouched.
        let out = outputs.pop().unwrap();
        let map = out.map_readable().unwrap();
        let original = pattern_frame(format, w, h, padding);
        let original = original.map_readable().unwrap();
        assert_eq!(map.len(), original.len());
        assert_ne!(
            map.as_slice(),
            original.as_slice(),
            "{format:?}: the overlay drew nothing"
        );
        if padding > 0 {
            let row = match format {
                F::Rgbx => w as usize * 4,
                _ => w as usize,
            };
            let stride = row + padding;
            for y in 0..h as usize {
                assert!(
                    map[y * stride + row..(y + 1) * stride].iter().all(|&b| b == 0xAB),
                    "{format:?}: the overlay wrote into the padding of row {y}"
                );
            }
        }
    }
}
