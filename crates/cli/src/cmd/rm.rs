//! `hearth rm NAME...`: remove models; files shared with another model stay until the last one goes.
//! `hearth rm --partials` deletes interrupted downloads that would otherwise wait to be resumed.

use hearth_store::{format_bytes, Store};

#[derive(clap::Args)]
pub struct Args {
    /// Model names (see `hearth list`), or the sources they were pulled as.
    #[arg(required_unless_present = "partials")]
    pub names: Vec<String>,
    /// Also delete partial downloads kept for resuming (those no running pull is using).
    #[arg(long)]
    pub partials: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let store = Store::open_default()?;
    for asked in &args.names {
        // A source it was pulled as names it too.
        let name = &store.find(asked).map_or_else(|_| asked.clone(), |m| m.name);
        let r = store.remove(name)?;
        let shared = if r.kept_shared > 0 {
            format!(", {} file(s) kept for other models", r.kept_shared)
        } else {
            String::new()
        };
        println!("removed {name} (freed {}{shared})", format_bytes(r.freed));
    }
    if args.partials {
        let (n, bytes) = store.clean_partials()?;
        println!(
            "removed {n} partial download(s) (freed {})",
            format_bytes(bytes)
        );
    }
    Ok(())
}
