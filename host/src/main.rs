//! The `tapeseal` binary.

fn main() -> std::process::ExitCode {
    tapeseal_host::cli::main()
}
