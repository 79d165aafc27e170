#[tokio::main]
async fn main() -> anyhow::Result<()> {
    api_gateway::run_from_env().await
}
