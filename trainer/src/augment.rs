//! Turning a decoded image and its boxes into the network's input: SSD's training augmentation (zoom-out,
//! IoU-constrained crop, horizontal flip, photometric distortion) and the plain resize used for evaluation.
//!
//! Zoom-out and crop only choose a window on an (enlarged) canvas; one bilinear pass then samples that window
//! straight from the source image into the square input, filling the canvas outside the image with the mean
//! colour. Boxes go through the same window, so pixels and boxes cannot disagree.

use crate::loss::Target;
use detection_common::BBox;

/// A small, seedable xorshift generator: augmentation must be reproducible from `--seed`.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        // splitmix64 of the seed so that nearby seeds give unrelated streams.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Self((z ^ (z >> 31)) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    pub fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.unit()
    }

    pub fn chance(&mut self, p: f32) -> bool {
        self.unit() < p
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

/// What the training augmentation may do.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AugmentConfig {
    /// Largest zoom-out factor (the canvas is up to this many times the image's size); 1 disables it.
    pub max_zoom_out: f32,
    pub zoom_out_probability: f32,
    /// SSD's IoU-constrained random crop.
    pub crop: bool,
    pub flip: bool,
    /// Brightness, contrast, saturation and hue jitter.
    pub photometric: bool,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        Self {
            max_zoom_out: 3.0,
            zoom_out_probability: 0.5,
            crop: true,
            flip: true,
            photometric: true,
        }
    }
}

impl AugmentConfig {
    pub fn none() -> Self {
        Self {
            max_zoom_out: 1.0,
            zoom_out_probability: 0.0,
            crop: false,
            flip: false,
            photometric: false,
        }
    }
}

/// The network's input: `3 x size x size` floats (channel planes, normalised), and the boxes in it (normalised).
#[derive(Debug, Clone)]
pub struct Prepared {
    pub pixels: Vec<f32>,
    pub targets: Vec<Target>,
}

/// A source image in pixels with boxes in pixels.
pub struct Source<'a> {
    pub rgb: &'a [u8],
    pub width: usize,
    pub height: usize,
    pub boxes: &'a [Target],
}

/// Normalisation of the input (per channel, on 0..255 values): ImageNet's, as the pretrained backbone expects.
pub const INPUT_MEAN: [f32; 3] = [123.675, 116.28, 103.53];
pub const INPUT_STD: [f32; 3] = [58.395, 57.12, 57.375];

/// SSD's crop choices: no crop, or a crop overlapping some object by at least this IoU (0: any crop).
const CROP_MIN_IOU: [Option<f32>; 6] = [None, Some(0.1), Some(0.3), Some(0.5), Some(0.7), Some(0.0)];

/// Samples the training input from `src`, augmenting with `cfg` (pass `AugmentConfig::none()` for evaluation,
/// which is then a plain bilinear stretch of the whole image like the element's default).
pub fn prepare(src: &Source, size: usize, cfg: &AugmentConfig, rng: &mut Rng) -> Prepared {
    let (w, h) = (src.width as f32, src.height as f32);
    // The canvas: the image, possibly placed inside a larger mean-coloured area. Coordinates are the image's.
    let mut canvas = BBox::new(0.0, 0.0, w, h);
    if cfg.max_zoom_out > 1.0 && rng.chance(cfg.zoom_out_probability) {
        let r = rng.range(1.0, cfg.max_zoom_out);
        let (cw, ch) = (w * r, h * r);
        let (left, top) = (rng.range(0.0, cw - w), rng.range(0.0, ch - h));
        canvas = BBox::new(-left, -top, cw - left, ch - top);
    }
    let mut window = canvas;
    let mut boxes: Vec<Target> = src.boxes.to_vec();
    if cfg.crop
        && !boxes.is_empty()
        && let Some(min_iou) = CROP_MIN_IOU[rng.below(CROP_MIN_IOU.len())]
    {
        for _ in 0..50 {
            let (cw, ch) = (canvas.width(), canvas.height());
            let (ww, wh) = (rng.range(0.3, 1.0) * cw, rng.range(0.3, 1.0) * ch);
            if ww / wh < 0.5 || ww / wh > 2.0 {
                continue;
            }
            let x0 = canvas.x0 + rng.range(0.0, cw - ww);
            let y0 = canvas.y0 + rng.range(0.0, ch - wh);
            let candidate = BBox::new(x0, y0, x0 + ww, y0 + wh);
            if boxes.iter().all(|t| t.bbox.iou(&candidate) < min_iou) {
                continue;
            }
            // Keep the objects whose centre lies in the crop, clipped to it.
            let kept: Vec<Target> = boxes
                .iter()
                .filter(|t| {
                    let (cx, cy) = ((t.bbox.x0 + t.bbox.x1) * 0.5, (t.bbox.y0 + t.bbox.y1) * 0.5);
                    cx > candidate.x0 && cx < candidate.x1 && cy > candidate.y0 && cy < candidate.y1
                })
                .map(|t| Target {
                    bbox: BBox::new(
                        t.bbox.x0.max(candidate.x0),
                        t.bbox.y0.max(candidate.y0),
                        t.bbox.x1.min(candidate.x1),
                        t.bbox.y1.min(candidate.y1),
                    ),
                    class_id: t.class_id,
                })
                .collect();
            if kept.is_empty() {
                continue;
            }
            window = candidate;
            boxes = kept;
            break;
        }
    }
    let flip = cfg.flip && rng.chance(0.5);
    let mut pixels = vec![0f32; 3 * size * size];
    sample_window(src, &window, size, size, flip, &mut pixels);
    if cfg.photometric {
        distort(&mut pixels, size * size, rng);
    }
    for (c, plane) in pixels.chunks_exact_mut(size * size).enumerate() {
        for v in plane {
            *v = (*v - INPUT_MEAN[c]) / INPUT_STD[c];
        }
    }
    let (sx, sy) = (1.0 / window.width(), 1.0 / window.height());
    let targets = boxes
        .iter()
        .filter_map(|t| {
            let (mut x0, mut x1) = ((t.bbox.x0 - window.x0) * sx, (t.bbox.x1 - window.x0) * sx);
            let (y0, y1) = ((t.bbox.y0 - window.y0) * sy, (t.bbox.y1 - window.y0) * sy);
            if flip {
                (x0, x1) = (1.0 - x1, 1.0 - x0);
            }
            let bbox = BBox::new(x0, y0, x1, y1).clamp(0.0, 1.0, 1.0);
            // A box that the crop squeezed below a pixel of the input is no longer a learnable object.
            (bbox.width() * size as f32 >= 1.0 && bbox.height() * size as f32 >= 1.0).then_some(Target {
                bbox,
                class_id: t.class_id,
            })
        })
        .collect();
    Prepared { pixels, targets }
}

/// The whole image stretched to `width x height` as three planes of 0..255 values in RGB order (evaluation of
/// models with other input sizes or normalisations).
pub fn stretch_planes(src: &Source, width: usize, height: usize) -> Vec<f32> {
    let mut out = vec![0f32; 3 * width * height];
    let window = BBox::new(0.0, 0.0, src.width as f32, src.height as f32);
    sample_window(src, &window, width, height, false, &mut out);
    out
}

/// Bilinear sampling of `window` (image coordinates, may extend past the image) into `width x height` planes of
/// 0..255 values; outside the image reads the mean colour. Pixel centres map to pixel centres, like the element.
fn sample_window(src: &Source, window: &BBox, width: usize, height: usize, flip: bool, out: &mut [f32]) {
    let (sx, sy) = (window.width() / width as f32, window.height() / height as f32);
    let plane = width * height;
    // Column taps are the same for every row.
    let columns: Vec<(isize, f32)> = (0..width)
        .map(|x| {
            let fx = window.x0 + (x as f32 + 0.5) * sx - 0.5;
            let x0 = fx.floor();
            (x0 as isize, fx - x0)
        })
        .collect();
    let pixel = |x: isize, y: isize, c: usize| -> f32 {
        if x < 0 || y < 0 || x >= src.width as isize || y >= src.height as isize {
            INPUT_MEAN[c]
        } else {
            src.rgb[(y as usize * src.width + x as usize) * 3 + c] as f32
        }
    };
    for y in 0..height {
        let fy = window.y0 + (y as f32 + 0.5) * sy - 0.5;
        let y0 = fy.floor();
        let wy = fy - y0;
        let y0 = y0 as isize;
        for (x, &(x0, wx)) in columns.iter().enumerate() {
            let ox = if flip { width - 1 - x } else { x };
            for c in 0..3 {
                let top = pixel(x0, y0, c) * (1.0 - wx) + pixel(x0 + 1, y0, c) * wx;
                let bottom = pixel(x0, y0 + 1, c) * (1.0 - wx) + pixel(x0 + 1, y0 + 1, c) * wx;
                out[c * plane + y * width + ox] = top * (1.0 - wy) + bottom * wy;
            }
        }
    }
}

/// SSD's photometric distortion on 0..255 planes: brightness, contrast (before or after the colour changes),
/// saturation and hue, each with probability one half.
fn distort(pixels: &mut [f32], plane: usize, rng: &mut Rng) {
    let (r, rest) = pixels.split_at_mut(plane);
    let (g, b) = rest.split_at_mut(plane);
    let brightness = if rng.chance(0.5) { rng.range(-32.0, 32.0) } else { 0.0 };
    let contrast = if rng.chance(0.5) { rng.range(0.5, 1.5) } else { 1.0 };
    let contrast_first = rng.chance(0.5);
    let saturation = if rng.chance(0.5) { rng.range(0.5, 1.5) } else { 1.0 };
    let hue = if rng.chance(0.5) {
        rng.range(-18.0, 18.0).to_radians()
    } else {
        0.0
    };
    // Hue rotation about the grey axis (a linear map in RGB), combined with saturation around the luma.
    let (cos, sin) = (hue.cos(), hue.sin());
    let third = 1.0 / 3.0;
    let s3 = (1.0f32 / 3.0).sqrt();
    let rot = [
        [
            cos + (1.0 - cos) * third,
            third * (1.0 - cos) - s3 * sin,
            third * (1.0 - cos) + s3 * sin,
        ],
        [
            third * (1.0 - cos) + s3 * sin,
            cos + third * (1.0 - cos),
            third * (1.0 - cos) - s3 * sin,
        ],
        [
            third * (1.0 - cos) - s3 * sin,
            third * (1.0 - cos) + s3 * sin,
            cos + third * (1.0 - cos),
        ],
    ];
    for i in 0..plane {
        let mut p = [r[i] + brightness, g[i] + brightness, b[i] + brightness];
        if contrast_first {
            p = p.map(|v| v * contrast);
        }
        let q = [
            rot[0][0] * p[0] + rot[0][1] * p[1] + rot[0][2] * p[2],
            rot[1][0] * p[0] + rot[1][1] * p[1] + rot[1][2] * p[2],
            rot[2][0] * p[0] + rot[2][1] * p[1] + rot[2][2] * p[2],
        ];
        let luma = 0.299 * q[0] + 0.587 * q[1] + 0.114 * q[2];
        let mut q = q.map(|v| luma + (v - luma) * saturation);
        if !contrast_first {
            q = q.map(|v| v * contrast);
        }
        r[i] = q[0].clamp(0.0, 255.0);
        g[i] = q[1].clamp(0.0, 255.0);
        b[i] = q[2].clamp(0.0, 255.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A grey image with one pure red rectangle.
    fn image(w: usize, h: usize, rect: BBox) -> Vec<u8> {
        let mut rgb = vec![128u8; w * h * 3];
        for y in rect.y0 as usize..rect.y1 as usize {
            for x in rect.x0 as usize..rect.x1 as usize {
                rgb[(y * w + x) * 3..(y * w + x) * 3 + 3].copy_from_slice(&[255, 0, 0]);
            }
        }
        rgb
    }

    /// The bounding box of strongly red pixels in the (un-normalised) red and green planes.
    fn red_extent(p: &Prepared, size: usize) -> Option<BBox> {
        let plane = size * size;
        let mut ext: Option<BBox> = None;
        for y in 0..size {
            for x in 0..size {
                let r = p.pixels[y * size + x] * INPUT_STD[0] + INPUT_MEAN[0];
                let g = p.pixels[plane + y * size + x] * INPUT_STD[1] + INPUT_MEAN[1];
                if r > 200.0 && g < 60.0 {
                    let (fx, fy) = (x as f32, y as f32);
                    ext = Some(match ext {
                        None => BBox::new(fx, fy, fx + 1.0, fy + 1.0),
                        Some(e) => BBox::new(e.x0.min(fx), e.y0.min(fy), e.x1.max(fx + 1.0), e.y1.max(fy + 1.0)),
                    });
                }
            }
        }
        ext
    }

    #[test]
    fn geometric_augmentation_keeps_boxes_on_their_pixels() {
        let (w, h, size) = (200, 150, 96);
        let rect = BBox::new(60.0, 40.0, 140.0, 110.0);
        let rgb = image(w, h, rect);
        let boxes = [Target {
            bbox: rect,
            class_id: 1,
        }];
        let src = Source {
            rgb: &rgb,
            width: w,
            height: h,
            boxes: &boxes,
        };
        let cfg = AugmentConfig {
            photometric: false,
            ..AugmentConfig::default()
        };
        let mut rng = Rng::new(7);
        let (mut zoomed, mut cropped, mut flipped) = (0, 0, 0);
        for _ in 0..200 {
            let p = prepare(&src, size, &cfg, &mut rng);
            let Some(t) = p.targets.first() else { continue };
            let ext = red_extent(&p, size).expect("the object is visible where its box is");
            let s = size as f32;
            let b = BBox::new(t.bbox.x0 * s, t.bbox.y0 * s, t.bbox.x1 * s, t.bbox.y1 * s);
            // Bilinear edges blur by about a pixel; the box must match the red pixels to within 2.
            for (a, e) in [(b.x0, ext.x0), (b.y0, ext.y0), (b.x1, ext.x1), (b.y1, ext.y1)] {
                assert!((a - e).abs() <= 2.0, "box {b:?} vs red pixels {ext:?}");
            }
            zoomed += (b.width() < 0.8 * rect.width() * s / w as f32) as usize;
            cropped += (b.width() > 1.1 * rect.width() * s / w as f32) as usize;
            flipped += (p.pixels[0] != p.pixels[size - 1]) as usize;
        }
        assert!(
            zoomed > 10 && cropped > 10 && flipped > 0,
            "{zoomed} {cropped} {flipped}"
        );
    }

    #[test]
    fn evaluation_path_is_a_plain_stretch_and_seeds_repeat() {
        let (w, h, size) = (64, 32, 32);
        let rect = BBox::new(16.0, 8.0, 48.0, 24.0);
        let rgb = image(w, h, rect);
        let boxes = [Target {
            bbox: rect,
            class_id: 2,
        }];
        let src = Source {
            rgb: &rgb,
            width: w,
            height: h,
            boxes: &boxes,
        };
        let p = prepare(&src, size, &AugmentConfig::none(), &mut Rng::new(1));
        assert_eq!(p.targets[0].bbox, BBox::new(0.25, 0.25, 0.75, 0.75));
        assert_eq!(p.targets[0].class_id, 2);
        let a = prepare(&src, size, &AugmentConfig::default(), &mut Rng::new(5));
        let b = prepare(&src, size, &AugmentConfig::default(), &mut Rng::new(5));
        assert_eq!(a.pixels, b.pixels);
        assert_eq!(a.targets.len(), b.targets.len());
    }

    #[test]
    fn photometric_distortion_stays_in_range() {
        let mut rng = Rng::new(3);
        let mut px: Vec<f32> = (0..3 * 64).map(|i| (i * 4 % 256) as f32).collect();
        for _ in 0..50 {
            distort(&mut px, 64, &mut rng);
            assert!(px.iter().all(|v| (0.0..=255.0).contains(v)));
        }
    }
}
