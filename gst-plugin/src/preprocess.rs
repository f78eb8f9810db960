//! Frame -> model input tensor: colour conversion, resize (stretch or letterbox) and normalisation, with every
//! buffer allocated once per (frame format, model input) pair and reused for each frame.
//!
//! Resizing happens before colour conversion: packed RGB formats are resized as 3- or 4-byte pixels, YUV formats
//! plane by plane (chroma straight to the target size), and only the small result is converted. Resizing and the
//! YUV -> RGB matrix are both linear, so the order does not change the result beyond rounding, and the per-pixel
//! work is done at the model's size instead of the frame's.

use detection_common::BBox;
use detection_common::metadata::{ChannelOrder, InputLayout};
use fast_image_resize::images::TypedImage;
use fast_image_resize::pixels::{InnerPixel, U8, U8x2, U8x3, U8x4};
use fast_image_resize::{FilterType, ImageView, ResizeAlg, ResizeOptions, Resizer};
use gst_video::VideoFormat;
use gst_video::prelude::*;

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

/// Where the frame landed inside the tensor; maps boxes back to frame pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Geometry {
    pub frame_width: u32,
    pub frame_height: u32,
    pub tensor_width: u32,
    pub tensor_height: u32,
    pub content_width: u32,
    pub content_height: u32,
    pub pad_x: u32,
    pub pad_y: u32,
}

impl Geometry {
    pub fn new(frame_width: u32, frame_height: u32, tensor_width: u32, tensor_height: u32, mode: ResizeMode) -> Self {
        let (content_width, content_height) = match mode {
            ResizeMode::Stretch => (tensor_width, tensor_height),
            ResizeMode::Letterbox => {
                let scale = (tensor_width as f64 / frame_width as f64).min(tensor_height as f64 / frame_height as f64);
                (
                    ((frame_width as f64 * scale).round() as u32).clamp(1, tensor_width),
                    ((frame_height as f64 * scale).round() as u32).clamp(1, tensor_height),
                )
            }
        };
        Self {
            frame_width,
            frame_height,
            tensor_width,
            tensor_height,
            content_width,
            content_height,
            pad_x: (tensor_width - content_width) / 2,
            pad_y: (tensor_height - content_height) / 2,
        }
    }

    /// Maps a box normalised to the tensor into frame pixels, clamped to the frame.
    pub fn to_frame(&self, b: &BBox) -> BBox {
        let sx = self.frame_width as f32 / self.content_width as f32;
        let sy = self.frame_height as f32 / self.content_height as f32;
        let (tw, th) = (self.tensor_width as f32, self.tensor_height as f32);
        let (px, py) = (self.pad_x as f32, self.pad_y as f32);
        BBox::new(
            (b.x0 * tw - px) * sx,
            (b.y0 * th - py) * sy,
            (b.x1 * tw - px) * sx,
            (b.y1 * th - py) * sy,
        )
        .clamp(0.0, self.frame_width as f32, self.frame_height as f32)
    }
}

pub const SUPPORTED_FORMATS: &[VideoFormat] = &[
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

/// Byte offsets of R, G and B inside a packed pixel.
fn rgb_offsets(format: VideoFormat) -> Option<(usize, [usize; 3])> {
    Some(match format {
        VideoFormat::Rgb => (3, [0, 1, 2]),
        VideoFormat::Bgr => (3, [2, 1, 0]),
        VideoFormat::Rgbx | VideoFormat::Rgba => (4, [0, 1, 2]),
        VideoFormat::Bgrx | VideoFormat::Bgra => (4, [2, 1, 0]),
        VideoFormat::Xrgb | VideoFormat::Argb => (4, [1, 2, 3]),
        VideoFormat::Xbgr | VideoFormat::Abgr => (4, [3, 2, 1]),
        _ => return None,
    })
}

/// Fixed-point (16 fractional bits) YUV -> RGB tables for one matrix and range.
struct YuvTables {
    y: [i32; 256],
    r_v: [i32; 256],
    g_u: [i32; 256],
    g_v: [i32; 256],
    b_u: [i32; 256],
}

impl YuvTables {
    fn new(matrix: gst_video::VideoColorMatrix, full_range: bool) -> Self {
        let (kr, kb) = match matrix {
            gst_video::VideoColorMatrix::Bt709 => (0.2126, 0.0722),
            gst_video::VideoColorMatrix::Bt2020 => (0.2627, 0.0593),
            gst_video::VideoColorMatrix::Smpte240m => (0.212, 0.087),
            gst_video::VideoColorMatrix::Fcc => (0.30, 0.11),
            _ => (0.299, 0.114),
        };
        let kg = 1.0 - kr - kb;
        let (y_off, y_scale, c_scale) = if full_range { (0.0, 1.0, 1.0) } else { (16.0, 255.0 / 219.0, 255.0 / 224.0) };
        let fix = |v: f64| (v * 65536.0).round() as i32;
        let mut t = YuvTables { y: [0; 256], r_v: [0; 256], g_u: [0; 256], g_v: [0; 256], b_u: [0; 256] };
        for i in 0..256 {
            let c = (i as f64 - 128.0) * c_scale;
            // +0.5 in the luma term rounds the final >> 16.
            t.y[i] = fix((i as f64 - y_off) * y_scale + 0.5);
            t.r_v[i] = fix(2.0 * (1.0 - kr) * c);
            t.b_u[i] = fix(2.0 * (1.0 - kb) * c);
            t.g_u[i] = fix(-2.0 * (1.0 - kb) * kb / kg * c);
            t.g_v[i] = fix(-2.0 * (1.0 - kr) * kr / kg * c);
        }
        t
    }

    #[inline(always)]
    fn rgb(&self, y: u8, u: u8, v: u8) -> [u8; 3] {
        let yy = self.y[y as usize];
        let clamp = |x: i32| (x >> 16).clamp(0, 255) as u8;
        [
            clamp(yy + self.r_v[v as usize]),
            clamp(yy + self.g_u[u as usize] + self.g_v[v as usize]),
            clamp(yy + self.b_u[u as usize]),
        ]
    }
}

/// A read-only view of one plane with an arbitrary row stride, as fast_image_resize wants it.
struct StridedPlane<'a, P> {
    data: &'a [u8],
    width: u32,
    height: u32,
    stride: usize,
    _pixel: std::marker::PhantomData<P>,
}

impl<'a, P: InnerPixel> StridedPlane<'a, P> {
    fn new(data: &'a [u8], width: u32, height: u32, stride: usize) -> Result<Self, String> {
        let row_bytes = width as usize * std::mem::size_of::<P>();
        let needed = if height == 0 { 0 } else { stride * (height as usize - 1) + row_bytes };
        if stride < row_bytes || data.len() < needed {
            return Err(format!(
                "plane of {width}x{height} with stride {stride} does not fit in {} bytes",
                data.len()
            ));
        }
        Ok(Self { data, width, height, stride, _pixel: std::marker::PhantomData })
    }
}

// SAFETY: every row handed out is exactly `width` pixels long (checked in `new`), and the u8-based pixel types
// used here have alignment 1, so casting a byte slice to a pixel slice is sound.
unsafe impl<P: InnerPixel> ImageView for StridedPlane<'_, P> {
    type Pixel = P;

    fn width(&self) -> u32 {
        self.width
    }

    fn height(&self) -> u32 {
        self.height
    }

    fn iter_rows(&self, start_row: u32) -> impl Iterator<Item = &[P]> {
        debug_assert_eq!(std::mem::align_of::<P>(), 1);
        let row_bytes = self.width as usize * std::mem::size_of::<P>();
        (start_row..self.height).map(move |y| {
            let start = y as usize * self.stride;
            let bytes = &self.data[start..start + row_bytes];
            unsafe { std::slice::from_raw_parts(bytes.as_ptr() as *const P, self.width as usize) }
        })
    }
}

/// Intermediate images at the content size, by frame format family.
enum Scratch {
    Packed3(TypedImage<'static, U8x3>),
    Packed4(TypedImage<'static, U8x4>),
    Nv12 { y: TypedImage<'static, U8>, uv: TypedImage<'static, U8x2> },
    I420 { y: TypedImage<'static, U8>, u: TypedImage<'static, U8>, v: TypedImage<'static, U8> },
}

/// Converts frames of one format and size into one model's input tensor.
pub struct Preprocessor {
    pub spec: TensorSpec,
    pub geometry: Geometry,
    format: VideoFormat,
    scratch: Scratch,
    resizer: Resizer,
    options: ResizeOptions,
    yuv: Option<Box<YuvTables>>,
    /// Normalisation lookup, per tensor channel: value for each 8-bit pixel value.
    lut: Box<[[f32; 256]; 3]>,
    pub tensor_f32: Vec<f32>,
    pub tensor_u8: Vec<u8>,
}

impl Preprocessor {
    pub fn new(info: &gst_video::VideoInfo, spec: TensorSpec, mode: ResizeMode) -> Result<Self, String> {
        let format = info.format();
        let geometry = Geometry::new(info.width(), info.height(), spec.width, spec.height, mode);
        let (cw, ch) = (geometry.content_width, geometry.content_height);
        let scratch = match format {
            VideoFormat::Nv12 => Scratch::Nv12 { y: TypedImage::new(cw, ch), uv: TypedImage::new(cw, ch) },
            VideoFormat::I420 => Scratch::I420 {
                y: TypedImage::new(cw, ch),
                u: TypedImage::new(cw, ch),
                v: TypedImage::new(cw, ch),
            },
            f => match rgb_offsets(f) {
                Some((3, _)) => Scratch::Packed3(TypedImage::new(cw, ch)),
                Some(_) => Scratch::Packed4(TypedImage::new(cw, ch)),
                None => return Err(format!("unsupported video format {f:?}")),
            },
        };
        let yuv = matches!(format, VideoFormat::Nv12 | VideoFormat::I420).then(|| {
            let c = info.colorimetry();
            Box::new(YuvTables::new(c.matrix(), c.range() == gst_video::VideoColorRange::Range0_255))
        });
        let mut lut = Box::new([[0f32; 256]; 3]);
        for c in 0..3 {
            for v in 0..256 {
                lut[c][v] = (v as f32 - spec.mean[c]) / spec.std[c];
            }
        }
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
                    *v = lut[c][0];
                }
            }
            TensorType::U8 => tensor_u8 = vec![0; n],
        }
        Ok(Self {
            spec,
            geometry,
            format,
            scratch,
            resizer: Resizer::new(),
            options: ResizeOptions::new()
                .resize_alg(ResizeAlg::Convolution(FilterType::Bilinear))
                .use_alpha(false),
            yuv,
            lut,
            tensor_f32,
            tensor_u8,
        })
    }

    pub fn matches(&self, info: &gst_video::VideoInfo, spec: &TensorSpec) -> bool {
        self.format == info.format()
            && self.geometry.frame_width == info.width()
            && self.geometry.frame_height == info.height()
            && &self.spec == spec
    }

    /// Fills the tensor from one mapped frame.
    pub fn process(&mut self, frame: &gst_video::VideoFrameRef<&gst::BufferRef>) -> Result<(), String> {
        let (w, h) = (frame.width(), frame.height());
        let strides = frame.plane_stride();
        let plane = |i: u32| frame.plane_data(i).map_err(|e| format!("cannot read plane {i}: {e}"));
        let err = |e: fast_image_resize::ResizeError| format!("resize failed: {e}");
        let (cw2, ch2) = (w.div_ceil(2), h.div_ceil(2));
        match &mut self.scratch {
            Scratch::Packed3(dst) => {
                let src = StridedPlane::<U8x3>::new(plane(0)?, w, h, strides[0] as usize)?;
                self.resizer.resize_typed(&src, dst, &self.options).map_err(err)?;
            }
            Scratch::Packed4(dst) => {
                let src = StridedPlane::<U8x4>::new(plane(0)?, w, h, strides[0] as usize)?;
                self.resizer.resize_typed(&src, dst, &self.options).map_err(err)?;
            }
            Scratch::Nv12 { y, uv } => {
                let src_y = StridedPlane::<U8>::new(plane(0)?, w, h, strides[0] as usize)?;
                self.resizer.resize_typed(&src_y, y, &self.options).map_err(err)?;
                let src_uv = StridedPlane::<U8x2>::new(plane(1)?, cw2, ch2, strides[1] as usize)?;
                self.resizer.resize_typed(&src_uv, uv, &self.options).map_err(err)?;
            }
            Scratch::I420 { y, u, v } => {
                let src_y = StridedPlane::<U8>::new(plane(0)?, w, h, strides[0] as usize)?;
                self.resizer.resize_typed(&src_y, y, &self.options).map_err(err)?;
                let src_u = StridedPlane::<U8>::new(plane(1)?, cw2, ch2, strides[1] as usize)?;
                self.resizer.resize_typed(&src_u, u, &self.options).map_err(err)?;
                let src_v = StridedPlane::<U8>::new(plane(2)?, cw2, ch2, strides[2] as usize)?;
                self.resizer.resize_typed(&src_v, v, &self.options).map_err(err)?;
            }
        }
        self.write_tensor();
        Ok(())
    }

    fn write_tensor(&mut self) {
        let offsets = rgb_offsets(self.format).map(|o| o.1).unwrap_or([0, 1, 2]);
        let mut sink = TensorSink {
            spec: &self.spec,
            geometry: &self.geometry,
            lut: &self.lut,
            f32s: &mut self.tensor_f32,
            u8s: &mut self.tensor_u8,
        };
        match &self.scratch {
            Scratch::Packed3(img) => sink.write(|i| {
                let p = img.pixels()[i].0;
                [p[offsets[0]], p[offsets[1]], p[offsets[2]]]
            }),
            Scratch::Packed4(img) => sink.write(|i| {
                let p = img.pixels()[i].0;
                [p[offsets[0]], p[offsets[1]], p[offsets[2]]]
            }),
            Scratch::Nv12 { y, uv } => {
                let t = self.yuv.as_deref().expect("YUV tables for YUV formats");
                let (y, uv) = (y.pixels(), uv.pixels());
                sink.write(|i| {
                    let [u, v] = uv[i].0;
                    t.rgb(y[i].0, u, v)
                })
            }
            Scratch::I420 { y, u, v } => {
                let t = self.yuv.as_deref().expect("YUV tables for YUV formats");
                let (y, u, v) = (y.pixels(), u.pixels(), v.pixels());
                sink.write(|i| t.rgb(y[i].0, u[i].0, v[i].0))
            }
        }
    }
}

struct TensorSink<'a> {
    spec: &'a TensorSpec,
    geometry: &'a Geometry,
    lut: &'a [[f32; 256]; 3],
    f32s: &'a mut Vec<f32>,
    u8s: &'a mut Vec<u8>,
}

impl TensorSink<'_> {
    /// Writes every content pixel; `rgb(i)` gives the i-th pixel (row-major at content size) as R, G, B.
    #[inline(always)]
    fn write(&mut self, rgb: impl Fn(usize) -> [u8; 3]) {
        let g = self.geometry;
        let (tw, th) = (g.tensor_width as usize, g.tensor_height as usize);
        let (cw, ch) = (g.content_width as usize, g.content_height as usize);
        let (px, py) = (g.pad_x as usize, g.pad_y as usize);
        let bgr = self.spec.channel_order == ChannelOrder::Bgr;
        let order = |p: [u8; 3]| if bgr { [p[2], p[1], p[0]] } else { p };
        let lut = self.lut;
        match (self.spec.dtype, self.spec.layout) {
            (TensorType::F32, InputLayout::Nchw) => {
                let plane = tw * th;
                let (p0, rest) = self.f32s.split_at_mut(plane);
                let (p1, p2) = rest.split_at_mut(plane);
                for y in 0..ch {
                    let off = (y + py) * tw + px;
                    let rows = p0[off..off + cw].iter_mut().zip(&mut p1[off..off + cw]).zip(&mut p2[off..off + cw]);
                    for (x, ((a, b), c)) in rows.enumerate() {
                        let p = order(rgb(y * cw + x));
                        *a = lut[0][p[0] as usize];
                        *b = lut[1][p[1] as usize];
                        *c = lut[2][p[2] as usize];
                    }
                }
            }
            (TensorType::F32, InputLayout::Nhwc) => {
                for y in 0..ch {
                    let off = ((y + py) * tw + px) * 3;
                    for (x, out) in self.f32s[off..off + cw * 3].chunks_exact_mut(3).enumerate() {
                        let p = order(rgb(y * cw + x));
                        out[0] = lut[0][p[0] as usize];
                        out[1] = lut[1][p[1] as usize];
                        out[2] = lut[2][p[2] as usize];
                    }
                }
            }
            (TensorType::U8, InputLayout::Nhwc) => {
                for y in 0..ch {
                    let off = ((y + py) * tw + px) * 3;
                    for (x, out) in self.u8s[off..off + cw * 3].chunks_exact_mut(3).enumerate() {
                        out.copy_from_slice(&order(rgb(y * cw + x)));
                    }
                }
            }
            (TensorType::U8, InputLayout::Nchw) => {
                let plane = tw * th;
                for y in 0..ch {
                    let off = (y + py) * tw + px;
                    for x in 0..cw {
                        let p = order(rgb(y * cw + x));
                        for (c, v) in p.into_iter().enumerate() {
                            self.u8s[c * plane + off + x] = v;
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_near(a: BBox, b: BBox) {
        let d = [a.x0 - b.x0, a.y0 - b.y0, a.x1 - b.x1, a.y1 - b.y1];
        assert!(d.iter().all(|v| v.abs() < 1e-3), "{a:?} vs {b:?}");
    }

    #[test]
    fn letterbox_geometry_maps_back_exactly() {
        let g = Geometry::new(600, 300, 300, 300, ResizeMode::Letterbox);
        assert_eq!((g.content_width, g.content_height, g.pad_x, g.pad_y), (300, 150, 0, 75));
        let b = g.to_frame(&BBox::new(0.1, 0.25, 0.2, 0.75));
        assert_near(b, BBox::new(60.0, 0.0, 120.0, 300.0));
        let s = Geometry::new(640, 480, 300, 300, ResizeMode::Stretch);
        assert_near(s.to_frame(&BBox::new(0.25, 0.25, 0.5, 0.5)), BBox::new(160.0, 120.0, 320.0, 240.0));
    }

    #[test]
    fn yuv_tables_hit_the_reference_colours() {
        let t = YuvTables::new(gst_video::VideoColorMatrix::Bt601, false);
        assert_eq!(t.rgb(16, 128, 128), [0, 0, 0]);
        assert_eq!(t.rgb(235, 128, 128), [255, 255, 255]);
        // BT.601 limited-range red is Y=81, U=90, V=240.
        let [r, g, b] = t.rgb(81, 90, 240);
        assert!(r >= 253 && g <= 2 && b <= 2, "{r} {g} {b}");
        let full = YuvTables::new(gst_video::VideoColorMatrix::Bt709, true);
        assert_eq!(full.rgb(0, 128, 128), [0, 0, 0]);
        assert_eq!(full.rgb(255, 128, 128), [255, 255, 255]);
    }
}
