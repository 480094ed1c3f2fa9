//! The process's allocator (Linux): the system allocator, except that blocks of 1 GiB and
//! more are anonymous mappings made with `MAP_NORESERVE`. Such a block costs address space,
//! not memory, until it is written.
//!
//! Why: when tiny_http discards a request body the handler did not read, it first allocates
//! a zeroed buffer as large as the body's declared `Content-Length`, whatever the client
//! really sends. With the system allocator a declared length beyond the host's memory
//! aborts the whole process; here the buffer is reserved address space, and only the bytes
//! the client actually sends are ever touched.
//!
//! Past [`ABSURD`] even address space runs out (the whole of it is 128 TiB), so a zeroed
//! block that large is a sink: a small real window followed by a long inaccessible guard.
//! Only tiny_http's discard buffer asks for one, and only once the server has detached the
//! request's connection (its descriptors read as `/dev/null`), so a read writes at most
//! the few bytes tiny_http had buffered into it. Anything that wrote further would fault
//! in the guard, never reach another block.

use std::alloc::{GlobalAlloc, Layout, System};

/// Blocks from this size up are mapped without reserving memory.
const HUGE: usize = 1 << 30;
/// Zeroed blocks from this size up are sinks (see the module's text).
pub const ABSURD: usize = 1 << 44;
/// The real part of a sink.
const SINK_WINDOW: usize = 64 << 20;
/// A sink's real part and its guard.
const SINK_SPAN: usize = 64 << 30;
/// Alignment an anonymous mapping always has.
const PAGE: usize = 4096;

pub struct HugeAwareAllocator;

fn is_huge(layout: &Layout) -> bool {
    layout.size() >= HUGE && layout.align() <= PAGE
}

fn is_absurd(layout: &Layout) -> bool {
    layout.size() >= ABSURD
}

// SAFETY: small blocks go to the system allocator unchanged; huge blocks are fresh private
// anonymous mappings (zeroed, page aligned), always freed with munmap of the same size,
// because `is_huge` of a layout decides both where a block comes from and where it goes.
unsafe impl GlobalAlloc for HugeAwareAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_absurd(&layout) {
            std::ptr::null_mut()
        } else if is_huge(&layout) {
            map(layout.size())
        } else {
            System.alloc(layout)
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_absurd(&layout) {
            sink(layout.align())
        } else if is_huge(&layout) {
            map(layout.size())
        } else {
            System.alloc_zeroed(layout)
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_absurd(&layout) {
            libc::munmap(ptr.cast(), SINK_SPAN);
        } else if is_huge(&layout) {
            libc::munmap(ptr.cast(), layout.size());
        } else {
            System.dealloc(ptr, layout)
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
        if !is_huge(&layout) && !is_huge(&new_layout) {
            return System.realloc(ptr, layout, new_size);
        }
        if is_absurd(&layout) {
            // A sink's contents are not all there to copy.
            return std::ptr::null_mut();
        }
        let moved = self.alloc(new_layout);
        if !moved.is_null() {
            std::ptr::copy_nonoverlapping(ptr, moved, layout.size().min(new_size));
            self.dealloc(ptr, layout);
        }
        moved
    }
}

unsafe fn map(size: usize) -> *mut u8 {
    let block = libc::mmap(
        std::ptr::null_mut(),
        size,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
        -1,
        0,
    );
    if block == libc::MAP_FAILED {
        std::ptr::null_mut()
    } else {
        block.cast()
    }
}

/// A sink: [`SINK_WINDOW`] bytes readable and writable, then an inaccessible guard.
unsafe fn sink(align: usize) -> *mut u8 {
    if align > PAGE {
        return std::ptr::null_mut();
    }
    let span = libc::mmap(
        std::ptr::null_mut(),
        SINK_SPAN,
        libc::PROT_NONE,
        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
        -1,
        0,
    );
    if span == libc::MAP_FAILED {
        return std::ptr::null_mut();
    }
    if libc::mprotect(span, SINK_WINDOW, libc::PROT_READ | libc::PROT_WRITE) != 0 {
        libc::munmap(span, SINK_SPAN);
        return std::ptr::null_mut();
    }
    span.cast()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_zeroed_block_far_beyond_memory_is_only_address_space() {
        // 4 TiB: more than any host this runs on; the system allocator would fail.
        let mut block = vec![0u8; 1 << 42];
        block[0] = 1;
        block[(1 << 42) - 1] = 2;
        assert_eq!(block[0] + block[(1 << 42) - 1], 3);
        assert_eq!(block[1 << 41], 0);
    }

    #[test]
    fn a_zeroed_block_past_the_address_space_is_a_sink() {
        // What tiny_http asks for to discard a body declaring an exabyte.
        let mut block = vec![0u8; 1 << 60];
        block[..1024].copy_from_slice(&[7; 1024]);
        assert_eq!(block[1023], 7);
        assert_eq!(block[1024], 0);
        drop(block);
        // Not zeroed: refused, as memory that cannot be had.
        let layout = std::alloc::Layout::from_size_align(1 << 60, 1).unwrap();
        assert!(unsafe { std::alloc::alloc(layout) }.is_null());
    }

    #[test]
    fn growing_across_the_threshold_keeps_the_contents() {
        let mut bytes: Vec<u8> = (0..=255u8).cycle().take(1 << 20).collect();
        bytes.reserve_exact((1 << 30) - bytes.len() + 7);
        assert!(bytes.capacity() >= 1 << 30);
        assert!(bytes
            .iter()
            .take(1 << 20)
            .enumerate()
            .all(|(i, b)| *b == i as u8));
        bytes.truncate(16);
        bytes.shrink_to_fit();
        assert_eq!(bytes, (0..16u8).collect::<Vec<_>>());
    }
}
