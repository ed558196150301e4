use super::*;
use crate::guardrails::{GuardrailConfig, RuleSet};

fn guardrails(rules: &str) -> Arc<Guardrails> {
    #[derive(serde::Deserialize)]
    struct File {
        guardrails: Vec<GuardrailConfig>,
    }
    let file: File = toml::from_str(rules).expect("rules parse");
    Arc::new(Guardrails::new(RuleSet::compile(&file.guardrails).expect("rules compile")))
}

fn chunk(text: &str) -> String {
    format!("data: {}", serde_json::json!({"choices": [{"index": 0, "delta": {"content": text}}]}))
}

fn text_of(event: &str) -> String {
    let data = event.strip_prefix("data: ").unwrap_or_default();
    let value: Value = serde_json::from_str(data).unwrap_or(Value::Null);
    value.pointer("/choices/0/delta/content").and_then(Value::as_str).unwrap_or_default().to_string()
}

/// Pushes the pieces; returns what left (as text, event by event) and the blocking rule, if any.
fn run(hold_back: &mut HoldBack, pieces: &[&str]) -> (Vec<String>, Option<usize>) {
    let mut out = Vec::new();
    for piece in pieces {
        if let Err(rule) = hold_back.push(chunk(piece), EventKind::Forward, piece, &mut out) {
            return (out.iter().map(|r| text_of(&r.event)).collect(), Some(rule));
        }
    }
    let blocked = hold_back.finish(&mut out).err();
    for released in &out {
        assert_eq!(text_of(&released.event), released.text, "the event says what `text` says");
    }
    (out.iter().map(|r| text_of(&r.event)).collect(), blocked)
}

const BLOCK_KEYS: &str = r#"
[[guardrails]]
name = "keys"
kind = "pii"
detectors = ["api_key"]
apply_to = "output"
max_match_chars = 64
"#;

const MASK_EMAILS: &str = r#"
[[guardrails]]
name = "emails"
kind = "pii"
detectors = ["email"]
apply_to = "output"
action = "mask"
max_match_chars = 40
"#;

#[test]
fn a_secret_split_across_chunks_blocks_before_any_of_it_leaves() {
    let rules = guardrails(BLOCK_KEYS);
    let mut hold_back = HoldBack::new(rules, vec![0]).expect("an output rule applies");
    let secret = "sk-proj-AbCdEfGhIjKlMnOpQrStUvWx0123";
    let text = format!("{}here it is: {secret} done", "x".repeat(200));
    let pieces: Vec<String> = text.chars().collect::<Vec<_>>().chunks(3).map(|c| c.iter().collect()).collect();
    let pieces: Vec<&str> = pieces.iter().map(String::as_str).collect();
    let (sent, blocked) = run(&mut hold_back, &pieces);
    assert_eq!(blocked, Some(0));
    let sent = sent.concat();
    assert!(!sent.contains("sk-"), "{sent}");
    assert!(sent.starts_with("xxxx") && sent.len() >= 100, "text far enough before it left early: {}", sent.len());
    let verdicts = hold_back.verdicts(Some(0));
    assert_eq!((verdicts[0].rule.as_str(), verdicts[0].action.as_str(), verdicts[0].matches), ("keys", "block", 1));
}

#[test]
fn a_mask_rewrites_the_events_an_address_spans_and_keeps_the_rest() {
    let rules = guardrails(MASK_EMAILS);
    let mut hold_back = HoldBack::new(rules, vec![0]).expect("an output rule applies");
    let (sent, blocked) = run(&mut hold_back, &["write ", "to bo", "b@exa", "mple.", "org n", "ow"]);
    assert_eq!(blocked, None);
    assert_eq!(sent.concat(), "write to [EMAIL] now");
    assert_eq!(sent.len(), 6, "one event out per event in");
    assert_eq!(sent[0], "write ", "untouched events leave as they came");
    let verdicts = hold_back.verdicts(None);
    assert_eq!((verdicts[0].matches, verdicts[0].detail.as_str()), (1, "EMAIL"));
}

#[test]
fn text_leaves_once_the_window_has_passed_it_and_order_is_kept() {
    let rules = guardrails(MASK_EMAILS);
    let mut hold_back = HoldBack::new(rules, vec![0]).expect("an output rule applies");
    let mut out = Vec::new();
    hold_back
        .push(
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\"}}]}".into(),
            EventKind::Forward,
            "",
            &mut out,
        )
        .expect("no block");
    assert_eq!(out.len(), 1, "an event without text ahead of any text leaves at once");
    for i in 0..10 {
        let piece = format!("{i:09} ");
        hold_back.push(chunk(&piece), EventKind::Forward, &piece, &mut out).expect("no block");
    }
    // 100 characters arrived, 40 are held: the first six 10-character events are out.
    assert_eq!(out.len(), 1 + 6);
    hold_back.push("data: [DONE]".into(), EventKind::Done, "", &mut out).expect("no block");
    assert_eq!(out.len(), 7, "[DONE] waits behind the held text");
    hold_back.finish(&mut out).expect("no block");
    assert_eq!(out.len(), 12);
    assert_eq!(out.last().map(|r| r.kind), Some(EventKind::Done));
}

#[test]
fn a_flag_is_counted_once_however_often_the_window_is_scanned() {
    let rules = guardrails(
        "[[guardrails]]\nname = \"refunds\"\nkind = \"keywords\"\nkeywords = [\"refund\"]\naction = \"flag\"\n",
    );
    let mut hold_back = HoldBack::new(rules, vec![0]).expect("an output rule applies");
    let pieces: Vec<String> =
        std::iter::once("a refund ".to_string()).chain((0..40).map(|i| format!("w{i} "))).collect();
    let pieces: Vec<&str> = pieces.iter().map(String::as_str).collect();
    let (sent, blocked) = run(&mut hold_back, &pieces);
    assert_eq!(blocked, None);
    assert_eq!(sent.concat(), pieces.concat(), "flag changes nothing");
    let verdicts = hold_back.verdicts(None);
    assert_eq!((verdicts.len(), verdicts[0].matches, verdicts[0].action.as_str()), (1, 1, "flag"));
}

#[test]
fn masked_segments_drop_the_rest_of_a_match_that_began_earlier() {
    let masks = vec![Finding { start: 5, end: 12, token: Arc::from("[EMAIL]") }];
    let mut until = 0;
    assert_eq!(masked_segment("abcd efg", 0, &masks, &mut until), ("abcd [EMAIL]".to_string(), true));
    assert_eq!(until, 12);
    assert_eq!(masked_segment("hijklm", 8, &masks, &mut until), ("lm".to_string(), true));
    assert_eq!(masked_segment("nopq", 14, &masks, &mut until), ("nopq".to_string(), false));
}
