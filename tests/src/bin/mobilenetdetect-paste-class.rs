//! Adds a class to a captured dataset, as a user's new labels would: pastes "no entry" road signs (a red disc
//! with a white bar, 48-96 px across) into every image of a Pascal VOC folder, clear of the boxes already there,
//! and labels them.
//!
//!   mobilenetdetect-paste-class IN OUT [--label sign] [--seed N] [--plain PLAIN]
//!
//! OUT gets the images with signs and every object (IN's labels plus the new one); PLAIN, if given, the same
//! images with IN's objects and labels only: what a model that does not know the new class is scored on.

use detection_common::labels::Labels;
use detection_common::voc::{Annotation, Dataset, Sample, Split, VocObject, write_annotation};
use image::RgbImage;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

struct Options {
    input: PathBuf,
    output: PathBuf,
    plain: Option<PathBuf>,
    label: String,
    seed: u64,
}

fn parse_args() -> Result<Options, String> {
    let mut args = std::env::args().skip(1);
    let mut positional = Vec::new();
    let (mut plain, mut label, mut seed) = (None, "sign".to_string(), 1u64);
    while let Some(a) = args.next() {
        let mut value = |flag: &str| args.next().ok_or(format!("{flag} needs a value"));
        match a.as_str() {
            "--plain" => plain = Some(PathBuf::from(value("--plain")?)),
            "--label" => label = value("--label")?,
            "--seed" => {
                let v = value("--seed")?;
                seed = v.parse().map_err(|_| format!("--seed {v}: not a number"))?;
            }
            _ if a.starts_with("--") => return Err(format!("unknown option {a}")),
            _ => positional.push(PathBuf::from(a)),
        }
    }
    let [input, output] = <[PathBuf; 2]>::try_from(positional).map_err(|_| {
        "usage: mobilenetdetect-paste-class IN OUT [--label sign] [--seed N] [--plain PLAIN]".to_string()
    })?;
    Ok(Options {
        input,
        output,
        plain,
        label,
        seed,
    })
}

/// splitmix64: a stream per image from the seed and the image's id.
struct Rng(u64);

impl Rng {
    fn for_image(seed: u64, id: &str) -> Self {
        let h = id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
        });
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ h)
    }

    fn unit(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 24) as f32
    }

    fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.unit()
    }
}

/// Share of `a`'s area that `b` covers.
fn covered(a: [f32; 4], b: [f32; 4]) -> f32 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    w * h / ((a[2] - a[0]) * (a[3] - a[1])).max(1.0)
}

/// A "no entry" sign centred in `b` (x0, y0, x1, y1): a dark rim, a red disc, a white bar; edges antialiased.
fn draw_sign(img: &mut RgbImage, b: [f32; 4]) {
    let (cx, cy, r) = ((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0, (b[2] - b[0]) / 2.0);
    let (w, h) = img.dimensions();
    for y in b[1].floor().max(0.0) as u32..(b[3].ceil() as u32).min(h) {
        for x in b[0].floor().max(0.0) as u32..(b[2].ceil() as u32).min(w) {
            let (dx, dy) = (x as f32 + 0.5 - cx, y as f32 + 0.5 - cy);
            let d = (dx * dx + dy * dy).sqrt();
            let alpha = (r - d + 0.5).clamp(0.0, 1.0);
            if alpha == 0.0 {
                continue;
            }
            let colour = if d > 0.88 * r {
                [90.0, 20.0, 25.0]
            } else if dx.abs() < 0.62 * r && dy.abs() < 0.17 * r {
                [245.0, 245.0, 245.0]
            } else {
                [205.0, 25.0, 35.0]
            };
            let p = img.get_pixel_mut(x, y);
            for (v, c) in p.0.iter_mut().zip(colour) {
                *v = (alpha * c + (1.0 - alpha) * *v as f32).round() as u8;
            }
        }
    }
}

/// One or two signs clear of `objects` (at most 10% of a sign covered by any of them, signs apart).
fn place_signs(rng: &mut Rng, objects: &[VocObject], w: f32, h: f32) -> Vec<[f32; 4]> {
    let wanted = if rng.unit() < 0.5 { 1 } else { 2 };
    let mut taken: Vec<[f32; 4]> = objects.iter().map(|o| [o.xmin, o.ymin, o.xmax, o.ymax]).collect();
    let mut signs = Vec::new();
    for _ in 0..50 {
        if signs.len() == wanted {
            break;
        }
        let side = rng.range(48.0, 96.0).min(w.min(h) / 2.0);
        let (x, y) = (rng.range(0.0, w - side), rng.range(0.0, h - side));
        let b = [x, y, x + side, y + side];
        if taken.iter().all(|t| covered(b, *t) <= 0.1 && covered(*t, b) <= 0.1) {
            taken.push(b);
            signs.push(b);
        }
    }
    signs
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    std::fs::write(path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Writes one dataset folder: images, annotations, labels and the split lists.
struct Folder {
    dir: PathBuf,
    splits: [Vec<String>; 3],
}

impl Folder {
    fn new(dir: PathBuf, labels: &Labels) -> Result<Self, String> {
        write(&dir.join("labels.txt"), labels.foreground().join("\n").as_bytes())?;
        Ok(Self {
            dir,
            splits: Default::default(),
        })
    }

    fn add(&mut self, sample: &Sample, jpeg: &[u8], annotation: &Annotation) -> Result<(), String> {
        write(&self.dir.join("JPEGImages").join(&annotation.filename), jpeg)?;
        let xml = self.dir.join("Annotations").join(format!("{}.xml", sample.id));
        write(&xml, write_annotation(annotation).as_bytes())?;
        let i = [Split::Train, Split::Val, Split::Test]
            .iter()
            .position(|s| *s == sample.split)
            .unwrap_or(0);
        self.splits[i].push(sample.id.clone());
        Ok(())
    }

    fn finish(self) -> Result<(), String> {
        let sets = self.dir.join("ImageSets/Main");
        for (name, ids) in ["train", "val", "test"].iter().zip(&self.splits) {
            write(
                &sets.join(format!("{name}.txt")),
                ids.iter().map(|i| format!("{i}\n")).collect::<String>().as_bytes(),
            )?;
        }
        Ok(())
    }
}

fn run(opts: &Options) -> Result<(usize, usize), String> {
    let ds = Dataset::open(&opts.input).map_err(|p| p.to_string())?;
    if let Some(p) = ds.problems.first() {
        return Err(format!("{p} (and {} more problems)", ds.problems.len() - 1));
    }
    if ds.labels.id_of(&opts.label).is_some() {
        return Err(format!(
            "{}: already has a label '{}'",
            opts.input.join("labels.txt").display(),
            opts.label
        ));
    }
    let mut names = ds.labels.foreground().to_vec();
    names.push(opts.label.clone());
    let mut out = Folder::new(opts.output.clone(), &Labels::from_names(names))?;
    let mut plain = opts.plain.clone().map(|p| Folder::new(p, &ds.labels)).transpose()?;
    let mut pasted = 0;
    for sample in &ds.samples {
        let mut img = image::open(&sample.image)
            .map_err(|e| format!("{}: {e}", sample.image.display()))?
            .to_rgb8();
        let mut rng = Rng::for_image(opts.seed, &sample.id);
        let (w, h) = img.dimensions();
        let signs = place_signs(&mut rng, &sample.annotation.objects, w as f32, h as f32);
        for b in &signs {
            draw_sign(&mut img, *b);
        }
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 92)
            .encode_image(&img)
            .map_err(|e| format!("cannot encode {}: {e}", sample.image.display()))?;
        let mut annotation = sample.annotation.clone();
        if let Some(plain) = plain.as_mut() {
            plain.add(sample, &jpeg, &annotation)?;
        }
        // VOC corners are 1-based and inclusive.
        annotation.objects.extend(signs.iter().map(|b| VocObject {
            review: None,
            name: opts.label.clone(),
            xmin: b[0].round() + 1.0,
            ymin: b[1].round() + 1.0,
            xmax: b[2].round(),
            ymax: b[3].round(),
            difficult: false,
            confidence: None,
        }));
        out.add(sample, &jpeg, &annotation)?;
        pasted += signs.len();
    }
    out.finish()?;
    if let Some(plain) = plain {
        plain.finish()?;
    }
    Ok((ds.samples.len(), pasted))
}

fn main() -> ExitCode {
    let opts = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&opts) {
        Ok((images, signs)) => {
            eprintln!(
                "{}: {images} images, {signs} '{}' objects pasted",
                opts.output.display(),
                opts.label
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
