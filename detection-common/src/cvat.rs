//! CVAT's "CVAT for images 1.1" XML (what CVAT exports and imports as "CVAT for images"): the boxes of a set of
//! images, so that captures can be reviewed in CVAT and the result read back. Besides the box, each box carries
//! two attributes of ours: `confidence` (the detector's, when it has one) and `review` (why a person must look at
//! it: `missed`, `disagreement`; empty once confirmed).

use crate::voc::Problem;
use std::fmt::Write as _;
use std::path::Path;

/// The values the `review` attribute may take (the first, empty, means confirmed).
pub const REVIEW_VALUES: &[&str] = &["", "missed", "disagreement"];

#[derive(Debug, Clone, PartialEq)]
pub struct CvatBox {
    pub label: String,
    pub xtl: f32,
    pub ytl: f32,
    pub xbr: f32,
    pub ybr: f32,
    pub confidence: Option<f32>,
    pub review: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CvatImage {
    /// The image's file name (`ID.jpg`).
    pub name: String,
    pub width: u32,
    pub height: u32,
    pub boxes: Vec<CvatBox>,
}

/// Escapes text for an XML attribute or element.
pub(crate) fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The XML of `images` as one CVAT task named `task` with the classes `labels`.
pub fn write(task: &str, labels: &[String], images: &[CvatImage]) -> String {
    let mut s = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<annotations>\n  <version>1.1</version>\n");
    let _ = write!(
        s,
        "  <meta>\n    <task>\n      <name>{}</name>\n      <size>{}</size>\n      <mode>annotation</mode>\n      <labels>\n",
        escape(task),
        images.len()
    );
    let review_values = REVIEW_VALUES.join("\n");
    for label in labels {
        let _ = write!(
            s,
            "        <label>\n          <name>{}</name>\n          <type>rectangle</type>\n          <attributes>\n\
             \x20           <attribute>\n              <name>review</name>\n              <mutable>True</mutable>\n\
             \x20             <input_type>select</input_type>\n              <default_value></default_value>\n\
             \x20             <values>{review_values}</values>\n            </attribute>\n\
             \x20           <attribute>\n              <name>confidence</name>\n              <mutable>True</mutable>\n\
             \x20             <input_type>text</input_type>\n              <default_value></default_value>\n\
             \x20             <values></values>\n            </attribute>\n          </attributes>\n        </label>\n",
            escape(label)
        );
    }
    s.push_str("      </labels>\n    </task>\n  </meta>\n");
    for (id, image) in images.iter().enumerate() {
        let _ = writeln!(
            s,
            "  <image id=\"{id}\" name=\"{}\" width=\"{}\" height=\"{}\">",
            escape(&image.name),
            image.width,
            image.height
        );
        for b in &image.boxes {
            let _ = writeln!(
                s,
                "    <box label=\"{}\" source=\"auto\" occluded=\"0\" xtl=\"{:.2}\" ytl=\"{:.2}\" xbr=\"{:.2}\" \
                 ybr=\"{:.2}\" z_order=\"0\">",
                escape(&b.label),
                b.xtl,
                b.ytl,
                b.xbr,
                b.ybr
            );
            let _ = writeln!(
                s,
                "      <attribute name=\"review\">{}</attribute>",
                escape(b.review.as_deref().unwrap_or(""))
            );
            let confidence = b.confidence.map(|c| c.to_string()).unwrap_or_default();
            let _ = writeln!(s, "      <attribute name=\"confidence\">{confidence}</attribute>");
            s.push_str("    </box>\n");
        }
        s.push_str("  </image>\n");
    }
    s.push_str("</annotations>\n");
    s
}

/// Reads a "CVAT for images 1.1" file: every `<image>` and its `<box>`es (other shapes are an error: the
/// dataset holds boxes only).
pub fn parse(xml: &str, file: &Path) -> Result<Vec<CvatImage>, Problem> {
    let problem = |line: u32, message: String| Problem {
        file: file.to_path_buf(),
        line,
        message,
    };
    let doc = roxmltree::Document::parse(xml).map_err(|e| problem(e.pos().row, format!("not XML: {e}")))?;
    let root = doc.root_element();
    if !root.has_tag_name("annotations") {
        return Err(problem(1, "not a CVAT for images file (no <annotations>)".into()));
    }
    let line_of = |n: roxmltree::Node<'_, '_>| doc.text_pos_at(n.range().start).row;
    let mut images = Vec::new();
    for node in root.children().filter(|c| c.has_tag_name("image")) {
        let line = line_of(node);
        let attr = |n: roxmltree::Node<'_, '_>, name: &str| -> Result<String, Problem> {
            n.attribute(name)
                .map(str::to_string)
                .ok_or_else(|| problem(line_of(n), format!("<{}> has no {name}", n.tag_name().name())))
        };
        let number = |n: roxmltree::Node<'_, '_>, name: &str| -> Result<f32, Problem> {
            let v = attr(n, name)?;
            v.parse::<f32>()
                .ok()
                .filter(|x| x.is_finite())
                .ok_or_else(|| problem(line_of(n), format!("{name}=\"{v}\" is not a number")))
        };
        let mut boxes = Vec::new();
        for shape in node.children().filter(|c| c.is_element()) {
            if !shape.has_tag_name("box") {
                return Err(problem(
                    line_of(shape),
                    format!(
                        "<{}> in {}: only boxes can go back into the dataset",
                        shape.tag_name().name(),
                        attr(node, "name")?
                    ),
                ));
            }
            let attribute = |name: &str| {
                shape
                    .children()
                    .find(|a| a.has_tag_name("attribute") && a.attribute("name") == Some(name))
                    .and_then(|a| a.text())
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
            };
            let b = CvatBox {
                label: attr(shape, "label")?,
                xtl: number(shape, "xtl")?,
                ytl: number(shape, "ytl")?,
                xbr: number(shape, "xbr")?,
                ybr: number(shape, "ybr")?,
                confidence: attribute("confidence").and_then(|c| c.parse().ok()),
                review: attribute("review").map(str::to_string),
            };
            if b.xbr <= b.xtl || b.ybr <= b.ytl {
                return Err(problem(line_of(shape), format!("box '{}' is empty", b.label)));
            }
            boxes.push(b);
        }
        let width = number(node, "width")?;
        let height = number(node, "height")?;
        if width < 1.0 || height < 1.0 {
            return Err(problem(line, format!("image size {width}x{height} is empty")));
        }
        images.push(CvatImage {
            name: attr(node, "name")?,
            width: width as u32,
            height: height as u32,
            boxes,
        });
    }
    Ok(images)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_and_boxes_round_trip() {
        let images = vec![CvatImage {
            name: "a&b.jpg".into(),
            width: 320,
            height: 240,
            boxes: vec![
                CvatBox {
                    label: "stop".into(),
                    xtl: 1.0,
                    ytl: 2.5,
                    xbr: 30.0,
                    ybr: 40.25,
                    confidence: Some(0.42),
                    review: None,
                },
                CvatBox {
                    label: "yield".into(),
                    xtl: 100.0,
                    ytl: 100.0,
                    xbr: 140.0,
                    ybr: 150.0,
                    confidence: None,
                    review: Some("missed".into()),
                },
            ],
        }];
        let xml = write("captures", &["stop".into(), "yield".into()], &images);
        assert!(xml.contains("<version>1.1</version>") && xml.contains("<values>\nmissed\ndisagreement</values>"));
        assert_eq!(parse(&xml, Path::new("x.xml")).unwrap(), images);
    }

    #[test]
    fn other_shapes_and_broken_boxes_are_errors_with_the_line() {
        let xml = "<annotations>\n<image name=\"a.jpg\" width=\"10\" height=\"10\">\n<polygon label=\"x\"/>\n</image>\n</annotations>";
        let e = parse(xml, Path::new("t.xml")).unwrap_err();
        assert!(e.message.contains("only boxes") && e.line == 3, "{e}");
        let xml = "<annotations><image name=\"a.jpg\" width=\"10\" height=\"10\"><box label=\"x\" xtl=\"5\" ytl=\"1\" xbr=\"nan\" ybr=\"2\"/></image></annotations>";
        assert!(
            parse(xml, Path::new("t.xml"))
                .unwrap_err()
                .message
                .contains("not a number")
        );
    }
}
