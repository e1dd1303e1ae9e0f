//! `hearth import FILE.gguf [--name NAME]`: copy a local model into the store after checking that it is a GGUF.

use hearth_store::{format_bytes, Store};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// The GGUF file (for a split model, its first part).
    pub file: PathBuf,
    /// Install under this name (default: from the file name).
    #[arg(long)]
    pub name: Option<String>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let store = Store::open_default()?;
    let m = store.import(&args.file, args.name.as_deref())?;
    println!(
        "{}: {} {} {}, imported from {}",
        m.name,
        m.architecture,
        m.quant,
        format_bytes(m.size),
        args.file.display()
    );
    Ok(())
}
