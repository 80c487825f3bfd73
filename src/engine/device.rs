//! The one place where candle devices are created, and what rftx knows of them: which device a
//! `device = "…"` setting means, whether this build can use it, and (on a GPU) its name,
//! compute capability and memory.
use candle_core::Device;

use crate::base::error::{Error, Result, Site};

/// Where the model computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    #[default]
    Cpu,
    /// A CUDA GPU, by ordinal.
    Cuda(usize),
}

/// What to do to get a CUDA build.
pub const CUDA_BUILD_HINT: &str = "build rftx with CUDA: CUDA_COMPUTE_CAP=90 scripts/build-cuda.sh for an H100/H200 (75 for a T4), or set device = \"cpu\"";

impl DeviceChoice {
    /// Resolves a `device` setting from the setting and the build alone, never by probing the
    /// machine, so that a config means the same device wherever it is read: `cpu`; `cuda`,
    /// `cuda:N`; `auto`, which is the first GPU in a build with CUDA and the CPU in one without.
    /// Whether the device can be used is [`DeviceChoice::create`]'s business. Errors are
    /// sentences for the caller to prefix with the key.
    pub fn resolve(setting: &str) -> std::result::Result<DeviceChoice, String> {
        match setting.trim().to_ascii_lowercase().as_str() {
            "cpu" => Ok(DeviceChoice::Cpu),
            "auto" if cfg!(feature = "cuda") => Ok(DeviceChoice::Cuda(0)),
            "auto" => Ok(DeviceChoice::Cpu),
            "cuda" | "gpu" => Ok(DeviceChoice::Cuda(0)),
            other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(n)) => Ok(DeviceChoice::Cuda(n)),
                _ => Err(format!("`{setting}` is not a device: use auto, cpu, cuda or cuda:N")),
            },
        }
    }

    /// Whether a setting is well-formed (without probing for a GPU).
    pub fn validate(setting: &str) -> std::result::Result<(), String> {
        Self::resolve(setting).map(|_| ())
    }

    pub fn is_gpu(self) -> bool {
        matches!(self, DeviceChoice::Cuda(_))
    }

    /// The candle device to compute on. A GPU needs a build with CUDA (else an input error that
    /// says how to build one) and kernels built for its compute capability; one that cannot be
    /// opened now is [`Error::DeviceUnavailable`].
    pub fn create(self) -> Result<Device> {
        match self {
            DeviceChoice::Cpu => Ok(Device::Cpu),
            DeviceChoice::Cuda(_) if !cfg!(feature = "cuda") => Err(Error::Device(format!(
                "device `{}` needs a GPU, but this rftx was built without CUDA; {CUDA_BUILD_HINT}",
                self.as_str()
            ))),
            DeviceChoice::Cuda(n) => {
                check_driver_version()?;
                let device = Device::new_cuda(n).map_err(|e| {
                    Error::DeviceUnavailable(format!(
                        "cannot open CUDA device {n}: {}; check nvidia-smi, or set device = \"cpu\"",
                        crate::base::error::candle_message(&e)
                    ))
                })?;
                check_compute_capability(&device, n)?;
                Ok(device)
            }
        }
    }

    pub fn as_str(self) -> String {
        match self {
            DeviceChoice::Cpu => "cpu".into(),
            DeviceChoice::Cuda(n) => format!("cuda:{n}"),
        }
    }
}

/// The host, where tensors are read from files and weights converted before they move to the
/// compute device (and where the CPU kernels run).
pub fn host() -> Device {
    Device::Cpu
}

/// What a computation's numerics depend on, as a short string: the GPU model and compute
/// capability, or for the CPU the instruction-set features the kernels dispatch on (the int8
/// kernel on AVX2+FMA, candle's GEMMs on AVX-512/AVX2/FMA). Two sessions with equal strings
/// compute the same bytes; the CPU's model name does not enter.
pub fn numerics(choice: DeviceChoice, gpu: Option<&GpuInfo>) -> String {
    match (choice, gpu) {
        (DeviceChoice::Cuda(_), Some(g)) => format!("cuda {} (cc {})", g.name, g.compute_capability),
        (DeviceChoice::Cuda(n), None) => format!("cuda:{n}"),
        (DeviceChoice::Cpu, _) => format!("cpu {}", cpu_features()),
    }
}

/// The x86-64 instruction sets this binary was compiled to use everywhere (`-C target-cpu`, set
/// in `.cargo/config.toml`), as far as rftx's and candle's code depends on them, and whether this
/// CPU has each. A binary is only as portable as this list: one built with `target-cpu=native`
/// on an AVX-512 machine dies with SIGILL on a node without it.
#[cfg(target_arch = "x86_64")]
pub fn compiled_features() -> Vec<(&'static str, bool)> {
    let mut out = Vec::new();
    macro_rules! check {
        ($($f:tt),*) => {$(
            if cfg!(target_feature = $f) {
                out.push(($f, is_x86_feature_detected!($f)));
            }
        )*};
    }
    check!(
        "sse4.2",
        "popcnt",
        "avx",
        "avx2",
        "fma",
        "f16c",
        "bmi2",
        "avx512f",
        "avx512bw",
        "avx512vl",
        "avx512vnni"
    );
    out
}

#[cfg(not(target_arch = "x86_64"))]
pub fn compiled_features() -> Vec<(&'static str, bool)> {
    Vec::new()
}

/// `avx,avx2,fma,…`: what [`compiled_features`] lists, recorded with every session.
pub fn built_for() -> String {
    let names: Vec<&str> = compiled_features().iter().map(|(f, _)| *f).collect();
    format!("{} {}", std::env::consts::ARCH, names.join(","))
}

/// Refuses to go on, with a message that says how to build a binary that runs here, on a CPU
/// that lacks an instruction set this binary was compiled for (before any of its code can die
/// with SIGILL in the middle of a run).
pub fn check_cpu() -> Result<()> {
    let missing: Vec<&str> = compiled_features()
        .iter()
        .filter(|(_, has)| !has)
        .map(|(f, _)| *f)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(Error::Device(format!(
        "this rftx was compiled for CPUs with {} and this one lacks {}: build it here, or for every node of a cluster with the baseline of .cargo/config.toml (-C target-cpu=x86-64-v3: any x86-64 CPU since 2013 with AVX2 and FMA), not target-cpu=native",
        built_for(),
        missing.join(", ")
    )))
}

#[cfg(target_arch = "x86_64")]
fn cpu_features() -> String {
    let detected = [
        ("avx512f", is_x86_feature_detected!("avx512f")),
        ("avx2", is_x86_feature_detected!("avx2")),
        ("fma", is_x86_feature_detected!("fma")),
    ];
    let names: Vec<&str> = detected.iter().filter(|(_, on)| *on).map(|(n, _)| *n).collect();
    format!(
        "x86_64 {}",
        if names.is_empty() {
            "baseline".into()
        } else {
            names.join(",")
        }
    )
}

#[cfg(not(target_arch = "x86_64"))]
fn cpu_features() -> String {
    std::env::consts::ARCH.to_string()
}

/// A GPU as rftx records it: in the manifest and, since numerics differ between GPU models, in
/// the run hash.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GpuInfo {
    pub name: String,
    /// `9.0` for an H100/H200, `7.5` for a T4.
    pub compute_capability: String,
    pub total_bytes: u64,
}

/// The compute capability this binary's CUDA kernels were built for (`CUDA_COMPUTE_CAP`).
pub fn built_compute_capability() -> Option<&'static str> {
    option_env!("CUDA_COMPUTE_CAP")
}

#[cfg(feature = "cuda")]
pub fn gpu_info(device: &Device) -> Result<Option<GpuInfo>> {
    let Ok(cuda) = device.as_cuda_device() else {
        return Ok(None);
    };
    let ctx = cuda.cuda_stream().context().clone();
    let e = |e: candle_core::cuda::cudarc::driver::DriverError| Error::DeviceUnavailable(format!("{e:?}"));
    let (major, minor) = ctx.compute_capability().map_err(e)?;
    Ok(Some(GpuInfo {
        name: ctx.name().map_err(e)?,
        compute_capability: format!("{major}.{minor}"),
        total_bytes: ctx.total_mem().map_err(e)? as u64,
    }))
}

#[cfg(not(feature = "cuda"))]
pub fn gpu_info(_device: &Device) -> Result<Option<GpuInfo>> {
    Ok(None)
}

/// Device memory of a GPU run: the peak in use per window, and an optional limit.
///
/// `peak()` is the default memory pool's high-water mark of memory in use since the last
/// `reset_peak()` (every candle tensor is allocated from that pool with `cuMemAllocAsync`:
/// weights, KV caches, activations, logits), plus what the CUDA runtime holds outside the pool
/// (context, module images, cuBLAS workspaces), read as device memory in use (`cuMemGetInfo`)
/// minus the pool's reserved memory and the limit's reservation. Other processes on the same
/// GPU would count in that second term.
pub struct GpuMemory {
    #[cfg(feature = "cuda")]
    inner: cuda_memory::Inner,
}

impl GpuMemory {
    /// `None` on the CPU.
    #[allow(unused_variables)]
    pub fn new(device: &Device) -> Result<Option<GpuMemory>> {
        #[cfg(feature = "cuda")]
        if let Ok(cuda) = device.as_cuda_device() {
            return Ok(Some(GpuMemory {
                inner: cuda_memory::Inner::new(cuda)?,
            }));
        }
        Ok(None)
    }

    /// Makes the process see at most `bytes` of device memory from now on, by reserving the
    /// rest (call it before loading the model). Returns the bytes reserved.
    #[allow(unused_variables, unused_mut)]
    pub fn limit(&mut self, bytes: u64) -> Result<u64> {
        #[cfg(feature = "cuda")]
        return allocation(Site::Reserve, 1, || self.inner.limit(bytes));
        #[cfg(not(feature = "cuda"))]
        Ok(0)
    }

    pub fn reset_peak(&self) {
        #[cfg(feature = "cuda")]
        self.inner.reset_peak();
    }

    /// Peak bytes in use since the last reset, the runtime's included (synchronises).
    pub fn peak(&self) -> u64 {
        #[cfg(feature = "cuda")]
        return self.inner.peak();
        #[cfg(not(feature = "cuda"))]
        0
    }
}

/// Runs the device allocation `f` at `site`, for `rows` sequences: the device's out-of-memory
/// comes back as [`Error::DeviceOutOfMemory`] at that site, and so does one injected there for
/// tests ([`OOM_ENV`]). Every allocation of a run goes through here.
pub fn allocation<T>(site: Site, rows: usize, f: impl FnOnce() -> Result<T>) -> Result<T> {
    if let Some(message) = injected_oom(site, rows) {
        return Err(Error::DeviceOutOfMemory { site, rows, message });
    }
    f().map_err(|e| match e {
        Error::Candle(c) if is_out_of_memory(&c) => Error::DeviceOutOfMemory {
            site,
            rows,
            message: crate::base::error::candle_message(&c),
        },
        other => other,
    })
}

/// `RFTX_TEST_OOM=SITE:ROWS[:FROM]` (a test fault, for the out-of-memory paths on machines
/// without a GPU): allocations at SITE (a [`Site::name`]) for more than ROWS sequences fail as
/// out of memory, from the FROM-th allocation at that site on (counted from 0 by each thread).
pub const OOM_ENV: &str = "RFTX_TEST_OOM";

struct Injection {
    site: Site,
    rows: usize,
    from: usize,
    /// Allocations at `site` so far.
    seen: usize,
}

thread_local! {
    static INJECTION: std::cell::RefCell<Option<Injection>> =
        std::cell::RefCell::new(std::env::var(OOM_ENV).ok().and_then(|v| parse_injection(&v)));
}

fn parse_injection(spec: &str) -> Option<Injection> {
    let mut parts = spec.split(':').map(str::trim);
    let name = parts.next()?;
    let site = Site::ALL.into_iter().find(|s| s.name() == name)?;
    let rows = parts.next().unwrap_or("0").parse().ok()?;
    let from = parts.next().unwrap_or("0").parse().ok()?;
    Some(Injection {
        site,
        rows,
        from,
        seen: 0,
    })
}

/// Sets this thread's injected fault (`SITE:ROWS[:FROM]`, as [`OOM_ENV`]), or clears it; the
/// count of allocations starts again. For unit tests.
pub fn inject_oom(spec: Option<&str>) {
    INJECTION.with(|i| *i.borrow_mut() = spec.and_then(parse_injection));
}

fn injected_oom(site: Site, rows: usize) -> Option<String> {
    INJECTION.with(|i| {
        let mut i = i.borrow_mut();
        let i = i.as_mut().filter(|i| i.site == site)?;
        i.seen += 1;
        (i.seen > i.from && rows > i.rows).then(|| {
            format!(
                "injected by {OOM_ENV}: {} for more than {} rows fails",
                site.name(),
                i.rows
            )
        })
    })
}

/// Whether a candle error is the GPU running out of memory (an allocation, a kernel launch, or
/// cuBLAS or cuBLASLt failing to allocate).
pub fn is_out_of_memory(e: &candle_core::Error) -> bool {
    use candle_core::Error as E;
    match e {
        E::WithBacktrace { inner, .. } | E::Context { inner, .. } | E::WithPath { inner, .. } => {
            is_out_of_memory(inner)
        }
        #[cfg(feature = "cuda")]
        E::Cuda(b) => cuda_memory::is_oom(b.as_ref()),
        other => {
            let s = other.to_string();
            s.contains("CUDA_ERROR_OUT_OF_MEMORY") || s.contains("CUBLAS_STATUS_ALLOC_FAILED")
        }
    }
}

#[cfg(feature = "cuda")]
mod cuda_memory {
    use std::sync::Arc;

    use candle_core::cuda::cudarc::driver::{result, sys, CudaContext};
    use candle_core::cuda::{CudaDevice, CudaError};

    use crate::base::error::{Error, Result, Site};

    pub(super) struct Inner {
        ctx: Arc<CudaContext>,
        pool: sys::CUmemoryPool,
        /// The limit's reservation, freed on drop.
        reserved: Option<(sys::CUdeviceptr, u64)>,
    }

    // The pool handle is a process-wide driver object, usable from any thread.
    unsafe impl Send for Inner {}
    unsafe impl Sync for Inner {}

    fn err(e: impl std::fmt::Debug) -> Error {
        Error::DeviceUnavailable(format!("CUDA memory query failed: {e:?}"))
    }

    impl Inner {
        pub(super) fn new(cuda: &CudaDevice) -> Result<Inner> {
            let ctx = cuda.cuda_stream().context().clone();
            ctx.bind_to_thread().map_err(err)?;
            let mut pool: sys::CUmemoryPool = std::ptr::null_mut();
            // SAFETY: a valid device of a live context; `pool` receives a handle.
            unsafe { sys::cuDeviceGetDefaultMemPool(&mut pool, ctx.cu_device()) }
                .result()
                .map_err(err)?;
            Ok(Inner {
                ctx,
                pool,
                reserved: None,
            })
        }

        fn attr(&self, attr: sys::CUmemPool_attribute) -> u64 {
            let mut v: u64 = 0;
            // SAFETY: the pool handle is valid; the attributes read here are 64-bit.
            let r = unsafe { sys::cuMemPoolGetAttribute(self.pool, attr, &mut v as *mut u64 as *mut _) };
            if r == sys::CUresult::CUDA_SUCCESS {
                v
            } else {
                0
            }
        }

        pub(super) fn limit(&mut self, bytes: u64) -> Result<u64> {
            let (free, total) = self.ctx.mem_get_info().map_err(err)?;
            let used = (total - free) as u64;
            let reserve = (free as u64).saturating_sub(bytes.saturating_sub(used));
            if reserve == 0 {
                return Ok(0);
            }
            // SAFETY: the context is bound (mem_get_info bound it); freed in Drop.
            let ptr = unsafe { result::malloc_sync(reserve as usize) }.map_err(|e| {
                if e.0 == sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY {
                    Error::DeviceOutOfMemory {
                        site: Site::Reserve,
                        rows: 1,
                        message: format!("{e:?}"),
                    }
                } else {
                    err(e)
                }
            })?;
            self.reserved = Some((ptr, reserve));
            Ok(reserve)
        }

        pub(super) fn reset_peak(&self) {
            let _ = self.ctx.synchronize();
            let mut zero: u64 = 0;
            // SAFETY: setting USED_MEM_HIGH to 0 resets it to the current use.
            unsafe {
                sys::cuMemPoolSetAttribute(
                    self.pool,
                    sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_USED_MEM_HIGH,
                    &mut zero as *mut u64 as *mut _,
                );
            }
        }

        pub(super) fn peak(&self) -> u64 {
            let _ = self.ctx.synchronize();
            let used_high = self.attr(sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_USED_MEM_HIGH);
            let pool_reserved = self.attr(sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT);
            let runtime = match self.ctx.mem_get_info() {
                Ok((free, total)) => ((total - free) as u64)
                    .saturating_sub(pool_reserved)
                    .saturating_sub(self.reserved.map_or(0, |(_, n)| n)),
                Err(_) => 0,
            };
            used_high + runtime
        }
    }

    impl Drop for Inner {
        fn drop(&mut self) {
            if let Some((ptr, _)) = self.reserved.take() {
                let _ = self.ctx.bind_to_thread();
                // SAFETY: allocated by malloc_sync in `limit`, freed once.
                let _ = unsafe { result::free_sync(ptr) };
            }
        }
    }

    pub(super) fn is_oom(e: &(dyn std::error::Error + Send + Sync + 'static)) -> bool {
        match e.downcast_ref::<CudaError>() {
            Some(CudaError::Cuda(d)) => d.0 == sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY,
            Some(CudaError::Load { cuda, .. }) => cuda.0 == sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY,
            Some(other) => {
                let s = format!("{other:?}");
                s.contains("OUT_OF_MEMORY") || s.contains("ALLOC_FAILED")
            }
            None => e.to_string().contains("OUT_OF_MEMORY"),
        }
    }
}

/// The CUDA version this binary's kernels were built with (`nvcc --version` at build time, by
/// build.rs), e.g. `13.0`; `None` without CUDA.
pub fn built_cuda_version() -> Option<&'static str> {
    option_env!("RFTX_CUDA_VERSION")
}

/// The oldest Linux driver of each CUDA version (NVIDIA's release notes).
fn minimum_driver((major, minor): (i32, i32)) -> Option<i32> {
    let table = [
        ((12, 0), 525),
        ((12, 1), 530),
        ((12, 2), 535),
        ((12, 3), 545),
        ((12, 4), 550),
        ((12, 5), 555),
        ((12, 6), 560),
        ((12, 8), 570),
        ((12, 9), 575),
        ((13, 0), 580),
        ((13, 1), 590),
    ];
    table.iter().find(|(v, _)| *v >= (major, minor)).map(|(_, d)| *d)
}

/// The CUDA 12 line of scripts/build-cuda.sh binds CUDA 12.2.
const LINE_12: (i32, i32) = (12, 2);

/// Whether a driver that supports CUDA `driver` (`cuDriverGetVersion`: 1000·major + 10·minor)
/// runs what was built with CUDA `built` (`X.Y`): the kernels' PTX needs a driver of at least
/// that version. Else the message says which build runs there, or which driver to install.
pub fn check_driver(built: &str, driver: i32) -> std::result::Result<(), String> {
    let mut parts = built.split('.').map(|p| p.trim().parse::<i32>().ok());
    let (Some(Some(major)), Some(Some(minor))) = (parts.next(), parts.next()) else {
        return Ok(());
    };
    let have = (driver / 1000, (driver % 1000) / 10);
    if have >= (major, minor) {
        return Ok(());
    }
    let needs =
        minimum_driver((major, minor)).map_or_else(|| "a newer driver".to_string(), |d| format!("a driver ≥ {d}"));
    let todo = if have >= LINE_12 {
        format!(
            "build with CUDA_LINE=12 bash scripts/build-cuda.sh (with an nvcc of CUDA 12.2 to {}.{}), or update the driver",
            have.0, have.1
        )
    } else {
        "update the driver to ≥ 535 (CUDA 12.2), the oldest any rftx build runs on".to_string()
    };
    Err(format!(
        "this rftx was built with CUDA {major}.{minor}, which needs {needs}; this driver supports CUDA {}.{}: {todo}",
        have.0, have.1
    ))
}

/// Refuses (exit 2) a driver too old for the CUDA this binary was built with, before the first
/// kernel would fail to load. A driver that cannot be asked is left to `Device::new_cuda`.
#[cfg(feature = "cuda")]
fn check_driver_version() -> Result<()> {
    use candle_core::cuda::cudarc::driver::{result, sys};
    let Some(built) = built_cuda_version() else {
        return Ok(());
    };
    if result::init().is_err() {
        return Ok(());
    }
    let mut driver: std::ffi::c_int = 0;
    // SAFETY: the driver is initialised; `driver` receives the version.
    if unsafe { sys::cuDriverGetVersion(&mut driver) } != sys::CUresult::CUDA_SUCCESS {
        return Ok(());
    }
    check_driver(built, driver).map_err(Error::Device)
}

#[cfg(not(feature = "cuda"))]
fn check_driver_version() -> Result<()> {
    Ok(())
}

fn check_compute_capability(device: &Device, n: usize) -> Result<()> {
    let (Some(info), Some(built)) = (gpu_info(device)?, built_compute_capability()) else {
        return Ok(());
    };
    let want: String = built.chars().filter(char::is_ascii_digit).collect();
    let have: String = info.compute_capability.chars().filter(char::is_ascii_digit).collect();
    if want != have {
        return Err(Error::Device(format!(
            "this rftx was built for compute capability {built} (CUDA_COMPUTE_CAP={built}) but CUDA device {n} ({}) is {}: build it with CUDA_COMPUTE_CAP={have} scripts/build-cuda.sh",
            info.name, info.compute_capability
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_resolve_or_say_how_to_fix_them() {
        assert_eq!(DeviceChoice::resolve("cpu"), Ok(DeviceChoice::Cpu));
        assert_eq!(DeviceChoice::resolve(" CPU "), Ok(DeviceChoice::Cpu));
        assert!(DeviceChoice::resolve("tpu")
            .unwrap_err()
            .contains("use auto, cpu, cuda or cuda:N"));
        assert!(DeviceChoice::resolve("cuda:x").is_err());
        assert!(DeviceChoice::validate("cuda:1").is_ok() && DeviceChoice::validate("cuda:").is_err());
        // The same in every build: a config names its device without probing.
        assert_eq!(DeviceChoice::resolve("cuda:1"), Ok(DeviceChoice::Cuda(1)));
        assert_eq!(DeviceChoice::resolve("gpu"), Ok(DeviceChoice::Cuda(0)));
        if cfg!(feature = "cuda") {
            assert_eq!(DeviceChoice::resolve("auto"), Ok(DeviceChoice::Cuda(0)));
        } else {
            assert_eq!(DeviceChoice::resolve("auto"), Ok(DeviceChoice::Cpu));
            let e = DeviceChoice::Cuda(0).create().unwrap_err();
            assert_eq!(e.exit_code(), crate::base::error::EXIT_INPUT);
            let e = e.to_string();
            assert!(
                e.contains("built without CUDA") && e.contains("scripts/build-cuda.sh"),
                "{e}"
            );
        }
    }

    /// A driver too old for the CUDA the binary was built with is refused at start, naming the
    /// build that runs there; one new enough passes.
    #[test]
    fn a_driver_too_old_for_the_build_is_refused_naming_the_build_that_runs() {
        assert_eq!(check_driver("13.0", 13000), Ok(()));
        assert_eq!(check_driver("13.0", 13020), Ok(()));
        assert_eq!(check_driver("12.2", 12040), Ok(()));
        assert_eq!(check_driver("12.2", 13000), Ok(()));
        let e = check_driver("13.0", 12040).unwrap_err();
        assert_eq!(
            e,
            "this rftx was built with CUDA 13.0, which needs a driver ≥ 580; this driver supports CUDA 12.4: build with CUDA_LINE=12 bash scripts/build-cuda.sh (with an nvcc of CUDA 12.2 to 12.4), or update the driver"
        );
        let e = check_driver("12.4", 12020).unwrap_err();
        assert!(e.contains("needs a driver ≥ 550") && e.contains("CUDA_LINE=12"), "{e}");
        let e = check_driver("12.2", 11080).unwrap_err();
        assert!(
            e.contains("supports CUDA 11.8") && e.contains("update the driver to ≥ 535"),
            "{e}"
        );
        assert!(check_driver("13.9", 13000)
            .unwrap_err()
            .contains("needs a newer driver"));
        assert_eq!(
            check_driver("unknown", 11000),
            Ok(()),
            "a version it cannot read: not refused"
        );
        // As the binary reports it: exit 2.
        assert_eq!(Error::Device(e).exit_code(), crate::base::error::EXIT_INPUT);
    }

    #[test]
    fn a_device_out_of_memory_is_the_one_error_at_its_site() {
        let oom = || -> Result<()> {
            Err(candle_core::Error::Msg("DriverError(CUDA_ERROR_OUT_OF_MEMORY, \"out of memory\")".into()).into())
        };
        for site in Site::ALL {
            match allocation(site, 3, oom) {
                Err(Error::DeviceOutOfMemory {
                    site: s,
                    rows: 3,
                    message,
                }) => {
                    assert_eq!(s, site);
                    assert!(message.contains("CUDA_ERROR_OUT_OF_MEMORY"), "{message}");
                }
                other => panic!("{site:?}: {other:?}"),
            }
        }
        // Anything else passes unchanged; the generator names the question of an out-of-memory.
        let other = allocation(Site::Step, 1, || -> Result<()> { Err(Error::Run("x".into())) });
        assert!(matches!(other, Err(Error::Run(_))));
        let e = allocation(Site::ChunkCache, 4, oom).unwrap_err().at_question(2, 1, 6);
        assert_eq!(
            e.to_string(),
            "out of memory at question 2, chunk 1 (6 sequences) in a chunk's KV cache: DriverError(CUDA_ERROR_OUT_OF_MEMORY, \"out of memory\")"
        );
    }

    #[test]
    fn injected_faults_hit_their_site_past_their_size_from_their_count_on() {
        inject_oom(Some("step:2:1"));
        let ok = || -> Result<()> { Ok(()) };
        assert!(allocation(Site::Step, 4, ok).is_ok(), "the first is spared (FROM = 1)");
        assert!(allocation(Site::Logits, 4, ok).is_ok(), "another site");
        assert!(allocation(Site::Step, 2, ok).is_ok(), "not more than 2 rows");
        assert!(matches!(
            allocation(Site::Step, 3, ok),
            Err(Error::DeviceOutOfMemory { site: Site::Step, .. })
        ));
        inject_oom(None);
        assert!(allocation(Site::Step, 3, ok).is_ok());
    }

    #[test]
    fn the_binary_is_built_for_the_stated_baseline_and_runs_here() {
        check_cpu().unwrap();
        if cfg!(target_arch = "x86_64") {
            let built = built_for();
            for f in ["avx2", "fma", "f16c"] {
                assert!(
                    built.contains(f),
                    "x86-64-v3 (.cargo/config.toml) includes {f}: {built}"
                );
            }
        }
    }
}
