//! `fleet load`: traffic for the fleet. (Being built.)

use clap::Args;

#[derive(Args, Debug, Clone)]
pub struct LoadArgs {
    /// The gateway to send traffic to.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
}

pub async fn run(args: LoadArgs) -> anyhow::Result<()> {
    anyhow::bail!("fleet load is not built yet (gateway {})", args.url)
}
