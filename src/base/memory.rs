//! Memory measurement: a counting global allocator for heap peaks and the process's peak RSS.
//!
//! The binary installs [`CountingAlloc`] as its global allocator; tests that want heap numbers
//! install it too. Where it is not installed, [`heap_tracking`] is false and heap figures are 0.
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// Wraps the system allocator and keeps the live heap size and its peak.
pub struct CountingAlloc;

impl CountingAlloc {
    #[inline]
    fn grew(by: usize) {
        let now = CURRENT.fetch_add(by, Relaxed) + by;
        PEAK.fetch_max(now, Relaxed);
    }
}

unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            Self::grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() {
            Self::grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        CURRENT.fetch_sub(layout.size(), Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            if new_size >= layout.size() {
                Self::grew(new_size - layout.size());
            } else {
                CURRENT.fetch_sub(layout.size() - new_size, Relaxed);
            }
        }
        p
    }
}

/// Marks the counting allocator as installed. Call once at start-up from the program that
/// declared it `#[global_allocator]`.
pub fn enable_heap_tracking() {
    INSTALLED.store(true, Relaxed);
}

/// Whether heap figures are real.
pub fn heap_tracking() -> bool {
    INSTALLED.load(Relaxed)
}

/// Highest live heap bytes since the last [`reset_heap_peak`].
pub fn heap_peak() -> u64 {
    PEAK.load(Relaxed) as u64
}

/// Starts a new peak window at the current live size.
pub fn reset_heap_peak() {
    PEAK.store(CURRENT.load(Relaxed), Relaxed);
}

/// Process peak resident set size (VmHWM) in bytes, where /proc provides it.
pub fn rss_peak() -> Option<u64> {
    proc_status_kib("VmHWM:").map(|k| k * 1024)
}

/// Process resident set size now (VmRSS) in bytes.
pub fn rss_current() -> Option<u64> {
    proc_status_kib("VmRSS:").map(|k| k * 1024)
}

/// Resets VmHWM to the current RSS (Linux: write 5 to /proc/self/clear_refs). Returns whether
/// it worked; where it does not, [`rss_peak`] stays the process-lifetime peak.
pub fn reset_rss_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Memory the kernel considers available for new allocations (MemAvailable), in bytes.
pub fn mem_available() -> Option<u64> {
    kib_field(&std::fs::read_to_string("/proc/meminfo").ok()?, "MemAvailable:").map(|k| k * 1024)
}

fn proc_status_kib(field: &str) -> Option<u64> {
    kib_field(&std::fs::read_to_string("/proc/self/status").ok()?, field)
}

/// The number of a `Field:   1234 kB` line of a /proc file.
fn kib_field(text: &str, field: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(field))?;
    line[field.len()..].trim().trim_end_matches("kB").trim().parse().ok()
}

/// The peaks of one measured window (a chunk, a load).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Peaks {
    pub heap_bytes: u64,
    pub rss_bytes: u64,
}

/// Opens a measurement window: heap peak and (where possible) RSS peak are reset now and read
/// by [`Window::close`].
pub struct Window;

impl Window {
    pub fn open() -> Self {
        reset_heap_peak();
        reset_rss_peak();
        Window
    }

    pub fn close(self) -> Peaks {
        Peaks {
            heap_bytes: heap_peak(),
            rss_bytes: rss_peak().unwrap_or(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_is_readable_on_linux() {
        let rss = rss_current().unwrap();
        assert!(rss > 1 << 20, "{rss}");
        assert!(rss_peak().unwrap() >= rss);
    }

    #[test]
    fn rss_peak_reset_moves_the_window() {
        // Touch 64 MiB, free it, reset: the new peak is below the old one.
        let v = vec![1u8; 64 << 20];
        std::hint::black_box(&v);
        let before = rss_peak().unwrap();
        drop(v);
        if !reset_rss_peak() {
            // Without /proc/self/clear_refs (some containers) the peak cannot move: say so,
            // and check what still holds: it never goes down.
            crate::base::util::skip("/proc/self/clear_refs is not writable here, the RSS peak cannot be reset");
            assert!(rss_peak().unwrap() >= before);
            return;
        }
        assert!(rss_peak().unwrap() + (32 << 20) < before);
    }
}
