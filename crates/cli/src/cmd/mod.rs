//! One module per `hearth` subcommand, each with its `Args` and `run`.

pub mod import;
pub mod list;
pub mod pull;
pub mod rm;
pub mod show;
