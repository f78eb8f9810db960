//! Drawing primitives on a mapped video frame, for packed RGB formats and planar/semi-planar YUV 4:2:0.

use detection_inference::pixels::Colorimetry;
use gst_video::VideoFormat;
use gst_video::prelude::*;

/// A colour in the frame's terms: R, G, B and the matching Y, U, V.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Colour {
    pub rgb: [u8; 3],
    pub yuv: [u8; 3],
}

impl Colour {
    /// BT.601 limited range: close enough for annotations on any YUV frame.
    pub fn new(rgb: [u8; 3]) -> Self {
        Self {
            rgb,
            yuv: Colorimetry::BT601_LIMITED.to_yuv(rgb.map(f32::from)),
        }
    }
}

enum Layout {
    Packed { bpp: usize, offsets: [usize; 3] },
    Nv12,
    I420,
}

pub struct Canvas<'a, 'b> {
    frame: &'a mut gst_video::VideoFrameRef<&'b mut gst::BufferRef>,
    layout: Layout,
    width: i32,
    height: i32,
    strides: [usize; 3],
}

/// The overlay draws on the formats the detector reads.
pub const FORMATS: &[VideoFormat] = &crate::video::FORMATS;

impl<'a, 'b> Canvas<'a, 'b> {
    pub fn new(frame: &'a mut gst_video::VideoFrameRef<&'b mut gst::BufferRef>) -> Option<Self> {
        let format = frame.format();
        let layout = match format {
            VideoFormat::Nv12 => Layout::Nv12,
            VideoFormat::I420 => Layout::I420,
            f => {
                let (bpp, offsets) = crate::video::pixel_format(f)?.packed()?;
                Layout::Packed { bpp, offsets }
            }
        };
        let s = frame.plane_stride();
        let strides = [
            s[0] as usize,
            s.get(1).copied().unwrap_or(0) as usize,
            s.get(2).copied().unwrap_or(0) as usize,
        ];
        let (width, height) = (frame.width() as i32, frame.height() as i32);
        Some(Self {
            frame,
            layout,
            width,
            height,
            strides,
        })
    }

    /// Fills [x0, x1) x [y0, y1), clipped to the frame.
    pub fn fill_rect(&mut self, x0: i32, y0: i32, x1: i32, y1: i32, c: Colour) {
        let (x0, y0) = (x0.max(0) as usize, y0.max(0) as usize);
        let (x1, y1) = (x1.min(self.width).max(0) as usize, y1.min(self.height).max(0) as usize);
        if x0 >= x1 || y0 >= y1 {
            return;
        }
        let st = self.strides;
        match self.layout {
            Layout::Packed { bpp, offsets } => {
                let Ok(plane) = self.frame.plane_data_mut(0) else {
                    return;
                };
                for y in y0..y1 {
                    for p in plane[y * st[0] + x0 * bpp..y * st[0] + x1 * bpp].chunks_exact_mut(bpp) {
                        for k in 0..3 {
                            p[offsets[k]] = c.rgb[k];
                        }
                    }
                }
            }
            Layout::Nv12 | Layout::I420 => {
                if let Ok(luma) = self.frame.plane_data_mut(0) {
                    for y in y0..y1 {
                        luma[y * st[0] + x0..y * st[0] + x1].fill(c.yuv[0]);
                    }
                }
                let (cx0, cy0, cx1, cy1) = (x0 / 2, y0 / 2, x1.div_ceil(2), y1.div_ceil(2));
                if matches!(self.layout, Layout::Nv12) {
                    if let Ok(uv) = self.frame.plane_data_mut(1) {
                        for y in cy0..cy1 {
                            for p in uv[y * st[1] + cx0 * 2..y * st[1] + cx1 * 2].chunks_exact_mut(2) {
                                p.copy_from_slice(&[c.yuv[1], c.yuv[2]]);
                            }
                        }
                    }
                } else {
                    for (plane, value) in [(1u32, c.yuv[1]), (2, c.yuv[2])] {
                        if let Ok(data) = self.frame.plane_data_mut(plane) {
                            let stride = st[plane as usize];
                            for y in cy0..cy1 {
                                data[y * stride + cx0..y * stride + cx1].fill(value);
                            }
                        }
                    }
                }
            }
        }
    }

    /// Rectangle outline of the given thickness, inside the box.
    pub fn rect_outline(&mut self, x0: i32, y0: i32, x1: i32, y1: i32, t: i32, c: Colour) {
        self.fill_rect(x0, y0, x1, y0 + t, c);
        self.fill_rect(x0, y1 - t, x1, y1, c);
        self.fill_rect(x0, y0, x0 + t, y1, c);
        self.fill_rect(x1 - t, y0, x1, y1, c);
    }

    /// Blends a coverage mask (0..255, `w` wide) at (x, y) in colour `c`. Luma only on YUV frames: text stays
    /// sharp and the tag's chroma is already set by its fill.
    pub fn blend_mask(&mut self, x: i32, y: i32, mask: &[u8], w: usize, c: Colour) {
        if w == 0 {
            return;
        }
        let h = mask.len() / w;
        let st = self.strides;
        let (fw, fh) = (self.width, self.height);
        let (bpp, offsets, targets): (usize, [usize; 3], [u8; 3]) = match self.layout {
            Layout::Packed { bpp, offsets } => (bpp, offsets, c.rgb),
            _ => (1, [0, 0, 0], [c.yuv[0]; 3]),
        };
        let channels = if matches!(self.layout, Layout::Packed { .. }) {
            3
        } else {
            1
        };
        let Ok(plane) = self.frame.plane_data_mut(0) else {
            return;
        };
        for my in 0..h {
            let py = y + my as i32;
            if py < 0 || py >= fh {
                continue;
            }
            for mx in 0..w {
                let px = x + mx as i32;
                let a = mask[my * w + mx] as u32;
                if px < 0 || px >= fw || a == 0 {
                    continue;
                }
                let base = py as usize * st[0] + px as usize * bpp;
                for k in 0..channels {
                    let d = &mut plane[base + offsets[k]];
                    *d = ((*d as u32 * (255 - a) + targets[k] as u32 * a + 127) / 255) as u8;
                }
            }
        }
    }
}
