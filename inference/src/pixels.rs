//! Pixel formats and colour conversion, the one table every reader and writer of frames uses: preprocessing,
//! the overlay, capture and the test source.

/// The frame formats the elements read and write: packed 8-bit RGB in every byte order, and YUV 4:2:0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PixelFormat {
    Rgb,
    Bgr,
    Rgbx,
    Bgrx,
    Xrgb,
    Xbgr,
    Rgba,
    Bgra,
    Argb,
    Abgr,
    /// Y plane, then interleaved U, V at half resolution.
    Nv12,
    /// Y, U and V planes, chroma at half resolution.
    I420,
}

impl PixelFormat {
    pub const ALL: [PixelFormat; 12] = [
        Self::Rgb,
        Self::Bgr,
        Self::Rgbx,
        Self::Bgrx,
        Self::Xrgb,
        Self::Xbgr,
        Self::Rgba,
        Self::Bgra,
        Self::Argb,
        Self::Abgr,
        Self::Nv12,
        Self::I420,
    ];

    /// Bytes per pixel and byte offsets of R, G and B inside a packed pixel (None for YUV formats).
    pub fn packed(self) -> Option<(usize, [usize; 3])> {
        Some(match self {
            Self::Rgb => (3, [0, 1, 2]),
            Self::Bgr => (3, [2, 1, 0]),
            Self::Rgbx | Self::Rgba => (4, [0, 1, 2]),
            Self::Bgrx | Self::Bgra => (4, [2, 1, 0]),
            Self::Xrgb | Self::Argb => (4, [1, 2, 3]),
            Self::Xbgr | Self::Abgr => (4, [3, 2, 1]),
            Self::Nv12 | Self::I420 => return None,
        })
    }

    /// Byte offset of the alpha channel inside a packed pixel, for formats that have one.
    pub fn alpha(self) -> Option<usize> {
        match self {
            Self::Rgba | Self::Bgra => Some(3),
            Self::Argb | Self::Abgr => Some(0),
            _ => None,
        }
    }

    /// Bytes per row and rows of each plane for a `width` x `height` frame (0 rows: no such plane).
    pub fn planes(self, width: u32, height: u32) -> [(usize, u32); 3] {
        let (w, h) = (width as usize, height);
        let (cw, ch) = (w.div_ceil(2), height.div_ceil(2));
        match self {
            Self::Nv12 => [(w, h), (cw * 2, ch), (0, 0)],
            Self::I420 => [(w, h), (cw, ch), (cw, ch)],
            f => [(w * f.packed().map(|(bpp, _)| bpp).unwrap_or(0), h), (0, 0), (0, 0)],
        }
    }
}

/// The YUV -> RGB matrices GStreamer's colorimetry names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ColorMatrix {
    #[default]
    Bt601,
    Bt709,
    Bt2020,
    Smpte240m,
    Fcc,
}

impl ColorMatrix {
    /// The luma weights of red and blue.
    fn kr_kb(self) -> (f64, f64) {
        match self {
            Self::Bt601 => (0.299, 0.114),
            Self::Bt709 => (0.2126, 0.0722),
            Self::Bt2020 => (0.2627, 0.0593),
            Self::Smpte240m => (0.212, 0.087),
            Self::Fcc => (0.30, 0.11),
        }
    }
}

/// How YUV values map to RGB: the matrix and whether the range is full (0-255) or limited (16-235/240).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Colorimetry {
    pub matrix: ColorMatrix,
    pub full_range: bool,
}

impl Colorimetry {
    /// The usual SD video convention: BT.601, limited range.
    pub const BT601_LIMITED: Colorimetry = Colorimetry {
        matrix: ColorMatrix::Bt601,
        full_range: false,
    };

    /// (luma offset, luma scale, chroma scale) from 8-bit code values to 0-255 RGB.
    fn range(self) -> (f64, f64, f64) {
        if self.full_range {
            (0.0, 1.0, 1.0)
        } else {
            (16.0, 255.0 / 219.0, 255.0 / 224.0)
        }
    }

    /// RGB -> Y, U, V (rounded, clamped): for drawing and for synthesising frames.
    pub fn to_yuv(self, rgb: [f32; 3]) -> [u8; 3] {
        let (kr, kb) = self.matrix.kr_kb();
        let kg = 1.0 - kr - kb;
        let (offset, y_scale, c_scale) = self.range();
        let [r, g, b] = rgb.map(f64::from);
        let y = kr * r + kg * g + kb * b;
        let u = (b - y) / (2.0 * (1.0 - kb));
        let v = (r - y) / (2.0 * (1.0 - kr));
        [y / y_scale + offset, u / c_scale + 128.0, v / c_scale + 128.0].map(|c| c.round().clamp(0.0, 255.0) as u8)
    }
}

/// YUV -> RGB in 16-bit fixed point for one matrix and range, written so that the compiler vectorises it.
#[derive(Debug, Clone, Copy)]
pub struct YuvToRgb {
    y_offset: i32,
    y_scale: i32,
    r_v: i32,
    g_u: i32,
    g_v: i32,
    b_u: i32,
}

impl YuvToRgb {
    pub fn new(colorimetry: Colorimetry) -> Self {
        let (kr, kb) = colorimetry.matrix.kr_kb();
        let kg = 1.0 - kr - kb;
        let (y_offset, y_scale, c_scale) = colorimetry.range();
        let fix = |v: f64| (v * 65536.0).round() as i32;
        Self {
            y_offset: y_offset as i32,
            y_scale: fix(y_scale),
            r_v: fix(2.0 * (1.0 - kr) * c_scale),
            g_u: fix(-2.0 * (1.0 - kb) * kb / kg * c_scale),
            g_v: fix(-2.0 * (1.0 - kr) * kr / kg * c_scale),
            b_u: fix(2.0 * (1.0 - kb) * c_scale),
        }
    }

    #[inline(always)]
    pub fn rgb(&self, y: u8, u: u8, v: u8) -> [u8; 3] {
        let yy = (y as i32 - self.y_offset) * self.y_scale + (1 << 15);
        let (u, v) = (u as i32 - 128, v as i32 - 128);
        let clamp = |x: i32| (x >> 16).clamp(0, 255) as u8;
        [
            clamp(yy + self.r_v * v),
            clamp(yy + self.g_u * u + self.g_v * v),
            clamp(yy + self.b_u * u),
        ]
    }

    /// Converts planar Y, U, V rows into R, G, B rows in place.
    #[inline(always)]
    pub(crate) fn convert_rows(&self, [y, u, v]: [&mut Vec<u8>; 3]) {
        for ((y, u), v) in y.iter_mut().zip(u.iter_mut()).zip(v.iter_mut()) {
            [*y, *u, *v] = self.rgb(*y, *u, *v);
        }
    }
}

/// One plane of a mapped frame, checked once to hold `rows` rows of `row_bytes` at `stride`.
#[derive(Clone, Copy)]
pub struct Plane<'a> {
    data: &'a [u8],
    stride: usize,
    row_bytes: usize,
}

impl<'a> Plane<'a> {
    pub fn new(data: &'a [u8], stride: i32, row_bytes: usize, rows: u32) -> Result<Self, String> {
        let stride = usize::try_from(stride).map_err(|_| format!("negative stride {stride}"))?;
        let needed = if rows == 0 {
            0
        } else {
            stride * (rows as usize - 1) + row_bytes
        };
        if stride < row_bytes || data.len() < needed {
            return Err(format!(
                "plane of {rows} rows of {row_bytes} bytes at stride {stride} does not fit in {} bytes",
                data.len()
            ));
        }
        Ok(Self {
            data,
            stride,
            row_bytes,
        })
    }

    #[inline(always)]
    pub fn row(&self, index: u32) -> &'a [u8] {
        let start = index as usize * self.stride;
        &self.data[start..start + self.row_bytes]
    }
}

/// A mapped video frame as the elements see it, without GStreamer: format, size, colorimetry and each plane's
/// bytes at its own stride (padded or tight rows, as decoders and cameras produce them).
#[derive(Clone, Copy)]
pub struct Frame<'a> {
    pub format: PixelFormat,
    pub width: u32,
    pub height: u32,
    pub colorimetry: Colorimetry,
    /// Plane data and stride; unused planes are empty.
    pub planes: [(&'a [u8], i32); 3],
}

impl<'a> Frame<'a> {
    /// Plane `index`, checked to hold the rows the format and size need.
    pub fn plane(&self, index: usize) -> Result<Plane<'a>, String> {
        let (row_bytes, rows) = self.format.planes(self.width, self.height)[index];
        let (data, stride) = self.planes[index];
        Plane::new(data, stride, row_bytes, rows).map_err(|e| format!("plane {index}: {e}"))
    }

    /// The whole frame as tightly packed RGB into `rgb` (resized to fit), e.g. for a JPEG encoder.
    pub fn to_rgb(&self, rgb: &mut Vec<u8>) -> Result<(), String> {
        let (w, h) = (self.width as usize, self.height as usize);
        rgb.clear();
        rgb.resize(w * h * 3, 0);
        if w == 0 || h == 0 {
            return Ok(());
        }
        match self.format.packed() {
            None => {
                let nv12 = self.format == PixelFormat::Nv12;
                let luma = self.plane(0)?;
                let p1 = self.plane(1)?;
                let p2 = if nv12 { p1 } else { self.plane(2)? };
                let matrix = YuvToRgb::new(self.colorimetry);
                for (y, out) in rgb.chunks_exact_mut(w * 3).enumerate() {
                    let luma_row = luma.row(y as u32);
                    let (row1, row2) = (p1.row(y as u32 / 2), p2.row(y as u32 / 2));
                    for (x, px) in out.chunks_exact_mut(3).enumerate() {
                        let (u, v) = if nv12 {
                            (row1[(x / 2) * 2], row1[(x / 2) * 2 + 1])
                        } else {
                            (row1[x / 2], row2[x / 2])
                        };
                        px.copy_from_slice(&matrix.rgb(luma_row[x], u, v));
                    }
                }
            }
            Some((bpp, offsets)) => {
                let packed = self.plane(0)?;
                for (y, out) in rgb.chunks_exact_mut(w * 3).enumerate() {
                    for (p, px) in packed.row(y as u32).chunks_exact(bpp).zip(out.chunks_exact_mut(3)) {
                        px[0] = p[offsets[0]];
                        px[1] = p[offsets[1]];
                        px[2] = p[offsets[2]];
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yuv_to_rgb_hits_the_reference_colours() {
        let t = YuvToRgb::new(Colorimetry::BT601_LIMITED);
        assert_eq!(t.rgb(16, 128, 128), [0, 0, 0]);
        assert_eq!(t.rgb(235, 128, 128), [255, 255, 255]);
        // BT.601 limited-range red is Y=81, U=90, V=240.
        let [r, g, b] = t.rgb(81, 90, 240);
        assert!(r >= 253 && g <= 2 && b <= 2, "{r} {g} {b}");
        let full = YuvToRgb::new(Colorimetry {
            matrix: ColorMatrix::Bt709,
            full_range: true,
        });
        assert_eq!(full.rgb(0, 128, 128), [0, 0, 0]);
        assert_eq!(full.rgb(255, 128, 128), [255, 255, 255]);
    }

    #[test]
    fn rgb_to_yuv_and_back_round_trips() {
        // BT.601 limited-range red, as in the references.
        assert_eq!(Colorimetry::BT601_LIMITED.to_yuv([255.0, 0.0, 0.0]), [81, 90, 240]);
        for matrix in [ColorMatrix::Bt601, ColorMatrix::Bt709, ColorMatrix::Bt2020] {
            for full_range in [false, true] {
                let c = Colorimetry { matrix, full_range };
                let back = YuvToRgb::new(c);
                for rgb in [[0, 0, 0], [255, 255, 255], [200, 40, 90], [10, 220, 30], [30, 60, 250]] {
                    let [y, u, v] = c.to_yuv(rgb.map(|v| v as f32));
                    let got = back.rgb(y, u, v);
                    for k in 0..3 {
                        assert!((got[k] as i32 - rgb[k]).abs() <= 3, "{c:?} {rgb:?} -> {got:?}");
                    }
                }
            }
        }
    }
}
