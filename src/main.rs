//! The `rftx` binary: a thin layer over the library. See `cli` for the commands.
mod cli;

/// Counts heap bytes so that every chunk's peak can be recorded.
#[global_allocator]
static ALLOC: rftx::base::memory::CountingAlloc = rftx::base::memory::CountingAlloc;

fn main() -> std::process::ExitCode {
    rftx::base::memory::enable_heap_tracking();
    cli::main()
}
