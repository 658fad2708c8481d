//! `harness`: serve the mock endpoints, run scenarios, play transcripts, fuzz and load
//! live servers. The commands live in `cli/`.

mod cli;

/// mimalloc instead of glibc's malloc: after a flood of large literals ends, glibc keeps
/// the freed buffers in its heaps (its mmap threshold rises past them once the first ones
/// are freed), so the server stays at its peak; mimalloc gives them back to the system
/// (issue #14, numbers in BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> anyhow::Result<()> {
    cli::main()
}
