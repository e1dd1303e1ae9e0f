//! `hearth rm NAME...`: remove models; files shared with another model stay until the last one goes.

use hearth_store::{format_bytes, Store};

#[derive(clap::Args)]
pub struct Args {
    /// Model names (see `hearth list`).
    #[arg(required = true)]
    pub names: Vec<String>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let store = Store::open_default()?;
    for name in &args.names {
        let r = store.remove(name)?;
        let shared = if r.kept_shared > 0 {
            format!(", {} file(s) kept for other models", r.kept_shared)
        } else {
            String::new()
        };
        println!("removed {name} (freed {}{shared})", format_bytes(r.freed));
    }
    Ok(())
}
