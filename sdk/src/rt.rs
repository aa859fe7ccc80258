//! What a wasm32 contract needs beyond the SDK's code: a panic handler (a panic traps the
//! frame, as `unreachable` does) and a bump allocator. Every call frame starts from fresh
//! memory on keel, so nothing is ever freed: allocation is a pointer bump, growing memory
//! a page at a time (each `memory.grow` costs 1,000 gas) up to the module's declared
//! maximum; past it, allocation fails and the frame traps.
#![allow(unsafe_code)]

use core::alloc::{GlobalAlloc, Layout};

const PAGE_BYTES: usize = 65_536;

struct Bump;

/// Next free byte; 0 until the first allocation reads `__heap_base`. wasm32 contracts are
/// single-threaded, and the host never re-enters a frame's instance, so plain statics are
/// enough.
static mut NEXT: usize = 0;

extern "C" {
    /// The first byte after the data and the stack (wasm-ld defines it).
    static __heap_base: u8;
}

/// Makes memory reach `end` (exclusive); false if the module's maximum forbids it.
fn reach(end: usize) -> bool {
    let have = core::arch::wasm32::memory_size(0) * PAGE_BYTES;
    if end > have {
        let pages = (end - have + PAGE_BYTES - 1) / PAGE_BYTES;
        if core::arch::wasm32::memory_grow(0, pages) == usize::MAX {
            return false;
        }
    }
    true
}

unsafe impl GlobalAlloc for Bump {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if NEXT == 0 {
            NEXT = &__heap_base as *const u8 as usize;
        }
        let start = match NEXT.checked_add(layout.align() - 1) {
            Some(v) => v & !(layout.align() - 1),
            None => return core::ptr::null_mut(),
        };
        let end = match start.checked_add(layout.size()) {
            Some(v) => v,
            None => return core::ptr::null_mut(),
        };
        if !reach(end) {
            return core::ptr::null_mut();
        }
        NEXT = end;
        start as *mut u8
    }

    unsafe fn dealloc(&self, _ptr: *mut u8, _layout: Layout) {}

    /// The last allocation grows (or shrinks) in place: a `Vec` pushed to one element at a
    /// time would otherwise leave every smaller copy of itself behind, about twice its
    /// final size in dead memory.
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let start = ptr as usize;
        if start.checked_add(layout.size()) == Some(NEXT) {
            if let Some(end) = start.checked_add(new_size) {
                if reach(end) {
                    NEXT = end;
                    return ptr;
                }
            }
            return core::ptr::null_mut();
        }
        let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
        let new = self.alloc(new_layout);
        if !new.is_null() {
            core::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: Bump = Bump;

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    core::arch::wasm32::unreachable()
}

/// Debian's rustc 1.63 (the one that builds wasm32 here) still requires a no_std crate
/// that allocates to name its out-of-memory handler; newer compilers default to a panic.
/// `scripts/contracts` passes `--cfg keel_alloc_error_handler` with it.
#[cfg(keel_alloc_error_handler)]
#[alloc_error_handler]
fn out_of_memory(_layout: Layout) -> ! {
    core::arch::wasm32::unreachable()
}
