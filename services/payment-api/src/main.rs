#[tokio::main]
async fn main() -> anyhow::Result<()> {
    payment_api::run_from_env().await
}
