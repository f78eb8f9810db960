//! Every model format, exact box mapping (stretch and letterbox), NMS, class filters and thresholds.

mod common;
use common::*;
use detection_common::BBox;
use detection_common::boxes::{Anchor, BoxEncoding, encode_box, format_anchors};
use detection_common::metadata as meta;
use gst::prelude::*;
use gst_video::VideoFormat;
use mobilenetdetect_testkit::models::{self, ImageInput};

fn two_box_model(extra: &[(&str, &str)]) -> Vec<u8> {
    let mut md = vec![(meta::KEY_LABELS, "BACKGROUND\nperson\ncar\n")];
    md.extend_from_slice(extra);
    models::decoded_model(
        ImageInput::nchw(300, 300),
        &[[0.25, 0.25, 0.5, 0.5], [0.6, 0.6, 0.9, 0.9]],
        &[vec![0.0, 0.9, 0.1], vec![0.0, 0.2, 0.7]],
        ("boxes", "scores"),
        &md,
    )
}

fn run_one(element: &gst::Element, format: VideoFormat, w: u32, h: u32) -> Vec<Roi> {
    let mut harness = harness(element, &caps(format, w, h));
    let out = harness
        .push_and_pull(solid_frame(format, w, h, [10, 20, 30], 0))
        .unwrap();
    rois(&out)
}

#[test]
fn ssd_decoded_boxes_map_exactly_to_frame_pixels() {
    let model = write_model("decoded", &two_box_model(&[]));
    let e = element(&[("model", &model)]);
    let r = run_one(&e, VideoFormat::Rgbx, 640, 480);
    assert_eq!(r.len(), 2, "{r:?}");
    let person = by_label(&r, "person");
    assert_eq!(person.rect, (160, 120, 160, 120));
    assert_eq!(person.class_id, 1);
    assert!((person.confidence - 0.9).abs() < 1e-6);
    for (got, want) in person.norm.iter().zip([0.25, 0.25, 0.5, 0.5]) {
        assert!((got - want).abs() < 1e-6, "{:?}", person.norm);
    }
    let car = by_label(&r, "car");
    assert_eq!(car.rect, (384, 288, 192, 144));
    assert!((car.confidence - 0.7).abs() < 1e-6);
    assert_eq!(
        e.property::<Option<String>>("active-execution-provider").as_deref(),
        Some("cpu")
    );
}

#[test]
fn ssd_decoded_yxyx_and_single_class_scores() {
    let yx = models::decoded_model(
        ImageInput::nchw(300, 300),
        &[[0.25, 0.5, 0.5, 1.0]],
        &[vec![0.8]],
        ("boxes", "scores"),
        &[(meta::KEY_BOX_ORDER, "yxyx"), (meta::KEY_LABELS, "sign\n")],
    );
    let e = element(&[("model", &write_model("yxyx", &yx))]);
    let r = run_one(&e, VideoFormat::Rgb, 200, 100);
    assert_eq!(r.len(), 1);
    assert_eq!(
        (r[0].label.as_str(), r[0].class_id, r[0].rect),
        ("sign", 1, (100, 25, 100, 25))
    );
    // The property overrides the metadata.
    let e = element(&[("model", &write_model("yxyx2", &yx)), ("box-order", &"xyxy")]);
    assert_eq!(run_one(&e, VideoFormat::Rgb, 200, 100)[0].rect, (50, 50, 50, 50));
}

#[test]
fn ssd_raw_with_anchor_file_and_embedded_anchors() {
    let anchors = [
        Anchor {
            cy: 0.5,
            cx: 0.5,
            h: 0.2,
            w: 0.4,
        },
        Anchor {
            cy: 0.25,
            cx: 0.25,
            h: 0.1,
            w: 0.1,
        },
    ];
    let want = [BBox::new(0.1, 0.2, 0.5, 0.6), BBox::new(0.7, 0.7, 0.8, 0.9)];
    for encoding in [BoxEncoding::Tf, BoxEncoding::Xywh] {
        let enc: Vec<[f32; 4]> = want
            .iter()
            .zip(&anchors)
            .map(|(b, a)| encode_box(b, a, encoding))
            .collect();
        // logit ln(4) -> sigmoid 0.8; softmax of [0, 2, 0] -> 0.787.
        let logits = vec![vec![0.0, 4f32.ln(), -10.0], vec![0.0, -10.0, 4f32.ln()]];
        let dir = temp_dir(&format!("raw-{}", encoding.as_str()));
        let anchor_file = dir.join("anchors.txt");
        std::fs::write(&anchor_file, format_anchors(&anchors)).unwrap();
        let plain = models::raw_model(ImageInput::nchw(300, 300), &enc, &logits, &[]);
        let model = dir.join("raw.onnx");
        std::fs::write(&model, &plain).unwrap();
        let e = element(&[
            ("model", &model.display().to_string()),
            ("anchors", &anchor_file.display().to_string()),
            ("box-encoding", &encoding.as_str()),
            ("score-activation", &"sigmoid"),
        ]);
        let r = run_one(&e, VideoFormat::Bgrx, 1000, 1000);
        assert_eq!(r.len(), 2, "{encoding:?}: {r:?}");
        let one = by_label(&r, "class-1");
        assert_eq!(one.rect, (100, 200, 400, 400), "{encoding:?}");
        assert!((one.confidence - 0.8).abs() < 1e-5);
        assert_eq!(by_label(&r, "class-2").rect, (700, 700, 100, 200));

        // Anchors, encoding and softmax from the model's metadata.
        let text = format_anchors(&anchors);
        let embedded = models::raw_model(
            ImageInput::nchw(300, 300),
            &enc,
            &logits,
            &[
                (meta::KEY_ANCHORS, &text),
                (meta::KEY_BOX_ENCODING, encoding.as_str()),
                (meta::KEY_SCORE_ACTIVATION, "softmax"),
                (meta::KEY_LABELS, "a\nb\n"),
            ],
        );
        let e = element(&[(
            "model",
            &write_model(&format!("raw-emb-{}", encoding.as_str()), &embedded),
        )]);
        let r = run_one(&e, VideoFormat::Bgrx, 1000, 1000);
        let a = by_label(&r, "a");
        assert_eq!(a.rect, (100, 200, 400, 400));
        let softmax = 4.0 / (1.0 + 4.0 + (-10f64).exp());
        assert!((a.confidence - softmax).abs() < 1e-5, "{}", a.confidence);
    }
}

#[test]
fn tf_od_model_fed_at_frame_size_with_coco_style_labels() {
    let m = models::tf_od_model(
        &[[0.1, 0.2, 0.5, 0.6], [0.5, 0.5, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0]],
        &[0.9, 0.6, 0.99],
        &[1.0, 3.0, 2.0],
        2.0, // the third row is past num_detections and must be ignored
    );
    let dir = temp_dir("tfod");
    let labels = dir.join("labels.txt");
    std::fs::write(&labels, "person\nbicycle\ncar\n").unwrap();
    let e = element(&[
        ("model", &write_model("tfod-model", &m)),
        ("labels", &labels.display().to_string()),
    ]);
    let r = run_one(&e, VideoFormat::I420, 321, 241);
    assert_eq!(r.len(), 2, "{r:?}");
    let p = by_label(&r, "person");
    // x 64.2..192.6 and y 24.1..120.5 in pixels; corners are rounded, so width 193 - 64 and height 121 - 24.
    assert_eq!(p.rect, (64, 24, 129, 97));
    let car = by_label(&r, "car");
    assert_eq!(car.class_id, 3);
    assert_eq!(car.rect, (161, 121, 160, 120));
}

#[test]
fn letterbox_maps_boxes_back_to_the_original_frame() {
    let m = models::decoded_model(
        ImageInput::nchw(300, 300),
        &[[0.1, 0.25, 0.2, 0.75]],
        &[vec![0.0, 0.9]],
        ("boxes", "scores"),
        &[],
    );
    let model = write_model("letterbox", &m);
    let e = element(&[("model", &model), ("resize", &"letterbox")]);
    // 600x300 into 300x300: scale 0.5, content 300x150, 75 rows of padding on top.
    assert_eq!(run_one(&e, VideoFormat::Rgb, 600, 300)[0].rect, (60, 0, 60, 300));
    let e = element(&[("model", &model), ("resize", &"stretch")]);
    assert_eq!(run_one(&e, VideoFormat::Rgb, 600, 300)[0].rect, (60, 75, 60, 150));
    // Portrait frame: padding left and right.
    let e = element(&[("model", &model), ("resize", &"letterbox")]);
    // 150x300 -> content 150x300, pad_x 75: x 0.1*300=30 lies in the padding -> clamped to 0.
    let r = run_one(&e, VideoFormat::Rgb, 150, 300);
    assert_eq!(r.len(), 0, "a box entirely inside the padding is dropped: {r:?}");
}

#[test]
fn letterbox_pads_and_centres_the_content() {
    // White frame: mean over the tensor is the share of the content area.
    let m = models::colour_probe_model(ImageInput::nchw(300, 300), [0.0, 0.0, 1.0, 1.0], &[]);
    let model = write_model("letterbox-probe", &m);
    for (resize, expect) in [("letterbox", 0.5), ("stretch", 1.0)] {
        let e = element(&[("model", &model), ("resize", &resize), ("score-threshold", &0.0f32)]);
        let mut h = harness(&e, &caps(VideoFormat::Rgbx, 600, 300));
        let out = h
            .push_and_pull(solid_frame(VideoFormat::Rgbx, 600, 300, [255, 255, 255], 0))
            .unwrap();
        let r = rois(&out);
        assert!(
            (by_label(&r, "red").confidence - expect).abs() < 1e-3,
            "{resize}: {r:?}"
        );
    }
}

#[test]
fn nms_is_class_aware_and_max_detections_caps() {
    let m = models::decoded_model(
        ImageInput::nchw(300, 300),
        &[
            [0.1, 0.1, 0.5, 0.5],
            [0.12, 0.1, 0.52, 0.5],
            [0.1, 0.1, 0.5, 0.5],
            [0.6, 0.6, 0.9, 0.9],
        ],
        &[
            vec![0.0, 0.9, 0.0],
            vec![0.0, 0.8, 0.0],
            vec![0.0, 0.0, 0.7],
            vec![0.0, 0.6, 0.0],
        ],
        ("boxes", "scores"),
        &[],
    );
    let model = write_model("nms", &m);
    let e = element(&[("model", &model)]);
    let r = run_one(&e, VideoFormat::Rgbx, 100, 100);
    let mut scores: Vec<_> = r
        .iter()
        .map(|d| (d.class_id, (d.confidence * 10.0).round() as u32))
        .collect();
    scores.sort();
    assert_eq!(
        scores,
        vec![(1, 6), (1, 9), (2, 7)],
        "overlapping class-1 box suppressed, class 2 kept"
    );
    let e = element(&[("model", &model), ("iou-threshold", &0.99f32)]);
    assert_eq!(run_one(&e, VideoFormat::Rgbx, 100, 100).len(), 4);
    let e = element(&[("model", &model), ("max-detections", &2u32)]);
    assert_eq!(run_one(&e, VideoFormat::Rgbx, 100, 100).len(), 2);
}

#[test]
fn class_filter_and_per_class_thresholds() {
    let model = write_model("filter", &two_box_model(&[]));
    let labels = |r: Vec<Roi>| {
        let mut l: Vec<String> = r.into_iter().map(|d| d.label).collect();
        l.sort();
        l
    };
    let e = element(&[("model", &model), ("classes", &"car")]);
    assert_eq!(labels(run_one(&e, VideoFormat::Rgbx, 64, 64)), ["car"]);
    let e = element(&[("model", &model), ("classes", &"1")]);
    assert_eq!(labels(run_one(&e, VideoFormat::Rgbx, 64, 64)), ["person"]);
    let e = element(&[("model", &model), ("class-thresholds", &"person=0.95")]);
    assert_eq!(labels(run_one(&e, VideoFormat::Rgbx, 64, 64)), ["car"]);
    // A per-class threshold below the global one lets a weak class through.
    let e = element(&[
        ("model", &model),
        ("score-threshold", &0.95f32),
        ("class-thresholds", &"car=0.05,2=0.05"),
    ]);
    let r = run_one(&e, VideoFormat::Rgbx, 64, 64);
    assert_eq!(
        labels(r.clone()),
        ["car", "car"],
        "both anchors score >= 0.05 for car: {r:?}"
    );
    // Changed while running: applies from the next frame.
    let e = element(&[("model", &model)]);
    let mut h = harness(&e, &caps(VideoFormat::Rgbx, 64, 64));
    assert_eq!(
        rois(
            &h.push_and_pull(solid_frame(VideoFormat::Rgbx, 64, 64, [0; 3], 0))
                .unwrap()
        )
        .len(),
        2
    );
    e.set_property("classes", "person");
    assert_eq!(
        labels(rois(
            &h.push_and_pull(solid_frame(VideoFormat::Rgbx, 64, 64, [0; 3], 0))
                .unwrap()
        )),
        ["person"]
    );
}
