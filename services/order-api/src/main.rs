#[tokio::main]
async fn main() -> anyhow::Result<()> {
    order_api::run_from_env().await
}
