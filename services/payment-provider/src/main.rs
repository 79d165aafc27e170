#[tokio::main]
async fn main() -> anyhow::Result<()> {
    payment_provider::run_from_env().await
}
