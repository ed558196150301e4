//! Wiring: opens the store, starts the recorder, binds the listeners, serves until a signal, then shuts down
//! in order: stop accepting, let in-flight requests finish (bounded), stop the gRPC streams, flush traces.
use crate::alerts::AlertManager;
use crate::auth::Authenticator;
use crate::budget::{Flusher, Ledger, RateLimiter};
use crate::config::Config;
use crate::drift::DriftMonitor;
use crate::engine::Engines;
use crate::gateway::{http_router, Gateway, GatewayParts, Observers};
use crate::grpc::alerts::AlertApi;
use crate::grpc::budgets::BudgetApi;
use crate::grpc::{keys::KeyApi, status::StatusApi, telemetry::TelemetryApi, traces::TraceApi, Apis, BoundGrpc};
use crate::router::Router;
use crate::shutdown;
use crate::telemetry::rules::HostRules;
use crate::telemetry::{sampler, LocalPrices, Telemetry};
use crate::trace::{Recorder, RecorderSettings, Store};
use anyhow::Context;
use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The order things stop in, one trigger each: stop accepting and end the watch streams (`servers`); end
/// requests that outlived the grace period, each with an error event and its trace (`requests`); stop
/// sampling once the last requests have their energy (`sampling`); stop launched engines last, since requests
/// in flight still need them (`launched`).
struct Stages {
    servers: shutdown::Trigger,
    requests: shutdown::Trigger,
    sampling: shutdown::Trigger,
    launched: shutdown::Trigger,
}

/// The signals the stages fire, handed to what they stop.
struct StageSignals {
    servers: shutdown::Shutdown,
    requests: shutdown::Shutdown,
    sampling: shutdown::Shutdown,
    launched: shutdown::Shutdown,
}

fn stages() -> (Stages, StageSignals) {
    let (servers, servers_signal) = shutdown::channel();
    let (requests, requests_signal) = shutdown::channel();
    let (sampling, sampling_signal) = shutdown::channel();
    let (launched, launched_signal) = shutdown::channel();
    (
        Stages { servers, requests, sampling, launched },
        StageSignals {
            servers: servers_signal,
            requests: requests_signal,
            sampling: sampling_signal,
            launched: launched_signal,
        },
    )
}

/// What the daemon keeps on disk and in memory across requests.
struct State {
    recorder: Recorder,
    writer: crate::trace::WriterHandle,
    reader_store: Arc<Mutex<Store>>,
    budgets: Ledger,
    /// Spend is kept in memory on the request path and written by this; a crash loses at most one second.
    budget_flusher: Flusher,
    alerts: AlertManager,
    auth: Arc<Authenticator>,
    prompts: Arc<crate::prompts::PromptRegistry>,
    evals: Arc<Mutex<crate::evals::EvalStore>>,
    guardrails: Arc<crate::guardrails::Guardrails>,
    cache: Arc<crate::cache::ResponseCache>,
    otlp: Option<Arc<crate::export::otlp::OtlpExport>>,
}

fn open_state(config: &Config, otlp: Option<&crate::export::otlp::Prepared>) -> anyhow::Result<State> {
    let data_dir = config.data_dir();
    // Prompts, answers and key hashes live here: owner only (0700), and each database 0600, whatever the umask.
    crate::state_db::private_dir(&data_dir)
        .with_context(|| format!("cannot create the data dir {} (server.data_dir) as 0700", data_dir.display()))?;
    // Made private before anything opens it (the key store opens it first, without `state_db::open`).
    let state_path = config.state_path();
    crate::state_db::private_db_file(&state_path)
        .with_context(|| format!("cannot make {} private (mode 0600)", state_path.display()))?;

    let store_path = config.store_path();
    let mut writer_store = Store::open(&store_path)?;
    if let Some(otlp) = otlp {
        writer_store.enable_outbox(otlp.outbox_bound());
    }
    let reader_store = Arc::new(Mutex::new(Store::open(&store_path)?));
    let settings = RecorderSettings {
        queue_capacity: config.store.queue_capacity,
        batch_size: config.store.batch_size,
        hash_content: config.privacy.hash_content,
        retention_days: config.store.retention_days,
        max_traces: config.store.max_traces,
    };
    let (recorder, writer) = Recorder::start(writer_store, settings).context("cannot start the trace writer")?;
    let listener_is_loopback = config.http_listen_addr()?.ip().is_loopback();
    let auth =
        Arc::new(Authenticator::open(&config.auth, &state_path, listener_is_loopback).context("cannot load API keys")?);
    let specs = crate::budget::specs_from_config(&config.budgets).context("invalid [[budgets]]")?;
    let budgets = Ledger::open(&state_path, specs).context("cannot open the budget ledger")?;
    let budget_flusher =
        Flusher::start(budgets.clone(), Duration::from_secs(1)).context("cannot start the budget flush thread")?;
    let alerts =
        AlertManager::open(&state_path, config.alerts.webhooks.clone()).context("cannot open the alert store")?;
    let prompts = Arc::new(
        crate::prompts::PromptRegistry::open(&state_path).context("cannot open the prompt registry (state.db)")?,
    );
    let evals = Arc::new(Mutex::new(
        crate::evals::EvalStore::open(&state_path).context("cannot open the evaluation store (state.db)")?,
    ));
    let rules = crate::guardrails::RuleSet::compile(&config.guardrails)
        .map_err(|e| anyhow::anyhow!("invalid [[guardrails]]: {e}"))?;
    let guardrails = Arc::new(crate::guardrails::Guardrails::new(rules));
    let cache = Arc::new(open_cache(config, &state_path)?);
    Ok(State {
        recorder,
        writer,
        reader_store,
        budgets,
        budget_flusher,
        alerts,
        auth,
        prompts,
        evals,
        guardrails,
        cache,
        otlp: otlp.map(|o| o.stats.clone()),
    })
}

/// The routes' response caches; entries of routes with `persist = true` come back from state.db (not in
/// privacy mode: answers are not written to disk then).
fn open_cache(config: &Config, state_path: &std::path::Path) -> anyhow::Result<crate::cache::ResponseCache> {
    let mut configs = std::collections::BTreeMap::new();
    for (route, route_config) in &config.routes {
        if let Some(cache) = &route_config.cache {
            let mut cache = cache.clone();
            if cache.persist && config.privacy.hash_content {
                tracing::warn!(route, "privacy mode: the response cache of this route is kept in memory only");
                cache.persist = false;
            }
            configs.insert(route.clone(), cache);
        }
    }
    let state = if configs.values().any(|c| c.persist) {
        Some(crate::state_db::open(state_path, "").context("cannot open state.db for the response cache")?)
    } else {
        None
    };
    crate::cache::ResponseCache::new(configs, state, crate::cache::system_clock())
        .context("cannot load the response cache from state.db")
}

fn build_gateway(
    config: &Config,
    state: &State,
    engines: &Engines,
    router: &Router,
    telemetry: &Arc<Telemetry>,
    closing: shutdown::Shutdown,
) -> Arc<Gateway> {
    let limits = &config.rate_limits;
    let drift = DriftMonitor::start(config.drift.clone(), state.alerts.clone());
    let feedback = Arc::new(crate::feedback::Feedback::new(
        state.recorder.clone(),
        state.reader_store.clone(),
        telemetry.clone(),
        drift.clone(),
        config.privacy.hash_content,
    ));
    let parts = GatewayParts {
        engines: engines.clone(),
        auth: state.auth.clone(),
        budgets: state.budgets.clone(),
        rate_limiter: RateLimiter::new(
            Some(limits.requests_per_min).filter(|n| *n > 0),
            Some(limits.tokens_per_min).filter(|n| *n > 0),
        ),
        retry: config.resilience.retry.clone(),
        max_body_bytes: config.server.max_body_bytes,
        body_read_timeout: Duration::from_millis(config.server.body_read_timeout_ms),
        cors_origins: config.server.cors_origins.clone(),
        closing,
        prompts: state.prompts.clone(),
        feedback,
        guardrails: state.guardrails.clone(),
        cache: state.cache.clone(),
        otlp: state.otlp.clone(),
    };
    let observers = Arc::new(Observers { telemetry: telemetry.clone(), drift, alerts: state.alerts.clone() });
    Arc::new(Gateway::new(router.clone(), state.recorder.clone(), observers, parts))
}

pub async fn run(config: Config) -> anyhow::Result<()> {
    let otlp = crate::export::otlp::prepare(&config).map_err(|e| anyhow::anyhow!("[export.otlp]: {e}"))?;
    let state = open_state(&config, otlp.as_ref())?;
    let engines = Engines::from_config(&config).map_err(anyhow::Error::msg)?;
    let prices = config.prices()?;
    let router = Router::with_prices(&config, &engines, &prices);
    let telemetry = Arc::new(Telemetry::new(
        Duration::from_millis(config.telemetry.interval_ms),
        Duration::from_secs(config.telemetry.history_secs),
        LocalPrices { usd_per_kwh: config.telemetry.usd_per_kwh, usd_per_gpu_hour: config.telemetry.usd_per_gpu_hour },
    ));
    let (stages, signals) = stages();
    let gateway = build_gateway(&config, &state, &engines, &router, &telemetry, signals.requests);

    let http_addr = config.http_listen_addr()?;
    let http_listener = tokio::net::TcpListener::bind(http_addr)
        .await
        .with_context(|| format!("cannot listen on server.http_listen = {http_addr}"))?;
    let http_display = http_listener.local_addr().map_or_else(|_| http_addr.to_string(), |a| a.to_string());
    let grpc = BoundGrpc::bind(&config.grpc_listen()?, &config.server).await?;
    let grpc_display = grpc.display_addr.clone();

    let supervisors = engines.spawn_background(signals.servers.clone(), signals.launched);
    let mut settings = sampler_settings(&config);
    settings.rules = Some(HostRules::new(config.alerts.clone(), state.alerts.clone()));
    let sampler_task = sampler::spawn(telemetry.clone(), engines.clone(), settings, signals.sampling);
    let shutdown_signal = signals.servers.clone();
    let listening = (http_display.clone(), grpc_display.clone());
    let apis = grpc_apis(&config, &state, &engines, &router, &telemetry, &gateway, listening, &shutdown_signal);
    let grpc_task = tokio::spawn(grpc.serve(apis, shutdown_signal.clone()));
    tokio::spawn(sweep_cache(state.cache.clone(), shutdown_signal.clone()));
    if let Some(otlp) = otlp {
        tracing::info!(target = %otlp.stats.target, protocol = otlp.stats.protocol, profile = otlp.stats.profile, "OTLP export on");
        otlp.spawn(shutdown_signal.clone());
    }

    tracing::info!(
        http = %http_display,
        grpc = %grpc_display,
        store = %config.store_path().display(),
        models = ?router.names().collect::<Vec<_>>(),
        "llmopsd listening"
    );
    let signals = TerminationSignals::install();
    // One machine-readable line on stdout, for supervisors and tests that pick ports at run time.
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "llmopsd listening http={http_display} grpc={grpc_display}");
    let _ = stdout.flush();

    serve_http(&config, http_listener, &gateway, &stages, shutdown_signal, signals).await;

    // Streams whose connection just closed record their traces as they notice; give them a moment.
    let deadline = Instant::now() + Duration::from_secs(2);
    while gateway.in_flight.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stages.servers.fire();
    // The last traces waiting for their energy are written with what they have.
    stages.sampling.fire();
    if tokio::time::timeout(Duration::from_secs(5), sampler_task).await.is_err() {
        tracing::warn!("telemetry sampler did not stop within 5 s");
    }
    telemetry.energy.flush();
    let State { recorder, writer, budget_flusher, cache: state_cache, .. } = state;
    // Its last flush saves what the drained requests spent.
    drop(budget_flusher);
    engines.stop();
    stages.launched.fire();
    // All at once: each waits at most its SIGTERM grace, then kills its process group.
    if tokio::time::timeout(Duration::from_secs(15), futures::future::join_all(supervisors)).await.is_err() {
        tracing::warn!("launched engines did not stop in time");
    }
    match tokio::time::timeout(Duration::from_secs(5), grpc_task).await {
        Ok(Ok(Err(error))) => tracing::error!(%error, "gRPC server"),
        Err(_) => tracing::warn!("gRPC server did not stop within 5 s"),
        _ => {}
    }
    tokio::task::spawn_blocking(move || writer.shutdown()).await.context("trace writer")?;
    let cache = state_cache;
    tokio::task::spawn_blocking(move || cache.flush()).await.context("response cache writer")?;
    let stats = recorder.stats();
    tracing::info!(
        written = stats.written.load(Ordering::Relaxed),
        dropped = stats.dropped.load(Ordering::Relaxed),
        "traces flushed; stopped"
    );
    Ok(())
}

/// Drops expired cache entries once a minute, so an answer nobody asks for again does not hold memory.
async fn sweep_cache(cache: Arc<crate::cache::ResponseCache>, mut shutdown: shutdown::Shutdown) {
    let mut every = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = every.tick() => {
                cache.purge_expired();
            }
            _ = shutdown.wait() => return,
        }
    }
}

/// The gRPC services, over the daemon's state; `listening` is the (HTTP, gRPC) addresses for GetStatus.
#[allow(clippy::too_many_arguments)]
fn grpc_apis(
    config: &Config,
    state: &State,
    engines: &Engines,
    router: &Router,
    telemetry: &Arc<Telemetry>,
    gateway: &Arc<Gateway>,
    (http_listen, grpc_listen): (String, String),
    shutdown: &shutdown::Shutdown,
) -> Apis {
    let replayer = crate::grpc::replay::Replayer::new(gateway.clone(), state.reader_store.clone());
    let status_api = StatusApi {
        started: Instant::now(),
        started_at_unix_ms: crate::clock::unix_ms(),
        http_listen,
        grpc_listen,
        privacy_mode: config.privacy.hash_content,
        engines: engines.clone(),
        router: router.clone(),
        recorder: state.recorder.clone(),
        store: state.reader_store.clone(),
        in_flight: gateway.in_flight.clone(),
        otlp: state.otlp.clone(),
    };
    Apis {
        traces: TraceApi::new(state.reader_store.clone(), state.recorder.clone(), shutdown.clone(), replayer),
        status: status_api,
        telemetry: TelemetryApi::new(telemetry.clone(), shutdown.clone()),
        keys: KeyApi { auth: state.auth.clone() },
        budgets: BudgetApi { budgets: state.budgets.clone(), shutdown: shutdown.clone() },
        alerts: AlertApi { alerts: state.alerts.clone(), shutdown: shutdown.clone() },
        feedback: crate::grpc::feedback::FeedbackApi { feedback: gateway.feedback.clone() },
        prompts: crate::grpc::prompts::PromptApi { prompts: state.prompts.clone(), gates: state.evals.clone() },
        evals: crate::grpc::evals::EvalApi {
            runner: crate::evals::runner::Runner::new(state.evals.clone(), gateway.clone()),
            traces: state.reader_store.clone(),
            recorder: state.recorder.clone(),
        },
        cache: crate::grpc::cache::CacheApi { cache: state.cache.clone() },
    }
}

/// Serves HTTP until SIGTERM or SIGINT, then drains: no new connections, in-flight requests get
/// `server.shutdown_grace_secs` to finish before they are told to end.
async fn serve_http(
    config: &Config,
    listener: tokio::net::TcpListener,
    gateway: &Arc<Gateway>,
    stages: &Stages,
    mut stop: shutdown::Shutdown,
    mut signals: TerminationSignals,
) {
    let limits = crate::gateway::server::Limits {
        max_connections: config.server.max_connections,
        header_read_timeout: Duration::from_millis(config.server.header_read_timeout_ms),
    };
    let server =
        crate::gateway::server::serve(listener, http_router(gateway.clone()), limits, async move { stop.wait().await });
    tokio::pin!(server);
    let grace = Duration::from_secs(config.server.shutdown_grace_secs);
    tokio::select! {
        () = &mut server => {}
        signal = signals.received() => {
            tracing::info!(signal, in_flight = gateway.in_flight.load(Ordering::Relaxed), "shutting down");
            stages.servers.fire();
            if tokio::time::timeout(grace, &mut server).await.is_err() {
                tracing::warn!(grace_secs = grace.as_secs(), "in-flight requests outlived the shutdown grace; ending them");
                // Connection tasks belong to axum, not to us: tell the requests themselves to end (a stream
                // with an error event), so each records its trace before the writer stops.
                stages.requests.fire();
            }
        }
    }
}

fn sampler_settings(config: &Config) -> sampler::SamplerSettings {
    use crate::config::EngineConfig;
    let engine_gpus = config
        .effective_engines()
        .into_iter()
        .map(|(name, engine)| {
            let gpus = match engine {
                EngineConfig::Openai(settings) => settings.gpus,
                EngineConfig::Embedded(settings) => settings.gpus,
            };
            (name, gpus)
        })
        .filter(|(_, gpus)| !gpus.is_empty())
        .collect();
    let library = config.telemetry.nvml_library.trim();
    sampler::SamplerSettings { nvml_library: (!library.is_empty()).then(|| library.into()), engine_gpus, rules: None }
}

/// SIGTERM and SIGINT, caught from the moment this is made: made before the daemon says it is listening, so
/// a supervisor that stops it right after that line gets a clean shutdown, not the default kill.
struct TerminationSignals(Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>);

impl TerminationSignals {
    fn install() -> Self {
        use tokio::signal::unix::{signal, SignalKind};
        match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
            (Ok(term), Ok(int)) => Self(Some((term, int))),
            _ => {
                tracing::error!("cannot install signal handlers; stop with SIGKILL");
                Self(None)
            }
        }
    }

    async fn received(&mut self) -> &'static str {
        let Some((term, int)) = self.0.as_mut() else { return std::future::pending().await };
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        }
    }
}
