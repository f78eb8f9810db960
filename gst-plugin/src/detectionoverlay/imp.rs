use super::canvas::{Canvas, Colour, FORMATS};
use crate::roimeta::{BoxSource, OwnedBox, boxes};
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::prelude::*;
use gst_video::prelude::*;
use gst_video::subclass::prelude::*;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::{LazyLock, Mutex};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "detectionoverlay",
        gst::DebugColorFlags::empty(),
        Some("Draws detections"),
    )
});

/// Looked up in order when `font` is not set (Debian's fonts-dejavu-core).
const DEFAULT_FONTS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans-Bold.ttf",
];

/// Distinct, saturated colours; class id N gets PALETTE[N % len].
const PALETTE: &[[u8; 3]] = &[
    [230, 25, 75],
    [60, 180, 75],
    [255, 225, 25],
    [0, 130, 200],
    [245, 130, 48],
    [145, 30, 180],
    [70, 240, 240],
    [240, 50, 230],
    [210, 245, 60],
    [250, 190, 212],
    [0, 128, 128],
    [170, 110, 40],
];

#[derive(Debug, Clone)]
struct Settings {
    source: BoxSource,
    line_thickness: u32,
    font_size: u32,
    font: Option<String>,
    show_labels: bool,
    show_confidence: bool,
    by_track: bool,
    min_confidence: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            source: BoxSource::Detections,
            line_thickness: 3,
            font_size: 14,
            font: None,
            show_labels: true,
            show_confidence: true,
            by_track: true,
            min_confidence: 0.0,
        }
    }
}

struct Glyph {
    metrics: fontdue::Metrics,
    mask: Vec<u8>,
}

struct State {
    font: fontdue::Font,
    size: f32,
    glyphs: HashMap<char, Glyph>,
    text: String,
}

impl State {
    fn glyph(&mut self, c: char) -> &Glyph {
        let (font, size) = (&self.font, self.size);
        self.glyphs.entry(c).or_insert_with(|| {
            let (metrics, mask) = font.rasterize(c, size);
            Glyph { metrics, mask }
        })
    }
}

#[derive(Default)]
pub struct DetectionOverlay {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
}

fn load_font(path: Option<&str>) -> Result<fontdue::Font, String> {
    let candidates: Vec<PathBuf> = match path {
        Some(p) => vec![PathBuf::from(p)],
        None => DEFAULT_FONTS.iter().map(PathBuf::from).collect(),
    };
    let Some(file) = candidates.iter().find(|p| p.is_file()) else {
        return Err(match path {
            Some(p) => format!("font file {p} not found"),
            None => format!(
                "no font found (looked for {}); install Debian's fonts-dejavu-core or set the font property",
                DEFAULT_FONTS.join(", ")
            ),
        });
    };
    let data = std::fs::read(file).map_err(|e| format!("cannot read font {}: {e}", file.display()))?;
    fontdue::Font::from_bytes(data, fontdue::FontSettings::default())
        .map_err(|e| format!("{} is not a usable TrueType/OpenType font: {e}", file.display()))
}

#[glib::object_subclass]
impl ObjectSubclass for DetectionOverlay {
    const NAME: &'static str = "GstDetectionOverlay";
    type Type = super::DetectionOverlay;
    type ParentType = gst_video::VideoFilter;
}

impl ObjectImpl for DetectionOverlay {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecEnum::builder_with_default("source", BoxSource::Detections)
                    .nick("Source")
                    .blurb("Which boxes to draw: the detector's (detections) or a labelled source's (ground-truth)")
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("line-thickness")
                    .nick("Line thickness")
                    .blurb("Box outline thickness in pixels")
                    .minimum(1)
                    .maximum(50)
                    .default_value(3)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("font-size")
                    .nick("Font size")
                    .blurb("Label text height in pixels")
                    .minimum(6)
                    .maximum(200)
                    .default_value(14)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("font")
                    .nick("Font")
                    .blurb("TrueType/OpenType font file for the labels (default: DejaVu Sans from fonts-dejavu-core)")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("show-labels")
                    .nick("Show labels")
                    .blurb("Draw the label above each box")
                    .default_value(true)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("show-confidence")
                    .nick("Show confidence")
                    .blurb("Add the confidence to the label")
                    .default_value(true)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("by-track")
                    .nick("Colour and label by track")
                    .blurb(
                        "Boxes with a track id (from detectiontrack, or a source's identities) get one colour per \
                            track and '#ID' in their label; otherwise the colour is per class",
                    )
                    .default_value(true)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecDouble::builder("min-confidence")
                    .nick("Minimum confidence")
                    .blurb(
                        "Draw only detections at least this confident (the detector may report more, e.g. for a \
                         JSON log scored for mAP)",
                    )
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(0.0)
                    .mutable_playing()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = self.settings.lock().unwrap();
        match pspec.name() {
            "source" => s.source = value.get().expect("type checked upstream"),
            "line-thickness" => s.line_thickness = value.get().expect("type checked upstream"),
            "font-size" => s.font_size = value.get().expect("type checked upstream"),
            "font" => s.font = value.get().expect("type checked upstream"),
            "show-labels" => s.show_labels = value.get().expect("type checked upstream"),
            "show-confidence" => s.show_confidence = value.get().expect("type checked upstream"),
            "by-track" => s.by_track = value.get().expect("type checked upstream"),
            "min-confidence" => s.min_confidence = value.get().expect("type checked upstream"),
            other => unimplemented!("property {other}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = self.settings.lock().unwrap();
        match pspec.name() {
            "source" => s.source.to_value(),
            "line-thickness" => s.line_thickness.to_value(),
            "font-size" => s.font_size.to_value(),
            "font" => s.font.to_value(),
            "show-labels" => s.show_labels.to_value(),
            "show-confidence" => s.show_confidence.to_value(),
            "by-track" => s.by_track.to_value(),
            "min-confidence" => s.min_confidence.to_value(),
            other => unimplemented!("property {other}"),
        }
    }
}

impl GstObjectImpl for DetectionOverlay {}

impl ElementImpl for DetectionOverlay {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Detection overlay",
                "Filter/Effect/Video",
                "Draws the detections (or ground truth) of each frame: boxes in a colour per class, label and confidence",
                "mobilenetdetect developers",
            )
        });
        Some(&*METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static PAD_TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let caps = gst_video::VideoCapsBuilder::new()
                .format_list(FORMATS.iter().copied())
                .build();
            vec![
                gst::PadTemplate::new("src", gst::PadDirection::Src, gst::PadPresence::Always, &caps).unwrap(),
                gst::PadTemplate::new("sink", gst::PadDirection::Sink, gst::PadPresence::Always, &caps).unwrap(),
            ]
        });
        PAD_TEMPLATES.as_ref()
    }
}

impl BaseTransformImpl for DetectionOverlay {
    const MODE: gst_base::subclass::BaseTransformMode = gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = false;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let s = self.settings.lock().unwrap().clone();
        let font =
            load_font(s.font.as_deref()).map_err(|e| gst::error_msg!(gst::ResourceError::OpenRead, ["{}", e]))?;
        gst::debug!(CAT, imp = self, "font loaded, {} px", s.font_size);
        *self.state.lock().unwrap() = Some(State {
            font,
            size: s.font_size as f32,
            glyphs: HashMap::new(),
            text: String::with_capacity(64),
        });
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        *self.state.lock().unwrap() = None;
        Ok(())
    }
}

impl VideoFilterImpl for DetectionOverlay {
    fn transform_frame_ip(
        &self,
        frame: &mut gst_video::VideoFrameRef<&mut gst::BufferRef>,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let s = self.settings.lock().unwrap().clone();
        let mut guard = self.state.lock().unwrap();
        let state = guard.as_mut().ok_or(gst::FlowError::Flushing)?;
        // Copy the boxes out first: the frame's buffer is borrowed for drawing.
        let size = (frame.width(), frame.height());
        let found: Vec<OwnedBox> = boxes(frame.buffer(), s.source, size)
            .map(|b| b.to_owned_box())
            .filter(|b| s.source != BoxSource::Detections || b.confidence >= s.min_confidence)
            .collect();
        if found.is_empty() {
            return Ok(gst::FlowSuccess::Ok);
        }
        let mut canvas = Canvas::new(frame).ok_or(gst::FlowError::NotNegotiated)?;
        let t = s.line_thickness as i32;
        for OwnedBox {
            label,
            class_id,
            confidence,
            rect: (x, y, w, h),
            track_id,
        } in &found
        {
            let track = track_id.filter(|_| s.by_track);
            let colour = Colour::new(match track {
                // A stride through the palette, so consecutive ids get different colours.
                Some(id) => PALETTE[(id.wrapping_mul(7) % PALETTE.len() as u64) as usize],
                None => PALETTE[*class_id as usize % PALETTE.len()],
            });
            let (x0, y0, x1, y1) = (*x as i32, *y as i32, (*x + *w) as i32, (*y + *h) as i32);
            canvas.rect_outline(x0, y0, x1, y1, t, colour);
            if !s.show_labels {
                continue;
            }
            state.text.clear();
            if let Some(id) = track {
                let _ = write!(state.text, "#{id} ");
            }
            state.text.push_str(label);
            if s.show_confidence && s.source == BoxSource::Detections {
                let _ = write!(state.text, " {:.2}", confidence);
            }
            // Tag: filled with the class colour above the box (inside it when at the top edge), text in black
            // or white, whichever reads better on that colour.
            let text: Vec<char> = state.text.chars().collect();
            let width: f32 = text.iter().map(|c| state.glyph(*c).metrics.advance_width).sum();
            let line = state.size.ceil() as i32 + 4;
            let tag_y = if y0 - line >= 0 { y0 - line } else { y0 };
            canvas.fill_rect(x0, tag_y, x0 + width.ceil() as i32 + 6, tag_y + line, colour);
            let luminance = 0.299 * colour.rgb[0] as f32 + 0.587 * colour.rgb[1] as f32 + 0.114 * colour.rgb[2] as f32;
            let ink = Colour::new(if luminance > 140.0 { [0, 0, 0] } else { [255, 255, 255] });
            let baseline = tag_y + 2 + (state.size * 0.8).round() as i32;
            let mut pen = x0 as f32 + 3.0;
            for c in text {
                let g = state.glyph(c);
                let gx = (pen + g.metrics.xmin as f32).round() as i32;
                let gy = baseline - g.metrics.height as i32 - g.metrics.ymin;
                canvas.blend_mask(gx, gy, &g.mask, g.metrics.width, ink);
                pen += g.metrics.advance_width;
            }
        }
        Ok(gst::FlowSuccess::Ok)
    }
}
