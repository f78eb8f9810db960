//! Property tests: every parser of text that comes from users, captured datasets or model files takes any input
//! without panicking, and what it accepts is usable (finite numbers, sizes in range, boxes inside the image,
//! labels on one line). 10,000 generated cases per parser.

use detection_common::boxes::parse_anchors;
use detection_common::labels::{ClassRef, Labels, parse_class_list, parse_class_thresholds};
use detection_common::metadata::{
    self as meta, BoxOrder, ChannelOrder, InputLayout, ModelFormat, ScoreActivation, parse_size, parse_triplet,
};
use detection_common::voc::{Annotation, VocObject, parse_annotation, write_annotation};
use proptest::prelude::*;
use std::path::Path;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 10_000,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Numbers as they appear in hand-edited or damaged files.
fn number_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<f32>().prop_map(|v| v.to_string()),
        (-10_000i64..10_000).prop_map(|v| v.to_string()),
        Just("NaN".to_string()),
        Just("inf".to_string()),
        Just("-inf".to_string()),
        Just("1e39".to_string()),
        Just("".to_string()),
        "[ -~]{0,8}",
    ]
}

/// Label-like text: printable, control characters, newlines, markup.
fn label_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]{1,8}",
        "[\\x00-\\x1f<>&\"' a-z\\u{7f}\\u{85}\\u{2028}]{0,12}",
        any::<String>(),
    ]
}

fn annotation_xml() -> impl Strategy<Value = String> {
    (
        prop_oneof!["[a-z0-9_./\\\\-]{0,16}", any::<String>()],
        number_text(),
        number_text(),
        prop::collection::vec(
            (label_text(), number_text(), number_text(), number_text(), number_text()),
            0..4,
        ),
    )
        .prop_map(|(filename, w, h, objects)| {
            let mut s = format!(
                "<annotation><filename>{filename}</filename><size><width>{w}</width><height>{h}</height></size>"
            );
            for (name, x0, y0, x1, y1) in objects {
                s.push_str(&format!(
                    "<object><name>{name}</name><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax>\
                     <ymax>{y1}</ymax></bndbox><confidence>{x1}</confidence></object>"
                ));
            }
            s.push_str("</annotation>");
            s
        })
}

fn check_accepted(a: &Annotation) {
    assert!(a.width >= 1 && a.height >= 1);
    // Inside JPEGImages/: not absolute, no '..' component ("0.." is an odd but harmless file name).
    assert!(!a.filename.is_empty() && !a.filename.starts_with('/'));
    assert!(!a.filename.split('/').any(|part| part == ".."), "{}", a.filename);
    for o in &a.objects {
        for v in [o.xmin, o.ymin, o.xmax, o.ymax] {
            assert!(v.is_finite());
        }
        assert!(o.xmax > o.xmin && o.ymax > o.ymin);
        assert!(o.xmin >= 0.0 && o.ymin >= 0.0);
        assert!(o.xmax <= a.width as f32 + 1.0 && o.ymax <= a.height as f32 + 1.0);
        assert!(o.confidence.is_none_or(f32::is_finite));
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn voc_parser_takes_any_annotation(xml in annotation_xml()) {
        if let Ok(a) = parse_annotation(&xml, Path::new("Annotations/x.xml")) {
            check_accepted(&a);
            // What the writer makes of an accepted annotation reads back the same.
            let again = parse_annotation(&write_annotation(&a), Path::new("x.xml")).expect("written XML parses");
            prop_assert_eq!(again.objects.len(), a.objects.len());
        }
    }

    #[test]
    fn voc_parser_takes_any_text(text in any::<String>()) {
        if let Ok(a) = parse_annotation(&text, Path::new("x.xml")) {
            check_accepted(&a);
        }
    }

    #[test]
    fn written_annotations_are_always_valid_xml(
        filename in "[a-z0-9]{1,8}\\.jpg",
        names in prop::collection::vec(label_text(), 0..4),
        confidence in any::<f32>(),
    ) {
        let a = Annotation {
            pts: None,
            reviewed: false,
            filename,
            width: 100,
            height: 80,
            objects: names.into_iter().map(|name| VocObject {
                review: None,
                name: if name.trim().is_empty() { "x".into() } else { name },
                xmin: 1.0, ymin: 2.0, xmax: 50.0, ymax: 60.0,
                difficult: false,
                confidence: Some(confidence),
            }).collect(),
        };
        let back = parse_annotation(&write_annotation(&a), Path::new("x.xml"));
        // Names that are only control characters or blanks may be refused; never an XML syntax error.
        if let Err(p) = &back {
            prop_assert!(!p.message.starts_with("bad XML"), "{}", p);
        }
    }

    #[test]
    fn labels_take_any_text(text in any::<String>()) {
        let labels = Labels::parse(&text);
        for l in labels.foreground() {
            prop_assert!(!l.is_empty() && !l.chars().any(char::is_control), "{:?}", l);
        }
        prop_assert_eq!(Labels::parse(&labels.to_text()), labels.clone());
        for c in parse_class_list(&text) {
            if let Ok(id) = c.resolve(&labels) {
                prop_assert!(id <= labels.len().max(detection_common::labels::MAX_CLASS_ID));
            }
        }
        let _ = parse_class_thresholds(&text);
        let _ = ClassRef::parse(&text).resolve(&labels);
    }

    #[test]
    fn anchors_take_any_text(lines in prop::collection::vec(
        prop::collection::vec(number_text(), 0..6).prop_map(|v| v.join(" ")), 0..6)
    ) {
        if let Ok(anchors) = parse_anchors(&lines.join("\n"), "fuzz") {
            for a in anchors {
                prop_assert!(a.cx.is_finite() && a.cy.is_finite() && a.h > 0.0 && a.w > 0.0);
                prop_assert!(a.h.is_finite() && a.w.is_finite());
            }
        }
    }

    #[test]
    fn metadata_values_take_any_text(text in prop_oneof![any::<String>(), "[0-9xX, .e+-]{0,24}"]) {
        if let Some((w, h)) = parse_size(&text) {
            prop_assert!(meta::input_size_ok(w, h));
        }
        if let Ok(t) = parse_triplet(&text) {
            prop_assert!(t.iter().all(|v| v.is_finite()));
        }
        let _ = (
            ModelFormat::parse(&text),
            BoxOrder::parse(&text),
            InputLayout::parse(&text),
            ChannelOrder::parse(&text),
            ScoreActivation::parse(&text),
            detection_common::boxes::BoxEncoding::parse(&text),
        );
    }
}
