use super::*;
use serde_json::json;

fn input<'a>(reference: &'a str, answer: &'a str) -> JudgeInput<'a> {
    JudgeInput { rubric: "Is it correct?", question: "user: capital of France?", reference, answer }
}

fn user_message(body: &Value) -> &str {
    body["messages"][1]["content"].as_str().unwrap()
}

#[test]
fn single_body_is_deterministic_and_strict() {
    let body = single_body("judge-route", &input("Paris", "Lyon"));
    assert_eq!(body["model"], "judge-route");
    assert_eq!(body["temperature"], 0.0);
    assert_eq!(body["seed"], 42);
    assert_eq!(body["max_tokens"], JUDGE_MAX_TOKENS);
    assert_eq!(body["stream"], false);
    assert_eq!(body["messages"][0]["role"], "system");
    assert!(body["messages"][0]["content"].as_str().unwrap().contains("JSON"));
    let format = &body["response_format"];
    assert_eq!(format["type"], "json_schema");
    assert_eq!(format["json_schema"]["strict"], true);
    let schema = &format["json_schema"]["schema"];
    let order: Vec<&str> = schema["properties"].as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(order, ["reasoning", "pass", "score"]);
    assert_eq!(schema["properties"]["reasoning"], json!({"type": "string", "minLength": 1, "maxLength": 600}));
    assert_eq!(schema["properties"]["score"], json!({"type": "integer", "minimum": 0, "maximum": 10}));
    assert_eq!(schema["required"], json!(["reasoning", "pass", "score"]));
    assert_eq!(schema["additionalProperties"], false);

    let user = user_message(&body);
    let sections = ["=== Rubric ===", "=== Question ===", "=== Reference answer ===", "=== Answer to grade ==="];
    let positions: Vec<usize> = sections.iter().map(|s| user.find(s).unwrap()).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{user}");
    assert!(user.contains("Paris") && user.contains("Lyon") && user.contains("capital of France?"));
}

#[test]
fn an_empty_reference_leaves_its_section_out() {
    let body = single_body("r", &input("", "Lyon"));
    assert!(!user_message(&body).contains("Reference answer"));
}

#[test]
fn long_texts_are_truncated_on_a_char_boundary() {
    let answer = "é".repeat(20_000);
    let body = single_body("r", &input("", &answer));
    let user = user_message(&body);
    assert!(user.contains("[truncated]"));
    assert!(user.len() < 2 * MAX_SECTION_BYTES);
    assert_eq!(bounded("short", MAX_SECTION_BYTES), "short");
    let cut = bounded(&answer, 100);
    assert!(cut.len() <= 100 && cut.ends_with("[truncated]"));
}

#[test]
fn pairwise_body_shows_both_answers_in_order() {
    let body = pairwise_body("judge", "More helpful?", "user: hi", "ANSWER-ONE", "ANSWER-TWO");
    assert_eq!(body["temperature"], 0.0);
    assert_eq!(body["seed"], 42);
    let schema = &body["response_format"]["json_schema"]["schema"];
    assert_eq!(schema["properties"]["winner"]["enum"], json!(["A", "B", "tie"]));
    assert_eq!(schema["properties"]["reasoning"]["maxLength"], 600);
    assert_eq!(schema["required"], json!(["reasoning", "winner"]));
    let user = user_message(&body);
    let a = user.find("=== Answer A ===\nANSWER-ONE").unwrap();
    let b = user.find("=== Answer B ===\nANSWER-TWO").unwrap();
    assert!(a < b);
}

#[test]
fn question_text_renders_roles_and_parts() {
    let messages = json!([
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {}}]},
        {"content": null},
    ]);
    assert_eq!(question_text(&messages), "system: Be brief.\nuser: What is this?\n[image_url]\nunknown: ");
    assert_eq!(question_text(&json!("plain")), "plain");
    assert_eq!(question_text(&json!(7)), "");
    let many = json!(vec![json!({"role": "user", "content": "x".repeat(1000)}); 100]);
    let text = question_text(&many);
    assert!(text.len() <= MAX_SECTION_BYTES && text.ends_with("[truncated]"));
}

#[test]
fn parse_verdict_is_tolerant() {
    let plain = parse_verdict(r#"{"reasoning":"fine","pass":true,"score":9}"#).unwrap();
    assert_eq!(plain, Verdict { pass: true, score: 0.9, reasoning: "fine".into() });
    let fenced = parse_verdict("```json\n{\"reasoning\": \"meh\", \"pass\": false, \"score\": 2}\n```").unwrap();
    assert_eq!(fenced, Verdict { pass: false, score: 0.2, reasoning: "meh".into() });
    let prose = parse_verdict("Sure! {\"pass\": true, \"score\": 70} Hope this helps.").unwrap();
    assert_eq!((prose.pass, prose.score, prose.reasoning.as_str()), (true, 1.0, ""));
    assert_eq!(parse_verdict(r#"{"pass":true,"score":-3}"#).unwrap().score, 0.0);
    assert_eq!(parse_verdict(r#"{"pass":false}"#).unwrap().score, 0.0);
    assert_eq!(parse_verdict(r#"{"pass":"true","score":"7.5"}"#).unwrap().score, 0.75);
    let long = parse_verdict(&json!({"pass": true, "score": 1, "reasoning": "é".repeat(3000)}).to_string()).unwrap();
    assert!(long.reasoning.len() <= MAX_VERDICT_REASONING_BYTES);

    assert!(parse_verdict("I think it passes").unwrap_err().contains("not a JSON object"));
    assert!(parse_verdict(r#"{"score": 1}"#).unwrap_err().contains("`pass`"));
    assert!(parse_verdict(r#"{"pass": true, "score": "high"}"#).unwrap_err().contains("`score`"));
    assert!(parse_verdict("[1, 2]").is_err());
    assert!(parse_verdict("{\"pass\": tru").is_err());
    assert!(parse_verdict(&"x".repeat(10_000)).unwrap_err().len() < 400);
}

#[test]
fn verdict_outcome_needs_pass_and_min_score() {
    let good = Verdict { pass: true, score: 0.8, reasoning: "ok".into() };
    assert_eq!(
        verdict_outcome("judge", 0.5, &good),
        Outcome { name: "judge".into(), passed: true, score: 0.8, reasoning: "ok".into() }
    );
    let low = verdict_outcome("judge", 0.9, &good);
    assert!(!low.passed && low.reasoning.starts_with("score 0.80 < min_score 0.90"), "{}", low.reasoning);
    let failed = verdict_outcome("judge", 0.0, &Verdict { pass: false, score: 1.0, reasoning: "rude".into() });
    assert!(!failed.passed && failed.reasoning == "rude");
}

#[test]
fn parse_preference_reads_the_winner() {
    assert_eq!(
        parse_preference(r#"{"reasoning":"A is clearer","winner":"A"}"#).unwrap(),
        (Preference::First, "A is clearer".into())
    );
    assert_eq!(parse_preference("```json\n{\"reasoning\":\"\",\"winner\":\"B\"}\n```").unwrap().0, Preference::Second);
    assert_eq!(parse_preference(r#"{"winner":"TIE"}"#).unwrap().0, Preference::Tie);
    assert!(parse_preference(r#"{"winner":"C"}"#).unwrap_err().contains("`winner`"));
    assert!(parse_preference("A").is_err());
}

#[test]
fn combine_truth_table() {
    use PairOutcome::{Loss, Tie, Win};
    use Preference::{First, Second};
    let table = [
        (First, Second, Win),
        (Second, First, Loss),
        (First, First, Tie),
        (Second, Second, Tie),
        (First, Preference::Tie, Tie),
        (Preference::Tie, Second, Tie),
        (Second, Preference::Tie, Tie),
        (Preference::Tie, First, Tie),
        (Preference::Tie, Preference::Tie, Tie),
    ];
    for (candidate_first, candidate_second, expected) in table {
        assert_eq!(combine(candidate_first, candidate_second), expected, "{candidate_first:?} {candidate_second:?}");
    }
}

#[test]
fn the_judge_schemas_are_ones_the_embedded_engine_can_enforce() {
    let input = JudgeInput { rubric: "r", question: "q", reference: "", answer: "a" };
    for body in [single_body("m", &input), pairwise_body("m", "r", "q", "a", "b")] {
        let schema = &body["response_format"]["json_schema"]["schema"];
        assert!(crate::engine::embedded::schema::check(schema).is_ok(), "{schema}");
    }
}
