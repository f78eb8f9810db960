//! Synthetic training images shared by the trainer's tests.
#![allow(dead_code)]

use detection_common::BBox;
use mobilenet_trainer::loss::Target;

/// A normalised image of `size` with one square of class 1 (red) or 2 (blue), and its target.
pub fn sample(i: usize, size: usize) -> (Vec<f32>, Vec<Target>) {
    let mut seed = 0x1234_5678_u64 ^ (i as u64 * 0x9E37_79B9);
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed >> 40) as f32 / (1u64 << 24) as f32
    };
    let class_id = 1 + i % 2;
    let side = (0.3 + 0.3 * rnd()) * size as f32;
    let (x0, y0) = (rnd() * (size as f32 - side), rnd() * (size as f32 - side));
    let colour = if class_id == 1 {
        [230.0, 30.0, 30.0]
    } else {
        [30.0, 30.0, 230.0]
    };
    let mut img = vec![0f32; 3 * size * size];
    for y in 0..size {
        for x in 0..size {
            let inside = (x as f32) >= x0 && (x as f32) < x0 + side && (y as f32) >= y0 && (y as f32) < y0 + side;
            for c in 0..3 {
                let v = if inside { colour[c] } else { 60.0 + 80.0 * rnd() };
                img[c * size * size + y * size + x] = (v - 127.5) / 127.5;
            }
        }
    }
    let s = size as f32;
    (
        img,
        vec![Target {
            bbox: BBox::new(x0 / s, y0 / s, (x0 + side) / s, (y0 + side) / s),
            class_id,
        }],
    )
}

/// Writes a small Pascal VOC dataset of `n` images (one square each, labels red and blue) into `dir`.
pub fn write_voc(dir: &std::path::Path, n: usize, size: usize) {
    use detection_common::voc::{Annotation, VocObject, write_annotation};
    for sub in ["Annotations", "JPEGImages"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    std::fs::write(dir.join("labels.txt"), "BACKGROUND\nred\nblue\n").unwrap();
    for i in 0..n {
        let (pixels, targets) = sample(i, size);
        let img = image::RgbImage::from_fn(size as u32, size as u32, |x, y| {
            let at = |c: usize| {
                ((pixels[c * size * size + y as usize * size + x as usize] * 127.5) + 127.5)
                    .round()
                    .clamp(0.0, 255.0) as u8
            };
            image::Rgb([at(0), at(1), at(2)])
        });
        let id = format!("img-{i:04}");
        img.save(dir.join("JPEGImages").join(format!("{id}.jpg"))).unwrap();
        let t = targets[0];
        let s = size as f32;
        let a = Annotation {
            filename: format!("{id}.jpg"),
            width: size as u32,
            height: size as u32,
            objects: vec![VocObject {
                name: if t.class_id == 1 { "red".into() } else { "blue".into() },
                xmin: t.bbox.x0 * s,
                ymin: t.bbox.y0 * s,
                xmax: t.bbox.x1 * s,
                ymax: t.bbox.y1 * s,
                difficult: false,
                confidence: None,
            }],
        };
        std::fs::write(dir.join("Annotations").join(format!("{id}.xml")), write_annotation(&a)).unwrap();
    }
}
