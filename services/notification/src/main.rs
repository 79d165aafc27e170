#[tokio::main]
async fn main() -> anyhow::Result<()> {
    notification::run_from_env().await
}
