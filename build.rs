//! With the `cuda` feature, compiles rftx's CUDA kernels (src/engine/cuda/kernels.cu) to PTX
//! for compute capabilities 7.5 (T4) and 9.0 (H100/H200), with the nvcc that builds candle's
//! kernels (`$NVCC`, else `nvcc` on PATH: scripts/build-cuda.sh puts the CUDA 13.0 wheel's
//! there). The driver compiles the PTX for the device at load. Without the feature it does
//! nothing: the default build needs no CUDA toolkit.
use std::path::PathBuf;
use std::process::Command;

const KERNELS: &str = "src/engine/cuda/kernels.cu";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=NVCC");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    println!("cargo:rerun-if-changed={KERNELS}");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let nvcc = std::env::var("NVCC").unwrap_or_else(|_| "nvcc".into());
    for cap in ["75", "90"] {
        let ptx = out.join(format!("kernels_sm{cap}.ptx"));
        // --fmad=false: no implicit multiply-add contraction, so that the kernels' roundings are
        // the ones written (and mirrored by src/engine/cuda/reference.rs).
        let status = Command::new(&nvcc)
            .args(["--ptx", "-O3", "-std=c++17", "--fmad=false"])
            .arg(format!("-arch=compute_{cap}"))
            .arg(KERNELS)
            .arg("-o")
            .arg(&ptx)
            .status()
            .unwrap_or_else(|e| {
                panic!("cannot run {nvcc} for {KERNELS}: {e} (scripts/build-cuda.sh puts nvcc on PATH)")
            });
        assert!(status.success(), "{nvcc} failed on {KERNELS} for compute_{cap}");
    }
}
