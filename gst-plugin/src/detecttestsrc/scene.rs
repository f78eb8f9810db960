//! The synthetic scene: a seeded textured background and moving sign-like objects, rendered to RGB.

/// The classes the source can draw, in class-id order (id = index + 1; 0 is the background).
pub const CLASSES: &[&str] = &["stop", "yield", "speed-limit", "pedestrian", "parking"];

/// A small deterministic generator (SplitMix64), so a seed always gives the same clip.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    pub fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.unit()
    }
}

/// What the scene looks like; every field is a property of the element.
#[derive(Debug, Clone, PartialEq)]
pub struct SceneConfig {
    pub seed: u64,
    /// Class ids (1-based, into CLASSES) that may appear.
    pub classes: Vec<u32>,
    pub num_objects: u32,
    pub min_size: u32,
    pub max_size: u32,
    /// Maximum speed in pixels per frame.
    pub speed: f32,
    /// Per-pixel noise amplitude, 0..1.
    pub noise: f32,
}

#[derive(Debug, Clone)]
struct Object {
    /// The object's identity: a bounce may turn it into another sign, which is another object.
    id: u64,
    class_id: u32,
    size: f32,
    x: f32,
    y: f32,
    vx: f32,
    vy: f32,
}

/// A ground-truth box in pixels, clipped to the frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TruthBox {
    /// Stable while the object lives (from 1; a bounce into another class makes a new object).
    pub track_id: u64,
    pub class_id: u32,
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

pub struct Scene {
    config: SceneConfig,
    classes: Vec<u32>,
    width: u32,
    height: u32,
    background: Vec<u8>,
    objects: Vec<Object>,
    rng: Rng,
    next_id: u64,
}

impl Scene {
    pub fn new(config: SceneConfig, width: u32, height: u32) -> Self {
        let mut rng = Rng::new(config.seed);
        let background = render_background(&mut rng, width, height);
        let classes = if config.classes.is_empty() {
            (1..=CLASSES.len() as u32).collect()
        } else {
            config.classes.clone()
        };
        let objects: Vec<Object> = (0..config.num_objects)
            .map(|i| {
                let size = rng
                    .range(config.min_size as f32, config.max_size.max(config.min_size) as f32)
                    .min(width.min(height) as f32);
                let angle = rng.range(0.0, std::f32::consts::TAU);
                let speed = rng.range(0.3, 1.0) * config.speed;
                Object {
                    id: i as u64 + 1,
                    // Cycle through the classes so every class shows up in a clip with enough objects.
                    class_id: classes[(i as usize + rng.next_u64() as usize % classes.len()) % classes.len()],
                    size,
                    x: rng.range(0.0, (width as f32 - size).max(0.0)),
                    y: rng.range(0.0, (height as f32 - size).max(0.0)),
                    vx: speed * angle.cos(),
                    vy: speed * angle.sin(),
                }
            })
            .collect();
        Scene {
            config,
            classes,
            width,
            height,
            background,
            next_id: objects.len() as u64 + 1,
            objects,
            rng,
        }
    }

    /// Renders the current frame into `rgb` (width * height * 3) and returns the ground truth, then moves on.
    pub fn render(&mut self, rgb: &mut [u8], truth: &mut Vec<TruthBox>) {
        let (w, h) = (self.width as usize, self.height as usize);
        rgb.copy_from_slice(&self.background);
        truth.clear();
        for o in &self.objects {
            draw_sign(rgb, w, h, o.class_id, o.x, o.y, o.size);
            let (x0, y0) = (o.x.max(0.0).round() as u32, o.y.max(0.0).round() as u32);
            let x1 = ((o.x + o.size).round() as u32).min(self.width);
            let y1 = ((o.y + o.size).round() as u32).min(self.height);
            if x1 > x0 && y1 > y0 {
                truth.push(TruthBox {
                    track_id: o.id,
                    class_id: o.class_id,
                    x: x0,
                    y: y0,
                    width: x1 - x0,
                    height: y1 - y0,
                });
            }
        }
        if self.config.noise > 0.0 {
            let amp = self.config.noise * 64.0;
            let mut state = self.rng.next_u64();
            for v in rgb.iter_mut() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let n = ((state >> 56) as f32 / 255.0 - 0.5) * 2.0 * amp;
                *v = (*v as f32 + n).clamp(0.0, 255.0) as u8;
            }
        }
        // Move, bouncing off the frame edges. A bounce turns the object into another sign of another size,
        // so long clips show every class at many sizes.
        let (fw, fh) = (self.width as f32, self.height as f32);
        let (min, max) = (
            self.config.min_size as f32,
            self.config.max_size.max(self.config.min_size) as f32,
        );
        for o in &mut self.objects {
            o.x += o.vx;
            o.y += o.vy;
            let mut bounced = false;
            if o.x < 0.0 || o.x + o.size > fw {
                o.vx = -o.vx;
                bounced = true;
            }
            if o.y < 0.0 || o.y + o.size > fh {
                o.vy = -o.vy;
                bounced = true;
            }
            if bounced {
                let class_id = self.classes[self.rng.next_u64() as usize % self.classes.len()];
                // Another sign is another object; the same sign (resized) stays the same object.
                if class_id != o.class_id {
                    o.id = self.next_id;
                    self.next_id += 1;
                }
                o.class_id = class_id;
                o.size = self.rng.range(min, max).min(fw.min(fh));
                o.x = o.x.clamp(0.0, (fw - o.size).max(0.0));
                o.y = o.y.clamp(0.0, (fh - o.size).max(0.0));
            }
        }
    }
}

fn render_background(rng: &mut Rng, width: u32, height: u32) -> Vec<u8> {
    let (w, h) = (width as usize, height as usize);
    let mut bg = vec![0u8; w * h * 3];
    // Two-colour gradient, stripes of a random frequency and direction, then blocks ("buildings", "cars").
    let c0 = [rng.range(30.0, 200.0), rng.range(30.0, 200.0), rng.range(30.0, 200.0)];
    let c1 = [rng.range(30.0, 200.0), rng.range(30.0, 200.0), rng.range(30.0, 200.0)];
    let (fx, fy) = (rng.range(0.0, 0.15), rng.range(0.0, 0.15));
    let stripe = rng.range(5.0, 30.0);
    for y in 0..h {
        for x in 0..w {
            let t = y as f32 / h.max(1) as f32;
            let s = ((x as f32 * fx + y as f32 * fy).sin() * stripe).round();
            let p = &mut bg[(y * w + x) * 3..(y * w + x) * 3 + 3];
            for c in 0..3 {
                p[c] = (c0[c] * (1.0 - t) + c1[c] * t + s).clamp(0.0, 255.0) as u8;
            }
        }
    }
    for _ in 0..rng.range(4.0, 12.0) as usize {
        let (bw, bh) = (
            rng.range(0.05, 0.35) * width as f32,
            rng.range(0.05, 0.35) * height as f32,
        );
        let (bx, by) = (rng.range(0.0, width as f32 - bw), rng.range(0.0, height as f32 - bh));
        let col = [
            rng.range(0.0, 255.0) as u8,
            rng.range(0.0, 255.0) as u8,
            rng.range(0.0, 255.0) as u8,
        ];
        for y in by as usize..((by + bh) as usize).min(h) {
            for x in bx as usize..((bx + bw) as usize).min(w) {
                bg[(y * w + x) * 3..(y * w + x) * 3 + 3].copy_from_slice(&col);
            }
        }
    }
    bg
}

const RED: [u8; 3] = [200, 24, 32];
const WHITE: [u8; 3] = [245, 245, 245];
const BLUE: [u8; 3] = [20, 70, 190];
const BLACK: [u8; 3] = [15, 15, 15];

/// Colour of a class's sign at (u, v) in [-1, 1]^2, or None outside the sign.
fn sign_pixel(class_id: u32, u: f32, v: f32) -> Option<[u8; 3]> {
    let (au, av) = (u.abs(), v.abs());
    match CLASSES.get(class_id as usize - 1).copied() {
        Some("stop") => {
            // Octagon with a white bar.
            (au <= 1.0 && av <= 1.0 && au + av <= 1.42).then_some(if av < 0.16 && au < 0.62 { WHITE } else { RED })
        }
        Some("yield") => {
            // Point-down triangle, red border, white inside.
            let half = (1.0 - v) * 0.5;
            (au <= half).then(|| {
                if au <= half - 0.28 && v > -0.78 && v < 0.55 {
                    WHITE
                } else {
                    RED
                }
            })
        }
        Some("speed-limit") => {
            // Red ring, white disc, two black digits.
            let r = (u * u + v * v).sqrt();
            (r <= 1.0).then(|| {
                if r > 0.74 {
                    RED
                } else if av < 0.4
                    && ((u > -0.45 && u < -0.12) || (u > 0.08 && u < 0.42))
                    && !(av < 0.25 && (u.abs() - 0.27).abs() < 0.07)
                {
                    BLACK
                } else {
                    WHITE
                }
            })
        }
        Some("pedestrian") => {
            // Blue square, white triangle, black figure.
            (au <= 1.0 && av <= 1.0).then(|| {
                let in_triangle = au <= (v + 0.8) * 0.55 && v < 0.75;
                let head = (u * u + (v + 0.3) * (v + 0.3)).sqrt() < 0.13;
                let body = au < 0.06 && v > -0.2 && v < 0.55;
                if head || (body && in_triangle) {
                    BLACK
                } else if in_triangle {
                    WHITE
                } else {
                    BLUE
                }
            })
        }
        Some("parking") => {
            // Blue square with a white "P".
            (au <= 1.0 && av <= 1.0).then(|| {
                let stem = u > -0.45 && u < -0.2 && av < 0.7;
                let bowl_r = ((u + 0.05) * (u + 0.05) + (v + 0.3) * (v + 0.3)).sqrt();
                let bowl = bowl_r > 0.17 && bowl_r < 0.4 && u > -0.3;
                if stem || bowl { WHITE } else { BLUE }
            })
        }
        _ => None,
    }
}

fn draw_sign(rgb: &mut [u8], w: usize, h: usize, class_id: u32, x: f32, y: f32, size: f32) {
    let (x0, y0) = (x.max(0.0) as usize, y.max(0.0) as usize);
    let (x1, y1) = (((x + size).ceil() as usize).min(w), ((y + size).ceil() as usize).min(h));
    let half = size * 0.5;
    for py in y0..y1 {
        let v = (py as f32 + 0.5 - y - half) / half;
        for px in x0..x1 {
            let u = (px as f32 + 0.5 - x - half) / half;
            if let Some(c) = sign_pixel(class_id, u, v) {
                rgb[(py * w + px) * 3..(py * w + px) * 3 + 3].copy_from_slice(&c);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(seed: u64) -> SceneConfig {
        SceneConfig {
            seed,
            classes: vec![],
            num_objects: 4,
            min_size: 20,
            max_size: 40,
            speed: 3.0,
            noise: 0.1,
        }
    }

    #[test]
    fn same_seed_same_clip_and_boxes_stay_inside() {
        let (mut a, mut b) = (Scene::new(config(7), 160, 120), Scene::new(config(7), 160, 120));
        let mut c = Scene::new(config(8), 160, 120);
        let (mut fa, mut fb, mut fc) = (vec![0; 160 * 120 * 3], vec![0; 160 * 120 * 3], vec![0; 160 * 120 * 3]);
        let (mut ta, mut tb, mut tc) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..50 {
            a.render(&mut fa, &mut ta);
            b.render(&mut fb, &mut tb);
            c.render(&mut fc, &mut tc);
            assert_eq!(fa, fb);
            assert_eq!(ta, tb);
            assert_eq!(ta.len(), 4);
            for t in &ta {
                assert!(t.x + t.width <= 160 && t.y + t.height <= 120 && t.width >= 19, "{t:?}");
            }
        }
        assert_ne!(fa, fc, "another seed gives another clip");
    }

    #[test]
    fn every_class_draws_something_inside_its_box() {
        for id in 1..=CLASSES.len() as u32 {
            let mut rgb = vec![0u8; 64 * 64 * 3];
            draw_sign(&mut rgb, 64, 64, id, 10.0, 10.0, 40.0);
            let drawn = rgb.chunks(3).filter(|p| p != &[0, 0, 0]).count();
            assert!(drawn > 40 * 40 / 3, "class {id} covers {drawn} pixels");
            assert!(
                rgb[(5 * 64 + 5) * 3..(5 * 64 + 5) * 3 + 3] == [0, 0, 0],
                "nothing outside the box"
            );
        }
    }
}
