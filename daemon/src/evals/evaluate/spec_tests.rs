use super::*;

fn refused(json: &str) -> String {
    match parse(json) {
        Ok(evaluators) => panic!("accepted {json}: {evaluators:?}"),
        Err(error) => error.to_string(),
    }
}

#[test]
fn the_example_parses_with_defaults() {
    let evaluators = parse(
        r#"[{"type":"exact"},
            {"type":"contains","value":"Paris"},
            {"type":"contains","ignore_case":true,"threshold":0.8},
            {"type":"regex","pattern":"^\\d+$"},
            {"type":"json_schema","schema":{"type":"object","required":["a"]}},
            {"type":"max_latency_ms","value":2000},
            {"type":"max_cost_usd","value":0.001},
            {"type":"judge","rubric":"Is the answer correct and polite?","route":"","min_score":0.7},
            {"type":"judge","rubric":"Is it short?","route":"judge-small"},
            {"type":"pairwise","rubric":"Which answer is more helpful?","route":""}]"#,
    )
    .unwrap();
    let names: Vec<&str> = evaluators.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "exact",
            "contains",
            "contains-2",
            "regex",
            "json_schema",
            "max_latency_ms",
            "max_cost_usd",
            "judge",
            "judge-2",
            "pairwise"
        ]
    );
    assert_eq!(evaluators[0].threshold, 1.0);
    assert_eq!(evaluators[2].threshold, 0.8);
    assert!(
        matches!(&evaluators[1].kind, EvaluatorKind::Contains { value: Some(v), ignore_case: false } if v == "Paris")
    );
    assert!(matches!(&evaluators[2].kind, EvaluatorKind::Contains { value: None, ignore_case: true }));
    assert!(matches!(&evaluators[3].kind, EvaluatorKind::Regex(r) if r.as_str() == r"^\d+$"));
    assert!(matches!(evaluators[5].kind, EvaluatorKind::MaxLatencyMs(v) if v == 2000.0));
    assert!(matches!(evaluators[6].kind, EvaluatorKind::MaxCostUsd(v) if v == 0.001));
    assert!(
        matches!(&evaluators[7].kind, EvaluatorKind::Judge { min_score, route, .. } if *min_score == 0.7 && route.is_empty())
    );
    assert!(
        matches!(&evaluators[8].kind, EvaluatorKind::Judge { min_score, route, .. } if *min_score == 0.5 && route == "judge-small")
    );
    assert_eq!(evaluators[9].kind.type_name(), "pairwise");
    assert_eq!(evaluators[4].kind.type_name(), "json_schema");
}

#[test]
fn empty_means_no_evaluators() {
    assert!(parse("").unwrap().is_empty());
    assert!(parse("  \n").unwrap().is_empty());
    assert!(parse("[]").unwrap().is_empty());
}

#[test]
fn explicit_names_are_checked_and_defaults_avoid_them() {
    let evaluators = parse(r#"[{"type":"exact","name":"contains"},{"type":"contains"},{"type":"contains"}]"#).unwrap();
    let names: Vec<&str> = evaluators.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["contains", "contains-2", "contains-3"]);

    let message = refused(r#"[{"type":"exact","name":"a"},{"type":"contains","name":"a"}]"#);
    assert!(message.contains("evaluators[1].name") && message.contains("earlier evaluator"), "{message}");
    for bad in ["", "has space", "ü", "n".repeat(65).as_str()] {
        let message = refused(&format!(r#"[{{"type":"exact","name":{bad:?}}}]"#));
        assert!(message.contains("evaluators[0].name") && message.contains("1 to 64 bytes"), "{message}");
    }
    assert!(refused(r#"[{"type":"exact","name":3}]"#).contains("`name` must be a string"));
}

#[test]
fn size_and_count_bounds_are_refused() {
    let huge = format!(r#"[{{"type":"contains","value":"{}"}}]"#, "x".repeat(300 * 1024));
    assert!(refused(&huge).contains("at most 262144"), "{}", refused(&huge));
    let many = format!("[{}]", vec![r#"{"type":"exact"}"#; 17].join(","));
    assert_eq!(refused(&many), "17 evaluators; at most 16 are accepted");
    let sixteen = format!("[{}]", vec![r#"{"type":"exact"}"#; 16].join(","));
    assert_eq!(parse(&sixteen).unwrap()[15].name, "exact-16");
    let message = refused(r#"[{"type":"pairwise","rubric":"r"},{"type":"exact"},{"type":"pairwise","rubric":"r"}]"#);
    assert!(message.starts_with("evaluators[2].type") && message.contains("at most 1 `pairwise`"), "{message}");
}

#[test]
fn field_bounds_are_refused_naming_the_field() {
    let long_value = format!(r#"[{{"type":"contains","value":"{}"}}]"#, "v".repeat(4097));
    assert!(refused(&long_value).starts_with("evaluators[0].value: `value` is 4097 bytes; at most 4096"));
    let long_exact = format!(r#"[{{"type":"exact","value":"{}"}}]"#, "v".repeat(4097));
    assert!(refused(&long_exact).contains("at most 4096"));
    let long_pattern = format!(r#"[{{"type":"regex","pattern":"{}"}}]"#, "a".repeat(1025));
    assert!(refused(&long_pattern).contains("evaluators[0].pattern: `pattern` is 1025 bytes; at most 1024"));
    let long_rubric = format!(r#"[{{"type":"judge","rubric":"{}"}}]"#, "r".repeat(8193));
    assert!(refused(&long_rubric).contains("evaluators[0].rubric") && refused(&long_rubric).contains("1 to 8192"));
    assert!(refused(r#"[{"type":"judge","rubric":"  "}]"#).contains("evaluators[0].rubric"));
    let long_route = format!(r#"[{{"type":"pairwise","rubric":"r","route":"{}"}}]"#, "m".repeat(257));
    assert!(refused(&long_route).contains("evaluators[0].route: `route` is 257 bytes; at most 256"));
    let big_schema = format!(r#"[{{"type":"json_schema","schema":{{"description":"{}"}}}}]"#, "d".repeat(65 * 1024));
    assert!(refused(&big_schema).contains("evaluators[0].schema") && refused(&big_schema).contains("at most 65536"));
}

#[test]
fn numbers_must_be_finite_and_in_range() {
    let message = refused(r#"[{"type":"max_latency_ms","value":1e400}]"#);
    assert!(message.starts_with("evaluators are not valid JSON"), "{message}");
    let message = refused(r#"[{"type":"max_latency_ms","value":-1}]"#);
    assert!(message.starts_with("evaluators[0].value") && message.contains("0 or more"), "{message}");
    assert!(refused(r#"[{"type":"max_cost_usd","value":-0.5}]"#).starts_with("evaluators[0].value"));
    let message = refused(r#"[{"type":"max_cost_usd","value":"cheap"}]"#);
    assert!(message.starts_with("evaluators[0].value") && message.contains("invalid type"), "{message}");
    let message = refused(r#"[{"type":"exact","threshold":1.5}]"#);
    assert!(message.starts_with("evaluators[0].threshold") && message.contains("0 to 1"), "{message}");
    assert!(refused(r#"[{"type":"exact","threshold":-0.1}]"#).starts_with("evaluators[0].threshold"));
    assert!(refused(r#"[{"type":"exact","threshold":"high"}]"#).starts_with("evaluators[0].threshold"));
    let message = refused(r#"[{"type":"judge","rubric":"r","min_score":2}]"#);
    assert!(message.starts_with("evaluators[0].min_score") && message.contains("0 to 1"), "{message}");
}

#[test]
fn unknown_fields_and_types_are_refused() {
    let message = refused(r#"[{"type":"exact"},{"type":"contains","value":"x","ignorecase":true}]"#);
    assert!(
        message.starts_with("evaluators[1].ignorecase: unknown field `ignorecase`") && message.contains("threshold"),
        "{message}"
    );
    let message = refused(r#"[{"type":"bleu"}]"#);
    assert!(
        message.starts_with("evaluators[0].type: unknown type \"bleu\"") && message.contains("json_schema"),
        "{message}"
    );
    assert!(refused(r#"[{"value":"x"}]"#).starts_with("evaluators[0]: missing `type`"));
    assert!(refused(r#"[{"type":7}]"#).starts_with("evaluators[0].type"));
    assert!(refused(r#"[{"type":"regex"}]"#).contains("missing field `pattern`"));
    assert!(refused(r#"[{"type":"judge","rubric":3}]"#).starts_with("evaluators[0].rubric: invalid type"));
    assert!(refused(r#"[{"type":"contains","ignore_case":"yes"}]"#).starts_with("evaluators[0].ignore_case"));
    assert_eq!(refused(r#"{"type":"exact"}"#), SpecError::NotArray.to_string());
    assert!(refused(r#"["exact"]"#).starts_with("evaluators[0]: must be an object"));
    assert!(refused("[{").starts_with("evaluators are not valid JSON"));
}

#[test]
fn regexes_are_compiled_with_a_size_limit() {
    // Backtracking-prone for other engines, linear here: accepted.
    assert!(parse(r#"[{"type":"regex","pattern":"(a+)+$"}]"#).is_ok());
    let message = refused(r#"[{"type":"regex","pattern":"a{10000}{10000}"}]"#);
    assert!(message.starts_with("evaluators[0].pattern") && message.contains("size limit"), "{message}");
    let message = refused(r#"[{"type":"regex","pattern":"(unclosed"}]"#);
    assert!(message.starts_with("evaluators[0].pattern: invalid regular expression"), "{message}");
}

#[test]
fn schemas_are_compiled_offline() {
    let message = refused(r#"[{"type":"json_schema","schema":{"$ref":"http://example.com/x"}}]"#);
    assert!(message.starts_with("evaluators[0].schema: invalid JSON Schema"), "{message}");
    let message = refused(r#"[{"type":"json_schema","schema":{"$ref":"file:///etc/passwd"}}]"#);
    assert!(message.starts_with("evaluators[0].schema"), "{message}");
    assert!(refused(r#"[{"type":"json_schema","schema":{"type":"nonsense"}}]"#).starts_with("evaluators[0].schema"));
    assert!(refused(r#"[{"type":"json_schema","schema":{"pattern":"a{10000}{10000}"}}]"#)
        .starts_with("evaluators[0].schema"));
    let local = r##"[{"type":"json_schema","schema":{"$defs":{"n":{"type":"number"}},"$ref":"#/$defs/n"}}]"##;
    assert!(parse(local).is_ok());
}

#[test]
fn clip_keeps_char_boundaries() {
    assert_eq!(clip("héllo", 2), "h");
    assert_eq!(clip("héllo", 3), "hé");
    assert_eq!(clip("abc", 10), "abc");
}
