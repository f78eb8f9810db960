use super::scene::{CLASSES, Scene, SceneConfig, TruthBox};
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::base_src::CreateSuccess;
use gst_base::subclass::prelude::*;
use gst_video::VideoFormat;
use gst_video::prelude::*;
use std::sync::{LazyLock, Mutex};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "detecttestsrc",
        gst::DebugColorFlags::empty(),
        Some("Synthetic labelled objects"),
    )
});

const FORMATS: &[VideoFormat] = &[
    VideoFormat::Rgbx,
    VideoFormat::Bgrx,
    VideoFormat::Rgba,
    VideoFormat::Bgra,
    VideoFormat::Rgb,
    VideoFormat::Bgr,
    VideoFormat::Nv12,
    VideoFormat::I420,
];

#[derive(Debug, Clone)]
struct Settings {
    seed: u64,
    num_objects: u32,
    classes: String,
    min_size: u32,
    max_size: u32,
    speed: f32,
    noise: f32,
    is_live: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            seed: 0,
            num_objects: 3,
            classes: String::new(),
            min_size: 48,
            max_size: 128,
            speed: 4.0,
            noise: 0.05,
            is_live: false,
        }
    }
}

impl Settings {
    fn scene_config(&self) -> Result<SceneConfig, String> {
        let classes = self
            .classes
            .split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(|c| {
                CLASSES
                    .iter()
                    .position(|k| k.eq_ignore_ascii_case(c))
                    .map(|i| i as u32 + 1)
                    .ok_or_else(|| format!("unknown class '{c}' (known: {})", CLASSES.join(", ")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if self.min_size > self.max_size {
            return Err(format!(
                "min-size {} is larger than max-size {}",
                self.min_size, self.max_size
            ));
        }
        Ok(SceneConfig {
            seed: self.seed,
            classes,
            num_objects: self.num_objects,
            min_size: self.min_size,
            max_size: self.max_size,
            speed: self.speed,
            noise: self.noise,
        })
    }
}

struct State {
    info: gst_video::VideoInfo,
    scene: Scene,
    rgb: Vec<u8>,
    truth: Vec<TruthBox>,
    frame: u64,
}

#[derive(Default)]
pub struct DetectTestSrc {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
}

fn write_frame(rgb: &[u8], frame: &mut gst_video::VideoFrameRef<&mut gst::BufferRef>) -> Result<(), glib::BoolError> {
    let (w, h) = (frame.width() as usize, frame.height() as usize);
    let format = frame.format();
    let strides: Vec<usize> = frame.plane_stride().iter().map(|s| *s as usize).collect();
    let px = |x: usize, y: usize| {
        let i = (y * w + x) * 3;
        [rgb[i] as f32, rgb[i + 1] as f32, rgb[i + 2] as f32]
    };
    let pixel_format = crate::video::pixel_format(format).ok_or_else(|| glib::bool_error!("unsupported format"))?;
    match pixel_format.packed() {
        None => {
            // RGB -> YUV in the frame's colorimetry (matrix, full or limited range).
            let colorimetry = crate::video::colorimetry(frame.info());
            {
                let luma = frame.plane_data_mut(0)?;
                for y in 0..h {
                    for x in 0..w {
                        luma[y * strides[0] + x] = colorimetry.to_yuv(px(x, y))[0];
                    }
                }
            }
            let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
            // Chroma of each 2x2 block from its average colour.
            let mut uv = vec![(0u8, 0u8); cw * ch];
            for by in 0..ch {
                for bx in 0..cw {
                    let mut acc = [0f32; 3];
                    let mut n = 0.0;
                    for (x, y) in [
                        (2 * bx, 2 * by),
                        (2 * bx + 1, 2 * by),
                        (2 * bx, 2 * by + 1),
                        (2 * bx + 1, 2 * by + 1),
                    ] {
                        if x < w && y < h {
                            let p = px(x, y);
                            for c in 0..3 {
                                acc[c] += p[c];
                            }
                            n += 1.0;
                        }
                    }
                    let [_, u, v] = colorimetry.to_yuv(acc.map(|v| v / n));
                    uv[by * cw + bx] = (u, v);
                }
            }
            if format == VideoFormat::Nv12 {
                let plane = frame.plane_data_mut(1)?;
                for by in 0..ch {
                    for bx in 0..cw {
                        let (u, v) = uv[by * cw + bx];
                        plane[by * strides[1] + 2 * bx] = u;
                        plane[by * strides[1] + 2 * bx + 1] = v;
                    }
                }
            } else {
                for (i, pick) in [(1u32, 0usize), (2, 1)] {
                    let plane = frame.plane_data_mut(i)?;
                    for by in 0..ch {
                        for bx in 0..cw {
                            let (u, v) = uv[by * cw + bx];
                            plane[by * strides[i as usize] + bx] = if pick == 0 { u } else { v };
                        }
                    }
                }
            }
        }
        Some((bpp, order)) => {
            let alpha = pixel_format.alpha();
            let plane = frame.plane_data_mut(0)?;
            for y in 0..h {
                let row = &mut plane[y * strides[0]..y * strides[0] + w * bpp];
                for (x, p) in row.chunks_exact_mut(bpp).enumerate() {
                    let i = (y * w + x) * 3;
                    for c in 0..3 {
                        p[order[c]] = rgb[i + c];
                    }
                    if let Some(a) = alpha {
                        p[a] = 255;
                    }
                }
            }
        }
    }
    Ok(())
}

#[glib::object_subclass]
impl ObjectSubclass for DetectTestSrc {
    const NAME: &'static str = "GstDetectTestSrc";
    type Type = super::DetectTestSrc;
    type ParentType = gst_base::PushSrc;
}

impl ObjectImpl for DetectTestSrc {
    fn constructed(&self) {
        self.parent_constructed();
        let obj = self.obj();
        obj.set_format(gst::Format::Time);
        obj.set_live(Settings::default().is_live);
    }

    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecUInt64::builder("seed")
                    .nick("Seed")
                    .blurb("Seed of the clip: background, objects, motion and noise are the same for the same seed")
                    .default_value(0)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("num-objects")
                    .nick("Objects")
                    .blurb("Number of moving objects")
                    .minimum(0)
                    .maximum(64)
                    .default_value(3)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("classes")
                    .nick("Classes")
                    .blurb("Comma-separated classes to draw among stop, yield, speed-limit, pedestrian, parking (empty: all). Class ids follow that list from 1")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("min-size")
                    .nick("Minimum size")
                    .blurb("Smallest object size in pixels")
                    .minimum(4)
                    .maximum(4096)
                    .default_value(48)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("max-size")
                    .nick("Maximum size")
                    .blurb("Largest object size in pixels")
                    .minimum(4)
                    .maximum(4096)
                    .default_value(128)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecFloat::builder("speed")
                    .nick("Speed")
                    .blurb("Maximum object speed in pixels per frame")
                    .minimum(0.0)
                    .maximum(100.0)
                    .default_value(4.0)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecFloat::builder("noise")
                    .nick("Noise")
                    .blurb("Per-pixel noise amplitude, 0 (none) to 1")
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(0.05)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("is-live")
                    .nick("Is live")
                    .blurb("Act as a live source (frames paced by the clock, like a camera)")
                    .default_value(false)
                    .mutable_ready()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = self.settings.lock().unwrap();
        match pspec.name() {
            "seed" => s.seed = value.get().expect("type checked upstream"),
            "num-objects" => s.num_objects = value.get().expect("type checked upstream"),
            "classes" => {
                s.classes = value
                    .get::<Option<String>>()
                    .expect("type checked upstream")
                    .unwrap_or_default()
            }
            "min-size" => s.min_size = value.get().expect("type checked upstream"),
            "max-size" => s.max_size = value.get().expect("type checked upstream"),
            "speed" => s.speed = value.get().expect("type checked upstream"),
            "noise" => s.noise = value.get().expect("type checked upstream"),
            "is-live" => {
                s.is_live = value.get().expect("type checked upstream");
                let live = s.is_live;
                drop(s);
                self.obj().set_live(live);
            }
            other => unimplemented!("property {other}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = self.settings.lock().unwrap();
        match pspec.name() {
            "seed" => s.seed.to_value(),
            "num-objects" => s.num_objects.to_value(),
            "classes" => s.classes.to_value(),
            "min-size" => s.min_size.to_value(),
            "max-size" => s.max_size.to_value(),
            "speed" => s.speed.to_value(),
            "noise" => s.noise.to_value(),
            "is-live" => s.is_live.to_value(),
            other => unimplemented!("property {other}"),
        }
    }
}

impl GstObjectImpl for DetectTestSrc {}

impl ElementImpl for DetectTestSrc {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Labelled test source",
                "Source/Video",
                "Moving sign-like objects on textured backgrounds, with ground-truth boxes as region-of-interest metadata",
                "mobilenetdetect developers",
            )
        });
        Some(&*METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static PAD_TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let caps = gst_video::VideoCapsBuilder::new()
                .format_list(FORMATS.iter().copied())
                .width_range(16..=8192)
                .height_range(16..=8192)
                .framerate_range(gst::Fraction::new(1, 1)..=gst::Fraction::new(300, 1))
                .build();
            vec![gst::PadTemplate::new("src", gst::PadDirection::Src, gst::PadPresence::Always, &caps).unwrap()]
        });
        PAD_TEMPLATES.as_ref()
    }
}

impl BaseSrcImpl for DetectTestSrc {
    fn fixate(&self, caps: gst::Caps) -> gst::Caps {
        let mut caps = caps;
        caps.truncate();
        {
            let caps = caps.make_mut();
            let s = caps.structure_mut(0).expect("non-empty caps");
            s.fixate_field_nearest_int("width", 640);
            s.fixate_field_nearest_int("height", 480);
            s.fixate_field_nearest_fraction("framerate", gst::Fraction::new(30, 1));
        }
        self.parent_fixate(caps)
    }

    fn set_caps(&self, caps: &gst::Caps) -> Result<(), gst::LoggableError> {
        let info = gst_video::VideoInfo::from_caps(caps).map_err(|_| gst::loggable_error!(CAT, "bad caps {caps}"))?;
        if info.fps().numer() <= 0 {
            return Err(gst::loggable_error!(CAT, "a frame rate is needed"));
        }
        let config = self
            .settings
            .lock()
            .unwrap()
            .scene_config()
            .map_err(|e| gst::loggable_error!(CAT, "{e}"))?;
        gst::debug!(CAT, imp = self, "configured for {caps}");
        let scene = Scene::new(config, info.width(), info.height());
        let rgb = vec![0; info.width() as usize * info.height() as usize * 3];
        *self.state.lock().unwrap() = Some(State {
            info,
            scene,
            rgb,
            truth: Vec::new(),
            frame: 0,
        });
        Ok(())
    }

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        // Check the settings now, so a bad value fails the state change with a clear message.
        self.settings
            .lock()
            .unwrap()
            .scene_config()
            .map_err(|e| gst::error_msg!(gst::LibraryError::Settings, ["{}", e]))?;
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        *self.state.lock().unwrap() = None;
        Ok(())
    }

    fn is_seekable(&self) -> bool {
        false
    }

    fn times(&self, buffer: &gst::BufferRef) -> (Option<gst::ClockTime>, Option<gst::ClockTime>) {
        self.live_times(buffer)
    }
}

impl PushSrcImpl for DetectTestSrc {
    fn create(&self, _buffer: Option<&mut gst::BufferRef>) -> Result<CreateSuccess, gst::FlowError> {
        let mut guard = self.state.lock().unwrap();
        let state = guard.as_mut().ok_or_else(|| {
            gst::element_imp_error!(self, gst::CoreError::Negotiation, ["no caps negotiated"]);
            gst::FlowError::NotNegotiated
        })?;
        let State {
            info,
            scene,
            rgb,
            truth,
            frame,
        } = state;
        scene.render(rgb, truth);
        let mut buffer = gst::Buffer::with_size(info.size()).map_err(|_| gst::FlowError::Error)?;
        {
            let buf = buffer.get_mut().expect("new buffer is writable");
            let fps = info.fps();
            let duration = gst::ClockTime::SECOND
                .mul_div_floor(fps.denom() as u64, fps.numer() as u64)
                .expect("valid fps");
            let pts = gst::ClockTime::SECOND
                .mul_div_floor(*frame * fps.denom() as u64, fps.numer() as u64)
                .expect("valid fps");
            buf.set_pts(pts);
            buf.set_duration(duration);
            buf.set_offset(*frame);
            {
                let mut vframe =
                    gst_video::VideoFrameRef::from_buffer_ref_writable(buf, info).map_err(|_| gst::FlowError::Error)?;
                write_frame(rgb, &mut vframe).map_err(|_| gst::FlowError::Error)?;
            }
            for t in truth.iter() {
                let label = CLASSES[t.class_id as usize - 1];
                crate::roimeta::attach_ground_truth(buf, label, t.class_id, t.track_id, (t.x, t.y, t.width, t.height));
            }
        }
        *frame += 1;
        Ok(CreateSuccess::NewBuffer(buffer))
    }
}

impl DetectTestSrc {
    /// For live operation BaseSrc waits on the clock until each buffer's time.
    fn live_times(&self, buffer: &gst::BufferRef) -> (Option<gst::ClockTime>, Option<gst::ClockTime>) {
        if self.obj().is_live() {
            let start = buffer.pts();
            (start, start.zip(buffer.duration()).map(|(s, d)| s + d))
        } else {
            (None, None)
        }
    }
}
