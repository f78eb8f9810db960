//! `detectionoverlay`: boxes in the class colour on RGB and YUV frames, labels in a tag, untouched frames
//! without boxes, a confidence floor, a clear error for a missing font.

mod common;
use common::*;
use gst::prelude::*;
use gst_video::VideoFormat;

fn frame_with_box(format: VideoFormat, w: u32, h: u32, rect: (u32, u32, u32, u32), class_id: u32) -> gst::Buffer {
    let mut buf = solid_frame(format, w, h, [128, 128, 128], 0);
    {
        let b = buf.get_mut().unwrap();
        let mut m = gst_video::VideoRegionOfInterestMeta::add(b, "stop", rect);
        m.add_param(
            gst::Structure::builder("detection")
                .field("class-id", class_id)
                .field("confidence", 0.5f64)
                .build(),
        );
    }
    buf
}

fn overlay(props: &[(&str, &str)]) -> gst::Element {
    init();
    let e = gst::ElementFactory::make("detectionoverlay").build().unwrap();
    for (k, v) in props {
        e.set_property_from_str(k, v);
    }
    e
}

#[test]
fn draws_the_outline_in_the_class_colour_on_rgb() {
    let e = overlay(&[("line-thickness", "2")]);
    let mut h = harness(&e, &caps(VideoFormat::Rgbx, 100, 80));
    let out = h
        .push_and_pull(frame_with_box(VideoFormat::Rgbx, 100, 80, (20, 30, 40, 30), 1))
        .unwrap();
    let map = out.map_readable().unwrap();
    let px = |x: usize, y: usize| {
        [
            map[(y * 100 + x) * 4],
            map[(y * 100 + x) * 4 + 1],
            map[(y * 100 + x) * 4 + 2],
        ]
    };
    // Class 1 is the palette's second colour (green).
    assert_eq!(px(20, 45), [60, 180, 75], "left edge");
    assert_eq!(px(21, 45), [60, 180, 75], "two pixels thick");
    assert_eq!(px(22, 45), [128, 128, 128], "inside untouched");
    assert_eq!(px(59, 45), [60, 180, 75], "right edge");
    assert_eq!(px(90, 70), [128, 128, 128], "elsewhere untouched");
    // The tag above the box has the class colour and some text pixels.
    let tag: Vec<[u8; 3]> = (20..60)
        .flat_map(|x| (14..30).map(move |y| (x, y)))
        .map(|(x, y)| px(x, y))
        .collect();
    assert!(tag.iter().filter(|p| **p == [60, 180, 75]).count() > 100, "tag filled");
    assert!(
        tag.iter().any(|p| *p != [60, 180, 75] && *p != [128, 128, 128]),
        "text drawn"
    );
}

#[test]
fn draws_on_nv12_and_i420() {
    for format in [VideoFormat::Nv12, VideoFormat::I420] {
        let e = overlay(&[("show-labels", "false")]);
        let mut h = harness(&e, &caps(format, 64, 48));
        let out = h
            .push_and_pull(frame_with_box(format, 64, 48, (10, 10, 20, 20), 0))
            .unwrap();
        let map = out.map_readable().unwrap();
        // Class 0 is red: Y = 16 + 0.257*230 + 0.504*25 + 0.098*75 = 95.
        assert_eq!(map[15 * 64 + 10], 95, "{format:?} left edge luma");
        assert_ne!(map[15 * 64 + 15], 95, "{format:?} inside untouched");
        assert_eq!(
            map[2 * 64 + 15],
            map[40 * 64 + 60],
            "{format:?} no tag drawn with show-labels=false"
        );
    }
}

#[test]
fn frames_without_boxes_pass_unchanged() {
    let e = overlay(&[]);
    let mut h = harness(&e, &caps(VideoFormat::Bgrx, 33, 17));
    let input = solid_frame(VideoFormat::Bgrx, 33, 17, [1, 2, 3], 0);
    let expected = input.map_readable().unwrap().to_vec();
    let out = h.push_and_pull(input).unwrap();
    assert_eq!(out.map_readable().unwrap().as_slice(), expected.as_slice());
}

#[test]
fn detections_below_min_confidence_are_not_drawn() {
    // The box's confidence is 0.5.
    for (min, drawn) in [("0.6", false), ("0.5", true)] {
        let e = overlay(&[("min-confidence", min), ("show-labels", "false")]);
        let mut h = harness(&e, &caps(VideoFormat::Rgbx, 64, 48));
        let input = frame_with_box(VideoFormat::Rgbx, 64, 48, (10, 10, 20, 20), 1);
        let before = input.map_readable().unwrap().to_vec();
        let out = h.push_and_pull(input).unwrap();
        let changed = out.map_readable().unwrap().as_slice() != before.as_slice();
        assert_eq!(changed, drawn, "min-confidence={min}");
    }
}

#[test]
fn a_missing_font_fails_the_state_change() {
    let p = pipeline("videotestsrc num-buffers=1 ! detectionoverlay font=/nonexistent/font.ttf ! fakesink");
    let e = start_error(&p).expect("must fail");
    assert!(e.contains("/nonexistent/font.ttf"), "{e}");
}
