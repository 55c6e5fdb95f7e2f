//! Device selection. The WGSL kernels are not built yet, so every run computes on the CPU
//! engine; asking for the GPU explicitly is refused at start-up rather than ignored.

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
    #[error(
        "--device gpu: this build has no GPU engine yet (the WGSL kernels are planned); use --device auto or cpu"
    )]
    GpuUnavailable,
}

#[derive(Debug, Clone)]
pub struct SelectedDevice {
    info: DeviceInfo,
}

impl SelectedDevice {
    pub fn kind(&self) -> DeviceKind {
        DeviceKind::Cpu
    }
    pub fn info(&self) -> DeviceInfo {
        self.info.clone()
    }
}

pub fn select_device(pref: DevicePreference) -> Result<SelectedDevice, DeviceError> {
    match pref {
        DevicePreference::Gpu => Err(DeviceError::GpuUnavailable),
        DevicePreference::Auto | DevicePreference::Cpu => Ok(SelectedDevice {
            info: DeviceInfo {
                kind: "cpu".to_owned(),
                name: cpu_name(),
                backend: format!("native ({} threads)", rayon::current_num_threads()),
            },
        }),
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
