//! `hearth list`: the installed models with size, quantization, architecture and install time.

use hearth_store::{format_bytes, format_time, Store};

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<()> {
    let store = Store::open_default()?;
    let (models, problems) = store.list()?;
    for p in problems {
        eprintln!("warning: {p}");
    }
    let (n_part, part_bytes) = store.partials()?;
    if n_part > 0 {
        eprintln!(
            "{n_part} interrupted download(s) ({}) wait in {}: pull the same model again to resume, or `hearth rm --partials`",
            format_bytes(part_bytes),
            store.root().join("tmp").display()
        );
    }
    if models.is_empty() {
        eprintln!("no models installed; try `hearth pull smollm2-135m`");
        return Ok(());
    }
    let w = models
        .iter()
        .map(|m| m.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    println!(
        "{:w$}  {:>9}  {:8}  {:12}  MODIFIED",
        "NAME", "SIZE", "QUANT", "ARCH"
    );
    for m in models {
        println!(
            "{:w$}  {:>9}  {:8}  {:12}  {}",
            m.name,
            format_bytes(m.size),
            m.quant,
            m.architecture,
            format_time(m.modified)
        );
    }
    Ok(())
}
