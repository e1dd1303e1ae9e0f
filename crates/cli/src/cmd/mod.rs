//! One module per `hearth` subcommand, each with its `Args` and `run`.

pub mod act;
pub mod bench;
pub mod convert;
pub mod import;
pub mod inspect;
pub mod list;
pub mod perplexity;
pub mod pull;
pub mod quantize;
pub mod replay;
pub mod rm;
pub mod run;
pub mod serve;
pub mod show;
pub mod tokenize;
