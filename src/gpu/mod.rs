//! The GPU engine: device selection, the shared wgpu device, and one host wrapper per
//! WGSL kernel in `shaders/`. Every kernel has a CPU twin elsewhere in the crate that
//! gives the same answer within tolerance; the CPU engine stays the default.

pub mod assign;
pub mod centroid;
pub mod device;
pub mod matrix;
pub mod neighbors;
#[cfg(test)]
mod neighbors_tests;
pub mod normalize;
pub mod silhouette;
#[cfg(test)]
mod tests;

pub use device::{GpuContext, shared_context, test_context};
pub use matrix::GpuMatrix;

use crate::model::{DeviceInfo, DeviceKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DevicePreference {
    Auto,
    Gpu,
    Cpu,
}

impl std::str::FromStr for DevicePreference {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(DevicePreference::Auto),
            "gpu" => Ok(DevicePreference::Gpu),
            "cpu" => Ok(DevicePreference::Cpu),
            other => Err(format!("--device must be auto, gpu or cpu, not {other:?}")),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("--device gpu: no usable wgpu adapter ({0}); use --device auto or cpu")]
    NoAdapter(String),
}

/// What went wrong on the device. Kernel callers fall back to the CPU twin on any of these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GpuError {
    #[error("wgpu validation error: {0}")]
    Validation(String),
    #[error("the GPU ran out of memory")]
    OutOfMemory,
    #[error("no wgpu adapter: {0}")]
    NoAdapter(String),
    #[error("reading a GPU buffer back failed: {0}")]
    Map(String),
    /// The shape does not fit the device (a single row or the centres exceed one binding).
    #[error("unsupported on this device: {0}")]
    Unsupported(String),
}

impl GpuError {
    fn from_wgpu(e: wgpu::Error) -> Self {
        match e {
            wgpu::Error::OutOfMemory { .. } => GpuError::OutOfMemory,
            wgpu::Error::Validation { description, .. } => GpuError::Validation(description),
            wgpu::Error::Internal { description, .. } => GpuError::Validation(description),
        }
    }
}

#[derive(Debug, Clone)]
pub struct SelectedDevice {
    kind: DeviceKind,
    info: DeviceInfo,
}

impl SelectedDevice {
    pub fn kind(&self) -> DeviceKind {
        self.kind
    }
    pub fn info(&self) -> DeviceInfo {
        self.info.clone()
    }
}

/// Choose where the dense work runs. `Gpu` takes any adapter (a software one included:
/// that is what CI tests with); `Auto` takes only real hardware, because a software
/// rasteriser such as lavapipe is several times slower than the CPU engine.
pub fn select_device(pref: DevicePreference) -> Result<SelectedDevice, DeviceError> {
    match pref {
        DevicePreference::Cpu => Ok(cpu_device()),
        DevicePreference::Gpu => {
            shared_context()
                .map(|ctx| gpu_device(&ctx))
                .map_err(|e| match e {
                    GpuError::NoAdapter(reason) => DeviceError::NoAdapter(reason),
                    other => DeviceError::NoAdapter(other.to_string()),
                })
        }
        DevicePreference::Auto => match shared_context() {
            Ok(ctx) if is_hardware(ctx.adapter_info.device_type) => Ok(gpu_device(&ctx)),
            Ok(ctx) => {
                tracing::info!(
                    adapter = %ctx.adapter_info.name,
                    device_type = ?ctx.adapter_info.device_type,
                    "--device auto: the only adapter is not a hardware GPU; using the CPU engine"
                );
                Ok(cpu_device())
            }
            Err(e) => {
                tracing::info!(error = %e, "--device auto: no wgpu adapter; using the CPU engine");
                Ok(cpu_device())
            }
        },
    }
}

fn is_hardware(t: wgpu::DeviceType) -> bool {
    matches!(
        t,
        wgpu::DeviceType::DiscreteGpu
            | wgpu::DeviceType::IntegratedGpu
            | wgpu::DeviceType::VirtualGpu
    )
}

fn gpu_device(ctx: &GpuContext) -> SelectedDevice {
    SelectedDevice {
        kind: DeviceKind::Gpu,
        info: DeviceInfo {
            kind: "gpu".to_owned(),
            name: ctx.adapter_info.name.clone(),
            backend: ctx.adapter_info.backend.to_str().to_owned(),
        },
    }
}

fn cpu_device() -> SelectedDevice {
    SelectedDevice {
        kind: DeviceKind::Cpu,
        info: DeviceInfo {
            kind: "cpu".to_owned(),
            name: cpu_name(),
            backend: format!("native ({} threads)", rayon::current_num_threads()),
        },
    }
}

/// The CPU model from /proc/cpuinfo where there is one.
fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_owned())
}
