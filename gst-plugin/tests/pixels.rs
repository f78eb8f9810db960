//! Every pixel format, odd sizes and padded strides, channel order, layout and normalisation, checked with a
//! colour-probe model whose confidences are the mean R, G, B of the tensor it was fed.

mod common;
use common::*;
use detection_common::metadata as meta;
use gst_video::VideoFormat;
use mobilenetdetect_testkit::models::{self, ImageInput};

const ALL: [VideoFormat; 12] = [
    VideoFormat::Rgb,
    VideoFormat::Bgr,
    VideoFormat::Rgbx,
    VideoFormat::Bgrx,
    VideoFormat::Xrgb,
    VideoFormat::Xbgr,
    VideoFormat::Rgba,
    VideoFormat::Bgra,
    VideoFormat::Argb,
    VideoFormat::Abgr,
    VideoFormat::Nv12,
    VideoFormat::I420,
];

/// Pushes one solid frame and returns the probe's (red, green, blue) confidences.
fn probe(
    model: &str,
    props: &[(&str, &dyn gst::glib::value::ToValue)],
    format: VideoFormat,
    w: u32,
    h: u32,
    rgb: [u8; 3],
    padding: u32,
) -> [f64; 3] {
    let mut all: Vec<(&str, &dyn gst::glib::value::ToValue)> = vec![("model", &model), ("score-threshold", &0.0f32)];
    all.extend_from_slice(props);
    let e = element(&all);
    let mut hn = harness(&e, &caps(format, w, h));
    let out = hn.push_and_pull(solid_frame(format, w, h, rgb, padding)).unwrap();
    let r = rois(&out);
    ["red", "green", "blue"].map(|l| r.iter().find(|d| d.label == l).map(|d| d.confidence).unwrap_or(0.0))
}

fn assert_close(got: [f64; 3], want: [u8; 3], tol: f64, what: &str) {
    for c in 0..3 {
        let w = want[c] as f64 / 255.0;
        assert!(
            (got[c] - w).abs() <= tol,
            "{what}: channel {c}: got {:.4}, want {:.4} ({got:?})",
            got[c],
            w
        );
    }
}

#[test]
fn every_format_odd_sizes_and_padded_strides() {
    let model = write_model(
        "probe",
        &models::colour_probe_model(ImageInput::nchw(64, 48), [0.0, 0.0, 1.0, 1.0], &[]),
    );
    let colour = [200, 100, 50];
    for format in ALL {
        // YUV round-trips through 8-bit chroma: allow a few levels.
        let tol = if matches!(format, VideoFormat::Nv12 | VideoFormat::I420) {
            4.0 / 255.0
        } else {
            0.5 / 255.0
        };
        for (w, h) in [(64, 48), (33, 17), (1, 1), (1921, 1079)] {
            for padding in [0, 60] {
                let got = probe(&model, &[], format, w, h, colour, padding);
                assert_close(got, colour, tol, &format!("{format:?} {w}x{h} padding {padding}"));
            }
        }
    }
}

#[test]
fn channel_order_layout_and_normalisation_follow_the_model() {
    let colour = [200, 100, 50];
    // NHWC float input, declared BGR in metadata: the probe's first channel is blue.
    let nhwc_bgr = models::colour_probe_model(
        ImageInput::nhwc(40, 30),
        [0.0, 0.0, 1.0, 1.0],
        &[(meta::KEY_CHANNEL_ORDER, "bgr")],
    );
    let m = write_model("nhwc-bgr", &nhwc_bgr);
    assert_close(
        probe(&m, &[], VideoFormat::Rgb, 50, 50, colour, 0),
        [50, 100, 200],
        0.5 / 255.0,
        "bgr from metadata",
    );
    // The property overrides the metadata.
    let got = probe(&m, &[("channel-order", &"rgb")], VideoFormat::Rgb, 50, 50, colour, 0);
    assert_close(got, colour, 0.5 / 255.0, "rgb property");
    // input-mean / input-std: (p - 100) / 50 per channel, reported as confidence = mean of the tensor.
    let m = write_model(
        "norm",
        &models::colour_probe_model(ImageInput::nchw(40, 30), [0.0, 0.0, 1.0, 1.0], &[]),
    );
    let got = probe(
        &m,
        &[("input-mean", &"100,100,0"), ("input-std", &"50,50,255")],
        VideoFormat::Rgbx,
        50,
        50,
        colour,
        0,
    );
    assert!((got[0] - 2.0).abs() < 1e-4 && (got[1] - 0.0).abs() < 1e-4, "{got:?}");
    assert!((got[2] - 50.0 / 255.0).abs() < 1e-4, "{got:?}");
    // uint8 NHWC input gets raw pixel values: mean 200 for red.
    let u8_model = models::colour_probe_model(
        ImageInput {
            size: Some((40, 30)),
            nhwc: true,
            uint8: true,
        },
        [0.0, 0.0, 1.0, 1.0],
        &[],
    );
    let m = write_model("uint8", &u8_model);
    let got = probe(
        &m,
        &[("score-threshold", &0.0f32)],
        VideoFormat::Bgrx,
        50,
        50,
        colour,
        0,
    );
    assert!((got[0] - 200.0).abs() < 1e-3 && (got[2] - 50.0).abs() < 1e-3, "{got:?}");
}

#[test]
fn nv12_full_range_and_bt709_colorimetry_are_honoured() {
    // Y=128, U=128, V=200 declared full-range BT.709: R = 128 + 1.5748 * 72, G = 128 - 0.4681 * 72, B = 128.
    // BT.601 would give R 229 and G 77, limited range R 257 (clipped) and G 93.
    let m = write_model(
        "probe709",
        &models::colour_probe_model(ImageInput::nchw(32, 32), [0.0, 0.0, 1.0, 1.0], &[]),
    );
    let e = element(&[("model", &m), ("score-threshold", &0.0f32)]);
    let caps = gst::Caps::builder("video/x-raw")
        .field("format", "NV12")
        .field("width", 64)
        .field("height", 36)
        .field("framerate", gst::Fraction::new(30, 1))
        .field("colorimetry", "1:3:5:1")
        .build();
    let mut h = harness(&e, &caps);
    let mut data = vec![128u8; 64 * 36];
    for _ in 0..(32 * 18) {
        data.extend_from_slice(&[128, 200]);
    }
    let out = h.push_and_pull(gst::Buffer::from_mut_slice(data)).unwrap();
    let r = rois(&out);
    let want = [
        (128.0 + 1.5748 * 72.0) / 255.0,
        (128.0 - 0.4681 * 72.0) / 255.0,
        128.0 / 255.0,
    ];
    for (l, w) in ["red", "green", "blue"].into_iter().zip(want) {
        assert!(
            (by_label(&r, l).confidence - w).abs() < 1.5 / 255.0,
            "{l}: want {w}: {r:?}"
        );
    }
}
