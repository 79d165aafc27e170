// A runtime sized for a small service (TOKIO_WORKER_THREADS, FLEET_MAX_BLOCKING_THREADS), not
// for the machine: see fleet_server_kit::RuntimeSize.
fn main() -> anyhow::Result<()> {
    fleet_server_kit::block_on_service(payment_provider::run_from_env())
}
