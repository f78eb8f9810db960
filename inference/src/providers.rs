//! Execution providers (CPU, CUDA, TensorRT, OpenVINO): parsing the user's list and registering the first one
//! this ONNX Runtime build and machine offer.

use ort::ep::ExecutionProvider;

/// Execution providers the element can ask ONNX Runtime for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    Cpu,
    Cuda,
    TensorRt,
    OpenVino,
}

impl Provider {
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "cpu" => Some(Self::Cpu),
            "cuda" => Some(Self::Cuda),
            "tensorrt" | "trt" => Some(Self::TensorRt),
            "openvino" => Some(Self::OpenVino),
            _ => None,
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::Cuda => "cuda",
            Self::TensorRt => "tensorrt",
            Self::OpenVino => "openvino",
        }
    }
}

pub fn parse_providers(s: &str) -> Result<Vec<Provider>, String> {
    let list: Vec<Provider> = s
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            Provider::parse(p)
                .ok_or_else(|| format!("unknown execution provider '{p}' (known: cpu, cuda, tensorrt, openvino)"))
        })
        .collect::<Result<_, _>>()?;
    if list.is_empty() {
        Ok(vec![Provider::Cpu])
    } else {
        Ok(list)
    }
}

/// Registers the first provider of `wanted` that works; returns its name (CPU when none does).
pub(crate) fn register_providers(
    builder: &mut ort::session::builder::SessionBuilder,
    wanted: &[Provider],
    warnings: &mut Vec<String>,
) -> &'static str {
    for p in wanted {
        let result: Result<(), String> = match p {
            Provider::Cpu => return "cpu",
            Provider::Cuda => try_register(builder, ort::ep::CUDA::default()),
            Provider::TensorRt => try_register(builder, ort::ep::TensorRT::default()),
            Provider::OpenVino => try_register(builder, ort::ep::OpenVINO::default()),
        };
        match result {
            Ok(()) => return p.as_str(),
            Err(e) => warnings.push(format!(
                "execution provider {} unavailable ({e}); trying the next one",
                p.as_str()
            )),
        }
    }
    if !wanted.contains(&Provider::Cpu) {
        warnings.push("no requested execution provider is available; running on cpu".into());
    }
    "cpu"
}

fn try_register<E: ExecutionProvider>(
    builder: &mut ort::session::builder::SessionBuilder,
    ep: E,
) -> Result<(), String> {
    match E::is_available() {
        Ok(true) => ep.register(builder).map_err(|e| e.to_string()),
        Ok(false) => Err("not in this ONNX Runtime build".into()),
        Err(e) => Err(e.to_string()),
    }
}
