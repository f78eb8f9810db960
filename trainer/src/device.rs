//! Where training and checkpoint evaluation run: burn's `flex` backend on the CPU by default; built with the
//! `wgpu` cargo feature, `--device wgpu` runs them on a GPU through wgpu (Vulkan, Metal or DX12); with the `tch`
//! feature, `--device libtorch` runs them on LibTorch's CPU kernels (PyTorch's). The device is chosen once by the
//! command line and passed to whatever computes.

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
        // burn marks its LibTorch backend deprecated (CubeCL's `cpu` is to replace it, and does not build here);
        // it stays the way to train on PyTorch's own kernels.
        #[cfg(feature = "tch")]
        #[allow(deprecated)]
        "libtorch" => Ok(Device::libtorch()),
        #[cfg(not(feature = "tch"))]
        "libtorch" => Err("--device libtorch: this trainer was built without LibTorch \
             (LIBTORCH_USE_PYTORCH=1 with PyPI's torch 2.9.0 in python3, then \
             cargo build --release -p mobilenet-trainer --features tch)"
            .into()),
        other => Err(format!("--device {other}: expected cpu, wgpu or libtorch")),
    }
}

/// The CPU (burn's flex backend).
pub fn cpu() -> Device {
    Device::flex()
}
