//! The dataset on disk: folder layout, numbering that resumes after a restart, labels.txt, and sample writes
//! that are safe against crashes, full disks and other writers on the same folder.
//!
//! A sample exists only once its XML is in `Annotations/` (that is what the trainer reads), so every sample is
//! committed in this order: JPEG renamed into place, then its line appended to the ImageSets lists, then the XML
//! renamed into place. A crash or a failed write between two steps leaves only things the trainer never sees
//! (a JPEG or list line without XML, a hidden `.tmp` file). Writers on one folder — elements of one process or
//! of several — serialise the commit through an advisory lock on `.detectioncapture.lock`, so each claims a
//! sample number no other writer used and they merge their labels instead of overwriting each other's.

// Files reach the folder whole (temporary name unique per writer, synced, renamed).
use detection_common::files::{temp_path, write_atomically};
use detection_common::labels::names_to_text;
use detection_common::voc::{Annotation, VocObject, hash_split, write_annotation};
use detection_inference::geometry::Region;
use detection_inference::tiles::TileGrid;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

pub const PREFIX: &str = "frame-";
const LOCK_FILE: &str = ".detectioncapture.lock";
const LISTS: [&str; 3] = ["trainval.txt", "train.txt", "val.txt"];

/// One box to save with a frame.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedBox {
    pub label: String,
    pub class_id: u32,
    /// The detector's confidence; None for ground truth.
    pub confidence: Option<f32>,
    /// x, y, width, height in pixels.
    pub rect: (u32, u32, u32, u32),
    /// Why a person must look at this box before it is a label (`missed`: the tracker's prediction where the
    /// detector found nothing; `disagreement`: one detector's box the other lacks).
    pub review: Option<&'static str>,
}

/// One frame to save: the buffer is only referenced (no copy) until the worker encodes it.
pub struct Sample {
    pub buffer: gst::Buffer,
    pub info: gst_video::VideoInfo,
    /// In the sample's image: the frame, or the region of it.
    pub boxes: Vec<SavedBox>,
    /// The part of the frame the sample is (None: the whole frame).
    pub region: Option<Region>,
}

/// A box with less than 1/this of it inside a tile is left out of the tile's sample (too little of the object to
/// learn from; a tiled detector reports the object from the tile that holds it), unless it covers that share of
/// the tile (an object larger than a tile).
const MIN_SHARE_IN_TILE: u64 = 4;

impl Sample {
    /// Width and height of the sample's image.
    pub fn size(&self) -> (u32, u32) {
        self.region
            .map_or((self.info.width(), self.info.height()), |r| (r.width, r.height))
    }

    /// The frame cut into the grid's tiles, each a sample of its own with the boxes inside it, clipped and in
    /// the tile's pixels (the buffer is shared, not copied).
    pub fn tiles(&self, grid: &TileGrid) -> Vec<Sample> {
        grid.regions(self.info.width(), self.info.height())
            .into_iter()
            .map(|r| Sample {
                buffer: self.buffer.clone(),
                info: self.info.clone(),
                boxes: self
                    .boxes
                    .iter()
                    .filter_map(|b| {
                        let (x, y, w, h) = b.rect;
                        let (x0, y0) = (x.max(r.x), y.max(r.y));
                        let (x1, y1) = ((x + w).min(r.x + r.width), (y + h).min(r.y + r.height));
                        let inside = x1.saturating_sub(x0) as u64 * y1.saturating_sub(y0) as u64;
                        let enough = inside * MIN_SHARE_IN_TILE >= w as u64 * h as u64
                            || inside * MIN_SHARE_IN_TILE >= r.width as u64 * r.height as u64;
                        (inside > 0 && enough).then(|| SavedBox {
                            rect: (x0 - r.x, y0 - r.y, x1 - x0, y1 - y0),
                            ..b.clone()
                        })
                    })
                    .collect(),
                region: Some(r),
            })
            .collect()
    }
}

pub struct DatasetWriter {
    root: PathBuf,
    lock: File,
    next: u64,
    /// Labels by class id (index 0 is the background).
    labels: Vec<String>,
    pub bytes: u64,
    encoder: Encoder,
}

/// Appends `id` as one line with a single write; a line left unterminated by an earlier failed write (a full
/// disk) gets its newline first, so the new id never runs into it.
fn append_line(path: &Path, id: &str) -> std::io::Result<()> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(path)?;
    let len = f.metadata()?.len();
    let mut last = [b'\n'];
    if len > 0 {
        f.read_exact_at(&mut last, len - 1)?;
    }
    let line = if last[0] == b'\n' {
        format!("{id}\n")
    } else {
        format!("\n{id}\n")
    };
    (&f).write_all(line.as_bytes())
}

/// Whether a process is still running (its temporary files are not stale then).
fn process_alive(pid: u32) -> bool {
    pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists()
}

/// Removes `.NAME.PID.N.tmp` files left by writers that died (kill -9, power loss) in `dir`.
fn remove_stale_temps(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let Some(inner) = name.strip_prefix('.').and_then(|n| n.strip_suffix(".tmp")) else {
            continue;
        };
        let mut parts = inner.rsplitn(3, '.');
        let (_n, pid) = (parts.next(), parts.next().and_then(|p| p.parse::<u32>().ok()));
        if let Some(pid) = pid
            && !process_alive(pid)
        {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// The sample number in `frame-NNNNNN.EXT`.
fn sample_number(name: &str, ext: &str) -> Option<u64> {
    name.strip_prefix(PREFIX)?.strip_suffix(ext)?.parse().ok()
}

fn read_labels(path: &Path) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(path).ok()?;
    Some(detection_common::labels::Labels::parse(&text).names().to_vec())
}

/// Holds the dataset's lock for one commit; released on drop (and by the kernel if the process dies).
struct Locked<'a>(&'a File);

impl<'a> Locked<'a> {
    fn new(lock: &'a File, root: &Path) -> Result<Self, String> {
        lock.lock()
            .map_err(|e| format!("cannot lock {}: {e}", root.join(LOCK_FILE).display()))?;
        Ok(Self(lock))
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

/// The label list after a frame's boxes: `recorded` (as stored, if any; else `mine`) with `mine`'s names filling
/// its placeholders and the boxes' labels added. A class id whose label differs from the recorded one is an
/// error naming `where_` (the dataset's ids would stop meaning anything).
pub fn merge_labels(
    recorded: Option<Vec<String>>,
    mine: &[String],
    boxes: &[SavedBox],
    where_: &str,
) -> Result<Vec<String>, String> {
    let placeholder = |i: usize, name: &str| name == format!("class-{i}");
    let mut merged = recorded.unwrap_or_else(|| mine.to_vec());
    for (i, m) in mine.iter().enumerate() {
        match merged.get_mut(i) {
            None => merged.push(m.clone()),
            Some(theirs) if placeholder(i, theirs) && !placeholder(i, m) => *theirs = m.clone(),
            Some(_) => {}
        }
    }
    for SavedBox { label, class_id, .. } in boxes {
        let id = *class_id as usize;
        if id == 0 {
            continue;
        }
        while merged.len() <= id {
            merged.push(format!("class-{}", merged.len()));
        }
        if merged[id] != *label {
            if placeholder(id, &merged[id]) {
                merged[id] = label.clone();
            } else {
                return Err(format!(
                    "class id {id} is '{label}' here but '{}' in {where_}",
                    merged[id]
                ));
            }
        }
    }
    Ok(merged)
}

/// Encodes frames to JPEG, reusing its buffers from frame to frame.
pub struct Encoder {
    quality: u8,
    /// The packed RGB frame and its JPEG.
    rgb: Vec<u8>,
    jpeg: Vec<u8>,
}

impl Encoder {
    pub fn new(quality: u8) -> Self {
        Self {
            quality,
            rgb: Vec::new(),
            jpeg: Vec::new(),
        }
    }

    /// The sample's image (the frame, or its region) as JPEG (valid until the next call).
    pub fn jpeg(&mut self, sample: &Sample) -> Result<&[u8], String> {
        to_rgb(&sample.buffer, &sample.info, &mut self.rgb)?;
        let (w, h) = sample.size();
        if let Some(r) = sample.region {
            // The region's rows moved to the front, in place.
            let (row, frame_row) = (r.width as usize * 3, sample.info.width() as usize * 3);
            for y in 0..r.height as usize {
                let from = (r.y as usize + y) * frame_row + r.x as usize * 3;
                self.rgb.copy_within(from..from + row, y * row);
            }
            self.rgb.truncate(row * r.height as usize);
        }
        self.jpeg.clear();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut self.jpeg, self.quality)
            .encode(&self.rgb, w, h, image::ExtendedColorType::Rgb8)
            .map_err(|e| format!("JPEG encoding failed: {e}"))?;
        Ok(&self.jpeg)
    }
}

/// The VOC annotation of sample `id` (its image is `id.jpg`).
pub fn annotation_xml(id: &str, sample: &Sample) -> String {
    let annotation = Annotation {
        pts: sample.buffer.pts().map(|t| t.nseconds()),
        reviewed: false,
        filename: format!("{id}.jpg"),
        width: sample.size().0,
        height: sample.size().1,
        objects: sample
            .boxes
            .iter()
            .map(|b| {
                let (x, y, bw, bh) = b.rect;
                VocObject {
                    review: b.review.map(str::to_string),
                    name: b.label.clone(),
                    xmin: x as f32,
                    ymin: y as f32,
                    xmax: x.saturating_add(bw) as f32,
                    ymax: y.saturating_add(bh) as f32,
                    difficult: false,
                    confidence: b.confidence,
                }
            })
            .collect(),
    };
    write_annotation(&annotation)
}

impl DatasetWriter {
    /// Creates the folders (or opens an existing dataset: numbering continues after its last sample, its labels
    /// are kept), and tidies what a writer that died left behind.
    pub fn open(root: &Path, quality: u8, initial_labels: &[String]) -> Result<Self, String> {
        for sub in ["Annotations", "JPEGImages", "ImageSets/Main"] {
            std::fs::create_dir_all(root.join(sub))
                .map_err(|e| format!("cannot create {}: {e}", root.join(sub).display()))?;
        }
        let lock_path = root.join(LOCK_FILE);
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| format!("cannot write in {}: {e}", root.display()))?;
        // Probe that the folder is writable now rather than on the first frame.
        let probe = temp_path(&root.join(".detectioncapture-probe"));
        std::fs::write(&probe, b"").map_err(|e| format!("cannot write in {}: {e}", root.display()))?;
        let _ = std::fs::remove_file(&probe);

        let guard = Locked::new(&lock, root)?;
        for sub in ["Annotations", "JPEGImages", "ImageSets/Main", ""] {
            remove_stale_temps(&root.join(sub));
        }
        let labels_path = root.join("labels.txt");
        let labels = match read_labels(&labels_path) {
            Some(l) => l,
            None => {
                let l = detection_common::labels::Labels::from_names(initial_labels.to_vec())
                    .names()
                    .to_vec();
                write_atomically(&labels_path, names_to_text(&l).as_bytes())
                    .map_err(|e| format!("cannot write {}: {e}", labels_path.display()))?;
                l
            }
        };
        drop(guard);

        let mut next = 0;
        let mut bytes = 0;
        let listing = |dir: &Path| {
            std::fs::read_dir(dir)
                .map_err(|e| format!("cannot list {}: {e}", dir.display()))
                .map(|d| d.flatten().collect::<Vec<_>>())
        };
        for entry in listing(&root.join("Annotations"))? {
            let name = entry.file_name().to_string_lossy().to_string();
            if let Some(n) = sample_number(&name, ".xml") {
                next = next.max(n + 1);
                bytes += entry.metadata().map(|m| m.len()).unwrap_or(0);
                bytes += std::fs::metadata(root.join("JPEGImages").join(format!("{PREFIX}{n:06}.jpg")))
                    .map(|m| m.len())
                    .unwrap_or(0);
            }
        }
        // A JPEG whose XML never came (a crash mid-sample) keeps its number taken: no sample reuses it.
        for entry in listing(&root.join("JPEGImages"))? {
            if let Some(n) = sample_number(&entry.file_name().to_string_lossy(), ".jpg") {
                next = next.max(n + 1);
            }
        }
        Ok(Self {
            root: root.to_path_buf(),
            lock,
            next,
            labels,
            bytes,
            encoder: Encoder::new(quality),
        })
    }

    pub fn next_index(&self) -> u64 {
        self.next
    }

    /// Merges the labels seen on a frame into labels.txt, as it is on disk (another writer may have added
    /// some). Nothing changes in memory unless labels.txt was written. Called with the lock held.
    fn update_labels(&mut self, boxes: &[SavedBox]) -> Result<(), String> {
        let path = self.root.join("labels.txt");
        let on_disk = read_labels(&path);
        let merged = merge_labels(on_disk.clone(), &self.labels, boxes, &path.display().to_string())?;
        if on_disk.as_ref() != Some(&merged) {
            write_atomically(&path, names_to_text(&merged).as_bytes())
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        }
        self.labels = merged;
        Ok(())
    }

    /// Encodes and writes one sample; on error the dataset holds nothing of it that the trainer would read.
    pub fn write(&mut self, sample: &Sample) -> Result<u64, String> {
        self.encoder.jpeg(sample)?;
        let lock = self
            .lock
            .try_clone()
            .map_err(|e| format!("cannot lock the dataset: {e}"))?;
        let _guard = Locked::new(&lock, &self.root)?;
        self.update_labels(&sample.boxes)?;
        let jpg_dir = self.root.join("JPEGImages");
        let xml_dir = self.root.join("Annotations");
        // Claim a number no writer has used: the lock makes check-then-create race-free among writers.
        let id = loop {
            let id = format!("{PREFIX}{:06}", self.next);
            if jpg_dir.join(format!("{id}.jpg")).exists() || xml_dir.join(format!("{id}.xml")).exists() {
                self.next += 1;
            } else {
                break id;
            }
        };
        self.next += 1;
        let xml = annotation_xml(&id, sample);
        let jpg_path = jpg_dir.join(format!("{id}.jpg"));
        let xml_path = xml_dir.join(format!("{id}.xml"));
        let jpeg = &self.encoder.jpeg;
        write_atomically(&jpg_path, jpeg).map_err(|e| format!("cannot write {}: {e}", jpg_path.display()))?;
        // The split follows the trainer's hash, so both agree without ImageSets too.
        let split_list = if hash_split(&id) == detection_common::voc::Split::Val {
            LISTS[2]
        } else {
            LISTS[1]
        };
        let sets = self.root.join("ImageSets/Main");
        for list in [LISTS[0], split_list] {
            let path = sets.join(list);
            if let Err(e) = append_line(&path, &id) {
                // A listed id without an XML is not a sample. The JPEG stays, invisible, so that its number
                // stays taken and no later sample is listed twice.
                return Err(format!("cannot append to {}: {e}", path.display()));
            }
        }
        // The XML makes the sample exist.
        if let Err(e) = write_atomically(&xml_path, xml.as_bytes()) {
            // As above: the number stays taken by the (invisible) JPEG.
            return Err(format!("cannot write {}: {e}", xml_path.display()));
        }
        let written = (jpeg.len() + xml.len()) as u64;
        self.bytes += written;
        Ok(written)
    }
}

/// The frame as packed RGB into `rgb`, for the JPEG encoder; each plane read at its own stride (from its
/// GstVideoMeta when it has one: padded or tight rows, as decoders and cameras produce them).
fn to_rgb(buffer: &gst::Buffer, info: &gst_video::VideoInfo, rgb: &mut Vec<u8>) -> Result<(), String> {
    let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer.as_ref(), info)
        .map_err(|_| "cannot map the frame (buffer smaller than its caps or video meta say)".to_string())?;
    crate::video::frame(&frame)?.to_rgb(rgb)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tile_keeps_the_boxes_mostly_inside_it_and_objects_larger_than_it() {
        gst::init().unwrap();
        let info = gst_video::VideoInfo::builder(gst_video::VideoFormat::Nv12, 1280, 720)
            .build()
            .unwrap();
        let saved = |rect| SavedBox {
            label: "sign".into(),
            class_id: 1,
            confidence: None,
            rect,
            review: None,
        };
        let sample = Sample {
            buffer: gst::Buffer::with_size(info.size()).unwrap(),
            info,
            boxes: vec![
                // Larger than any tile of a 4x3 grid (370x284): at most 17% of it in one tile.
                saved((100, 60, 1000, 600)),
                // Three quarters in the first tile (which ends at x 370), a quarter in the second (from 302).
                saved((349, 20, 28, 20)),
                // A tenth in the first tile.
                saved((367, 200, 30, 20)),
            ],
            region: None,
        };
        let grid = TileGrid {
            columns: 4,
            rows: 3,
            overlap: 64,
        };
        let tiles = sample.tiles(&grid);
        assert_eq!(tiles.len(), 12);
        assert_eq!(tiles[0].size(), (370, 284));
        assert!(
            tiles.iter().all(|t| t.boxes.iter().any(|b| b.rect.2 > 100)),
            "the large object is in every tile"
        );
        let small = |t: &Sample| {
            t.boxes
                .iter()
                .filter(|b| b.rect.2 < 100)
                .map(|b| b.rect)
                .collect::<Vec<_>>()
        };
        assert_eq!(small(&tiles[0]), vec![(349, 20, 21, 20)]);
        assert_eq!(small(&tiles[1]), vec![(47, 20, 28, 20), (65, 200, 30, 20)]);
    }

    #[test]
    fn appended_lines_survive_an_unterminated_line() {
        let dir = std::env::temp_dir().join(format!("capture-lines-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let list = dir.join("train.txt");
        std::fs::write(&list, "frame-000001\nframe-0000").unwrap();
        append_line(&list, "frame-000003").unwrap();
        append_line(&list, "frame-000004").unwrap();
        assert_eq!(
            std::fs::read_to_string(&list).unwrap(),
            "frame-000001\nframe-0000\nframe-000003\nframe-000004\n"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn stale_temporary_files_of_dead_writers_are_removed() {
        let dir = std::env::temp_dir().join(format!("capture-temps-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // PID 0x7ffffffe does not exist; our own PID does.
        let dead = dir.join(format!(".frame-000001.jpg.{}.0.tmp", 0x7fff_fffe_u32));
        let alive = dir.join(format!(".frame-000002.jpg.{}.0.tmp", std::process::id()));
        let other = dir.join("frame-000003.jpg");
        for f in [&dead, &alive, &other] {
            std::fs::write(f, b"x").unwrap();
        }
        remove_stale_temps(&dir);
        assert!(!dead.exists() && alive.exists() && other.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
