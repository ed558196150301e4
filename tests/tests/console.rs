//! `llmops-top` in a real terminal (a private tmux) against the real daemon and the fake upstream: requests
//! show up in the live traces view, one opens in the detail view, replays with its timing, re-runs on another
//! route with a comparison, and quitting leaves the terminal as it was (main screen, canonical mode).
use llmops_e2e::daemon::{binary, Daemon};
use llmops_e2e::fake_upstream::{Behavior, FakeUpstream};
use llmops_e2e::tmux::Tmux;
use llmops_proto::v1 as pb;
use llmops_proto::v1::trace_service_client::TraceServiceClient;
use serde_json::json;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

async fn chat(daemon: &Daemon, content: &str) {
    let body = json!({"model": "echo", "stream": true, "messages": [{"role": "user", "content": content}]});
    let response =
        reqwest::Client::new().post(daemon.url("/v1/chat/completions")).json(&body).send().await.expect("request");
    assert_eq!(response.status(), 200);
    response.text().await.expect("the whole stream");
}

/// Polls the screen off the async runtime (tmux calls block).
async fn wait_for(tmux: &Tmux, what: &str, condition: impl Fn(&str) -> bool) -> String {
    tokio::task::block_in_place(|| tmux.wait_for(what, WAIT, condition)).unwrap_or_else(|e| panic!("{e}"))
}

fn keys(tmux: &Tmux, keys: &[&str]) {
    tmux.send_keys(keys).expect("send-keys");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_shows_live_traces_opens_replays_reruns_and_restores_the_terminal() {
    if !Tmux::available() {
        panic!("tmux is not installed: run scripts/setup.sh (it installs tmux for this test)");
    }
    let upstream_a = FakeUpstream::start(Behavior { token_delay_ms: 20, ..Behavior::default() }).await.expect("a");
    let words = Behavior { token_delay_ms: 5, reply_words: Some(3), ..Behavior::default() };
    let upstream_b = FakeUpstream::start(words).await.expect("b");
    let config = format!(
        "[engines.a]\nkind = \"openai\"\nbase_url = \"{}\"\nmodels = [\"echo\"]\n\n\
         [engines.b]\nkind = \"openai\"\nbase_url = \"{}\"\nmodels = [\"words\"]\n",
        upstream_a.base_url(),
        upstream_b.base_url()
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start(&config, dir.path()).await.expect("llmopsd starts");
    let top = binary("llmops-top").expect("llmops-top is built");
    // After the console exits, the shell prints its exit status and whether the tty is back in canonical
    // mode (`icanon`, not raw mode's `-icanon`).
    let command = format!(
        "{} --connect unix:{}; echo \"top exited $?\"; stty -a | grep -o -- '-*icanon' | sed 's/^/tty /'; sleep 60",
        top.display(),
        daemon.grpc_socket.display()
    );
    let tmux = Tmux::start(&command, 100, 30).expect("tmux starts");

    let screen =
        wait_for(&tmux, "the overview of a connected daemon", |s| s.contains("Overview") && s.contains(" up")).await;
    assert!(screen.contains("unix:"), "the header names the daemon:\n{screen}");
    assert_eq!(tmux.pane_format("#{alternate_on}").expect("tmux"), "1", "the console uses the alternate screen");

    for prompt in ["alpha sea", "beta sky", "gamma sun"] {
        chat(&daemon, prompt).await;
    }
    keys(&tmux, &["2"]);
    let screen = wait_for(&tmux, "three traces in the live tail", |s| s.matches(" ok ").count() >= 3).await;
    assert!(screen.contains("LIVE") && screen.contains("echo"), "{screen}");

    // Following: the newest (gamma) is selected; Enter opens it.
    keys(&tmux, &["Enter"]);
    let screen = wait_for(&tmux, "the detail of the newest trace", |s| s.contains("echo: gamma sun")).await;
    assert!(screen.contains("TTFT") && screen.contains("attempt"), "timing line and attempts:\n{screen}");
    // No GPU here: the daemon's telemetry from that time says why.
    wait_for(&tmux, "the GPU state at the time", |s| s.contains("GPU at the time: no GPU")).await;

    keys(&tmux, &["r"]);
    let screen = wait_for(&tmux, "the playback to finish", |s| {
        s.contains("Replay") && s.contains("echo: gamma sun") && s.contains("[")
    })
    .await;
    assert!(screen.contains("chunk"), "progress line:\n{screen}");

    // Re-run on the other route: the picker lists the routes, the original's first.
    keys(&tmux, &["R"]);
    wait_for(&tmux, "the route picker", |s| s.contains("words")).await;
    keys(&tmux, &["Down", "Enter"]);
    let screen =
        wait_for(&tmux, "the comparison of the re-run", |s| s.contains("similarity") && s.contains("w1 w2 w3")).await;
    assert!(screen.contains("re-run"), "{screen}");

    keys(&tmux, &["q"]);
    let screen = wait_for(&tmux, "the console to exit", |s| s.contains("top exited") && s.contains("tty ")).await;
    assert!(screen.contains("top exited 0"), "{screen}");
    assert!(screen.lines().any(|l| l.trim() == "tty icanon"), "the tty is back in canonical mode:\n{screen}");
    assert_eq!(tmux.pane_format("#{alternate_on}").expect("tmux"), "0", "back on the main screen");

    // The re-run the console asked for is a trace linked to the original.
    let mut traces = TraceServiceClient::new(daemon.grpc_channel().await.expect("grpc"));
    let listed = traces
        .list_traces(pb::ListTracesRequest { route: "words".into(), ..Default::default() })
        .await
        .expect("list")
        .into_inner()
        .traces;
    assert_eq!(listed.len(), 1, "one re-run on route words");
    assert!(!listed[0].replay_of.is_empty(), "linked to the trace it re-ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_says_when_the_daemon_is_unreachable_and_quits_cleanly() {
    if !Tmux::available() {
        panic!("tmux is not installed: run scripts/setup.sh (it installs tmux for this test)");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("nobody.sock");
    let top = binary("llmops-top").expect("llmops-top is built");
    let command = format!("{} --connect unix:{}; echo \"top exited $?\"; sleep 60", top.display(), socket.display());
    let tmux = Tmux::start(&command, 80, 24).expect("tmux starts");
    let screen =
        wait_for(&tmux, "the unreachable banner", |s| s.contains("unreachable") && s.contains("retrying")).await;
    assert!(screen.contains("nobody.sock"), "{screen}");
    keys(&tmux, &["C-c"]);
    let screen = wait_for(&tmux, "the console to exit", |s| s.contains("top exited")).await;
    assert!(screen.contains("top exited 0"), "{screen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_view_has_a_row_per_daemon_and_enter_drills_in() {
    if !Tmux::available() {
        panic!("tmux is not installed: run scripts/setup.sh (it installs tmux for this test)");
    }
    let (dir_a, dir_b) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
    let daemon_a = Daemon::start("", dir_a.path()).await.expect("first llmopsd");
    let daemon_b = Daemon::start("", dir_b.path()).await.expect("second llmopsd");
    let gone = dir_a.path().join("gone.sock");
    let top = binary("llmops-top").expect("llmops-top is built");
    let command = format!(
        "{} --connect unix:{} --connect unix:{} --connect unix:{}; sleep 60",
        top.display(),
        daemon_a.grpc_socket.display(),
        daemon_b.grpc_socket.display(),
        gone.display()
    );
    let tmux = Tmux::start(&command, 120, 30).expect("tmux starts");
    let screen = wait_for(&tmux, "three rows, two up and one down", |s| {
        s.contains("3 hosts") && s.matches("● up").count() == 2 && s.contains("down")
    })
    .await;
    assert!(screen.contains("0 Fleet"), "{screen}");
    // The first row is selected; down once and Enter opens the second daemon's overview.
    keys(&tmux, &["Down", "Enter"]);
    let second = daemon_b.grpc_socket.display().to_string();
    let screen =
        wait_for(&tmux, "the second daemon's overview", |s| s.lines().next().is_some_and(|l| l.contains("1 Overview")))
            .await;
    let header = screen.lines().next().unwrap_or_default();
    assert!(header.contains(&second[second.len().saturating_sub(20)..]), "header names the second daemon: {header}");
    keys(&tmux, &["0"]);
    wait_for(&tmux, "back to the fleet", |s| s.contains("3 hosts")).await;
}
