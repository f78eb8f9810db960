//! Tiled mode (`tile-columns`, `tile-rows`, `tile-overlap`): small objects that the whole-frame inference cannot
//! see are found in the tiles, mapped back to the frame, and an object seen by several tiles (in the overlap
//! band, or cut by a tile border) is reported once.

mod common;
use common::*;
use gst::prelude::*;

const WIDTH: u32 = 1280;
const HEIGHT: u32 = 720;
/// White squares of 24 px on black: (x, y). The second lies in the overlap band of two columns of a 4x3 grid
/// (tiles start at x 0, 304, 608, 912, 368 wide) and is cut by the bottom border of the middle row of tiles
/// (rows start at y 0, 218, 436, 283 high).
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
