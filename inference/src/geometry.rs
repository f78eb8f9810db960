//! Where a frame, or a region of it, lands in a model's input tensor, and the way back: boxes normalised to the
//! tensor into frame pixels.

use crate::preprocess::ResizeMode;
use detection_common::BBox;

/// A rectangle of the frame in pixels: the part a tensor is made from (the whole frame, or one tile or crop).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Region {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

impl Region {
    pub fn whole(width: u32, height: u32) -> Self {
        Self {
            x: 0,
            y: 0,
            width,
            height,
        }
    }
}

/// Where the frame (or the region of it the tensor is made from) landed inside the tensor; maps boxes back to
/// frame pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Geometry {
    pub frame_width: u32,
    pub frame_height: u32,
    /// The part of the frame in the tensor (the whole frame unless tiled or cropped).
    pub region: Region,
    pub tensor_width: u32,
    pub tensor_height: u32,
    pub content_width: u32,
    pub content_height: u32,
    pub pad_x: u32,
    pub pad_y: u32,
}

impl Geometry {
    pub fn new(frame_width: u32, frame_height: u32, tensor_width: u32, tensor_height: u32, mode: ResizeMode) -> Self {
        Self::of_region(
            frame_width,
            frame_height,
            Region::whole(frame_width, frame_height),
            tensor_width,
            tensor_height,
            mode,
        )
    }

    /// `region` of a `frame_width` x `frame_height` frame fitted into the tensor.
    pub fn of_region(
        frame_width: u32,
        frame_height: u32,
        region: Region,
        tensor_width: u32,
        tensor_height: u32,
        mode: ResizeMode,
    ) -> Self {
        let (rw, rh) = (region.width, region.height);
        let (content_width, content_height) = match mode {
            ResizeMode::Stretch => (tensor_width, tensor_height),
            ResizeMode::Letterbox => {
                let scale = (tensor_width as f64 / rw as f64).min(tensor_height as f64 / rh as f64);
                (
                    ((rw as f64 * scale).round() as u32).clamp(1, tensor_width),
                    ((rh as f64 * scale).round() as u32).clamp(1, tensor_height),
                )
            }
        };
        Self {
            frame_width,
            frame_height,
            region,
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
        let r = &self.region;
        let sx = r.width as f32 / self.content_width as f32;
        let sy = r.height as f32 / self.content_height as f32;
        let (tw, th) = (self.tensor_width as f32, self.tensor_height as f32);
        let (px, py) = (self.pad_x as f32, self.pad_y as f32);
        let (ox, oy) = (r.x as f32, r.y as f32);
        BBox::new(
            (b.x0 * tw - px) * sx + ox,
            (b.y0 * th - py) * sy + oy,
            (b.x1 * tw - px) * sx + ox,
            (b.y1 * th - py) * sy + oy,
        )
        .clamp(0.0, self.frame_width as f32, self.frame_height as f32)
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
        assert_near(
            s.to_frame(&BBox::new(0.25, 0.25, 0.5, 0.5)),
            BBox::new(160.0, 120.0, 320.0, 240.0),
        );
    }
}
