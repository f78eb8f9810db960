//! Where training and checkpoint evaluation run: burn's `flex` backend on the CPU by default; built with the
//! `wgpu` cargo feature, `--device wgpu` runs them on a GPU through wgpu (Vulkan, Metal or DX12). The device is
//! chosen once by the command line and passed to whatever computes.

use burn::tensor::Device;

/// The device a `--device` value names.
pub fn parse(s: &str) -> Result<Device, String> {
    match s {
        "cpu" => Ok(cpu()),
        #[cfg(feature = "wgpu")]
        "wgpu" => Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice)),
        #[cfg(not(feature = "wgpu"))]
        "wgpu" => Err("--device wgpu: this trainer was built without GPU support \
             (cargo build --release -p mobilenet-trainer --features wgpu)"
            .into()),
        other => Err(format!("--device {other}: expected cpu or wgpu")),
    }
}

/// The CPU (burn's flex backend).
pub fn cpu() -> Device {
    Device::flex()
}
