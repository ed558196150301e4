//! `/metrics` as Prometheus's own linter sees it: `promtool check metrics` (Debian package `prometheus`, installed
//! by scripts/setup.sh) on a live daemon's output after traffic on every kind of series: plain and streamed
//! answers, an engine error, a fallback, a budget refusal and a stand-in GPU. A new series that breaks the
//! naming conventions fails here. Also `/readyz` with one route ready and one whose engine cannot serve.
use llmops_e2e::daemon::{wait_until, Daemon};
use llmops_e2e::fake_upstream::{Behavior, FakeUpstream};
use llmops_e2e::nvml::FakeNvml;
use serde_json::{json, Value};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);
const GPU: &str = "driver_version 550.54.15\ndevice_count 1\ngpu0.name NVIDIA L4\ngpu0.uuid GPU-lint\n\
    gpu0.memory_total 24000000000\ngpu0.memory_used 1000000000\ngpu0.util_gpu 40\ngpu0.power_mw 70000\n\
    gpu0.power_limit_mw 72000\ngpu0.energy_mj 1000\ngpu0.temperature 60\n";

/// promtool's verdict on `text`: Ok, or what it printed.
fn promtool_check(text: &str) -> Result<(), String> {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run promtool ({e}): scripts/setup.sh installs it (Debian package prometheus)"))?;
    child.stdin.take().ok_or("no stdin")?.write_all(text.as_bytes()).map_err(|e| e.to_string())?;
    let output = child.wait_with_output().map_err(|e| e.to_string())?;
    let said = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    if output.status.success() && said.trim().is_empty() {
        Ok(())
    } else {
        Err(format!("promtool check metrics: {}\n{said}", output.status))
    }
}

#[test]
fn promtool_rejects_a_gauge_named_like_a_counter_part() {
    // The check must be able to fail: the old name of the CPU gauge is what promtool refused.
    let bad = "# HELP llmops_host_cpu_count CPU cores.\n# TYPE llmops_host_cpu_count gauge\nllmops_host_cpu_count 2\n";
    let verdict = promtool_check(bad);
    assert!(verdict.as_ref().is_err_and(|e| e.contains("_count")), "{verdict:?}");
}

#[tokio::test]
async fn metrics_after_every_kind_of_traffic_pass_promtool() {
    let nvml = FakeNvml::new(GPU);
    let good = FakeUpstream::start(Behavior { reply_words: Some(5), ..Behavior::default() }).await.expect("fake");
    let failing = FakeUpstream::start(Behavior { fail_status: Some(500), ..Behavior::default() }).await.expect("fake");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!(
        "[telemetry]\ninterval_ms = 200\nnvml_library = \"{nvml}\"\n\
         [engines.good]\nkind = \"openai\"\nbase_url = \"{good}\"\nmodels = [\"fake-model\"]\n\
         price = {{ input = 1.0, output = 1.0 }}\n\
         [engines.bad]\nkind = \"openai\"\nbase_url = \"{bad}\"\nmodels = [\"fake-model\"]\n\
         [engines.missing]\nkind = \"embedded\"\nmodel = \"{missing}\"\n\
         [routes.chat]\ntargets = [{{ engine = \"bad\", model = \"fake-model\" }}, {{ engine = \"good\", model = \"fake-model\" }}]\n\
         [routes.broken]\ntargets = [{{ engine = \"bad\", model = \"fake-model\" }}]\n\
         [routes.offline]\ntargets = [{{ engine = \"missing\", model = \"offline\" }}]\n\
         [[budgets]]\nname = \"three\"\nscope = \"route:chat\"\nwindow = \"day\"\nlimit_requests = 3\naction = \"reject\"\n",
        nvml = nvml.lib_path().display(),
        good = good.base_url(),
        bad = failing.base_url(),
        missing = dir.path().join("absent.gguf").display(),
    );
    let daemon = Daemon::start(&config, dir.path()).await.expect("llmopsd starts");
    let http = reqwest::Client::new();
    let ask = |model: &str, stream: bool| json!({"model": model, "stream": stream, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]});
    let mut statuses = Vec::new();
    for body in [ask("chat", false), ask("chat", true), ask("chat", false), ask("chat", false), ask("broken", false)] {
        let response = http.post(daemon.url("/v1/chat/completions")).json(&body).send().await.expect("POST");
        statuses.push(response.status().as_u16());
        let _ = response.bytes().await;
    }
    // Three served through the fallback (one streamed), the fourth over the budget, the last one failed.
    assert_eq!(statuses, [200, 200, 200, 429, 502], "{}", daemon.log_tail(30));

    // /readyz: `chat` and `broken` have an openai target; `offline` has only an engine without its model.
    let ready = http.get(daemon.url("/readyz")).send().await.expect("readyz");
    assert_eq!(ready.status(), 503);
    let ready: Value = ready.json().await.expect("json");
    assert_eq!(ready["status"], "not_ready", "{ready}");
    let routes = ready["routes"].as_array().expect("routes");
    let names: Vec<&str> = routes.iter().filter_map(|r| r["route"].as_str()).collect();
    assert!(names.contains(&"offline"), "{ready}");
    let offline = routes.iter().find(|r| r["route"] == "offline").expect("offline");
    assert_eq!(offline["targets"][0]["target"], "missing/offline", "{ready}");
    assert!(offline["targets"][0]["reason"].as_str().is_some_and(|r| r.contains("absent.gguf")), "{ready}");

    // Every series has appeared once the GPU was sampled and the traces were counted.
    let scraped = wait_until(WAIT, || async {
        let text = http.get(daemon.url("/metrics")).send().await.expect("GET").text().await.unwrap_or_default();
        text.contains("llmops_gpu_temperature_celsius")
            && text.contains("llmops_requests_total")
            && text.contains("gen_ai_")
    })
    .await;
    let text = http.get(daemon.url("/metrics")).send().await.expect("GET").text().await.expect("text");
    assert!(scraped, "series missing from /metrics:\n{text}");
    assert!(text.contains("llmops_host_logical_cpus"), "{text}");
    if let Err(problems) = promtool_check(&text) {
        panic!("{problems}\n--- /metrics ---\n{text}");
    }
}
