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

/// The first `n` samples as one batch on `device`: images [n, 3, size, size] and their targets.
pub fn sample_batch(
    n: usize,
    size: usize,
    device: &burn::tensor::Device,
) -> (burn::tensor::Tensor<4>, Vec<Vec<Target>>) {
    let (mut pixels, mut targets) = (Vec::new(), Vec::new());
    for i in 0..n {
        let (img, t) = sample(i, size);
        pixels.extend(img);
        targets.push(t);
    }
    let data = burn::tensor::TensorData::new(pixels, [n, 3, size, size]);
    (burn::tensor::Tensor::from_data(data, device), targets)
}

/// A step that trains the whole network at `lr`.
pub fn full_step(lr: f64) -> mobilenet_trainer::step::StepOptions {
    mobilenet_trainer::step::StepOptions {
        lr,
        backbone_lr: lr,
        frozen_backbone: false,
    }
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
            pts: None,
            reviewed: false,
            filename: format!("{id}.jpg"),
            width: size as u32,
            height: size as u32,
            objects: vec![VocObject {
                review: None,
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

/// Writes a Pascal VOC set of `n` images (`w` x `h`) with 1 to 3 objects each, drawn from `seed`: red discs,
/// blue squares and green triangles of varied sizes on textured backgrounds (gradients, stripes, noise), with
/// exact boxes. Different seeds give held-out sets.
pub fn write_shapes_voc(dir: &std::path::Path, n: usize, seed: u64, w: u32, h: u32) {
    use detection_common::voc::{Annotation, VocObject, write_annotation};
    for sub in ["Annotations", "JPEGImages"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    std::fs::write(dir.join("labels.txt"), "disc\nsquare\ntriangle\n").unwrap();
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut rnd = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32
    };
    let names = ["disc", "square", "triangle"];
    for i in 0..n {
        let base = [rnd() * 200.0, rnd() * 200.0, rnd() * 200.0];
        let (gx, gy, stripes) = (rnd() * 2.0 - 1.0, rnd() * 2.0 - 1.0, 4.0 + rnd() * 20.0);
        let mut img = image::RgbImage::from_fn(w, h, |x, y| {
            let t = (x as f32 * gx + y as f32 * gy) / w as f32;
            let s = if ((x as f32 + y as f32 * 0.5) / stripes) as i32 % 2 == 0 {
                25.0
            } else {
                0.0
            };
            image::Rgb(std::array::from_fn(|c| {
                (base[c] + 40.0 * t + s).clamp(0.0, 255.0) as u8
            }))
        });
        for p in img.pixels_mut() {
            let noise = (rnd() - 0.5) * 30.0;
            *p = image::Rgb(p.0.map(|v| (v as f32 + noise).clamp(0.0, 255.0) as u8));
        }
        let mut objects = Vec::new();
        for _ in 0..1 + (rnd() * 3.0) as usize {
            let class = (rnd() * 3.0) as usize % 3;
            let side = (0.18 + 0.3 * rnd()) * h as f32;
            let (x0, y0) = (rnd() * (w as f32 - side), rnd() * (h as f32 - side));
            let colour = [[220u8, 30, 30], [30, 60, 220], [30, 190, 40]][class];
            let (cx, cy, r) = (x0 + side / 2.0, y0 + side / 2.0, side / 2.0);
            for y in y0 as u32..(y0 + side) as u32 {
                for x in x0 as u32..(x0 + side) as u32 {
                    let (px, py) = (x as f32 + 0.5, y as f32 + 0.5);
                    let inside = match class {
                        0 => (px - cx).powi(2) + (py - cy).powi(2) <= r * r,
                        1 => true,
                        // Apex at the top centre, base along the bottom edge.
                        _ => (px - cx).abs() <= (py - y0) / side * r,
                    };
                    if inside {
                        img.put_pixel(x, y, image::Rgb(colour));
                    }
                }
            }
            objects.push(VocObject {
                review: None,
                name: names[class].into(),
                xmin: x0.floor(),
                ymin: y0.floor(),
                xmax: (x0 + side).floor(),
                ymax: (y0 + side).floor(),
                difficult: false,
                confidence: None,
            });
        }
        let id = format!("shapes-{seed}-{i:04}");
        img.save(dir.join("JPEGImages").join(format!("{id}.jpg"))).unwrap();
        let a = Annotation {
            pts: None,
            reviewed: false,
            filename: format!("{id}.jpg"),
            width: w,
            height: h,
            objects,
        };
        std::fs::write(dir.join("Annotations").join(format!("{id}.xml")), write_annotation(&a)).unwrap();
    }
}

/// An ONNX Runtime session on `model` (the library scripts/setup fetched).
pub fn onnx_session(model: &[u8]) -> ort::session::Session {
    let env = detection_inference::runtime::environment().expect("ONNX Runtime (scripts/setup)");
    ort::session::Session::builder(env)
        .unwrap()
        .commit_from_memory(model)
        .unwrap()
}

/// Exit code (-1 when killed by a signal) and everything the command printed, stdout first.
pub fn output(c: &mut std::process::Command) -> (i32, String) {
    let o = c.output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

/// `mobilenet-trainer ARGS`: its exit code and everything it printed.
pub fn trainer(args: &[&str]) -> (i32, String) {
    output(std::process::Command::new(env!("CARGO_BIN_EXE_mobilenet-trainer")).args(args))
}

/// A fresh folder under the system's temporary one, named after the test binary's `prefix`, `name` and the process.
pub fn temp_dir(prefix: &str, name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("{prefix}-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The largest absolute difference between two equally long lists.
pub fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max)
}

/// A `side`x`side` RGB image for comparing imported networks with their originals, deterministic: red and green
/// gradients, the blue channel from `blue(x, y)`, and three flat people-sized rectangles.
pub fn import_test_image(side: usize, blue: impl Fn(usize, usize) -> u8) -> Vec<u8> {
    let mut rgb = vec![0u8; side * side * 3];
    for y in 0..side {
        for x in 0..side {
            let mut px = [(x * 255 / side) as u8, (y * 255 / side) as u8, blue(x, y)];
            for (i, (x0, y0, w, h)) in [(40, 60, 40, 120), (150, 90, 50, 150), (230, 30, 30, 80)]
                .iter()
                .enumerate()
            {
                if (*x0..x0 + w).contains(&x) && (*y0..y0 + h).contains(&y) {
                    px = [[200, 40, 40], [30, 30, 30], [240, 240, 200]][i];
                }
            }
            rgb[(y * side + x) * 3..(y * side + x) * 3 + 3].copy_from_slice(&px);
        }
    }
    rgb
}
