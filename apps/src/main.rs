//! `sse-apps`: every app on one port, or one app or learning program by name (`--help`).

fn main() -> std::process::ExitCode {
    sse_apps::cli::main()
}
