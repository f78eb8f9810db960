//! Label Studio's rectangle regions (the `result` of its predictions and annotations, JSON): boxes in percent of
//! the image with `rectanglelabels`, as the labelling config below names them. Besides the box, a region of ours
//! carries the detector's `score` and, for a box a person must look at, a meta text `review: missed` (or
//! `review: disagreement`) that Label Studio shows with the region.

use crate::cvat::escape;
use serde_json::{Value, json};

/// The names the labelling config gives its image and its rectangle tool.
pub const IMAGE: &str = "image";
pub const RECTANGLES: &str = "label";
/// How a review mark is written into a region's meta text.
const REVIEW_PREFIX: &str = "review: ";

/// A box in pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct Region {
    pub label: String,
    pub xmin: f32,
    pub ymin: f32,
    pub xmax: f32,
    pub ymax: f32,
    pub score: Option<f32>,
    pub review: Option<String>,
}

/// The labelling config of a project for the classes `labels`: an image and a rectangle tool.
pub fn label_config(labels: &[String]) -> String {
    let mut s = format!(
        "<View>\n  <Image name=\"{IMAGE}\" value=\"${IMAGE}\" zoom=\"true\"/>\n  <RectangleLabels name=\"{RECTANGLES}\" toName=\"{IMAGE}\">\n"
    );
    for label in labels {
        s.push_str(&format!("    <Label value=\"{}\"/>\n", escape(label)));
    }
    s.push_str("  </RectangleLabels>\n</View>\n");
    s
}

/// The class names a labelling config offers (the `value` of each `<Label>`), in order.
pub fn config_labels(config: &str) -> Vec<String> {
    let Ok(doc) = roxmltree::Document::parse(config) else {
        return Vec::new();
    };
    doc.descendants()
        .filter(|n| n.has_tag_name("Label"))
        .filter_map(|n| n.attribute("value").map(String::from))
        .collect()
}

/// A confidence as the decimal it was written as (0.7, not 0.699999988): what a JSON reader gives back.
pub fn decimal(v: f32) -> f64 {
    v.to_string().parse().unwrap_or(v as f64)
}

/// `regions` of a `width`x`height` image as a `result` list.
pub fn result(regions: &[Region], width: u32, height: u32) -> Value {
    let (w, h) = (width as f64, height as f64);
    let items: Vec<Value> = regions
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut item = json!({
                "id": format!("b{i}"),
                "from_name": RECTANGLES,
                "to_name": IMAGE,
                "type": "rectanglelabels",
                "original_width": width,
                "original_height": height,
                "image_rotation": 0,
                "value": {
                    "x": r.xmin as f64 * 100.0 / w,
                    "y": r.ymin as f64 * 100.0 / h,
                    "width": (r.xmax - r.xmin) as f64 * 100.0 / w,
                    "height": (r.ymax - r.ymin) as f64 * 100.0 / h,
                    "rotation": 0,
                    "rectanglelabels": [r.label],
                },
            });
            if let Some(score) = r.score.filter(|s| s.is_finite()) {
                item["score"] = json!(decimal(score));
            }
            if let Some(review) = &r.review {
                item["meta"] = json!({ "text": [format!("{REVIEW_PREFIX}{review}")] });
            }
            item
        })
        .collect();
    Value::Array(items)
}

/// The rectangles of a `result` list for a `width`x`height` image; other kinds of region (text, other tools)
/// are not ours and are skipped. A rotated rectangle, or one with no or several labels, is an error (VOC has
/// no way to say it): the message says which and how to fix it.
pub fn regions(result: &Value, width: u32, height: u32) -> Result<Vec<Region>, String> {
    let items = result.as_array().ok_or("its result is not a list")?;
    let (w, h) = (width as f64, height as f64);
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        if item["type"] != "rectanglelabels" || item["from_name"] != RECTANGLES {
            continue;
        }
        let value = &item["value"];
        let number = |key: &str| {
            value[key]
                .as_f64()
                .filter(|v| v.is_finite())
                .ok_or(format!("region {i} has no number '{key}'"))
        };
        let (x, y, bw, bh) = (number("x")?, number("y")?, number("width")?, number("height")?);
        if value["rotation"].as_f64().is_some_and(|r| r.abs() > 1e-6) {
            return Err(format!(
                "region {i} is rotated by {} degrees: Pascal VOC boxes are upright, set its rotation to 0",
                value["rotation"]
            ));
        }
        for (key, expected) in [("original_width", width), ("original_height", height)] {
            if let Some(v) = item[key].as_u64().filter(|&v| v != expected as u64) {
                return Err(format!(
                    "region {i} was drawn on an image whose {key} is {v}, not the sample's {expected}"
                ));
            }
        }
        let label = match value["rectanglelabels"].as_array().map(Vec::as_slice) {
            Some([one]) => one.as_str().unwrap_or_default().to_string(),
            _ => {
                return Err(format!(
                    "region {i} must have exactly one label, has {}",
                    value["rectanglelabels"]
                ));
            }
        };
        let review = item["meta"]["text"]
            .as_array()
            .and_then(|t| {
                t.iter()
                    .filter_map(Value::as_str)
                    .find_map(|t| t.strip_prefix(REVIEW_PREFIX))
            })
            .map(|r| r.trim().to_string());
        out.push(Region {
            label,
            xmin: (x * w / 100.0) as f32,
            ymin: (y * h / 100.0) as f32,
            xmax: ((x + bw) * w / 100.0) as f32,
            ymax: ((y + bh) * h / 100.0) as f32,
            score: item["score"].as_f64().map(|s| s as f32),
            review,
        });
    }
    Ok(out)
}

/// The image file name a task was made from: Label Studio keeps an upload as `<8 hex>-NAME` (its `file_upload`,
/// and the last part of `data.image`).
pub fn task_file(task: &Value) -> Option<String> {
    let stored = task["file_upload"]
        .as_str()
        .or_else(|| task["data"][IMAGE].as_str().and_then(|u| u.rsplit('/').next()))?;
    let name = match stored.split_once('-') {
        Some((prefix, rest)) if prefix.len() == 8 && prefix.bytes().all(|b| b.is_ascii_hexdigit()) => rest,
        _ => stored,
    };
    (!name.is_empty()).then(|| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(label: &str, b: (f32, f32, f32, f32), score: Option<f32>, review: Option<&str>) -> Region {
        Region {
            label: label.into(),
            xmin: b.0,
            ymin: b.1,
            xmax: b.2,
            ymax: b.3,
            score,
            review: review.map(String::from),
        }
    }

    #[test]
    fn regions_come_back_as_they_were_written() {
        let boxes = vec![
            region("sign & post", (10.0, 20.5, 110.25, 90.0), Some(0.75), None),
            region("person", (0.0, 0.0, 640.0, 480.0), None, Some("missed")),
        ];
        let text = result(&boxes, 640, 480).to_string();
        let back = regions(&serde_json::from_str(&text).unwrap(), 640, 480).unwrap();
        assert_eq!(back.len(), 2);
        for (a, b) in boxes.iter().zip(&back) {
            assert_eq!((&a.label, a.score, &a.review), (&b.label, b.score, &b.review));
            for (x, y) in [(a.xmin, b.xmin), (a.ymin, b.ymin), (a.xmax, b.xmax), (a.ymax, b.ymax)] {
                assert!((x - y).abs() < 1e-3, "{a:?} {b:?}");
            }
        }
    }

    #[test]
    fn rotated_or_unlabelled_rectangles_are_refused_and_other_tools_skipped() {
        let mut r = result(&[region("a", (1.0, 1.0, 5.0, 5.0), None, None)], 10, 10);
        r[0]["value"]["rotation"] = json!(30);
        assert!(regions(&r, 10, 10).unwrap_err().contains("rotation to 0"));
        r[0]["value"]["rotation"] = json!(0);
        r[0]["value"]["rectanglelabels"] = json!([]);
        assert!(regions(&r, 10, 10).unwrap_err().contains("exactly one label"));
        r[0]["type"] = json!("textarea");
        assert_eq!(regions(&r, 10, 10).unwrap(), vec![]);
        let other_size = result(&[region("a", (1.0, 1.0, 5.0, 5.0), None, None)], 20, 10);
        assert!(
            regions(&other_size, 10, 10)
                .unwrap_err()
                .contains("original_width is 20")
        );
    }

    #[test]
    fn a_task_names_its_uploaded_file() {
        let task = json!({"file_upload": "8a698997-frame-0002.jpg", "data": {"image": "/data/upload/1/8a698997-frame-0002.jpg"}});
        assert_eq!(task_file(&task).as_deref(), Some("frame-0002.jpg"));
        let by_url = json!({"data": {"image": "/data/upload/3/0123abcd-img.jpg"}});
        assert_eq!(task_file(&by_url).as_deref(), Some("img.jpg"));
        assert_eq!(task_file(&json!({"data": {}})), None);
    }

    #[test]
    fn the_config_offers_the_dataset_classes() {
        let labels = vec!["person".to_string(), "a<b".to_string()];
        assert_eq!(config_labels(&label_config(&labels)), labels);
    }
}
