//! `mobilenet-trainer check` on small VOC folders made here, healthy and broken.

use detection_common::voc::{Annotation, VocObject, write_annotation};
use std::path::{Path, PathBuf};
use std::process::Command;

fn dataset(name: &str, labels: &str, n: usize) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("trainer-check-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for sub in ["Annotations", "JPEGImages"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    std::fs::write(dir.join("labels.txt"), labels).unwrap();
    for i in 0..n {
        let id = format!("{name}-{i:04}");
        let img = image::RgbImage::from_fn(32, 24, |x, y| image::Rgb([(x * 8) as u8, (y * 10) as u8, 128]));
        img.save(dir.join("JPEGImages").join(format!("{id}.jpg"))).unwrap();
        let a = Annotation {
            pts: None,
            reviewed: false,
            filename: format!("{id}.jpg"),
            width: 32,
            height: 24,
            objects: vec![VocObject {
                review: None,
                name: "stop".into(),
                xmin: 2.0,
                ymin: 3.0,
                xmax: 20.0,
                ymax: 18.0,
                difficult: false,
                confidence: None,
            }],
        };
        std::fs::write(dir.join("Annotations").join(format!("{id}.xml")), write_annotation(&a)).unwrap();
    }
    dir
}

fn check(dirs: &[&Path]) -> (i32, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mobilenet-trainer"));
    c.arg("check");
    for d in dirs {
        c.arg("--data").arg(d);
    }
    let out = c.output().unwrap();
    (
        out.status.code().unwrap(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn healthy_datasets_merge_and_report_counts() {
    let a = dataset("a", "BACKGROUND\nstop\nyield\n", 20);
    let b = dataset("b", "stop\nyield\nspeed-limit\n", 10);
    let (code, out) = check(&[&a, &b]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("30 images"), "{out}");
    assert!(out.contains("no ImageSets: split by a hash"), "{out}");
    let stop = out.lines().find(|l| l.contains(" stop ")).unwrap();
    // id, class, train, val, test, share.
    let nums: Vec<usize> = stop
        .split_whitespace()
        .skip(2)
        .take(3)
        .map(|v| v.parse().unwrap())
        .collect();
    assert_eq!(nums.iter().sum::<usize>(), 30, "{stop}");
    assert!(stop.ends_with('%'), "{stop}");
    assert!(out.contains("speed-limit"), "labels merged: {out}");
}

#[test]
fn every_problem_is_listed_with_its_file() {
    let d = dataset("broken", "stop\n", 6);
    let ann = |i: usize| d.join("Annotations").join(format!("broken-{i:04}.xml"));
    std::fs::write(
        ann(0),
        std::fs::read_to_string(ann(0)).unwrap().replace("</bndbox>", ""),
    )
    .unwrap();
    std::fs::write(
        ann(1),
        std::fs::read_to_string(ann(1))
            .unwrap()
            .replace("<name>stop", "<name>dog"),
    )
    .unwrap();
    std::fs::remove_file(d.join("JPEGImages/broken-0002.jpg")).unwrap();
    std::fs::write(
        ann(3),
        std::fs::read_to_string(ann(3)).unwrap().replace("<xmax>20", "<xmax>1"),
    )
    .unwrap();
    let (code, out) = check(&[&d]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("4 problems"), "{out}");
    assert!(out.contains("broken-0000.xml:") && out.contains("bad XML"), "{out}");
    assert!(out.contains("unknown label 'dog'"), "{out}");
    assert!(out.contains("broken-0002.jpg not found"), "{out}");
    assert!(out.contains("degenerate box"), "{out}");
    assert!(out.contains("2 images"), "the healthy samples are still counted: {out}");
}

#[test]
fn image_sets_and_label_conflicts() {
    let d = dataset("sets", "stop\n", 4);
    std::fs::create_dir_all(d.join("ImageSets/Main")).unwrap();
    std::fs::write(d.join("ImageSets/Main/train.txt"), "sets-0000\nsets-0001\n").unwrap();
    std::fs::write(d.join("ImageSets/Main/val.txt"), "sets-0002\n").unwrap();
    let (code, out) = check(&[&d]);
    assert_eq!(code, 1, "sets-0003 is in no list: {out}");
    assert!(out.contains("3 images: 2 train, 1 val, 0 test"), "{out}");
    assert!(out.contains("sets-0003 is in no ImageSets/Main list"), "{out}");
    let other = dataset("conflict", "yield\n", 1);
    let (code, out) = check(&[&d, &other]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("labels (yield) disagree"), "{out}");
    let (code, out) = check(&[Path::new("/nonexistent/dataset")]);
    assert_eq!(code, 2);
    assert!(out.contains("/nonexistent/dataset: not a dataset folder"), "{out}");
}

#[test]
fn undecodable_truncated_and_escaping_samples_are_reported() {
    let d = dataset("damaged", "stop\n", 6);
    let img = |i: usize| d.join("JPEGImages").join(format!("damaged-{i:04}.jpg"));
    let ann = |i: usize| d.join("Annotations").join(format!("damaged-{i:04}.xml"));
    // Cut in half (a crash or a copy that stopped), and bytes that are no image at all.
    let bytes = std::fs::read(img(0)).unwrap();
    std::fs::write(img(0), &bytes[..bytes.len() / 2]).unwrap();
    std::fs::write(img(1), b"definitely not a JPEG").unwrap();
    // <filename> pointing outside JPEGImages/.
    let xml = std::fs::read_to_string(ann(2)).unwrap();
    std::fs::write(ann(2), xml.replace("damaged-0002.jpg", "../../../etc/passwd")).unwrap();
    std::fs::write(ann(3), xml.replace("damaged-0002.jpg", "/etc/passwd")).unwrap();
    let (code, out) = check(&[&d]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("4 problems"), "{out}");
    assert!(out.contains("damaged-0000.jpg: truncated JPEG"), "{out}");
    assert!(out.contains("damaged-0001.jpg: cannot decode"), "{out}");
    assert!(
        out.contains("damaged-0002.xml") && out.contains("'../../../etc/passwd'"),
        "{out}"
    );
    assert!(
        out.contains("damaged-0003.xml") && out.contains("'/etc/passwd'"),
        "{out}"
    );
    assert!(out.contains("2 images"), "the healthy samples are still counted: {out}");
}
