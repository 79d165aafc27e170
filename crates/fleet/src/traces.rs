//! `fleet trace ID` and `fleet traces`: the terminal waterfall. (Being built.)

use clap::Args;

#[derive(Args, Debug, Clone)]
pub struct TraceArgs {
    /// Trace id (hex).
    id: String,
    /// Tempo (or trace desk) base URL.
    #[arg(long, default_value = "http://127.0.0.1:3200", env = "FLEET_TEMPO_URL")]
    tempo: String,
}

#[derive(Args, Debug, Clone)]
pub struct TracesArgs {
    /// Tempo (or trace desk) base URL.
    #[arg(long, default_value = "http://127.0.0.1:3200", env = "FLEET_TEMPO_URL")]
    tempo: String,
}

pub async fn trace(args: TraceArgs) -> anyhow::Result<()> {
    anyhow::bail!(
        "fleet trace is not built yet ({} at {})",
        args.id,
        args.tempo
    )
}

pub async fn traces(args: TracesArgs) -> anyhow::Result<()> {
    anyhow::bail!("fleet traces is not built yet ({})", args.tempo)
}
