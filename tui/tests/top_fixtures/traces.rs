//! Traces for the snapshots: twenty in the tail, one in flight, a full one with a fallback and recorded
//! chunks, and replays of it playing, re-running and done.
use std::collections::{HashMap, VecDeque};

use llmops_proto::v1 as pb;
use llmops_tui::top::state::{Chunk, Playback, ReRun, ReplayUi};

use super::NOW;

/// Twenty finished traces, newest first, cycling through routes and outcomes.
pub fn traces() -> VecDeque<pb::Trace> {
    let routes = [("chat", "llama-3-8b"), ("code", "qwen2.5-coder"), ("embed", "bge-m3"), ("chat", "llama-3-70b")];
    let statuses = [
        pb::TraceStatus::Ok,
        pb::TraceStatus::Ok,
        pb::TraceStatus::Error,
        pb::TraceStatus::Ok,
        pb::TraceStatus::Rejected,
        pb::TraceStatus::Ok,
        pb::TraceStatus::Cancelled,
    ];
    (0..20u64)
        .map(|i| {
            let (route, model) = routes[i as usize % routes.len()];
            let status = statuses[i as usize % statuses.len()];
            let ok = status == pb::TraceStatus::Ok;
            let latency = 120.0 + (i * 397 % 2900) as f64;
            pb::Trace {
                id: format!("0190b5a8-0000-7000-8000-{:012}", 100 - i),
                started_at_unix_ms: NOW - 4_000 - i as i64 * 17_000,
                ended_at_unix_ms: NOW - 4_000 - i as i64 * 17_000 + latency as i64,
                endpoint: "chat.completions".into(),
                route: route.into(),
                model_requested: route.into(),
                model_served: if status == pb::TraceStatus::Rejected { String::new() } else { model.into() },
                engine: "vllm-a".into(),
                status: status as i32,
                http_status: match status {
                    pb::TraceStatus::Ok => 200,
                    pb::TraceStatus::Rejected => 400,
                    pb::TraceStatus::Error => 502,
                    _ => 0,
                },
                input_tokens: 40 + i * 37,
                output_tokens: if ok { 10 + i * 53 } else { 0 },
                ttft_ms: ok.then_some(60.0 + (i * 13) as f64),
                latency_ms: latency,
                cost_usd: ok.then_some(0.00021 * (i + 1) as f64),
                ..Default::default()
            }
        })
        .collect()
}

pub fn in_flight() -> pb::Trace {
    pb::Trace {
        id: "0190b5a8-0000-7000-8000-000000000200".into(),
        started_at_unix_ms: NOW - 800,
        route: "chat".into(),
        model_requested: "chat".into(),
        status: pb::TraceStatus::InFlight as i32,
        input_tokens: 812,
        ..Default::default()
    }
}

pub const RESPONSE: &str = "The capital of France is Paris. It sits on the Seine and has been the country's \
capital for most of the last thousand years. Its population is about two million people in the city proper.";

/// A trace with bodies, a failed first attempt and a fallback that answered, and recorded chunks.
pub fn full_trace() -> pb::Trace {
    let chunks = RESPONSE.split_inclusive(' ').count();
    pb::Trace {
        id: "0190b5a8-0000-7000-8000-000000000100".into(),
        started_at_unix_ms: NOW - 4_000,
        ended_at_unix_ms: NOW - 2_900,
        endpoint: "chat.completions".into(),
        route: "chat".into(),
        model_requested: "chat".into(),
        model_served: "llama-3-8b".into(),
        engine: "vllm-b".into(),
        tenant: "acme".into(),
        user: "bob".into(),
        tags: HashMap::from([("env".into(), "prod".into()), ("team".into(), "search".into())]),
        status: pb::TraceStatus::Ok as i32,
        http_status: 200,
        stream: true,
        finish_reason: "stop".into(),
        input_tokens: 512,
        output_tokens: 128,
        tokens_estimated: true,
        ttft_ms: Some(120.0),
        latency_ms: 1003.0,
        prompt_text: "system: You answer briefly.\nuser: What is the capital of France? Tell me a little about it."
            .into(),
        response_text: RESPONSE.into(),
        attempts: vec![
            pb::Attempt {
                engine: "vllm-a".into(),
                model: "llama-3-8b".into(),
                start_offset_ms: 3.0,
                latency_ms: 210.0,
                ttft_ms: None,
                upstream_status: 503,
                error: "upstream 503: overloaded".into(),
            },
            pb::Attempt {
                engine: "vllm-b".into(),
                model: "llama-3-8b".into(),
                start_offset_ms: 214.0,
                latency_ms: 786.0,
                ttft_ms: Some(120.0),
                upstream_status: 200,
                error: String::new(),
            },
        ],
        chunk_offsets_ms: (0..chunks).map(|i| 334.0 + i as f64 * 19.0).collect(),
        chunk_chars: RESPONSE.split_inclusive(' ').map(|w| w.chars().count() as u32).collect(),
        cost_usd: Some(0.00123),
        energy_joules: Some(352.4),
        ..Default::default()
    }
}

/// Feedback on `full_trace`: a person's thumbs down with a comment, an LLM judge's number and a code check's
/// label, oldest first.
pub fn scores() -> Vec<pb::Score> {
    let score = |name: &str, value: pb::score::Value, source: pb::ScoreSource, comment: &str, at: i64| pb::Score {
        id: format!("score-{name}"),
        trace_id: full_trace().id,
        name: name.into(),
        value: Some(value),
        comment: comment.into(),
        source: source as i32,
        created_at_unix_ms: NOW - at,
    };
    vec![
        score("quality", pb::score::Value::Number(0.4), pb::ScoreSource::Llm, "", 2_000),
        score("tone", pb::score::Value::Label("curt".into()), pb::ScoreSource::Code, "", 1_500),
        score("thumbs", pb::score::Value::Passed(false), pb::ScoreSource::Human, "too long\nfor a quick answer", 1_000),
    ]
}

fn playback(shown: usize) -> Playback {
    let trace = full_trace();
    let words: Vec<&str> = RESPONSE.split_inclusive(' ').collect();
    let chunks: Vec<Chunk> =
        words.iter().zip(&trace.chunk_offsets_ms).map(|(w, at)| Chunk { at_ms: *at, text: (*w).to_owned() }).collect();
    let shown = shown.min(chunks.len());
    let position_ms = chunks.get(shown.saturating_sub(1)).map_or(0.0, |c| c.at_ms);
    Playback { chunks, shown, position_ms, total_ms: trace.latency_ms, speed: 1.0, paused: false }
}

pub fn replay_playing(shown: usize) -> ReplayUi {
    ReplayUi { original: full_trace(), playback: playback(shown), picker: None, rerun: None }
}

pub const RERUN_TEXT: &str = "The capital of France is Paris. It lies on the Seine and has been the capital \
for most of the last millennium. About two million people live in the city proper.";

pub fn replay_rerun(done: bool) -> ReplayUi {
    let mut replay = replay_playing(40);
    replay.playback.paused = true;
    let text = if done { RERUN_TEXT.to_owned() } else { RERUN_TEXT[..60].to_owned() };
    let done = done.then(|| pb::ReplayDone {
        replay: Some(pb::Trace {
            id: "0190b5a8-0000-7000-8000-000000000300".into(),
            route: "chat-70b".into(),
            response_text: RERUN_TEXT.into(),
            replay_of: full_trace().id,
            ..Default::default()
        }),
        comparison: Some(pb::ReplayComparison {
            original_id: full_trace().id,
            replay_id: "0190b5a8-0000-7000-8000-000000000300".into(),
            text_identical: false,
            text_similarity: 0.8412,
            output_tokens_delta: -9,
            input_tokens_delta: 0,
            latency_delta_ms: 412.0,
            ttft_delta_ms: Some(-35.0),
            cost_delta_usd: Some(0.0031),
            same_route: false,
        }),
    });
    replay.rerun = Some(ReRun {
        route: "chat-70b".into(),
        trace_id: Some("0190b5a8-0000-7000-8000-000000000300".into()),
        chunks: text.split_inclusive(' ').count(),
        text,
        elapsed_ms: 1415.0,
        done,
        error: None,
    });
    replay
}
