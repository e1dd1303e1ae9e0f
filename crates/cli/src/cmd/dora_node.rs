//! `hearth dora-node`: hearth as a dora-rs node. The node is its own binary, `hearth-dora-node`
//! (crates/dora-node), which this subcommand replaces itself with: dora-node-api brings ~360 crates (zenoh, arrow,
//! tokio) that an ordinary `hearth` build must not pay for. Build it with `scripts/build-dora-node.sh`.

use anyhow::{anyhow, Result};
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{Command, ExitCode};

/// The node's name, looked up beside `hearth` and then on the PATH.
const NODE_BINARY: &str = "hearth-dora-node";

#[derive(clap::Args)]
pub struct Args {
    /// Handed to hearth-dora-node unchanged (MODEL --actions FILE --deadline-ms D …; `--help` lists them).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<OsString>,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let exe = node_binary().ok_or_else(|| {
        anyhow!(
            "`hearth dora-node` needs the {NODE_BINARY} binary, which is not beside hearth nor on the PATH: build it \
             with scripts/build-dora-node.sh (or set HEARTH_DORA_NODE to its path)"
        )
    })?;
    let mut cmd = Command::new(&exe);
    cmd.args(&args.args);
    #[cfg(unix)]
    {
        // Replace this process, so that dora's signals and exit-code checks reach the node itself.
        use std::os::unix::process::CommandExt;
        let err = cmd.exec();
        Err(anyhow!("cannot run {}: {err}", exe.display()))
    }
    #[cfg(not(unix))]
    {
        let status = cmd
            .status()
            .map_err(|e| anyhow!("cannot run {}: {e}", exe.display()))?;
        Ok(ExitCode::from(
            status.code().map_or(1, |c| c.clamp(0, 255) as u8),
        ))
    }
}

/// `HEARTH_DORA_NODE`, else `hearth-dora-node` beside this executable, else on the PATH.
fn node_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("HEARTH_DORA_NODE") {
        return Some(PathBuf::from(p));
    }
    let name = format!("{NODE_BINARY}{}", std::env::consts::EXE_SUFFIX);
    let beside = std::env::current_exe().ok()?.with_file_name(&name);
    if beside.is_file() {
        return Some(beside);
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(&name))
        .find(|p| p.is_file())
}
