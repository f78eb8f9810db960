//! ONNX `metadata_props` keys that describe a detector to `mobilenetdetect`. The trainer's export writes all of
//! them; models from elsewhere may carry none, and the element then infers what it can from the graph.
//!
//! | key | values | meaning |
//! |---|---|---|
//! | `mobilenetdetect.format` | `tf-od`, `ssd-raw`, `ssd-decoded` | output convention, see [`ModelFormat`] |
//! | `mobilenetdetect.labels` | one label per line, `BACKGROUND` first | class names by id |
//! | `mobilenetdetect.input-layout` | `nchw`, `nhwc` | input tensor layout |
//! | `mobilenetdetect.channel-order` | `rgb`, `bgr` | channel order of the input |
//! | `mobilenetdetect.input-mean` | `m0,m1,m2` | per channel, in channel order of the tensor; tensor = (pixel - mean) / std |
//! | `mobilenetdetect.input-std` | `s0,s1,s2` | per channel |
//! | `mobilenetdetect.input-size` | `WIDTHxHEIGHT` | input size, for models with dynamic spatial dims |
//! | `mobilenetdetect.box-order` | `xyxy`, `yxyx` | corner order of decoded boxes |
//! | `mobilenetdetect.box-encoding` | `tf`, `xywh` | raw regression encoding (ssd-raw) |
//! | `mobilenetdetect.score-activation` | `sigmoid`, `softmax`, `none` | how raw class logits become scores |
//! | `mobilenetdetect.anchors` | one `cy cx h w` line per anchor | priors for ssd-raw models |

pub const KEY_FORMAT: &str = "mobilenetdetect.format";
pub const KEY_LABELS: &str = "mobilenetdetect.labels";
pub const KEY_INPUT_LAYOUT: &str = "mobilenetdetect.input-layout";
pub const KEY_CHANNEL_ORDER: &str = "mobilenetdetect.channel-order";
pub const KEY_INPUT_MEAN: &str = "mobilenetdetect.input-mean";
pub const KEY_INPUT_STD: &str = "mobilenetdetect.input-std";
pub const KEY_INPUT_SIZE: &str = "mobilenetdetect.input-size";
pub const KEY_BOX_ORDER: &str = "mobilenetdetect.box-order";
pub const KEY_BOX_ENCODING: &str = "mobilenetdetect.box-encoding";
pub const KEY_SCORE_ACTIVATION: &str = "mobilenetdetect.score-activation";
pub const KEY_ANCHORS: &str = "mobilenetdetect.anchors";

pub const ALL_KEYS: &[&str] = &[
    KEY_FORMAT,
    KEY_LABELS,
    KEY_INPUT_LAYOUT,
    KEY_CHANNEL_ORDER,
    KEY_INPUT_MEAN,
    KEY_INPUT_STD,
    KEY_INPUT_SIZE,
    KEY_BOX_ORDER,
    KEY_BOX_ENCODING,
    KEY_SCORE_ACTIVATION,
    KEY_ANCHORS,
];

macro_rules! string_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident = $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vm])* $variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn parse(s: &str) -> Option<Self> {
                match s.trim().to_ascii_lowercase().as_str() {
                    $($s => Some(Self::$variant),)+
                    _ => None,
                }
            }

            pub fn as_str(&self) -> &'static str {
                match self { $(Self::$variant => $s),+ }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum!(
    /// The output convention of a detector.
    ModelFormat {
        /// TF Object Detection API export: uint8 NHWC input, NMS inside, detection_* outputs.
        TfOd = "tf-od",
        /// Box encodings [1,A,4] + class logits [1,A,C] and anchors.
        SsdRaw = "ssd-raw",
        /// Corner-form normalised boxes [1,A,4] + scores [1,A,C] or [1,A].
        SsdDecoded = "ssd-decoded",
    }
);

string_enum!(
    InputLayout {
        Nchw = "nchw",
        Nhwc = "nhwc",
    }
);

string_enum!(
    ChannelOrder {
        Rgb = "rgb",
        Bgr = "bgr",
    }
);

string_enum!(
    BoxOrder {
        Xyxy = "xyxy",
        Yxyx = "yxyx",
    }
);

string_enum!(
    ScoreActivation {
        Sigmoid = "sigmoid",
        Softmax = "softmax",
        /// Scores are already probabilities.
        None = "none",
    }
);

/// Parses `a,b,c` into three finite numbers (input mean / std).
pub fn parse_triplet(s: &str) -> Result<[f32; 3], String> {
    let v: Vec<f32> = s
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|p| !p.is_empty())
        .map(|p| p.parse::<f32>().map_err(|_| format!("'{p}' is not a number")))
        .collect::<Result<_, _>>()?;
    match v.as_slice() {
        [x] if x.is_finite() => Ok([*x; 3]),
        [a, b, c] if [a, b, c].iter().all(|x| x.is_finite()) => Ok([*a, *b, *c]),
        _ => Err(format!("'{s}' must be one number or three comma-separated numbers")),
    }
}

pub fn format_triplet(v: [f32; 3]) -> String {
    format!("{},{},{}", v[0], v[1], v[2])
}

/// Parses `WIDTHxHEIGHT`.
pub fn parse_size(s: &str) -> Option<(u32, u32)> {
    let (w, h) = s.trim().split_once(['x', 'X'])?;
    let (w, h) = (w.trim().parse().ok()?, h.trim().parse().ok()?);
    input_size_ok(w, h).then_some((w, h))
}

/// The largest model input side accepted (a tensor of 16384x16384x3 floats is already 3 GiB): a model or its
/// metadata claiming more is refused rather than allocated.
pub const MAX_INPUT_SIDE: u32 = 16_384;

/// Whether a model input of `width` x `height` is usable: neither side 0 nor above `MAX_INPUT_SIDE`.
pub fn input_size_ok(width: u32, height: u32) -> bool {
    (1..=MAX_INPUT_SIDE).contains(&width) && (1..=MAX_INPUT_SIDE).contains(&height)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_round_trip() {
        for f in ModelFormat::ALL {
            assert_eq!(ModelFormat::parse(f.as_str()), Some(*f));
        }
        assert_eq!(ModelFormat::parse(" SSD-Decoded "), Some(ModelFormat::SsdDecoded));
        assert_eq!(ModelFormat::parse("yolo"), None);
    }

    #[test]
    fn triplets_and_sizes() {
        assert_eq!(parse_triplet("127.5,127.5,127.5"), Ok([127.5; 3]));
        assert_eq!(parse_triplet("0.5"), Ok([0.5; 3]));
        assert!(parse_triplet("1,2").is_err());
        assert!(parse_triplet("a,b,c").is_err());
        assert_eq!(parse_size("300x200"), Some((300, 200)));
        assert_eq!(parse_size("0x2"), None);
    }
}
