//! `fleet`: the command line; everything lives in the library (src/lib.rs).

use clap::Parser as _;

#[cfg(all(feature = "alloc-mimalloc", feature = "alloc-jemalloc"))]
compile_error!("pick one allocator: alloc-mimalloc or alloc-jemalloc");

#[cfg(feature = "alloc-mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[cfg(feature = "alloc-jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> anyhow::Result<()> {
    let cli = fleet::Cli::parse();
    if cli.runs_a_service() {
        // `fleet run <service>`: the same small runtime as the service's own binary.
        return fleet_server_kit::block_on_service(cli.run());
    }
    // `fleet up`, `load`, the desk, …: tokio's defaults (a worker per core), as before.
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(cli.run())
}
