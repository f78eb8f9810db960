//! Box maths shared by decoding, NMS, evaluation and the element's frame mapping.

use std::fmt;
use std::path::Path;

/// An axis-aligned box in corner form. Units depend on context (normalised 0..1 or pixels).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct BBox {
    pub x0: f32,
    pub y0: f32,
    pub x1: f32,
    pub y1: f32,
}

impl BBox {
    pub const fn new(x0: f32, y0: f32, x1: f32, y1: f32) -> Self {
        Self { x0, y0, x1, y1 }
    }

    pub fn from_center(cx: f32, cy: f32, w: f32, h: f32) -> Self {
        Self::new(cx - w * 0.5, cy - h * 0.5, cx + w * 0.5, cy + h * 0.5)
    }

    #[inline]
    pub fn width(&self) -> f32 {
        (self.x1 - self.x0).max(0.0)
    }

    #[inline]
    pub fn height(&self) -> f32 {
        (self.y1 - self.y0).max(0.0)
    }

    #[inline]
    pub fn area(&self) -> f32 {
        self.width() * self.height()
    }

    /// Intersection over union; 0 when either box is empty.
    #[inline]
    pub fn iou(&self, other: &BBox) -> f32 {
        let iw = (self.x1.min(other.x1) - self.x0.max(other.x0)).max(0.0);
        let ih = (self.y1.min(other.y1) - self.y0.max(other.y0)).max(0.0);
        let inter = iw * ih;
        let union = self.area() + other.area() - inter;
        if union <= 0.0 { 0.0 } else { inter / union }
    }

    pub fn clamp(&self, lo: f32, hi_x: f32, hi_y: f32) -> Self {
        Self::new(
            self.x0.clamp(lo, hi_x),
            self.y0.clamp(lo, hi_y),
            self.x1.clamp(lo, hi_x),
            self.y1.clamp(lo, hi_y),
        )
    }

    pub fn scale(&self, sx: f32, sy: f32) -> Self {
        Self::new(self.x0 * sx, self.y0 * sy, self.x1 * sx, self.y1 * sy)
    }
}

/// An SSD prior box in centre form, normalised to the model input (`cy cx h w`, as TF and NNStreamer write them).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Anchor {
    pub cy: f32,
    pub cx: f32,
    pub h: f32,
    pub w: f32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AnchorsError {
    pub source: String,
    pub line: usize,
    pub message: String,
}

impl fmt::Display for AnchorsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "{}:{}: {}", self.source, self.line, self.message)
        } else {
            write!(f, "{}: {}", self.source, self.message)
        }
    }
}

impl std::error::Error for AnchorsError {}

/// Parses anchors, one per line as `cy cx h w` (spaces, tabs or commas), normalised.
/// Blank lines and `#` comments are skipped. `source` names the file in errors.
pub fn parse_anchors(text: &str, source: &str) -> Result<Vec<Anchor>, AnchorsError> {
    let mut anchors = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let err = |message: String| AnchorsError {
            source: source.to_string(),
            line: i + 1,
            message,
        };
        let values: Vec<f32> = line
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter(|s| !s.is_empty())
            .map(|s| s.parse::<f32>().map_err(|_| err(format!("'{s}' is not a number"))))
            .collect::<Result<_, _>>()?;
        if values.len() != 4 {
            return Err(err(format!("expected 4 values 'cy cx h w', found {}", values.len())));
        }
        if values.iter().any(|v| !v.is_finite()) || values[2] <= 0.0 || values[3] <= 0.0 {
            return Err(err("anchor height and width must be finite and positive".into()));
        }
        anchors.push(Anchor {
            cy: values[0],
            cx: values[1],
            h: values[2],
            w: values[3],
        });
    }
    if anchors.is_empty() {
        return Err(AnchorsError {
            source: source.to_string(),
            line: 0,
            message: "no anchors found".into(),
        });
    }
    Ok(anchors)
}

pub fn read_anchors_file(path: &Path) -> Result<Vec<Anchor>, AnchorsError> {
    let source = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| AnchorsError {
        source: source.clone(),
        line: 0,
        message: format!("cannot read: {e}"),
    })?;
    parse_anchors(&text, &source)
}

/// Anchors as text, one `cy cx h w` line each (what [`parse_anchors`] reads).
pub fn format_anchors(anchors: &[Anchor]) -> String {
    let mut s = String::with_capacity(anchors.len() * 32);
    for a in anchors {
        s.push_str(&format!("{} {} {} {}\n", a.cy, a.cx, a.h, a.w));
    }
    s
}

/// How raw SSD box regressions are encoded relative to their anchors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoxEncoding {
    /// TensorFlow Object Detection API: `ty, tx, th, tw` with scales 10, 10, 5, 5.
    Tf,
    /// pytorch-ssd: `tx, ty, tw, th` with centre variance 0.1 and size variance 0.2.
    Xywh,
}

impl BoxEncoding {
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "tf" | "tyxhw" => Some(Self::Tf),
            "xywh" | "pytorch" => Some(Self::Xywh),
            _ => None,
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Tf => "tf",
            Self::Xywh => "xywh",
        }
    }
}

/// Decodes one anchor's regression `e` (4 values in the encoding's order) into a normalised corner box.
#[inline]
pub fn decode_box(e: &[f32], anchor: &Anchor, encoding: BoxEncoding) -> BBox {
    let (cy, cx, h, w) = match encoding {
        BoxEncoding::Tf => (
            e[0] / 10.0 * anchor.h + anchor.cy,
            e[1] / 10.0 * anchor.w + anchor.cx,
            (e[2] / 5.0).exp() * anchor.h,
            (e[3] / 5.0).exp() * anchor.w,
        ),
        BoxEncoding::Xywh => (
            e[1] * 0.1 * anchor.h + anchor.cy,
            e[0] * 0.1 * anchor.w + anchor.cx,
            (e[3] * 0.2).exp() * anchor.h,
            (e[2] * 0.2).exp() * anchor.w,
        ),
    };
    BBox::from_center(cx, cy, w, h)
}

/// Inverse of [`decode_box`], used by the trainer's matching and by tests.
pub fn encode_box(b: &BBox, anchor: &Anchor, encoding: BoxEncoding) -> [f32; 4] {
    let cx = (b.x0 + b.x1) * 0.5;
    let cy = (b.y0 + b.y1) * 0.5;
    let w = b.width().max(1e-6);
    let h = b.height().max(1e-6);
    let ty = (cy - anchor.cy) / anchor.h;
    let tx = (cx - anchor.cx) / anchor.w;
    let th = (h / anchor.h).ln();
    let tw = (w / anchor.w).ln();
    match encoding {
        BoxEncoding::Tf => [ty * 10.0, tx * 10.0, th * 5.0, tw * 5.0],
        BoxEncoding::Xywh => [tx / 0.1, ty / 0.1, tw / 0.2, th / 0.2],
    }
}

/// SSD default boxes for maps of the given sizes (`per_location` boxes per cell, 3 or 6), in the order the heads
/// predict them: map by map, row by row, cell by cell, shape by shape.
pub fn ssd_anchors(sizes: &[usize], per_location: &[usize]) -> Vec<Anchor> {
    grid_anchors(sizes, &ssd_anchor_shapes(sizes.len(), per_location))
}

/// SSD's box shapes `(w, h)` per map (scales 0.2 to 0.95 over the maps): 3 on a map with 3 (a small square and
/// two 2:1 boxes), otherwise two squares, 2:1, 1:2, 3:1 and 1:3.
pub fn ssd_anchor_shapes(maps: usize, per_location: &[usize]) -> Vec<Vec<(f32, f32)>> {
    let scale = |k: usize| ssd_scale(k, maps);
    let r2 = 2f32.sqrt();
    (0..maps)
        .map(|k| {
            let s = scale(k);
            let s_next = if k + 1 < maps { scale(k + 1) } else { 1.0 };
            if per_location[k] == 3 {
                vec![(0.1, 0.1), (s * r2, s / r2), (s / r2, s * r2)]
            } else {
                let mut v = vec![(s, s), ((s * s_next).sqrt(), (s * s_next).sqrt())];
                for ar in [2f32, 3.0] {
                    v.push((s * ar.sqrt(), s / ar.sqrt()));
                    v.push((s / ar.sqrt(), s * ar.sqrt()));
                }
                v
            }
        })
        .collect()
}

/// SSD's box size (side of its square, normalised) on map `k` of `maps`: 0.2 on the first to 0.95 on the last.
pub fn ssd_scale(k: usize, maps: usize) -> f32 {
    0.2 + (0.95 - 0.2) * k as f32 / (maps.max(2) - 1) as f32
}

/// Anchors of the given shapes `(w, h)` (one list per map) centred on every cell of maps of the given sizes.
pub fn grid_anchors(sizes: &[usize], shapes: &[Vec<(f32, f32)>]) -> Vec<Anchor> {
    anchors_at(sizes, shapes, |map, i| (i as f32 + 0.5) / sizes[map] as f32)
}

/// Anchors centred at `(i + 0.5) * step` on each map (`step` normalised; pytorch-ssd's are its shrinkage over
/// the input side, not 1 / map side), centres clipped to 1 as pytorch-ssd clamps its priors.
pub fn strided_anchors(sizes: &[usize], steps: &[f32], shapes: &[Vec<(f32, f32)>]) -> Vec<Anchor> {
    anchors_at(sizes, shapes, |map, i| ((i as f32 + 0.5) * steps[map]).min(1.0))
}

/// Anchors of `shapes` on every cell of each map, row by row, the cell's centre from `centre(map, index)`;
/// sizes clipped to the input.
fn anchors_at(sizes: &[usize], shapes: &[Vec<(f32, f32)>], centre: impl Fn(usize, usize) -> f32) -> Vec<Anchor> {
    let mut anchors = Vec::new();
    for (map, (&size, shapes)) in sizes.iter().zip(shapes).enumerate() {
        for y in 0..size {
            for x in 0..size {
                for &(w, h) in shapes {
                    anchors.push(Anchor {
                        cy: centre(map, y),
                        cx: centre(map, x),
                        h: h.min(1.0),
                        w: w.min(1.0),
                    });
                }
            }
        }
    }
    anchors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iou_of_identical_and_disjoint_boxes() {
        let a = BBox::new(0.0, 0.0, 2.0, 2.0);
        assert_eq!(a.iou(&a), 1.0);
        assert_eq!(a.iou(&BBox::new(3.0, 3.0, 4.0, 4.0)), 0.0);
        let b = BBox::new(1.0, 0.0, 3.0, 2.0);
        assert!((a.iou(&b) - 2.0 / 6.0).abs() < 1e-6);
        assert_eq!(BBox::new(1.0, 1.0, 1.0, 1.0).iou(&BBox::new(1.0, 1.0, 1.0, 1.0)), 0.0);
    }

    #[test]
    fn decode_inverts_encode_for_both_encodings() {
        let anchor = Anchor {
            cy: 0.4,
            cx: 0.6,
            h: 0.2,
            w: 0.3,
        };
        let b = BBox::new(0.5, 0.25, 0.7, 0.6);
        for enc in [BoxEncoding::Tf, BoxEncoding::Xywh] {
            let e = encode_box(&b, &anchor, enc);
            let d = decode_box(&e, &anchor, enc);
            for (x, y) in [(d.x0, b.x0), (d.y0, b.y0), (d.x1, b.x1), (d.y1, b.y1)] {
                assert!((x - y).abs() < 1e-5, "{enc:?}: {d:?} vs {b:?}");
            }
        }
    }

    #[test]
    fn tf_decoding_matches_hand_computation() {
        let anchor = Anchor {
            cy: 0.5,
            cx: 0.5,
            h: 0.2,
            w: 0.4,
        };
        // ty = 1 moves the centre by h/10; th = 5 * ln 2 doubles the height.
        let d = decode_box(&[1.0, 0.0, 5.0 * 2f32.ln(), 0.0], &anchor, BoxEncoding::Tf);
        assert!((d.y0 - (0.52 - 0.2)).abs() < 1e-6 && (d.y1 - (0.52 + 0.2)).abs() < 1e-6);
        assert!((d.x0 - 0.3).abs() < 1e-6 && (d.x1 - 0.7).abs() < 1e-6);
    }

    #[test]
    fn anchors_parse_and_report_the_line() {
        let a = parse_anchors("# priors\n0.5 0.5 0.1 0.2\n0.25,0.75,0.3,0.3\n", "p.txt").unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!(
            a[1],
            Anchor {
                cy: 0.25,
                cx: 0.75,
                h: 0.3,
                w: 0.3
            }
        );
        let e = parse_anchors("0.5 0.5 0.1 0.2\n0.5 x 0.1 0.1\n", "p.txt").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.to_string().starts_with("p.txt:2:"), "{e}");
        assert!(parse_anchors("0.5 0.5 0.1\n", "p.txt").is_err());
        assert!(parse_anchors("0.5 0.5 0 0.1\n", "p.txt").is_err());
        assert!(parse_anchors("\n# nothing\n", "p.txt").is_err());
        let text = format_anchors(&a);
        assert_eq!(parse_anchors(&text, "t").unwrap(), a);
    }
}
