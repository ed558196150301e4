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

pub async fn run(config: Config) -> anyhow::Result<()> {
    let started = Instant::now();
    let started_at_unix_ms = crate::clock::unix_ms();
    let data_dir = config.data_dir();
    // Prompts, answers and key hashes live here: owner only (0700), and each database 0600, whatever the umask.
    crate::state_db::private_dir(&data_dir)
        .with_context(|| format!("cannot create the data dir {} (server.data_dir) as 0700", data_dir.display()))?;
    // Made private before anything opens it (the key store opens it first, without `state_db::open`).
    let state_path = config.state_path();
    crate::state_db::private_db_file(&state_path)
        .with_context(|| format!("cannot make {} private (mode 0600)", state_path.display()))?;

    let store_path = config.store_path();
    let writer_store = Store::open(&store_path)?;
    let reader_store = Arc::new(Mutex::new(Store::open(&store_path)?));
    let settings = RecorderSettings {
        queue_capacity: config.store.queue_capacity,
        batch_size: config.store.batch_size,
        hash_content: config.privacy.hash_content,
        retention_days: config.store.retention_days,
        max_traces: config.store.max_traces,
    };
    let (recorder, writer) = Recorder::start(writer_store, settings).context("cannot start the trace writer")?;

    let engines = Engines::from_config(&config).map_err(anyhow::Error::msg)?;
    let prices = config.prices()?;
    let router = Router::with_prices(&config, &engines, &prices);
    let telemetry = Arc::new(Telemetry::new(
        Duration::from_millis(config.telemetry.interval_ms),
        Duration::from_secs(config.telemetry.history_secs),
        LocalPrices { usd_per_kwh: config.telemetry.usd_per_kwh, usd_per_gpu_hour: config.telemetry.usd_per_gpu_hour },
    ));
    let listener_is_loopback = config.http_listen_addr()?.ip().is_loopback();
    let auth = Arc::new(
        Authenticator::open(&config.auth, &config.state_path(), listener_is_loopback)
            .context("cannot load API keys")?,
    );
    let (close_trigger, closing) = shutdown::channel();
    let specs = crate::budget::specs_from_config(&config.budgets).context("invalid [[budgets]]")?;
    let budgets = Ledger::open(&config.state_path(), specs).context("cannot open the budget ledger")?;
    // Spend is kept in memory on the request path and written here; a crash loses at most this much.
    let budget_flusher =
        Flusher::start(budgets.clone(), Duration::from_secs(1)).context("cannot start the budget flush thread")?;
    let limits = &config.rate_limits;
    let parts = GatewayParts {
        engines: engines.clone(),
        auth: auth.clone(),
        budgets: budgets.clone(),
        rate_limiter: RateLimiter::new(
            Some(limits.requests_per_min).filter(|n| *n > 0),
            Some(limits.tokens_per_min).filter(|n| *n > 0),
        ),
        retry: config.resilience.retry.clone(),
        max_body_bytes: config.server.max_body_bytes,
        body_read_timeout: Duration::from_millis(config.server.body_read_timeout_ms),
        cors_origins: config.server.cors_origins.clone(),
        closing,
    };
    let alerts = AlertManager::open(&config.state_path(), config.alerts.webhooks.clone())
        .context("cannot open the alert store")?;
    let drift = DriftMonitor::start(config.drift.clone(), alerts.clone());
    let observers = Arc::new(Observers { telemetry: telemetry.clone(), drift, alerts: alerts.clone() });
    let gateway = Arc::new(Gateway::new(router.clone(), recorder.clone(), observers, parts));

    let http_addr = config.http_listen_addr()?;
    let http_listener = tokio::net::TcpListener::bind(http_addr)
        .await
        .with_context(|| format!("cannot listen on server.http_listen = {http_addr}"))?;
    let http_display = http_listener.local_addr().map_or_else(|_| http_addr.to_string(), |a| a.to_string());
    let grpc = BoundGrpc::bind(&config.grpc_listen()?, &config.server.grpc_token_env).await?;
    let grpc_display = grpc.display_addr.clone();

    let (trigger, shutdown_signal) = shutdown::channel();
    // Launched engines outlive the HTTP server's drain (requests in flight still need them).
    let (stop_launched_trigger, stop_launched) = shutdown::channel();
    let supervisors = engines.spawn_background(shutdown_signal.clone(), stop_launched);
    // Sampling goes on through the HTTP drain, so requests still running get their energy.
    let (stop_sampling_trigger, stop_sampling) = shutdown::channel();
    let mut settings = sampler_settings(&config);
    settings.rules = Some(HostRules::new(config.alerts.clone(), alerts.clone()));
    let sampler_task = sampler::spawn(telemetry.clone(), engines.clone(), settings, stop_sampling);
    let telemetry_api = TelemetryApi::new(telemetry.clone(), shutdown_signal.clone());
    let replayer = crate::grpc::replay::Replayer::new(gateway.clone(), reader_store.clone(), recorder.clone());
    let trace_api = TraceApi::new(reader_store.clone(), recorder.clone(), shutdown_signal.clone(), replayer);
    let status_api = StatusApi {
        started,
        started_at_unix_ms,
        http_listen: http_display.clone(),
        grpc_listen: grpc_display.clone(),
        privacy_mode: config.privacy.hash_content,
        engines: engines.clone(),
        router: router.clone(),
        recorder: recorder.clone(),
        store: reader_store,
        in_flight: gateway.in_flight.clone(),
    };
    let apis = Apis {
        traces: trace_api,
        status: status_api,
        telemetry: telemetry_api,
        keys: KeyApi { auth: auth.clone() },
        budgets: BudgetApi { budgets: budgets.clone(), shutdown: shutdown_signal.clone() },
        alerts: AlertApi { alerts: alerts.clone(), shutdown: shutdown_signal.clone() },
    };
    let grpc_task = tokio::spawn(grpc.serve(apis, shutdown_signal.clone()));

    tracing::info!(
        http = %http_display,
        grpc = %grpc_display,
        store = %store_path.display(),
        models = ?router.names().collect::<Vec<_>>(),
        "llmopsd listening"
    );
    // One machine-readable line on stdout, for supervisors and tests that pick ports at run time.
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "llmopsd listening http={http_display} grpc={grpc_display}");
    let _ = stdout.flush();

    let mut http_stop = shutdown_signal.clone();
    let limits = crate::gateway::server::Limits {
        max_connections: config.server.max_connections,
        header_read_timeout: Duration::from_millis(config.server.header_read_timeout_ms),
    };
    let server = crate::gateway::server::serve(http_listener, http_router(gateway.clone()), limits, async move {
        http_stop.wait().await
    });
    tokio::pin!(server);
    let grace = Duration::from_secs(config.server.shutdown_grace_secs);
    tokio::select! {
        () = &mut server => {}
        signal = termination_signal() => {
            tracing::info!(signal, in_flight = gateway.in_flight.load(Ordering::Relaxed), "shutting down");
            trigger.fire();
            if tokio::time::timeout(grace, &mut server).await.is_err() {
                tracing::warn!(grace_secs = grace.as_secs(), "in-flight requests outlived the shutdown grace; ending them");
                // Connection tasks belong to axum, not to us: tell the requests themselves to end (a stream
                // with an error event), so each records its trace before the writer stops.
                close_trigger.fire();
            }
        }
    }
    // Streams whose connection just closed record their traces as they notice; give them a moment.
    let deadline = Instant::now() + Duration::from_secs(2);
    while gateway.in_flight.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    trigger.fire();
    // The last traces waiting for their energy are written with what they have.
    stop_sampling_trigger.fire();
    if tokio::time::timeout(Duration::from_secs(5), sampler_task).await.is_err() {
        tracing::warn!("telemetry sampler did not stop within 5 s");
    }
    telemetry.energy.flush();
    // Its last flush saves what the drained requests spent.
    drop(budget_flusher);
    engines.stop();
    stop_launched_trigger.fire();
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
    let stats = recorder.stats();
    tracing::info!(
        written = stats.written.load(Ordering::Relaxed),
        dropped = stats.dropped.load(Ordering::Relaxed),
        "traces flushed; stopped"
    );
    Ok(())
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

async fn termination_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}
