//! Frame -> model input tensor: colour conversion, resize (stretch or letterbox) and normalisation, with every
//! buffer allocated once per (frame format, model input) pair and reused for each frame.
//!
//! Each tensor pixel is bilinearly sampled from the frame (2x2 taps, pixel-centre aligned, as OpenCV's
//! INTER_LINEAR and videoscale's bilinear method); YUV formats per plane, chroma straight from the subsampled
//! planes. Work goes one output row at a time: a vertical blend of the two source rows (contiguous, so the
//! compiler vectorises it), a horizontal gather of the sampled columns into planar channel rows (positions
//! computed once per caps, no bounds checks), a vectorised fixed-point YUV -> RGB conversion, then
//! normalisation `pixel * (1/std) - mean/std` into the tensor. Only the sampled source rows are read, so the
//! cost follows the model's input size rather than the frame's.

use crate::geometry::{Geometry, Region};
use crate::pixels::{Colorimetry, Frame, PixelFormat, Plane, YuvToRgb};
use detection_common::metadata::{ChannelOrder, InputLayout};

/// How the frame is fitted into the model's input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResizeMode {
    /// Scale each axis independently to fill the input.
    #[default]
    Stretch,
    /// Keep the aspect ratio, centre the frame and pad the rest.
    Letterbox,
}

/// Element type of the model's input tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TensorType {
    F32,
    U8,
}

/// What the model wants to be fed.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorSpec {
    pub width: u32,
    pub height: u32,
    pub layout: InputLayout,
    pub dtype: TensorType,
    pub channel_order: ChannelOrder,
    /// Per tensor channel; the tensor gets (pixel - mean) / std. Ignored for U8 tensors.
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

/// Bilinear sampling positions along one axis, in 8-bit fixed point: output pixel `i` blends source samples
/// `i0[i]` and `i1[i]` with weight `w[i]` / 256 on the second. Computed once per caps and clamped to the source,
/// so the per-pixel loops need no bounds checks.
struct Axis {
    i0: Vec<u32>,
    i1: Vec<u32>,
    w: Vec<u16>,
}

impl Axis {
    /// Pixel-centre aligned mapping of `dst` samples onto the `span` source samples from `offset`, clamped to
    /// the `src` samples there are; `scale` multiplies the indices (bytes per pixel for packed formats).
    fn new(offset: f64, span: f64, src: u32, dst: u32, scale: u32) -> Self {
        let mut a = Axis {
            i0: Vec::with_capacity(dst as usize),
            i1: Vec::with_capacity(dst as usize),
            w: Vec::with_capacity(dst as usize),
        };
        let ratio = span / dst as f64;
        for i in 0..dst {
            let s = (offset + (i as f64 + 0.5) * ratio - 0.5).clamp(0.0, (src - 1) as f64);
            let i0 = s.floor() as u32;
            let i1 = (i0 + 1).min(src - 1);
            a.i0.push(i0 * scale);
            a.i1.push(i1 * scale);
            a.w.push(((s - i0 as f64) * 256.0).round() as u16);
        }
        a
    }
}

impl<'a> Plane<'a> {
    /// Vertical pass: the two source rows of output row `y` blended into `out` (whole row, vectorised), or
    /// the source row itself when the sample falls exactly on it.
    #[inline(always)]
    fn blend_rows<'o>(&self, axis: &Axis, y: usize, out: &'o mut [u8]) -> &'o [u8]
    where
        'a: 'o,
    {
        let (r0, r1) = (self.row(axis.i0[y]), self.row(axis.i1[y]));
        let w1 = axis.w[y];
        match w1 {
            0 => r0,
            256 => r1,
            _ => {
                let w0 = 256 - w1;
                for ((o, a), b) in out.iter_mut().zip(r0).zip(r1) {
                    *o = ((*a as u16 * w0 + *b as u16 * w1 + 128) >> 8) as u8;
                }
                out
            }
        }
    }
}

/// Horizontal pass: samples the channels at byte `offsets` of a vertically blended row into `out[c]`.
#[inline(always)]
fn sample_row<const N: usize>(row: &[u8], axis: &Axis, offsets: [usize; N], mut out: [&mut [u8]; N]) {
    let n = axis.w.len();
    let max = axis.i1.last().map(|v| *v as usize).unwrap_or(0) + offsets.iter().max().copied().unwrap_or(0);
    assert!(max < row.len() && axis.i0.len() == n && axis.i1.len() == n && out.iter().all(|o| o.len() >= n));
    let out = &mut out;
    for x in 0..n {
        // SAFETY: x < n, the length of every axis vector and of each output row (asserted above); the axis
        // indices are non-decreasing and at most i1[n-1], so index + offset <= max < row.len().
        unsafe {
            let (a, b) = (*axis.i0.get_unchecked(x) as usize, *axis.i1.get_unchecked(x) as usize);
            let w1 = *axis.w.get_unchecked(x);
            let w0 = 256 - w1;
            for (c, &o) in offsets.iter().enumerate() {
                let v = (*row.get_unchecked(a + o) as u16 * w0 + *row.get_unchecked(b + o) as u16 * w1 + 128) >> 8;
                *out.get_unchecked_mut(c).get_unchecked_mut(x) = v as u8;
            }
        }
    }
}

/// Sampling axes for one frame format and content size.
enum Sampling {
    Packed {
        offsets: [usize; 3],
        x: Axis,
        y: Axis,
    },
    Yuv {
        nv12: bool,
        luma_x: Axis,
        luma_y: Axis,
        chroma_x: Axis,
        chroma_y: Axis,
        matrix: YuvToRgb,
    },
}

/// Converts frames of one format and size into one model's input tensor.
pub struct Preprocessor {
    pub mode: ResizeMode,
    format: PixelFormat,
    colorimetry: Colorimetry,
    sampling: Sampling,
    /// Vertically blended source rows (one per plane).
    blended: [Vec<u8>; 3],
    /// One output row per channel: Y, U, V, then R, G, B after conversion.
    channels: [Vec<u8>; 3],
    pub out: TensorOut,
}

impl Preprocessor {
    pub fn new(
        format: PixelFormat,
        (w, h): (u32, u32),
        colorimetry: Colorimetry,
        spec: TensorSpec,
        mode: ResizeMode,
    ) -> Result<Self, String> {
        Self::of_region(format, (w, h), Region::whole(w, h), colorimetry, spec, mode)
    }

    /// The tensor made from `region` of each frame only (a tile or a crop).
    pub fn of_region(
        format: PixelFormat,
        (w, h): (u32, u32),
        region: Region,
        colorimetry: Colorimetry,
        spec: TensorSpec,
        mode: ResizeMode,
    ) -> Result<Self, String> {
        if w == 0 || h == 0 {
            return Err(format!("empty frame size {w}x{h}"));
        }
        let r = region;
        if r.width == 0 || r.height == 0 || r.x + r.width > w || r.y + r.height > h {
            return Err(format!(
                "region {}x{} at ({}, {}) is not inside the {w}x{h} frame",
                r.width, r.height, r.x, r.y
            ));
        }
        let geometry = Geometry::of_region(w, h, region, spec.width, spec.height, mode);
        let (cw, ch) = (geometry.content_width, geometry.content_height);
        let (cw2, ch2) = (w.div_ceil(2), h.div_ceil(2));
        // Luma and packed samples in pixels; chroma at half resolution, the same region in its samples.
        let (x, y, rw, rh) = (r.x as f64, r.y as f64, r.width as f64, r.height as f64);
        let (sampling, blended) = match format {
            PixelFormat::Nv12 | PixelFormat::I420 => {
                let nv12 = format == PixelFormat::Nv12;
                let matrix = YuvToRgb::new(colorimetry);
                let sampling = Sampling::Yuv {
                    nv12,
                    luma_x: Axis::new(x, rw, w, cw, 1),
                    luma_y: Axis::new(y, rh, h, ch, 1),
                    chroma_x: Axis::new(x / 2.0, rw / 2.0, cw2, cw, if nv12 { 2 } else { 1 }),
                    chroma_y: Axis::new(y / 2.0, rh / 2.0, ch2, ch, 1),
                    matrix,
                };
                let chroma_row = if nv12 { cw2 as usize * 2 } else { cw2 as usize };
                (
                    sampling,
                    [
                        vec![0; w as usize],
                        vec![0; chroma_row],
                        vec![0; if nv12 { 0 } else { cw2 as usize }],
                    ],
                )
            }
            f => match f.packed() {
                Some((bpp, offsets)) => {
                    let bpp = bpp as u32;
                    let sampling = Sampling::Packed {
                        offsets,
                        x: Axis::new(x, rw, w, cw, bpp),
                        y: Axis::new(y, rh, h, ch, 1),
                    };
                    (sampling, [vec![0; (w * bpp) as usize], Vec::new(), Vec::new()])
                }
                None => return Err(format!("unsupported video format {f:?}")),
            },
        };
        let scale = spec.std.map(|s| 1.0 / s);
        let bias = [0, 1, 2].map(|c| -spec.mean[c] / spec.std[c]);
        let n = spec.width as usize * spec.height as usize * 3;
        let (mut tensor_f32, mut tensor_u8) = (Vec::new(), Vec::new());
        // Padding (letterbox) is black: the tensor starts as pixel value 0 and only the content is rewritten.
        match spec.dtype {
            TensorType::F32 => {
                tensor_f32 = vec![0.0; n];
                let plane = spec.width as usize * spec.height as usize;
                for (i, v) in tensor_f32.iter_mut().enumerate() {
                    let c = match spec.layout {
                        InputLayout::Nchw => i / plane,
                        InputLayout::Nhwc => i % 3,
                    };
                    *v = bias[c];
                }
            }
            TensorType::U8 => tensor_u8 = vec![0; n],
        }
        let channels = [vec![0; cw as usize], vec![0; cw as usize], vec![0; cw as usize]];
        let out = TensorOut {
            spec,
            geometry,
            scale,
            bias,
            f32s: tensor_f32,
            u8s: tensor_u8,
        };
        Ok(Self {
            mode,
            format,
            colorimetry,
            sampling,
            blended,
            channels,
            out,
        })
    }

    /// Whether this preprocessor is the one for `region` of frames of this format, size and colorimetry.
    pub fn matches(
        &self,
        format: PixelFormat,
        (w, h): (u32, u32),
        region: Region,
        colorimetry: Colorimetry,
        spec: &TensorSpec,
        mode: ResizeMode,
    ) -> bool {
        self.format == format
            && (self.out.geometry.frame_width, self.out.geometry.frame_height) == (w, h)
            && self.out.geometry.region == region
            && self.colorimetry == colorimetry
            && &self.out.spec == spec
            && self.mode == mode
    }

    /// Hands the tensor just filled over (to an inference running on another thread) and puts `spare` in its
    /// place, or a copy when `spare` is missing or was made for another tensor: a few tensors go round in
    /// turn and nothing is allocated per frame once there are enough.
    pub fn take_output(&mut self, spare: Option<TensorOut>) -> TensorOut {
        let next = match spare {
            // A tensor of another tile of the same frame size fits: only where its pixels came from differs.
            Some(mut t) if self.out.same_kind(&t) => {
                t.geometry = self.out.geometry;
                t
            }
            _ => self.out.clone(),
        };
        std::mem::replace(&mut self.out, next)
    }

    /// Fills the tensor from one mapped frame, one output row at a time: a vectorised vertical blend of the
    /// two source rows, a horizontal gather-and-blend of the sampled columns into planar channel rows, a
    /// vectorised YUV -> RGB conversion, then normalisation into the tensor.
    pub fn process(&mut self, frame: &Frame) -> Result<(), String> {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            return unsafe { self.process_avx2(frame) };
        }
        self.process_rows(frame)
    }

    /// The same code compiled for AVX2 (the build's baseline is SSE2): the row loops vectorise twice as wide.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn process_avx2(&mut self, frame: &Frame) -> Result<(), String> {
        self.process_rows(frame)
    }

    #[inline(always)]
    fn process_rows(&mut self, frame: &Frame) -> Result<(), String> {
        let (w, h) = (frame.width, frame.height);
        if (w, h) != (self.out.geometry.frame_width, self.out.geometry.frame_height) || frame.format != self.format {
            return Err(format!(
                "frame {}x{} {:?} does not match the negotiated caps",
                w, h, frame.format
            ));
        }
        let rows = self.out.geometry.content_height as usize;
        let [c0, c1, c2] = &mut self.channels;
        let [b0, b1, b2] = &mut self.blended;
        match &self.sampling {
            Sampling::Packed { offsets, x, y } => {
                let p = frame.plane(0)?;
                for row in 0..rows {
                    let blended = p.blend_rows(y, row, b0);
                    sample_row(blended, x, *offsets, [c0, c1, c2]);
                    self.out.emit_row(row, [c0, c1, c2]);
                }
            }
            Sampling::Yuv {
                nv12,
                luma_x,
                luma_y,
                chroma_x,
                chroma_y,
                matrix,
            } => {
                let luma = frame.plane(0)?;
                let (u, v) = if *nv12 {
                    (frame.plane(1)?, None)
                } else {
                    (frame.plane(1)?, Some(frame.plane(2)?))
                };
                for row in 0..rows {
                    sample_row(luma.blend_rows(luma_y, row, b0), luma_x, [0], [c0]);
                    let ub = u.blend_rows(chroma_y, row, b1);
                    match &v {
                        // Interleaved UV: U at +0, V at +1.
                        None => sample_row(ub, chroma_x, [0, 1], [c1, c2]),
                        Some(v) => {
                            sample_row(ub, chroma_x, [0], [c1]);
                            sample_row(v.blend_rows(chroma_y, row, b2), chroma_x, [0], [c2]);
                        }
                    }
                    matrix.convert_rows([c0, c1, c2]);
                    self.out.emit_row(row, [c0, c1, c2]);
                }
            }
        }
        Ok(())
    }
}

/// The tensor being filled and how pixels become tensor values.
#[derive(Clone)]
pub struct TensorOut {
    pub spec: TensorSpec,
    pub geometry: Geometry,
    /// Normalisation per tensor channel: value = pixel * scale + bias = (pixel - mean) / std.
    scale: [f32; 3],
    bias: [f32; 3],
    pub f32s: Vec<f32>,
    pub u8s: Vec<u8>,
}

impl TensorOut {
    /// A copy of this tensor, in `spare`'s buffers when one is given (a second model run on the same frame).
    pub fn copy_into(&self, spare: Option<TensorOut>) -> TensorOut {
        let Some(mut t) = spare else { return self.clone() };
        t.spec = self.spec.clone();
        t.geometry = self.geometry;
        t.scale = self.scale;
        t.bias = self.bias;
        t.f32s.clone_from(&self.f32s);
        t.u8s.clone_from(&self.u8s);
        t
    }

    /// Whether `other` was made by a preprocessor of the same shape (so its padding and normalisation agree),
    /// for whichever region of the frame.
    pub fn same_kind(&self, other: &TensorOut) -> bool {
        let (a, b) = (&self.geometry, &other.geometry);
        self.spec == other.spec
            && (
                a.tensor_width,
                a.tensor_height,
                a.content_width,
                a.content_height,
                a.pad_x,
                a.pad_y,
            ) == (
                b.tensor_width,
                b.tensor_height,
                b.content_width,
                b.content_height,
                b.pad_x,
                b.pad_y,
            )
            && self.scale == other.scale
            && self.bias == other.bias
            && self.f32s.len() == other.f32s.len()
            && self.u8s.len() == other.u8s.len()
    }

    /// Writes the R, G, B channel rows of content row `row` into the tensor (layout, channel order,
    /// normalisation, letterbox offset).
    #[inline(always)]
    fn emit_row(&mut self, row: usize, ch: [&mut Vec<u8>; 3]) {
        let g = &self.geometry;
        let (tw, th) = (g.tensor_width as usize, g.tensor_height as usize);
        let cw = g.content_width as usize;
        let y = row + g.pad_y as usize;
        let x0 = g.pad_x as usize;
        // Tensor channel k takes source channel src[k].
        let src = if self.spec.channel_order == ChannelOrder::Bgr {
            [2, 1, 0]
        } else {
            [0, 1, 2]
        };
        match (self.spec.dtype, self.spec.layout) {
            (TensorType::F32, InputLayout::Nchw) => {
                for k in 0..3 {
                    let off = k * tw * th + y * tw + x0;
                    let (scale, bias) = (self.scale[k], self.bias[k]);
                    for (o, v) in self.f32s[off..off + cw].iter_mut().zip(&ch[src[k]][..cw]) {
                        *o = *v as f32 * scale + bias;
                    }
                }
            }
            (TensorType::F32, InputLayout::Nhwc) => {
                let off = (y * tw + x0) * 3;
                let rows = ch[src[0]][..cw].iter().zip(&ch[src[1]][..cw]).zip(&ch[src[2]][..cw]);
                for (o, ((a, b), c)) in self.f32s[off..off + cw * 3].chunks_exact_mut(3).zip(rows) {
                    o[0] = *a as f32 * self.scale[0] + self.bias[0];
                    o[1] = *b as f32 * self.scale[1] + self.bias[1];
                    o[2] = *c as f32 * self.scale[2] + self.bias[2];
                }
            }
            (TensorType::U8, InputLayout::Nhwc) => {
                let off = (y * tw + x0) * 3;
                let rows = ch[src[0]][..cw].iter().zip(&ch[src[1]][..cw]).zip(&ch[src[2]][..cw]);
                for (o, ((a, b), c)) in self.u8s[off..off + cw * 3].chunks_exact_mut(3).zip(rows) {
                    o.copy_from_slice(&[*a, *b, *c]);
                }
            }
            (TensorType::U8, InputLayout::Nchw) => {
                for k in 0..3 {
                    let off = k * tw * th + y * tw + x0;
                    self.u8s[off..off + cw].copy_from_slice(&ch[src[k]][..cw]);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use detection_common::BBox;

    fn assert_near(a: BBox, b: BBox) {
        let d = [a.x0 - b.x0, a.y0 - b.y0, a.x1 - b.x1, a.y1 - b.y1];
        assert!(d.iter().all(|v| v.abs() < 1e-3), "{a:?} vs {b:?}");
    }

    fn spec(width: u32, height: u32) -> TensorSpec {
        TensorSpec {
            width,
            height,
            layout: InputLayout::Nchw,
            dtype: TensorType::F32,
            channel_order: ChannelOrder::Rgb,
            mean: [0.0; 3],
            std: [1.0; 3],
        }
    }

    /// A tile's tensor is the tensor of a frame holding only that tile's pixels, for packed and YUV frames,
    /// at the tile's size and scaled down; its boxes map back into the whole frame.
    #[test]
    fn a_region_is_read_as_if_it_were_the_frame() {
        let (w, h) = (64u32, 48u32);
        let region = Region {
            x: 16,
            y: 8,
            width: 32,
            height: 24,
        };
        let pattern = |x: u32, y: u32, k: u32| ((x * 7 + y * 13 + k * 50) % 251) as u8;
        for format in [PixelFormat::Rgb, PixelFormat::Nv12] {
            let (mut whole, mut part): (Vec<u8>, Vec<u8>) = (Vec::new(), Vec::new());
            let planes = |buf: &mut Vec<u8>, (fw, fh): (u32, u32), (ox, oy): (u32, u32)| {
                let mut offsets = [0usize; 3];
                for (i, (row_bytes, rows)) in format.planes(fw, fh).into_iter().enumerate() {
                    offsets[i] = buf.len();
                    // Plane i's byte (bx, row), taken from the whole frame's position of that sample.
                    let (sx, sy) = if i == 0 { (ox, oy) } else { (ox / 2 * 2, oy / 2) };
                    for row in 0..rows {
                        for bx in 0..row_bytes as u32 {
                            buf.push(pattern(
                                bx + sx * if format == PixelFormat::Rgb { 3 } else { 1 },
                                row + sy,
                                i as u32,
                            ));
                        }
                    }
                }
                offsets
            };
            let o_whole = planes(&mut whole, (w, h), (0, 0));
            let o_part = planes(&mut part, (region.width, region.height), (region.x, region.y));
            fn frame(format: PixelFormat, buf: &[u8], offsets: [usize; 3], fw: u32, fh: u32) -> Frame<'_> {
                let p = format.planes(fw, fh);
                Frame {
                    format,
                    width: fw,
                    height: fh,
                    colorimetry: Colorimetry::BT601_LIMITED,
                    planes: [0, 1, 2].map(|i| {
                        let end = offsets[i] + p[i].0 * p[i].1 as usize;
                        (&buf[offsets[i]..end], p[i].0 as i32)
                    }),
                }
            }
            for (tw, th) in [(32, 24), (16, 12)] {
                let c = Colorimetry::BT601_LIMITED;
                let mut tile =
                    Preprocessor::of_region(format, (w, h), region, c, spec(tw, th), ResizeMode::Stretch).unwrap();
                let size = (region.width, region.height);
                let mut alone = Preprocessor::new(format, size, c, spec(tw, th), ResizeMode::Stretch).unwrap();
                tile.process(&frame(format, &whole, o_whole, w, h)).unwrap();
                alone
                    .process(&frame(format, &part, o_part, region.width, region.height))
                    .unwrap();
                // Alone, the frame's edge clamps the sampling where the tile reads its true neighbours: for
                // YUV at 2x chroma upsampling that is the outer ring of pixels, so only the inside must agree.
                let ring = usize::from(format == PixelFormat::Nv12);
                let inside = |t: &[f32]| {
                    let (tw, th) = (tw as usize, th as usize);
                    (0..3 * th * tw)
                        .filter(|i| {
                            let (y, x) = (i / tw % th, i % tw);
                            (ring..tw - ring).contains(&x) && (ring..th - ring).contains(&y)
                        })
                        .map(|i| t[i])
                        .collect::<Vec<_>>()
                };
                assert_eq!(
                    inside(&tile.out.f32s),
                    inside(&alone.out.f32s),
                    "{format:?} at {tw}x{th}"
                );
                assert_near(
                    tile.out.geometry.to_frame(&BBox::new(0.0, 0.5, 0.5, 1.0)),
                    BBox::new(16.0, 20.0, 32.0, 32.0),
                );
            }
        }
        let outside = Region { x: 40, ..region };
        let c = Colorimetry::BT601_LIMITED;
        let e = Preprocessor::of_region(PixelFormat::Rgb, (w, h), outside, c, spec(8, 8), ResizeMode::Stretch);
        assert!(e.is_err_and(|e| e.contains("not inside the 64x48 frame")));
    }
}
