//! With the `cuda` feature, compiles rftx's CUDA kernels (src/engine/cuda/kernels.cu) to PTX
//! for compute capabilities 7.5 (T4) and 9.0 (H100/H200), with the nvcc that builds candle's
//! kernels (`$NVCC`, else `nvcc` on PATH: scripts/build-cuda.sh puts its line's there). The
//! driver compiles the PTX for the device at load, which needs a driver of at least nvcc's CUDA
//! version: that version is recorded as `RFTX_CUDA_VERSION` (e.g. `13.0`) for the check at
//! start (`engine::device::check_driver`).
//!
//! With the `testing` feature (test builds), compiles the same kernels.cu for the host with the
//! system C++ compiler (`$CXX`, else `c++`; C++20 for std::barrier) through
//! src/engine/cuda/emulate.cpp, so that the tests run the CUDA code itself without a GPU. Where
//! that fails, the tests that need it say `skipped:` (cfg `no_kernel_emulation`).
//!
//! A plain build does nothing here: it needs no CUDA toolkit and no C++ compiler.
use std::path::PathBuf;
use std::process::Command;

const KERNELS: &str = "src/engine/cuda/kernels.cu";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=NVCC");
    println!("cargo:rerun-if-env-changed=CXX");
    println!("cargo:rustc-check-cfg=cfg(no_kernel_emulation)");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    if std::env::var_os("CARGO_FEATURE_TESTING").is_some() {
        emulation(&out);
    }
    if std::env::var_os("CARGO_FEATURE_CUDA").is_some() {
        ptx(&out);
    }
}

/// kernels.cu for the host, as a static library of `emu_*` functions (emulate.cpp).
fn emulation(out: &std::path::Path) {
    for f in [KERNELS, "src/engine/cuda/emulate.cpp", "src/engine/cuda/host_shim.h"] {
        println!("cargo:rerun-if-changed={f}");
    }
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "c++".into());
    let object = out.join("emulate.o");
    let lib = out.join("libkernel_emulation.a");
    let built = Command::new(&cxx)
        .args([
            "-std=c++20",
            "-O2",
            "-ffp-contract=off",
            "-fPIC",
            "-c",
            "src/engine/cuda/emulate.cpp",
            "-o",
        ])
        .arg(&object)
        .status()
        .is_ok_and(|s| s.success())
        && Command::new("ar")
            .arg("crs")
            .arg(&lib)
            .arg(&object)
            .status()
            .is_ok_and(|s| s.success());
    if !built {
        println!("cargo:warning=cannot compile the CUDA kernels for the host with {cxx} (C++20): their emulation tests are skipped");
        println!("cargo:rustc-cfg=no_kernel_emulation");
        return;
    }
    println!("cargo:rustc-link-search=native={}", out.display());
    println!("cargo:rustc-link-lib=static=kernel_emulation");
    println!("cargo:rustc-link-lib=dylib=stdc++");
}

/// kernels.cu as PTX for compute capabilities 7.5 and 9.0.
fn ptx(out: &std::path::Path) {
    println!("cargo:rerun-if-changed={KERNELS}");
    let nvcc = std::env::var("NVCC").unwrap_or_else(|_| "nvcc".into());
    println!("cargo:rustc-env=RFTX_CUDA_VERSION={}", nvcc_version(&nvcc));
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

/// `X.Y` of `nvcc --version`'s "release X.Y, VX.Y.Z" line.
fn nvcc_version(nvcc: &str) -> String {
    let out = Command::new(nvcc)
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {nvcc} --version: {e} (scripts/build-cuda.sh puts nvcc on PATH)"));
    let text = String::from_utf8_lossy(&out.stdout);
    text.split("release ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| panic!("{nvcc} --version names no release: {text}"))
}
