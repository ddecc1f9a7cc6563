//! The `idsync` binary: everything lives in the library; this only dispatches.

fn main() -> std::process::ExitCode {
    idsync::cli::main()
}
