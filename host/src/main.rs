//! The `agentgate` command line.

// PANIC SAFETY: the binary reports errors through anyhow; no unwraps below.
mod cli;

fn main() -> std::process::ExitCode {
    cli::run()
}
