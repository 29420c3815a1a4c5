//! The binary's subcommands that are more than a few lines of glue; for
//! now `rfc6455 client` (`client/`). `src/main.rs` parses the command
//! line and hands over.

pub mod client;
