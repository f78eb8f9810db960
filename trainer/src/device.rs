//! Where training and checkpoint evaluation run: burn's `flex` backend on the CPU by default; built with the
//! `wgpu` cargo feature, `--device wgpu` runs them on a GPU through wgpu (Vulkan, Metal or DX12).

use burn::tensor::Device;
use std::sync::OnceLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Cpu,
    #[cfg(feature = "wgpu")]
    Wgpu,
}

static CHOSEN: OnceLock<Kind> = OnceLock::new();

pub fn parse(s: &str) -> Result<Kind, String> {
    match s {
        "cpu" => Ok(Kind::Cpu),
        #[cfg(feature = "wgpu")]
        "wgpu" => Ok(Kind::Wgpu),
        #[cfg(not(feature = "wgpu"))]
        "wgpu" => Err("--device wgpu: this trainer was built without GPU support \
             (cargo build --release -p mobilenet-trainer --features wgpu)"
            .into()),
        other => Err(format!("--device {other}: expected cpu or wgpu")),
    }
}

/// Chooses the device for the rest of the process (the first choice wins).
pub fn select(kind: Kind) {
    let _ = CHOSEN.set(kind);
}

/// The device computations run on (without autodiff).
pub fn compute() -> Device {
    match CHOSEN.get().copied().unwrap_or(Kind::Cpu) {
        Kind::Cpu => Device::flex(),
        #[cfg(feature = "wgpu")]
        Kind::Wgpu => Device::wgpu(burn::tensor::DeviceKind::DefaultDevice),
    }
}
