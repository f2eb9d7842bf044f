/// jemalloc rather than glibc's malloc: it keeps no headers inside freed
/// or untouched pages, so per-connection buffers that are mostly unused cost
/// less resident memory (SSE 13.3 → 9.6 KiB, long poll 16.0 → 8.5 KiB per
/// connection at 1,000 clients; see results/README.md).
/// The `system-allocator` feature leaves it out, for heap profilers.
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = chatbench_server::ServerArgs::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "chatbench_server=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Some(list) = &args.cpus {
        let pinned = chatbench_server::affinity::parse_cpu_list(list)
            .map_err(|e| e.to_string())
            .and_then(|c| chatbench_server::affinity::pin(&c).map_err(|e| e.to_string()));
        if let Err(e) = pinned {
            eprintln!("chatbench-server: --cpus {list}: {e}");
            return ExitCode::from(2);
        }
    }
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("chatbench-server: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(chatbench_server::serve(&args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ chatbench_server::ServeError::Flags(_)) => {
            eprintln!("chatbench-server: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("chatbench-server: {e}");
            ExitCode::FAILURE
        }
    }
}
