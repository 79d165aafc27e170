//! `fleet`: the command line; everything lives in the library (src/lib.rs).

use clap::Parser as _;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    fleet::Cli::parse().run().await
}
