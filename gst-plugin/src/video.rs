//! GStreamer video frames in the inference core's terms: formats, colorimetry and mapped planes.

use detection_inference::pixels::{ColorMatrix, Colorimetry, Frame, PixelFormat};
use gst_video::VideoFormat;
use gst_video::prelude::*;

/// Sink and src templates of an element that passes any raw video through (it reads metadata, not pixels).
pub fn any_video_templates() -> Vec<gst::PadTemplate> {
    let caps = gst::Caps::new_empty_simple("video/x-raw");
    [gst::PadDirection::Src, gst::PadDirection::Sink]
        .into_iter()
        .map(|direction| {
            let name = if direction == gst::PadDirection::Src {
                "src"
            } else {
                "sink"
            };
            gst::PadTemplate::new(name, direction, gst::PadPresence::Always, &caps).expect("a valid template")
        })
        .collect()
}

/// Every element reads and writes the same formats: the ones the inference core's pixel table knows.
pub const FORMATS: [VideoFormat; PixelFormat::ALL.len()] = {
    let mut out = [VideoFormat::Unknown; PixelFormat::ALL.len()];
    let mut i = 0;
    while i < out.len() {
        out[i] = video_format(PixelFormat::ALL[i]);
        i += 1;
    }
    out
};

pub const fn video_format(format: PixelFormat) -> VideoFormat {
    match format {
        PixelFormat::Rgb => VideoFormat::Rgb,
        PixelFormat::Bgr => VideoFormat::Bgr,
        PixelFormat::Rgbx => VideoFormat::Rgbx,
        PixelFormat::Bgrx => VideoFormat::Bgrx,
        PixelFormat::Xrgb => VideoFormat::Xrgb,
        PixelFormat::Xbgr => VideoFormat::Xbgr,
        PixelFormat::Rgba => VideoFormat::Rgba,
        PixelFormat::Bgra => VideoFormat::Bgra,
        PixelFormat::Argb => VideoFormat::Argb,
        PixelFormat::Abgr => VideoFormat::Abgr,
        PixelFormat::Nv12 => VideoFormat::Nv12,
        PixelFormat::I420 => VideoFormat::I420,
    }
}

pub fn pixel_format(format: VideoFormat) -> Option<PixelFormat> {
    PixelFormat::ALL.into_iter().find(|p| video_format(*p) == format)
}

pub fn colorimetry(info: &gst_video::VideoInfo) -> Colorimetry {
    let c = info.colorimetry();
    let matrix = match c.matrix() {
        gst_video::VideoColorMatrix::Bt709 => ColorMatrix::Bt709,
        gst_video::VideoColorMatrix::Bt2020 => ColorMatrix::Bt2020,
        gst_video::VideoColorMatrix::Smpte240m => ColorMatrix::Smpte240m,
        gst_video::VideoColorMatrix::Fcc => ColorMatrix::Fcc,
        _ => ColorMatrix::Bt601,
    };
    Colorimetry {
        matrix,
        full_range: c.range() == gst_video::VideoColorRange::Range0_255,
    }
}

/// Format, size and colorimetry of negotiated caps, or why the elements cannot read them.
pub fn frame_shape(info: &gst_video::VideoInfo) -> Result<(PixelFormat, (u32, u32), Colorimetry), String> {
    let format = pixel_format(info.format()).ok_or_else(|| format!("unsupported video format {:?}", info.format()))?;
    Ok((format, (info.width(), info.height()), colorimetry(info)))
}

/// A readable mapped frame at its own plane strides (from its GstVideoMeta when it has one).
pub fn frame<'a>(mapped: &'a gst_video::VideoFrameRef<&gst::BufferRef>) -> Result<Frame<'a>, String> {
    let (format, (width, height), colorimetry) = frame_shape(mapped.info())?;
    let strides = mapped.plane_stride();
    let mut planes: [(&[u8], i32); 3] = [(&[], 0); 3];
    for (i, plane) in planes.iter_mut().enumerate().take(mapped.n_planes() as usize) {
        let data = mapped
            .plane_data(i as u32)
            .map_err(|e| format!("cannot read plane {i}: {e}"))?;
        *plane = (data, strides[i]);
    }
    Ok(Frame {
        format,
        width,
        height,
        colorimetry,
        planes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pixel_format_has_its_video_format() {
        for p in PixelFormat::ALL {
            assert_eq!(pixel_format(video_format(p)), Some(p));
        }
        assert_eq!(pixel_format(VideoFormat::Yuy2), None);
    }
}
