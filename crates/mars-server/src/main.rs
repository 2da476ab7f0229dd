//! The `mars` binary: `mars serve` starts the proxy.

use std::io::Write as _;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mars_server::code::CodeChecks;
use mars_server::{App, ServeArgs, ServerConfig};

#[derive(Debug, Parser)]
#[command(
    name = "mars",
    version,
    about = "mars: inference-time strategies for LLMs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the OpenAI and Ollama APIs, applying strategies chosen by model name.
    Serve(ServeArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,llama-cpp-2=warn")),
        )
        .init();
    let Command::Serve(args) = cli.command;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => return fail(&format!("could not start the runtime: {err}")),
    };
    match runtime.block_on(serve(ServerConfig::from(args))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => fail(&message),
    }
}

fn fail(message: &str) -> ExitCode {
    tracing::error!("{message}");
    let _ = writeln!(std::io::stderr(), "mars serve: {message}");
    ExitCode::FAILURE
}

async fn serve(config: ServerConfig) -> Result<(), String> {
    let for_load = config.clone();
    let upstreams = tokio::task::spawn_blocking(move || App::upstreams_of(&for_load))
        .await
        .map_err(|err| err.to_string())?
        .map_err(|err| err.to_string())?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|err| format!("could not listen on {}: {err}", config.listen))?;
    let addr = listener.local_addr().map_err(|err| err.to_string())?;
    let (code, said) = CodeChecks::start(&config).await?;
    let app = App::with_code_checks(config, upstreams, code);
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "mars serve listening on http://{addr}").map_err(|e| e.to_string())?;
        writeln!(stdout, "code strategies: {said}").map_err(|e| e.to_string())?;
        stdout.flush().map_err(|e| e.to_string())?;
    }
    app.serve(listener, shutdown_signal())
        .await
        .map_err(|err| err.to_string())
}

/// SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutting down");
}
