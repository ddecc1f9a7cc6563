//! The `idsync` binary: everything lives in the library; this only dispatches.

// See Cargo.toml: the LDAP benchmark spent a third of its CPU time in glibc malloc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    idsync::cli::main()
}
