//! Pascal VOC datasets as jetson-inference's camera-capture writes them and the `detectioncapture` element will:
//! `Annotations/*.xml`, `JPEGImages/`, `ImageSets/Main/{train,val,trainval,test}.txt`, `labels.txt`.
//!
//! Reading is forgiving of real-world datasets and exact about what is wrong: every problem names the file
//! (and the line, for XML) so `mobilenet-trainer check` can list them all.

use crate::labels::Labels;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// One object of an annotation, box in pixels (VOC's 1-based inclusive corners are kept as written).
#[derive(Debug, Clone, PartialEq)]
pub struct VocObject {
    pub name: String,
    pub xmin: f32,
    pub ymin: f32,
    pub xmax: f32,
    pub ymax: f32,
    pub difficult: bool,
    /// Detector confidence, written by the capture element for review; absent in hand-made labels.
    pub confidence: Option<f32>,
    /// Why a person must look at this box before it is a label (`missed`: where a track predicted an object
    /// the detector did not find); a sample with such a box is not trained on until the mark is removed.
    pub review: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Annotation {
    /// The captured frame's presentation time in nanoseconds, when the capture knew it.
    pub pts: Option<u64>,
    /// A person has reviewed the boxes (written by `mobilenet-trainer review import-cvat`).
    pub reviewed: bool,
    pub filename: String,
    pub width: u32,
    pub height: u32,
    pub objects: Vec<VocObject>,
}

impl Annotation {
    /// Whether a box is marked for review (`<review>`): not a label until a person has looked.
    pub fn awaits_review(&self) -> bool {
        self.objects.iter().any(|o| o.review.is_some())
    }
}

/// A problem in a dataset, located as precisely as possible.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub file: PathBuf,
    /// 1-based line in `file`, 0 when not applicable.
    pub line: u32,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
        } else {
            write!(f, "{}: {}", self.file.display(), self.message)
        }
    }
}

fn problem(file: &Path, line: u32, message: impl Into<String>) -> Problem {
    Problem {
        file: file.to_path_buf(),
        line,
        message: message.into(),
    }
}

/// Parses one annotation. `file` is only used to locate errors.
pub fn parse_annotation(xml: &str, file: &Path) -> Result<Annotation, Problem> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| {
        let pos = e.pos();
        problem(file, pos.row, format!("bad XML: {e}"))
    })?;
    let line_of = |n: roxmltree::Node| doc.text_pos_at(n.range().start).row;
    let root = doc.root_element();
    if root.tag_name().name() != "annotation" {
        return Err(problem(
            file,
            line_of(root),
            format!("root element is <{}>, expected <annotation>", root.tag_name().name()),
        ));
    }
    fn child<'a, 'i>(n: roxmltree::Node<'a, 'i>, tag: &str) -> Option<roxmltree::Node<'a, 'i>> {
        n.children().find(|c| c.has_tag_name(tag))
    }
    fn text<'a>(n: roxmltree::Node<'a, '_>, tag: &str) -> Option<&'a str> {
        child(n, tag).and_then(|c| c.text()).map(str::trim)
    }
    let number = |n: roxmltree::Node<'_, '_>, tag: &str| -> Result<f32, Problem> {
        let c = child(n, tag)
            .ok_or_else(|| problem(file, line_of(n), format!("<{}> has no <{tag}>", n.tag_name().name())))?;
        let t = c.text().unwrap_or("").trim();
        t.parse::<f32>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| problem(file, line_of(c), format!("<{tag}> is '{t}', not a number")))
    };
    let filename = text(root, "filename")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| problem(file, line_of(root), "no <filename>"))?
        .to_string();
    // The image must lie inside JPEGImages/: a path that leaves it could make training read any file.
    let escapes = Path::new(&filename)
        .components()
        .any(|c| !matches!(c, std::path::Component::Normal(_) | std::path::Component::CurDir));
    if escapes || filename.contains('\\') {
        let at = child(root, "filename").map(line_of).unwrap_or(1);
        return Err(problem(
            file,
            at,
            format!("<filename> '{filename}' must be a file name inside JPEGImages/ (no absolute path, no '..')"),
        ));
    }
    let size = child(root, "size").ok_or_else(|| problem(file, line_of(root), "no <size>"))?;
    let (width, height) = (number(size, "width")?, number(size, "height")?);
    if width < 1.0 || height < 1.0 {
        return Err(problem(
            file,
            line_of(size),
            format!("image size {width}x{height} is empty"),
        ));
    }
    let mut objects = Vec::new();
    for obj in root.children().filter(|c| c.has_tag_name("object")) {
        let name = text(obj, "name")
            .filter(|s| !s.is_empty())
            .ok_or_else(|| problem(file, line_of(obj), "<object> has no <name>"))?
            .to_string();
        let bb = child(obj, "bndbox")
            .ok_or_else(|| problem(file, line_of(obj), format!("object '{name}' has no <bndbox>")))?;
        let o = VocObject {
            review: text(obj, "review").filter(|r| !r.is_empty()).map(str::to_string),
            name,
            xmin: number(bb, "xmin")?,
            ymin: number(bb, "ymin")?,
            xmax: number(bb, "xmax")?,
            ymax: number(bb, "ymax")?,
            difficult: text(obj, "difficult") == Some("1"),
            confidence: text(obj, "confidence")
                .and_then(|t| t.parse::<f32>().ok())
                .filter(|c| c.is_finite()),
        };
        let line = line_of(bb);
        if o.xmax <= o.xmin || o.ymax <= o.ymin {
            return Err(problem(
                file,
                line,
                format!(
                    "object '{}' has a degenerate box ({}, {}, {}, {})",
                    o.name, o.xmin, o.ymin, o.xmax, o.ymax
                ),
            ));
        }
        if o.xmin < 0.0 || o.ymin < 0.0 || o.xmax > width + 1.0 || o.ymax > height + 1.0 {
            return Err(problem(
                file,
                line,
                format!(
                    "object '{}' box ({}, {}, {}, {}) lies outside the {}x{} image",
                    o.name, o.xmin, o.ymin, o.xmax, o.ymax, width, height
                ),
            ));
        }
        objects.push(o);
    }
    Ok(Annotation {
        pts: text(root, "pts").and_then(|t| t.parse().ok()),
        reviewed: text(root, "reviewed") == Some("1"),
        filename,
        width: width as u32,
        height: height as u32,
        objects,
    })
}

/// XML text: markup escaped, and characters XML 1.0 does not allow (control characters) replaced by U+FFFD.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if c.is_control() || c == '\u{fffe}' || c == '\u{ffff}' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// Serialises an annotation as VOC XML (what the capture element writes).
pub fn write_annotation(a: &Annotation) -> String {
    let mut s = format!(
        "<annotation>\n  <folder>JPEGImages</folder>\n  <filename>{}</filename>\n  <size>\n    <width>{}</width>\n    <height>{}</height>\n    <depth>3</depth>\n  </size>\n  <segmented>0</segmented>\n",
        escape(&a.filename),
        a.width,
        a.height
    );
    if let Some(pts) = a.pts {
        s.push_str(&format!("  <pts>{pts}</pts>\n"));
    }
    if a.reviewed {
        s.push_str("  <reviewed>1</reviewed>\n");
    }
    for o in &a.objects {
        s.push_str(&format!(
            "  <object>\n    <name>{}</name>\n    <pose>Unspecified</pose>\n    <truncated>0</truncated>\n    <difficult>{}</difficult>\n",
            escape(&o.name),
            o.difficult as u8
        ));
        if let Some(c) = o.confidence.filter(|c| c.is_finite()) {
            s.push_str(&format!("    <confidence>{c}</confidence>\n"));
        }
        if let Some(r) = &o.review {
            s.push_str(&format!("    <review>{}</review>\n", escape(r)));
        }
        s.push_str(&format!(
            "    <bndbox>\n      <xmin>{}</xmin>\n      <ymin>{}</ymin>\n      <xmax>{}</xmax>\n      <ymax>{}</ymax>\n    </bndbox>\n  </object>\n",
            o.xmin, o.ymin, o.xmax, o.ymax
        ));
    }
    s.push_str("</annotation>\n");
    s
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Split {
    Train,
    Val,
    Test,
}

impl Split {
    pub fn as_str(&self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        }
    }
}

/// Deterministic split by a hash of the image id (FNV-1a): about 10% validation. Adding captures never moves
/// an existing image from one side to the other.
pub fn hash_split(id: &str) -> Split {
    if crate::fnv1a(id.as_bytes()).is_multiple_of(10) {
        Split::Val
    } else {
        Split::Train
    }
}

/// One usable sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub id: String,
    pub image: PathBuf,
    pub annotation: Annotation,
    pub split: Split,
}

/// A dataset folder read and validated.
#[derive(Debug, Clone, Default)]
pub struct Dataset {
    pub labels: Labels,
    pub samples: Vec<Sample>,
    pub problems: Vec<Problem>,
    /// Whether the splits came from ImageSets/Main (else from the hash).
    pub has_image_sets: bool,
}

fn read_ids(path: &Path) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(path).ok()?;
    Some(
        text.lines()
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_string)
            .collect(),
    )
}

impl Dataset {
    /// Reads `dir`: labels, every annotation, and the split of each image. Problems are collected, not fatal.
    pub fn open(dir: &Path) -> Result<Dataset, Problem> {
        if !dir.is_dir() {
            return Err(problem(
                dir,
                0,
                "not a dataset folder (expected Annotations/, JPEGImages/, labels.txt)",
            ));
        }
        let labels_path = dir.join("labels.txt");
        // A capture of negatives only may list no label yet; that is not an error here.
        let labels = std::fs::read_to_string(&labels_path)
            .map(|t| Labels::parse(&t))
            .map_err(|e| problem(&labels_path, 0, format!("cannot read: {e}")))?;
        let ann_dir = dir.join("Annotations");
        let mut entries: Vec<PathBuf> = std::fs::read_dir(&ann_dir)
            .map_err(|e| problem(&ann_dir, 0, format!("cannot list annotations: {e}")))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x.eq_ignore_ascii_case("xml")))
            .collect();
        entries.sort();
        let sets = dir.join("ImageSets/Main");
        let mut split_of: BTreeMap<String, Split> = BTreeMap::new();
        let mut has_image_sets = false;
        for (file, split) in [
            ("trainval.txt", Split::Train),
            ("train.txt", Split::Train),
            ("val.txt", Split::Val),
            ("test.txt", Split::Test),
        ] {
            if let Some(ids) = read_ids(&sets.join(file)) {
                has_image_sets = true;
                for id in ids {
                    // val/test listed in trainval too: the more specific list wins.
                    split_of.insert(id, split);
                }
            }
        }
        let mut ds = Dataset {
            labels,
            has_image_sets,
            ..Default::default()
        };
        for xml_path in entries {
            let id = xml_path.file_stem().unwrap_or_default().to_string_lossy().to_string();
            let text = match std::fs::read_to_string(&xml_path) {
                Ok(t) => t,
                Err(e) => {
                    ds.problems.push(problem(&xml_path, 0, format!("cannot read: {e}")));
                    continue;
                }
            };
            let annotation = match parse_annotation(&text, &xml_path) {
                Ok(a) => a,
                Err(p) => {
                    ds.problems.push(p);
                    continue;
                }
            };
            if let Some(o) = annotation.objects.iter().find(|o| ds.labels.id_of(&o.name).is_none()) {
                ds.problems.push(problem(
                    &xml_path,
                    0,
                    format!(
                        "unknown label '{}' (labels.txt has: {})",
                        o.name,
                        ds.labels.foreground().join(", ")
                    ),
                ));
                continue;
            }
            let image = dir.join("JPEGImages").join(&annotation.filename);
            if !image.is_file() {
                ds.problems
                    .push(problem(&xml_path, 0, format!("image {} not found", image.display())));
                continue;
            }
            let split = if has_image_sets {
                match split_of.get(&id) {
                    Some(s) => *s,
                    None => {
                        ds.problems
                            .push(problem(&xml_path, 0, format!("{id} is in no ImageSets/Main list")));
                        continue;
                    }
                }
            } else {
                hash_split(&id)
            };
            ds.samples.push(Sample {
                id,
                image,
                annotation,
                split,
            });
        }
        if ds.samples.is_empty() && ds.problems.is_empty() {
            ds.problems.push(problem(&ann_dir, 0, "no annotations found"));
        }
        Ok(ds)
    }

    /// Objects per label and split, for `check`.
    pub fn class_counts(&self) -> BTreeMap<String, [usize; 3]> {
        let mut counts: BTreeMap<String, [usize; 3]> =
            self.labels.foreground().iter().map(|l| (l.clone(), [0; 3])).collect();
        for s in &self.samples {
            for o in &s.annotation.objects {
                counts.entry(o.name.clone()).or_default()[s.split as usize] += 1;
            }
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann() -> Annotation {
        Annotation {
            pts: Some(33_366_666),
            reviewed: true,
            filename: "a & b.jpg".into(),
            width: 64,
            height: 48,
            objects: vec![VocObject {
                review: Some("missed".into()),
                name: "stop".into(),
                xmin: 1.0,
                ymin: 2.0,
                xmax: 30.0,
                ymax: 40.0,
                difficult: false,
                confidence: Some(0.42),
            }],
        }
    }

    #[test]
    fn annotations_round_trip() {
        let a = ann();
        assert_eq!(parse_annotation(&write_annotation(&a), Path::new("x.xml")).unwrap(), a);
    }

    #[test]
    fn bad_annotations_name_file_and_line() {
        let f = Path::new("Annotations/0001.xml");
        let e = parse_annotation("<annotation>\n<filename>a.jpg</filename>\n<size><width>10</height>", f).unwrap_err();
        assert!(e.to_string().starts_with("Annotations/0001.xml:3:"), "{e}");
        let bad_number = write_annotation(&ann()).replace("<xmin>1</xmin>", "<xmin>one</xmin>");
        let e = parse_annotation(&bad_number, f).unwrap_err();
        assert!(e.message.contains("'one'") && e.line > 0, "{e}");
        let degenerate = write_annotation(&ann()).replace("<xmax>30</xmax>", "<xmax>1</xmax>");
        assert!(
            parse_annotation(&degenerate, f)
                .unwrap_err()
                .message
                .contains("degenerate")
        );
        let outside = write_annotation(&ann()).replace("<ymax>40</ymax>", "<ymax>400</ymax>");
        assert!(parse_annotation(&outside, f).unwrap_err().message.contains("outside"));
    }

    #[test]
    fn filenames_that_leave_the_image_folder_are_rejected() {
        let f = Path::new("Annotations/0001.xml");
        for bad in ["/etc/passwd", "../secret.jpg", "sub/../../x.jpg", "..", "a\\..\\b.jpg"] {
            let mut a = ann();
            a.filename = bad.into();
            let e = parse_annotation(&write_annotation(&a), f).unwrap_err();
            assert!(e.message.contains("inside JPEGImages"), "{bad}: {e}");
        }
        let mut a = ann();
        a.filename = "day1/frame.jpg".into();
        assert!(parse_annotation(&write_annotation(&a), f).is_ok());
    }

    #[test]
    fn control_characters_and_non_finite_numbers_never_make_invalid_xml() {
        let mut a = ann();
        a.objects[0].name = "st\u{1}op\u{7f}".into();
        a.objects[0].confidence = Some(f32::INFINITY);
        let xml = write_annotation(&a);
        let back = parse_annotation(&xml, Path::new("x.xml")).expect("valid XML");
        assert_eq!(back.objects[0].confidence, None);
        assert!(
            !back.objects[0].name.chars().any(char::is_control),
            "{:?}",
            back.objects[0].name
        );
    }

    #[test]
    fn hash_split_is_stable_and_about_a_tenth() {
        let val = (0..1000)
            .filter(|i| hash_split(&format!("frame-{i:06}")) == Split::Val)
            .count();
        assert!((50..150).contains(&val), "{val}");
        assert_eq!(hash_split("frame-000001"), hash_split("frame-000001"));
    }
}
