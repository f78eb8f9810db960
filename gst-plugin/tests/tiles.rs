//! Tiled mode (`tile-columns`, `tile-rows`, `tile-overlap`): small objects that the whole-frame inference cannot
//! see are found in the tiles, mapped back to the frame, and an object seen by several tiles (in the overlap
//! band, or cut by a tile border) is reported once.

mod common;
use common::*;
use gst::prelude::*;

const WIDTH: u32 = 1280;
const HEIGHT: u32 = 720;
/// White squares of 24 px on black: (x, y). The second lies in the overlap band of two columns of a 4x3 grid
/// (tiles start at x 0, 302, 606, 910, 370 wide) and is cut by the bottom border of the middle row of tiles
/// (rows start at y 0, 218, 436, 284 high).
const SQUARES: [(u32, u32); 2] = [(900, 120), (320, 490)];
const SIDE: u32 = 24;

fn frame() -> gst::Buffer {
    let mut buf = solid_frame(gst_video::VideoFormat::Nv12, WIDTH, HEIGHT, [0, 0, 0], 0);
    {
        let mut map = buf.get_mut().unwrap().map_writable().unwrap();
        for (x, y) in SQUARES {
            for row in y..y + SIDE {
                let start = (row * WIDTH + x) as usize;
                // Luma 235: white in limited range (chroma stays neutral).
                map[start..start + SIDE as usize].fill(235);
            }
        }
    }
    buf
}

fn iou(r: &Roi, (x, y): (u32, u32)) -> f64 {
    let (rx, ry, rw, rh) = r.rect;
    let (ix0, iy0) = (rx.max(x), ry.max(y));
    let (ix1, iy1) = ((rx + rw).min(x + SIDE), (ry + rh).min(y + SIDE));
    let inter = ix1.saturating_sub(ix0) as f64 * iy1.saturating_sub(iy0) as f64;
    inter / ((rw * rh + SIDE * SIDE) as f64 - inter)
}

#[test]
fn small_objects_are_found_in_tiles_and_reported_once() {
    // Windows of 8 to 96 px over a 160x120 input: the whole 1280x720 frame squeezes a square to 3x4 px there, a
    // tile of a 4x3 grid keeps it at about 10x10.
    let model = write_model(
        "tiles",
        &mobilenetdetect_testkit::models::blob_detector_model(160, 120, "square"),
    );
    let e = element(&[
        ("model", &model),
        ("score-threshold", &0.5f32),
        ("iou-threshold", &0.3f32),
        ("threads", &1u32),
    ]);
    assert_eq!(e.property::<u32>("tile-columns"), 1);
    assert_eq!(e.property::<u32>("tile-overlap"), 64);
    let mut h = harness(&e, &caps(gst_video::VideoFormat::Nv12, WIDTH, HEIGHT));
    h.push(frame()).unwrap();
    let whole = rois(&h.pull().unwrap());
    assert!(whole.is_empty(), "the whole frame finds nothing: {whole:?}");

    // Changed while playing: the next frame is tiled.
    e.set_property("tile-columns", 4u32);
    e.set_property("tile-rows", 3u32);
    for _ in 0..3 {
        h.push(frame()).unwrap();
        let found = rois(&h.pull().unwrap());
        assert_eq!(found.len(), SQUARES.len(), "one box per square: {found:?}");
        for square in SQUARES {
            let best = found.iter().map(|r| iou(r, square)).fold(0.0, f64::max);
            assert!(best >= 0.5, "square at {square:?}: best IoU {best:.2} in {found:?}");
        }
    }

    // Back to the whole frame.
    e.set_property("tile-columns", 1u32);
    e.set_property("tile-rows", 1u32);
    h.push(frame()).unwrap();
    assert!(rois(&h.pull().unwrap()).is_empty());
}

/// `detectioncapture` with a tile grid saves each tile of a kept frame as a sample: the tile's pixels, and every
/// box of the frame inside it (a box that overlaps a border by less than the tile overlap is whole in a tile).
#[test]
fn capture_saves_each_tile_with_the_boxes_inside_it() {
    use detection_common::voc::Dataset;
    let root = temp_dir("tiles-capture");
    let capture = |name: &str, tiles: &str| {
        let dir = root.join(name);
        let p = pipeline(&format!(
            "detecttestsrc num-buffers=6 seed=4 num-objects=5 min-size=20 max-size=40 ! \
             video/x-raw,format=NV12,width=640,height=360 ! \
             detectioncapture location={} source=ground-truth quality=95 {tiles} ! fakesink",
            dir.display()
        ));
        play_to_eos(&p);
        p.set_state(gst::State::Null).unwrap();
        let ds = Dataset::open(&dir).unwrap();
        assert!(ds.problems.is_empty(), "{:?}", ds.problems);
        ds
    };
    let whole = capture("whole", "");
    let tiled = capture("tiled", "tile-columns=2 tile-rows=2 tile-overlap=48");
    assert_eq!(whole.samples.len(), 6);
    assert_eq!(tiled.samples.len(), 6 * 4, "four tiles per frame");
    let grid = detection_inference::tiles::TileGrid {
        columns: 2,
        rows: 2,
        overlap: 48,
    };
    let mut boxes_in_tiles = 0;
    for (frame, w) in whole.samples.iter().enumerate() {
        let frame_image = image::open(&w.image).unwrap().to_rgb8();
        let tiles = &tiled.samples[frame * 4..frame * 4 + 4];
        for (t, s) in tiles.iter().enumerate() {
            let r = grid.region(t as u32, 640, 360);
            assert_eq!((s.annotation.width, s.annotation.height), (r.width, r.height));
            let img = image::open(&s.image).unwrap().to_rgb8();
            assert_eq!(img.dimensions(), (r.width, r.height));
            // The tile's pixels are the frame's there (up to JPEG's rounding).
            let diff: f64 = img
                .enumerate_pixels()
                .map(|(x, y, p)| {
                    let q = frame_image.get_pixel(x + r.x, y + r.y);
                    (0..3).map(|c| (p[c] as f64 - q[c] as f64).abs()).sum::<f64>() / 3.0
                })
                .sum::<f64>()
                / (r.width * r.height) as f64;
            assert!(diff < 4.0, "frame {frame} tile {t}: mean difference {diff:.2}");
            boxes_in_tiles += s.annotation.objects.len();
            for o in &s.annotation.objects {
                assert!(
                    o.xmax <= r.width as f32 && o.ymax <= r.height as f32,
                    "{o:?} outside tile {t}"
                );
            }
        }
        for o in &w.annotation.objects {
            let whole_in_some_tile = tiles.iter().enumerate().any(|(t, s)| {
                let r = grid.region(t as u32, 640, 360);
                s.annotation.objects.iter().any(|c| {
                    c.name == o.name
                        && (
                            c.xmin + r.x as f32,
                            c.ymin + r.y as f32,
                            c.xmax + r.x as f32,
                            c.ymax + r.y as f32,
                        ) == (o.xmin, o.ymin, o.xmax, o.ymax)
                })
            });
            assert!(whole_in_some_tile, "frame {frame}: {o:?} is whole in no tile");
        }
    }
    assert!(
        boxes_in_tiles > 6 * 5,
        "objects in the overlap are in several tiles ({boxes_in_tiles})"
    );
}

/// In live mode a tiled frame's runs finish at different times: the frame's detections replace the latest only
/// when all its tiles are in, joined as in order.
#[test]
fn live_mode_reports_a_tiled_frame_once_all_its_tiles_are_in() {
    let model = write_model(
        "tiles-live",
        &mobilenetdetect_testkit::models::blob_detector_model(160, 120, "square"),
    );
    let e = element(&[
        ("model", &model),
        ("score-threshold", &0.5f32),
        ("iou-threshold", &0.3f32),
        ("mode", &"live"),
        ("inflight", &2u32),
        ("threads", &1u32),
        ("tile-columns", &4u32),
        ("tile-rows", &3u32),
    ]);
    let mut h = harness(&e, &caps(gst_video::VideoFormat::Nv12, WIDTH, HEIGHT));
    // Until the first frame's tiles are all in, frames pass without boxes (waited for up to 4 s, the machine
    // may be busy); from then on every frame carries the latest tiled detections, whole.
    let mut first = None;
    for i in 0..230u64 {
        let mut buf = frame();
        buf.get_mut().unwrap().set_pts(gst::ClockTime::from_mseconds(i * 33));
        h.push(buf).unwrap();
        let found = rois(&h.pull().unwrap());
        if found.is_empty() {
            assert!(first.is_none(), "frame {i} lost the detections frame {first:?} had");
            assert!(i < 200, "no tiled detections after {i} frames");
            std::thread::sleep(std::time::Duration::from_millis(20));
            continue;
        }
        first.get_or_insert(i);
        assert_eq!(found.len(), SQUARES.len(), "frame {i}: one box per square: {found:?}");
        for square in SQUARES {
            let best = found.iter().map(|r| iou(r, square)).fold(0.0, f64::max);
            assert!(
                best >= 0.5,
                "frame {i}, square at {square:?}: best IoU {best:.2} in {found:?}"
            );
        }
        if i >= first.unwrap() + 30 {
            break;
        }
    }
}
