//! Tiled inference: a frame cut into overlapping tiles, each run through the model at its native input size (so
//! small objects keep their pixels), and the tiles' detections joined into the frame's.
//!
//! Joining: boxes of one tile are never joined with each other (the model's own NMS decided between them).
//! Across tiles, a box that reaches an inner border of its tile (one that is not the frame's edge) is a cut
//! view of an object; other boxes are whole views. Whole views are taken best first, and one of the same class
//! from another tile that overlaps a kept one by at least `MERGE_OVERLAP` of the smaller box is the same object
//! seen twice in the overlap band (SAHI's greedy non-maximum merging: the union, the better score). Then cut
//! views: one overlapping a kept whole view by `CUT_OVERLAP` of its area is dropped (with an overlap at least
//! the object's size, some tile sees it whole), one overlapping another tile's cut view is joined with it (an
//! object larger than the overlap is cut in every tile), and the rest are kept as they are.

use crate::geometry::Region;
use detection_common::{BBox, Detection};

/// A grid of `columns` x `rows` tiles, neighbours sharing `overlap` pixels (at least the largest object's size
/// keeps every object whole in some tile).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TileGrid {
    pub columns: u32,
    pub rows: u32,
    pub overlap: u32,
}

/// Overlap, as a share of the smaller box, from which whole views of two tiles are one object.
pub const MERGE_OVERLAP: f32 = 0.5;
/// Overlap, as a share of the smaller box, from which a cut view belongs to an object another tile has seen.
pub const CUT_OVERLAP: f32 = 0.25;

impl TileGrid {
    /// How many tiles a frame makes.
    pub fn count(&self) -> u32 {
        self.columns * self.rows
    }

    /// Tile `index` (row by row) of a `width` x `height` frame: tiles are of equal size, the outer ones flush
    /// with the frame's edges, `overlap` shared between neighbours (less where the frame is too small for it).
    /// Even offsets, so that YUV 4:2:0 chroma samples line up with the tile's luma.
    pub fn region(&self, index: u32, width: u32, height: u32) -> Region {
        let (x, w) = span(width, self.columns, self.overlap, index % self.columns);
        let (y, h) = span(height, self.rows, self.overlap, index / self.columns);
        Region {
            x,
            y,
            width: w,
            height: h,
        }
    }

    pub fn regions(&self, width: u32, height: u32) -> Vec<Region> {
        (0..self.count()).map(|i| self.region(i, width, height)).collect()
    }
}

/// Span `i` of `n` equal spans of `len` pixels overlapping by `overlap`: (offset, length).
fn span(len: u32, n: u32, overlap: u32, i: u32) -> (u32, u32) {
    if n <= 1 {
        return (0, len);
    }
    let overlap = overlap.min(len / n);
    // A pixel more than the overlap needs absorbs the rounding of the starts down to even pixels, and an even
    // `len - size` puts the last start on an even pixel too: all tiles equal, neighbours sharing at least
    // `overlap` (checked for every length below 2000, 2 to 8 tiles).
    let mut size = (len + (n - 1) * overlap).div_ceil(n) + 1;
    if size < len {
        size += (len - size) & 1;
    }
    let size = size.min(len);
    // Spread evenly between the first (at 0) and the last (flush with the end).
    let start = ((len - size) as u64 * i as u64 / (n - 1) as u64) as u32 & !1;
    (start, if i == n - 1 { len - start } else { size })
}

/// One detection in frame pixels, with the tile it came from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TileDetection {
    pub tile: usize,
    /// It reaches an inner border of its tile: part of the object may lie beyond.
    pub cut: bool,
    pub detection: Detection,
}

impl TileDetection {
    /// A detection of tile `tile` (`region` of a `frame_width` x `frame_height` frame), its box in frame pixels.
    pub fn new(tile: usize, region: &Region, frame_width: u32, frame_height: u32, detection: Detection) -> Self {
        let b = &detection.bbox;
        // Within 1% of the tile's side (and a pixel) of a border that is not the frame's.
        let (mx, my) = (region.width as f32 * 0.01 + 1.0, region.height as f32 * 0.01 + 1.0);
        let (x0, y0) = (region.x as f32, region.y as f32);
        let (x1, y1) = (x0 + region.width as f32, y0 + region.height as f32);
        let cut = (region.x > 0 && b.x0 <= x0 + mx)
            || (region.y > 0 && b.y0 <= y0 + my)
            || (region.x + region.width < frame_width && b.x1 >= x1 - mx)
            || (region.y + region.height < frame_height && b.y1 >= y1 - my);
        Self { tile, cut, detection }
    }
}

/// Joins tiles' detections; keeps its working memory from frame to frame.
#[derive(Debug, Default)]
pub struct TileJoiner {
    /// Per box kept: the tiles it has taken a view from (a tile contributes at most once to an object), and
    /// whether it is made of cut views only.
    kept: Vec<(u64, bool)>,
}

impl TileJoiner {
    /// Joins the tiles' detections (boxes in frame pixels) into `out`, best first, at most `max_detections`.
    /// `work` is sorted in place.
    pub fn join(&mut self, work: &mut [TileDetection], max_detections: usize, out: &mut Vec<Detection>) {
        out.clear();
        let kept = &mut self.kept;
        kept.clear();
        // Whole views first, each kind best first.
        work.sort_unstable_by(|a, b| a.cut.cmp(&b.cut).then(b.detection.score.total_cmp(&a.detection.score)));
        for d in work.iter() {
            let tile_bit = 1u64 << (d.tile % 64);
            let (class_id, b) = (d.detection.class_id, d.detection.bbox);
            let threshold = if d.cut { CUT_OVERLAP } else { MERGE_OVERLAP };
            let same_object = out.iter().zip(kept.iter()).position(|(k, (tiles, _))| {
                k.class_id == class_id && tiles & tile_bit == 0 && overlap_of_smaller(&k.bbox, &b) >= threshold
            });
            match same_object {
                // A cut view of an object some tile saw whole adds nothing.
                Some(i) if d.cut && !kept[i].1 => {}
                Some(i) => {
                    let k = &mut out[i].bbox;
                    *k = BBox::new(k.x0.min(b.x0), k.y0.min(b.y0), k.x1.max(b.x1), k.y1.max(b.y1));
                    out[i].score = out[i].score.max(d.detection.score);
                    kept[i].0 |= tile_bit;
                }
                None if out.len() < max_detections => {
                    out.push(d.detection);
                    kept.push((tile_bit, d.cut));
                }
                None => {}
            }
        }
        out.sort_unstable_by(|a, b| b.score.total_cmp(&a.score));
    }
}

/// Intersection over the smaller box's area (1 when one box holds the other).
fn overlap_of_smaller(a: &BBox, b: &BBox) -> f32 {
    let w = (a.x1.min(b.x1) - a.x0.max(b.x0)).max(0.0);
    let h = (a.y1.min(b.y1) - a.y0.max(b.y0)).max(0.0);
    let smaller = a.area().min(b.area());
    if smaller <= 0.0 { 0.0 } else { w * h / smaller }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(tile: usize, class_id: u32, score: f32, b: [f32; 4]) -> TileDetection {
        TileDetection {
            tile,
            cut: false,
            detection: Detection {
                class_id,
                score,
                bbox: BBox::new(b[0], b[1], b[2], b[3]),
            },
        }
    }

    fn cut(d: TileDetection) -> TileDetection {
        TileDetection { cut: true, ..d }
    }

    #[test]
    fn tiles_cover_the_frame_with_the_overlap() {
        let grid = TileGrid {
            columns: 2,
            rows: 2,
            overlap: 64,
        };
        let r = grid.regions(1280, 720);
        assert_eq!(r.len(), 4);
        assert_eq!((r[0].x, r[0].y, r[0].width, r[0].height), (0, 0, 674, 394));
        assert_eq!((r[3].x, r[3].y), (606, 326));
        assert_eq!((r[3].x + r[3].width, r[3].y + r[3].height), (1280, 720));
        for len in 1..2000 {
            for n in 2..=8 {
                for overlap in [0, 32, 64] {
                    let tiles: Vec<_> = (0..n).map(|i| span(len, n, overlap, i)).collect();
                    let want = overlap.min(len / n);
                    assert!(
                        tiles.iter().all(|t| t.1 == tiles[0].1 && t.0 % 2 == 0),
                        "{len} {n}: {tiles:?}"
                    );
                    assert_eq!(tiles[n as usize - 1].0 + tiles[0].1, len, "{len} {n}: {tiles:?}");
                    assert!(
                        tiles.windows(2).all(|p| p[0].0 + p[0].1 >= p[1].0 + want),
                        "{len} {n} {overlap}: {tiles:?}"
                    );
                }
            }
        }
        assert_eq!(
            TileGrid {
                columns: 1,
                rows: 1,
                overlap: 64
            }
            .regions(640, 480),
            vec![Region::whole(640, 480)]
        );
    }

    #[test]
    fn a_box_at_an_inner_tile_border_is_cut() {
        let grid = TileGrid {
            columns: 2,
            rows: 1,
            overlap: 64,
        };
        let [left, right] = [0, 1].map(|i| grid.region(i, 1280, 720));
        let d = |x0: f32, x1: f32| Detection {
            class_id: 1,
            score: 0.5,
            bbox: BBox::new(x0, 10.0, x1, 40.0),
        };
        // The left tile ends at 674: a box reaching it is cut; one at the frame's left edge is not.
        assert!(TileDetection::new(0, &left, 1280, 720, d(650.0, 674.0)).cut);
        assert!(!TileDetection::new(0, &left, 1280, 720, d(0.0, 30.0)).cut);
        assert!(!TileDetection::new(0, &left, 1280, 720, d(600.0, 630.0)).cut);
        // The right tile starts at 606.
        assert!(TileDetection::new(1, &right, 1280, 720, d(606.0, 640.0)).cut);
        assert!(!TileDetection::new(1, &right, 1280, 720, d(1250.0, 1280.0)).cut);
    }

    #[test]
    fn an_object_seen_by_two_tiles_is_one_box_and_its_cut_views_join_it() {
        let mut work = vec![
            // The same sign seen whole by both tiles in the overlap band.
            det(0, 1, 0.9, [600.0, 100.0, 630.0, 130.0]),
            det(1, 1, 0.8, [601.0, 101.0, 631.0, 131.0]),
            // A sign cut by tile 0's right edge, scored higher than its whole view in tile 1: the whole view wins.
            cut(det(0, 2, 0.75, [660.0, 300.0, 672.0, 330.0])),
            det(1, 2, 0.7, [655.0, 300.0, 690.0, 330.0]),
            // A sign larger than the overlap, cut in both tiles: the union.
            cut(det(0, 5, 0.6, [560.0, 400.0, 672.0, 480.0])),
            cut(det(1, 5, 0.5, [608.0, 400.0, 720.0, 480.0])),
            // Two neighbouring signs of one tile stay two.
            det(0, 3, 0.6, [100.0, 100.0, 130.0, 130.0]),
            det(0, 3, 0.6, [110.0, 100.0, 140.0, 130.0]),
            // Another class at the same place stays.
            det(1, 4, 0.4, [600.0, 100.0, 630.0, 130.0]),
        ];
        let mut out = Vec::new();
        let mut joiner = TileJoiner::default();
        joiner.join(&mut work, 100, &mut out);
        assert_eq!(out.len(), 6, "{out:?}");
        assert_eq!(
            (out[0].score, out[0].bbox),
            (0.9, BBox::new(600.0, 100.0, 631.0, 131.0))
        );
        let sign = |class_id| out.iter().find(|d| d.class_id == class_id).unwrap();
        assert_eq!(
            (sign(2).score, sign(2).bbox),
            (0.7, BBox::new(655.0, 300.0, 690.0, 330.0))
        );
        assert_eq!(
            (sign(5).score, sign(5).bbox),
            (0.6, BBox::new(560.0, 400.0, 720.0, 480.0))
        );
        assert!(out.windows(2).all(|p| p[0].score >= p[1].score));
        joiner.join(&mut work, 2, &mut out);
        assert_eq!(out.len(), 2);
    }
}
