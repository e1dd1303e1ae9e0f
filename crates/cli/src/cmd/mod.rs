//! One module per `hearth` subcommand, each with its `Args` and `run`.

pub mod convert;
pub mod quantize;
