//! Class labels. SSD models reserve class 0 for the background, so labels are indexed by class id with
//! index 0 the background: a labels file that starts with a BACKGROUND line is taken as is, one that does not
//! (COCO-style lists for 1-based TF ids) gets the background prepended.

use std::path::Path;

pub const BACKGROUND: &str = "BACKGROUND";

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Labels {
    /// Indexed by class id; index 0 is the background.
    names: Vec<String>,
}

fn is_background(name: &str) -> bool {
    matches!(
        name.to_ascii_lowercase().as_str(),
        "background" | "__background__" | "bg"
    )
}

impl Labels {
    /// Parses one label per line (blank lines and `#` comments skipped; control characters become spaces).
    pub fn parse(text: &str) -> Self {
        let lines: Vec<String> = text
            .lines()
            .map(|l| l.trim())
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| clean_label(l, 0))
            .filter(|l| !l.is_empty())
            .collect();
        Self::from_names(lines)
    }

    /// Builds from a list that may or may not start with the background.
    pub fn from_names(names: Vec<String>) -> Self {
        let mut out = Vec::with_capacity(names.len() + 1);
        match names.first() {
            Some(first) if is_background(first) => {}
            _ => out.push(BACKGROUND.to_string()),
        }
        out.extend(names);
        Self { names: out }
    }

    pub fn read_file(path: &Path) -> Result<Self, String> {
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("cannot read labels file {}: {e}", path.display()))?;
        let labels = Self::parse(&text);
        if labels.num_foreground() == 0 {
            return Err(format!("labels file {} contains no labels", path.display()));
        }
        Ok(labels)
    }

    /// Number of classes including the background.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.num_foreground() == 0
    }

    pub fn num_foreground(&self) -> usize {
        self.names.len().saturating_sub(1)
    }

    pub fn name(&self, class_id: usize) -> Option<&str> {
        self.names.get(class_id).map(String::as_str)
    }

    /// The id of a label name (case-insensitive), never the background.
    pub fn id_of(&self, name: &str) -> Option<usize> {
        self.names
            .iter()
            .skip(1)
            .position(|n| n.eq_ignore_ascii_case(name))
            .map(|i| i + 1)
    }

    /// Every label in id order, the background first.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Foreground labels in id order (without the background).
    pub fn foreground(&self) -> &[String] {
        if self.names.is_empty() { &[] } else { &self.names[1..] }
    }

    /// Serialised form: BACKGROUND first, one label per line (what labels.txt and model metadata hold).
    pub fn to_text(&self) -> String {
        names_to_text(&self.names)
    }
}

/// A label list (BACKGROUND first) as labels.txt holds it: one label per line.
pub fn names_to_text(names: &[String]) -> String {
    let mut s = String::new();
    for n in names {
        s.push_str(n);
        s.push('\n');
    }
    s
}

/// A label fit for one line of labels.txt, XML text and JSON: control characters (newlines included) become
/// spaces, the ends are trimmed and a leading `#` (a comment in labels.txt) dropped; an empty result becomes `class-ID` (nothing when `class_id` is 0).
pub fn clean_label(label: &str, class_id: usize) -> String {
    let cleaned: String = label
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        // A leading '#' would make the line a comment in labels.txt.
        .trim_start_matches(|c: char| c == '#' || c.is_whitespace())
        .trim_end()
        .to_string();
    if cleaned.is_empty() && class_id > 0 {
        format!("class-{class_id}")
    } else {
        cleaned
    }
}

/// The largest class id accepted from a user when the model names no labels (ids index per-class tables).
pub const MAX_CLASS_ID: usize = 65_535;

/// A class given by the user either by name or by numeric id (`classes=person,3`).
#[derive(Debug, Clone, PartialEq)]
pub enum ClassRef {
    Id(usize),
    Name(String),
}

impl ClassRef {
    pub fn parse(s: &str) -> Self {
        let s = s.trim();
        match s.parse::<usize>() {
            Ok(id) => Self::Id(id),
            Err(_) => Self::Name(s.to_string()),
        }
    }

    /// Resolves against labels; a name that is not a label, or an id beyond them (beyond `MAX_CLASS_ID` for a
    /// model without labels), is an error naming what is known.
    pub fn resolve(&self, labels: &Labels) -> Result<usize, String> {
        match self {
            Self::Id(id) if labels.is_empty() && *id > MAX_CLASS_ID => Err(format!(
                "class id {id} is beyond the largest supported id {MAX_CLASS_ID}"
            )),
            Self::Id(id) if !labels.is_empty() && *id >= labels.len() => Err(format!(
                "class id {id} is beyond the model's labels (ids 1..={}: {})",
                labels.num_foreground(),
                labels.foreground().join(", ")
            )),
            Self::Id(id) => Ok(*id),
            Self::Name(name) => labels.id_of(name).ok_or_else(|| {
                if labels.is_empty() {
                    format!("unknown class '{name}': the model has no labels, give class ids instead")
                } else {
                    format!(
                        "unknown class '{name}'; known labels: {}",
                        labels.foreground().join(", ")
                    )
                }
            }),
        }
    }
}

/// Parses `person,car,3` into class references; empty input means "all classes".
pub fn parse_class_list(s: &str) -> Vec<ClassRef> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(ClassRef::parse)
        .collect()
}

/// Parses `person=0.6,car=0.3` into (class, threshold) pairs.
pub fn parse_class_thresholds(s: &str) -> Result<Vec<(ClassRef, f32)>, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| format!("'{part}' is not of the form class=threshold"))?;
        let t: f32 = v
            .trim()
            .parse()
            .map_err(|_| format!("'{v}' in '{part}' is not a number"))?;
        if !(0.0..=1.0).contains(&t) {
            return Err(format!("threshold {t} in '{part}' is outside 0..1"));
        }
        out.push((ClassRef::parse(k), t));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn background_is_handled_once() {
        let with = Labels::parse("BACKGROUND\nperson\ncar\n");
        let without = Labels::parse("person\n\ncar\n");
        assert_eq!(with, without);
        assert_eq!(with.len(), 3);
        assert_eq!(with.name(1), Some("person"));
        assert_eq!(with.id_of("CAR"), Some(2));
        assert_eq!(with.id_of("background"), None);
        assert_eq!(with.to_text(), "BACKGROUND\nperson\ncar\n");
    }

    #[test]
    fn class_lists_and_thresholds() {
        let labels = Labels::parse("person\ncar\n");
        let l = parse_class_list(" person, 2 ,");
        assert_eq!(l, vec![ClassRef::Name("person".into()), ClassRef::Id(2)]);
        assert_eq!(l[0].resolve(&labels), Ok(1));
        let err = ClassRef::Name("dog".into()).resolve(&labels).unwrap_err();
        assert!(ClassRef::Id(3).resolve(&labels).unwrap_err().contains("beyond"));
        assert!(
            ClassRef::parse("18446744073709551615")
                .resolve(&Labels::default())
                .is_err()
        );
        assert_eq!(ClassRef::Id(70).resolve(&Labels::default()), Ok(70));
        assert!(err.contains("person, car"), "{err}");
        let t = parse_class_thresholds("person=0.6,2=0.3").unwrap();
        assert_eq!(t[1], (ClassRef::Id(2), 0.3));
        assert!(parse_class_thresholds("person").is_err());
        assert!(parse_class_thresholds("person=x").is_err());
        assert!(parse_class_thresholds("person=1.5").is_err());
    }
}
