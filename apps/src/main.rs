//! `sse-apps`: every app on one port, or one app or learning program by name (`--help`).

/// mimalloc rather than the system allocator: a server allocates and frees small buffers for
/// every request, and glibc's malloc took about 16% of the CPU in a round-trip profile.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    sse_apps::cli::main()
}
