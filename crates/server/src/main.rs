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
