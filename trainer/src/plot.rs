//! PNG charts: training loss and validation mAP per epoch (`train` writes `OUT/metrics.png`), and precision /
//! recall curves per class (`eval --pr-curve FILE`). Text uses the system's DejaVu Sans (fonts-dejavu-core,
//! installed by scripts/setup).

use image::ImageEncoder;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};
use std::path::Path;
use std::sync::OnceLock;

const FONT_PATHS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
];

/// Registers the font once per process; plotters keeps a `'static` reference.
fn font() -> Result<(), String> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            let bytes = FONT_PATHS
                .iter()
                .find_map(|p| std::fs::read(p).ok())
                .ok_or_else(|| format!("no DejaVu Sans font found (looked in {})", FONT_PATHS.join(", ")))?;
            register_font("sans-serif", FontStyle::Normal, Box::leak(bytes.into_boxed_slice()))
                .map_err(|_| "DejaVu Sans could not be read as a font".to_string())
        })
        .clone()
}

fn err(path: &Path) -> impl Fn(String) -> String + '_ {
    move |e| format!("cannot draw {}: {e}", path.display())
}

/// Draws a `width` x `height` chart in memory and writes it as a PNG through the project's atomic write: a
/// viewer never sees half a file.
fn draw_atomically(
    path: &Path,
    (width, height): (u32, u32),
    draw: impl FnOnce(DrawingArea<BitMapBackend<'_>, Shift>) -> Result<(), String>,
) -> Result<(), String> {
    let mut rgb = vec![0u8; width as usize * height as usize * 3];
    draw(BitMapBackend::with_buffer(&mut rgb, (width, height)).into_drawing_area())?;
    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new(&mut png)
        .write_image(&rgb, width, height, image::ExtendedColorType::Rgb8)
        .map_err(|e| format!("cannot encode {}: {e}", path.display()))?;
    detection_common::files::write_atomically(path, &png).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Loss (left axis) and validation mAP@0.5 (right axis) per epoch, epochs numbered from 1.
pub fn metrics_chart(path: &Path, loss: &[(usize, f32)], map: &[(usize, f32)]) -> Result<(), String> {
    font().map_err(err(path))?;
    draw_atomically(path, (800, 450), |root| {
        let e = |x: &dyn std::fmt::Display| format!("cannot draw {}: {x}", path.display());
        root.fill(&WHITE).map_err(|x| e(&x))?;
        let epochs = loss.iter().map(|p| p.0).max().unwrap_or(1).max(2);
        let max_loss = loss.iter().map(|p| p.1).fold(0.0f32, f32::max).max(1e-3) * 1.05;
        let mut chart = ChartBuilder::on(&root)
            .caption("training loss and validation mAP@0.5", ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(55)
            .right_y_label_area_size(55)
            .build_cartesian_2d(1usize..epochs, 0f32..max_loss)
            .map_err(|x| e(&x))?
            .set_secondary_coord(1usize..epochs, 0f32..1f32);
        chart
            .configure_mesh()
            .x_desc("epoch")
            .y_desc("loss")
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(|x| e(&x))?;
        chart
            .configure_secondary_axes()
            .y_desc("mAP@0.5")
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(|x| e(&x))?;
        chart
            .draw_series(LineSeries::new(loss.iter().copied(), BLUE.stroke_width(2)))
            .map_err(|x| e(&x))?
            .label("train loss")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE.stroke_width(2)));
        chart
            .draw_secondary_series(LineSeries::new(map.iter().copied(), RED.stroke_width(2)))
            .map_err(|x| e(&x))?
            .label("val mAP@0.5")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED.stroke_width(2)));
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 14))
            .draw()
            .map_err(|x| e(&x))?;
        root.present().map_err(|x| e(&x))
    })
}

/// A class's label, its AP and its (recall, precision) points.
pub type ClassCurve = (String, f32, Vec<(f32, f32)>);

/// Precision against recall, one line per class, AP in the legend.
pub fn pr_chart(path: &Path, classes: &[ClassCurve]) -> Result<(), String> {
    font().map_err(err(path))?;
    draw_atomically(path, (700, 600), |root| {
        let e = |x: &dyn std::fmt::Display| format!("cannot draw {}: {x}", path.display());
        root.fill(&WHITE).map_err(|x| e(&x))?;
        let mut chart = ChartBuilder::on(&root)
            .caption("precision / recall (IoU 0.5)", ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(0f32..1f32, 0f32..1.02f32)
            .map_err(|x| e(&x))?;
        chart
            .configure_mesh()
            .x_desc("recall")
            .y_desc("precision")
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(|x| e(&x))?;
        for (i, (label, ap, curve)) in classes.iter().enumerate() {
            let colour = Palette99::pick(i).to_rgba();
            chart
                .draw_series(LineSeries::new(curve.iter().copied(), colour.stroke_width(2)))
                .map_err(|x| e(&x))?
                .label(format!("{label} (AP {ap:.3})"))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 14))
            .draw()
            .map_err(|x| e(&x))?;
        root.present().map_err(|x| e(&x))
    })
}
