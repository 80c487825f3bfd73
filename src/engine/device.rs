//! The one place where candle devices are created.
use candle_core::Device;

use crate::error::Result;

/// Where the model computes. Only the CPU exists yet; a CUDA backend adds its variant here and
/// nowhere else decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    #[default]
    Cpu,
}

impl DeviceChoice {
    /// The candle device to compute on.
    pub fn create(self) -> Result<Device> {
        match self {
            DeviceChoice::Cpu => Ok(Device::Cpu),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DeviceChoice::Cpu => "cpu",
        }
    }
}

/// The host, where tensors are read from files and weights converted before they move to the
/// compute device (and where the CPU kernels run).
pub fn host() -> Device {
    Device::Cpu
}
