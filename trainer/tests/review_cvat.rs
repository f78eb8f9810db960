//! Review in CVAT, on files (no CVAT server here): `review export-cvat` writes a captured folder as a "CVAT for
//! images 1.1" file; a reviewer's file — written here the way CVAT exports it, with a moved box, a deleted false
//! positive, an added missed object and a confirmed review mark — comes back exactly (1 px) with
//! `review import-cvat`, untouched samples stay byte for byte, and a second import changes nothing.

mod common;
use detection_common::voc::parse_annotation;
use std::path::Path;

fn xml_of(data: &Path, id: &str) -> String {
    std::fs::read_to_string(data.join("Annotations").join(format!("{id}.xml"))).unwrap()
}

/// A box as (label, xmin, ymin, xmax, ymax, review).
type Saved = (String, f32, f32, f32, f32, Option<String>);

/// The boxes of a sample, and whether it says it was reviewed.
fn boxes(data: &Path, id: &str) -> (Vec<Saved>, bool) {
    let a = parse_annotation(&xml_of(data, id), Path::new(id)).unwrap();
    let b = a
        .objects
        .into_iter()
        .map(|o| (o.name, o.xmin, o.ymin, o.xmax, o.ymax, o.review))
        .collect();
    (b, a.reviewed)
}

/// One `<box>` as CVAT 2.x exports it (its attribute order, `source="manual"` for a reviewer's box).
fn cvat_box(label: &str, (x0, y0, x1, y1): (f32, f32, f32, f32), review: &str) -> String {
    format!(
        "    <box label=\"{label}\" source=\"manual\" occluded=\"0\" xtl=\"{x0:.2}\" ytl=\"{y0:.2}\" xbr=\"{x1:.2}\" \
         ybr=\"{y1:.2}\" z_order=\"0\">\n      <attribute name=\"confidence\"></attribute>\n      \
         <attribute name=\"review\">{review}</attribute>\n    </box>\n"
    )
}

#[test]
fn a_reviewers_cvat_file_comes_back_exactly_and_nothing_else_changes() {
    let root = std::env::temp_dir().join(format!("trainer-cvat-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let data = root.join("data");
    common::write_voc(&data, 6, 96);
    // img-0003 as a missed-detection capture left it: one box for review.
    let path = data.join("Annotations/img-0003.xml");
    let mut a = parse_annotation(&std::fs::read_to_string(&path).unwrap(), &path).unwrap();
    a.objects[0].review = Some("missed".into());
    a.objects[0].confidence = None;
    std::fs::write(&path, detection_common::voc::write_annotation(&a)).unwrap();
    let before: Vec<String> = (0..6).map(|i| xml_of(&data, &format!("img-{i:04}"))).collect();
    let original = |i: usize| boxes(&data, &format!("img-{i:04}")).0;
    let (b0, b2, b3) = (original(0), original(2), original(3));

    let exported = root.join("export.xml");
    let (code, out) = common::trainer(&[
        "review",
        "export-cvat",
        "--data",
        data.to_str().unwrap(),
        "--output",
        exported.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}");
    let text = std::fs::read_to_string(&exported).unwrap();
    // The sample awaiting review comes first.
    let first = text.find("<image ").unwrap();
    assert!(
        text[first..].starts_with("<image id=\"0\" name=\"img-0003.jpg\""),
        "{text}"
    );
    assert!(text.contains("<attribute name=\"review\">missed</attribute>"), "{text}");

    // The reviewer's file: img-0000's box moved 10 px, img-0001's deleted, img-0002 gains a missed
    // object, img-0003's mark cleared (confirmed); img-0004 and img-0005 listed as they were; in CVAT's order.
    let rect = |b: &Saved| (b.1, b.2, b.3, b.4);
    let mut reviewed =
        String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<annotations>\n  <version>1.1</version>\n");
    let image = |name: &str, boxes: String| {
        format!("  <image id=\"0\" name=\"{name}\" width=\"96\" height=\"96\">\n{boxes}  </image>\n")
    };
    let dx = if b0[0].3 + 10.0 <= 96.0 { 10.0 } else { -10.0 };
    let moved = (b0[0].1 + dx, b0[0].2, b0[0].3 + dx, b0[0].4);
    reviewed += &image("img-0000.jpg", cvat_box(&b0[0].0, moved, ""));
    reviewed += &image("img-0001.jpg", String::new());
    let added = (5.0, 6.0, 25.5, 30.25);
    reviewed += &image(
        "img-0002.jpg",
        cvat_box("blue", added, "") + &cvat_box(&b2[0].0, rect(&b2[0]), ""),
    );
    reviewed += &image("img-0003.jpg", cvat_box(&b3[0].0, rect(&b3[0]), ""));
    for i in [4, 5] {
        let b = &original(i)[0];
        reviewed += &image(&format!("img-{i:04}.jpg"), cvat_box(&b.0, rect(b), ""));
    }
    reviewed += "</annotations>\n";
    let file = root.join("reviewed.xml");
    std::fs::write(&file, &reviewed).unwrap();
    let import = || {
        common::trainer(&[
            "review",
            "import-cvat",
            "--data",
            data.to_str().unwrap(),
            "--input",
            file.to_str().unwrap(),
        ])
    };
    let (code, out) = import();
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("4 samples changed (marked reviewed), 2 unchanged"),
        "{out}"
    );

    let near = |a: f32, b: f32| (a - b).abs() <= 1.0;
    let (got, flag) = boxes(&data, "img-0000");
    assert!(
        flag && got.len() == 1 && near(got[0].1, moved.0) && near(got[0].3, moved.2),
        "{got:?}"
    );
    let (got, flag) = boxes(&data, "img-0001");
    assert!(flag && got.is_empty(), "{got:?}");
    let (got, flag) = boxes(&data, "img-0002");
    assert!(flag && got.len() == 2, "{got:?}");
    let new = got
        .iter()
        .find(|b| near(b.1, added.0) && near(b.4, added.3))
        .expect("the added box");
    assert_eq!((new.0.as_str(), new.5.as_ref()), ("blue", None));
    let (got, flag) = boxes(&data, "img-0003");
    assert!(flag && got.len() == 1 && got[0].5.is_none(), "confirmed: {got:?}");
    for i in [4, 5] {
        assert_eq!(
            xml_of(&data, &format!("img-{i:04}")),
            before[i],
            "img-{i:04} must not change"
        );
    }
    // The confirmed sample is no longer held back from training.
    let (_, report) = common::trainer(&["check", "--data", data.to_str().unwrap()]);
    assert!(!report.contains("wait for review"), "{report}");

    // A second import changes nothing.
    let after: Vec<String> = (0..6).map(|i| xml_of(&data, &format!("img-{i:04}"))).collect();
    let (code, out) = import();
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("0 samples changed (marked reviewed), 6 unchanged"),
        "{out}"
    );
    assert_eq!(
        (0..6)
            .map(|i| xml_of(&data, &format!("img-{i:04}")))
            .collect::<Vec<_>>(),
        after
    );

    // An image the folder does not hold: refused before anything is written.
    std::fs::write(&file, reviewed.replace("img-0001.jpg", "elsewhere.jpg")).unwrap();
    let (code, out) = import();
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("image elsewhere.jpg is not a sample of"), "{out}");
    assert_eq!(
        (0..6)
            .map(|i| xml_of(&data, &format!("img-{i:04}")))
            .collect::<Vec<_>>(),
        after
    );
    // A box beyond the image: refused too (the dataset must stay valid).
    std::fs::write(&file, reviewed.replace("xbr=\"25.50\"", "xbr=\"125.50\"")).unwrap();
    let (code, out) = import();
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("lies outside the 96x96 image"), "{out}");
    let now: Vec<String> = (0..6).map(|i| xml_of(&data, &format!("img-{i:04}"))).collect();
    assert_eq!(now, after);
    let _ = std::fs::remove_dir_all(&root);
}
