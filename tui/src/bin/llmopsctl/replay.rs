//! `llmopsctl replay ID [--route R] [--set KEY=VALUE]...`: the re-run's text as it streams, then the comparison.
use std::io::Write;

use llmops_proto::v1::replay_event::Event;
use llmops_proto::v1::{ReplayDone, ReplayRequest};
use llmops_tui::connect::Daemon;
use llmops_tui::json;
use serde_json::{Map, Value};
use tonic::Code;

use super::output::print_json;
use super::Failure;

pub struct Args<'a> {
    pub id: &'a str,
    pub route: Option<&'a str>,
    pub set: &'a [String],
}

pub async fn replay(
    daemon: &Daemon,
    args: Args<'_>,
    as_json: bool,
    out: &mut impl Write,
    rpc_failure: impl Fn(tonic::Status) -> Failure,
) -> Result<(), Failure> {
    let overrides = overrides(args.set).map_err(Failure::Refused)?;
    let request = ReplayRequest {
        trace_id: args.id.to_string(),
        route: args.route.unwrap_or_default().to_string(),
        overrides_json: if overrides.is_empty() { String::new() } else { Value::Object(overrides).to_string() },
    };
    let refused = |status: tonic::Status| match status.code() {
        Code::NotFound => Failure::NoSuchTrace(args.id.to_string()),
        Code::InvalidArgument | Code::FailedPrecondition => {
            Failure::Refused(format!("cannot replay {}: {}", args.id, status.message()))
        }
        _ => rpc_failure(status),
    };
    let mut events = daemon.traces().replay(request).await.map_err(refused)?.into_inner();
    let mut done = None;
    while let Some(event) = events.message().await.map_err(refused)? {
        match event.event {
            Some(Event::Started(started)) if !as_json => {
                writeln!(out, "re-running {} on route {} as trace {}\n", args.id, started.route, started.trace_id)?;
            }
            Some(Event::Chunk(chunk)) if !as_json => {
                write!(out, "{}", chunk.text)?;
                out.flush()?;
            }
            Some(Event::Done(finished)) => done = Some(finished),
            _ => {}
        }
    }
    let done = done.ok_or_else(|| Failure::Refused("llmopsd ended the replay without a result".into()))?;
    if as_json {
        print_json(out, &json::replay_to_json(&done))?;
    } else {
        write!(out, "\n\n{}", summary(&done))?;
    }
    Ok(())
}

/// `KEY=VALUE` pairs as a JSON object; VALUE is JSON when it parses (numbers, true, null, objects), else text.
pub fn overrides(pairs: &[String]) -> Result<Map<String, Value>, String> {
    pairs
        .iter()
        .map(|pair| {
            let (key, value) = pair
                .split_once('=')
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| format!("--set {pair:?}: expected KEY=VALUE, e.g. --set temperature=0"))?;
            let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_string()));
            Ok((key.to_string(), value))
        })
        .collect()
}

fn summary(done: &ReplayDone) -> String {
    let Some(c) = &done.comparison else { return "no comparison\n".into() };
    let replay = done.replay.clone().unwrap_or_default();
    let status = llmops_tui::names::trace_status_name(replay.status);
    let mut text = format!("re-run {} ({status}) of {}\n", c.replay_id, c.original_id);
    if c.text_identical {
        text.push_str("text:     identical\n");
    } else {
        text.push_str(&format!("text:     differs ({:.0}% similar)\n", c.text_similarity * 100.0));
    }
    let ms = |v: f64| format!("{v:+.0} ms");
    text.push_str(&format!("tokens:   {:+} in, {:+} out\n", c.input_tokens_delta, c.output_tokens_delta));
    text.push_str(&format!("latency:  {} (now {:.0} ms)\n", ms(c.latency_delta_ms), replay.latency_ms));
    text.push_str(&format!("TTFT:     {}\n", c.ttft_delta_ms.map_or("-".into(), ms)));
    text.push_str(&format!("cost:     {}\n", c.cost_delta_usd.map_or("-".into(), |v| format!("{v:+.6} USD"))));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_values_are_json_when_they_parse() {
        let pairs = ["temperature=0".to_string(), "stop=END".into(), "seed=null".into()];
        let map = overrides(&pairs).expect("valid");
        assert_eq!(Value::Object(map), serde_json::json!({"temperature": 0, "stop": "END", "seed": null}));
        assert!(overrides(&["temperature".to_string()]).expect_err("no =").contains("KEY=VALUE"));
        assert!(overrides(&["=1".to_string()]).is_err());
    }
}
