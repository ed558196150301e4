use super::compile::{MAX_PATTERNS, MAX_RULES};
use super::*;
use regex::RegexBuilder;

#[derive(Debug, Deserialize)]
struct Doc {
    guardrails: Vec<GuardrailConfig>,
}

fn parse(toml_text: &str) -> Vec<GuardrailConfig> {
    toml::from_str::<Doc>(toml_text).unwrap().guardrails
}

fn one(fields: &str) -> GuardrailConfig {
    toml::from_str(fields).unwrap()
}

fn regex_rule(name: &str, patterns: &[&str]) -> GuardrailConfig {
    one(&format!("name = {name:?}\nkind = \"regex\"\npatterns = {patterns:?}"))
}

fn compile_one(config: GuardrailConfig) -> Rule {
    RuleSet::compile(&[config]).unwrap().rules.remove(0)
}

fn compile_error(configs: &[GuardrailConfig]) -> String {
    RuleSet::compile(configs).unwrap_err()
}

fn spans(rule: &Rule, text: &str) -> Vec<(usize, usize)> {
    let mut found = Vec::new();
    rule.find(text, &mut found);
    let mut spans: Vec<_> = found.iter().map(|f| (f.start, f.end)).collect();
    spans.sort();
    spans
}

fn finding(start: usize, end: usize, token: &str) -> Finding {
    Finding { start, end, token: Arc::from(token) }
}

#[test]
fn config_parses_with_defaults() {
    let configs = parse(
        r#"
        [[guardrails]]
        name = "secrets"
        kind = "regex"
        patterns = ['\bproject-x\b']

        [[guardrails]]
        name = "pii-out"
        kind = "pii"
        detectors = ["email", "api_key"]
        apply_to = "output"
        action = "mask"
        routes = ["llama-3"]
        tenants = ["acme"]

        [[guardrails]]
        name = "llama-guard"
        kind = "classifier"
        route = "llama-guard-3"
        on_error = "fail_open"
        action = "flag"
        "#,
    );
    let first = &configs[0];
    assert_eq!((first.kind, first.apply_to, first.action), (RuleKind::Regex, ApplyTo::Both, Action::Block));
    assert!(!first.case_sensitive && first.mask_token.is_none() && first.route.is_none());
    assert_eq!((first.max_match_chars, first.timeout_ms), (128, 2000));
    assert_eq!((first.on_error, first.unsafe_pattern.as_str()), (OnError::FailClosed, r"(?i)^\s*unsafe"));
    assert_eq!(configs[1].detectors, vec![Detector::Email, Detector::ApiKey]);
    assert_eq!((configs[1].apply_to.as_str(), configs[1].action.as_str()), ("output", "mask"));
    assert_eq!(configs[2].route.as_deref(), Some("llama-guard-3"));
    assert_eq!((configs[2].on_error.as_str(), configs[2].kind.as_str()), ("fail_open", "classifier"));

    let rules = RuleSet::compile(&configs).unwrap();
    assert_eq!(rules.rules().len(), 3);
    let guard = rules.rules()[2].classifier.as_ref().unwrap();
    assert_eq!(
        (guard.route.as_str(), guard.timeout, guard.on_error),
        ("llama-guard-3", Duration::from_secs(2), OnError::FailOpen)
    );
    assert!(rules.rules()[0].classifier.is_none());
    assert!(RuleSet::compile(&[]).unwrap().is_empty());
}

#[test]
fn unknown_fields_and_words_are_refused() {
    let unknown = toml::from_str::<Doc>("[[guardrails]]\nname = \"a\"\nkind = \"pii\"\nblock = true\n").unwrap_err();
    assert!(unknown.to_string().contains("unknown field `block`"), "{unknown}");
    let bad_kind = toml::from_str::<Doc>("[[guardrails]]\nname = \"a\"\nkind = \"magic\"\n").unwrap_err();
    assert!(bad_kind.to_string().contains("magic"), "{bad_kind}");
    assert!(toml::from_str::<Doc>("[[guardrails]]\nname = \"a\"\nkind = \"pii\"\ndetectors = [\"dna\"]\n").is_err());
    assert!(toml::from_str::<Doc>("[[guardrails]]\nkind = \"pii\"\n").is_err(), "name is required");
}

#[test]
fn validation_errors_name_the_field_the_rule_and_the_value() {
    let long = "x".repeat(5000);
    let cases: Vec<(String, &str)> = vec![
        ("name = \"bad name\"\nkind = \"pii\"".into(), "guardrails[1].name (rule \"bad name\"): must be 1 to 64"),
        (format!("name = \"{}\"\nkind = \"pii\"", "n".repeat(65)), "guardrails[1].name"),
        (
            "name = \"r\"\nkind = \"regex\"".into(),
            "guardrails[1].patterns (rule \"r\"): a regex rule needs 1 to 10000 patterns, got 0",
        ),
        (
            "name = \"r\"\nkind = \"regex\"\npatterns = ['ok', '(unclosed']".into(),
            "guardrails[1].patterns[1] (rule \"r\"): invalid regex \"(unclosed\"",
        ),
        (
            format!("name = \"r\"\nkind = \"regex\"\npatterns = ['{long}']"),
            "guardrails[1].patterns[0] (rule \"r\"): longer than 4096 bytes",
        ),
        (
            "name = \"r\"\nkind = \"regex\"\npatterns = ['a', 'b*']".into(),
            "guardrails[1].patterns[1] (rule \"r\"): \"b*\" can match the empty string",
        ),
        (
            "name = \"r\"\nkind = \"regex\"\npatterns = ['(?:\\w{1000}){10}']".into(),
            "guardrails[1].patterns (rule \"r\"): the 1 patterns together: Compiled regex exceeds size limit",
        ),
        (
            "name = \"k\"\nkind = \"keywords\"".into(),
            "guardrails[1].keywords (rule \"k\"): a keywords rule needs 1 to 100000",
        ),
        (
            "name = \"k\"\nkind = \"keywords\"\nkeywords = ['a', 'b', '   ']".into(),
            "guardrails[1].keywords[2] (rule \"k\"): must be 1 to 1024 bytes and not blank, got \"   \"",
        ),
        (
            format!("name = \"k\"\nkind = \"keywords\"\nkeywords = ['{}']", "k".repeat(1025)),
            "guardrails[1].keywords[0]",
        ),
        (
            "name = \"r\"\nkind = \"regex\"\npatterns = ['a']\nkeywords = ['a']".into(),
            "guardrails[1].keywords (rule \"r\"): only keywords rules take keywords, this rule is regex",
        ),
        (
            "name = \"p\"\nkind = \"pii\"\npatterns = ['a']".into(),
            "guardrails[1].patterns (rule \"p\"): only regex rules take patterns",
        ),
        (
            "name = \"r\"\nkind = \"regex\"\npatterns = ['a']\ndetectors = ['email']".into(),
            "guardrails[1].detectors (rule \"r\"): only pii rules",
        ),
        (
            "name = \"r\"\nkind = \"regex\"\npatterns = ['a']\nroute = 'guard'".into(),
            "guardrails[1].route (rule \"r\"): only classifier rules take route",
        ),
        (
            "name = \"r\"\nkind = \"regex\"\npatterns = ['a']\ntimeout_ms = 10".into(),
            "guardrails[1].timeout_ms (rule \"r\"): only classifier rules",
        ),
        (
            "name = \"r\"\nkind = \"regex\"\npatterns = ['a']\nunsafe_pattern = 'x'".into(),
            "guardrails[1].unsafe_pattern (rule \"r\"): only classifier rules",
        ),
        (
            "name = \"p\"\nkind = \"pii\"\nmask_token = '#'".into(),
            "guardrails[1].mask_token (rule \"p\"): only regex and keywords rules",
        ),
        ("name = \"p\"\nkind = \"pii\"\ncase_sensitive = true".into(), "guardrails[1].case_sensitive (rule \"p\")"),
        (
            "name = \"c\"\nkind = \"classifier\"".into(),
            "guardrails[1].route (rule \"c\"): a classifier rule needs the route",
        ),
        (
            "name = \"c\"\nkind = \"classifier\"\nroute = 'g'\naction = 'mask'".into(),
            "guardrails[1].action (rule \"c\"): a classifier judges the whole text",
        ),
        (
            "name = \"c\"\nkind = \"classifier\"\nroute = 'g'\npatterns = ['a']".into(),
            "guardrails[1].patterns (rule \"c\")",
        ),
        (
            "name = \"c\"\nkind = \"classifier\"\nroute = 'g'\ntimeout_ms = 0".into(),
            "guardrails[1].timeout_ms (rule \"c\"): must be 1 to 60000, got 0",
        ),
        ("name = \"c\"\nkind = \"classifier\"\nroute = 'g'\ntimeout_ms = 60001".into(), "guardrails[1].timeout_ms"),
        (
            "name = \"c\"\nkind = \"classifier\"\nroute = 'g'\nunsafe_pattern = '[z-a]'".into(),
            "guardrails[1].unsafe_pattern (rule \"c\"): \"[z-a]\"",
        ),
        (
            "name = \"p\"\nkind = \"pii\"\nmax_match_chars = 0".into(),
            "guardrails[1].max_match_chars (rule \"p\"): must be 1 to 4096, got 0",
        ),
        ("name = \"p\"\nkind = \"pii\"\nmax_match_chars = 4097".into(), "guardrails[1].max_match_chars"),
        (
            format!("name = \"r\"\nkind = \"regex\"\npatterns = ['a']\nmask_token = '{}'", "#".repeat(65)),
            "guardrails[1].mask_token (rule \"r\"): longer than 64 bytes",
        ),
        (
            format!("name = \"p\"\nkind = \"pii\"\nroutes = ['a', '{}']", "r".repeat(257)),
            "guardrails[1].routes[1] (rule \"p\"): must be 1 to 256 bytes",
        ),
        ("name = \"p\"\nkind = \"pii\"\ntenants = ['a', '']".into(), "guardrails[1].tenants[1] (rule \"p\")"),
        (
            format!("name = \"p\"\nkind = \"pii\"\ntenants = {:?}", vec!["t"; 257]),
            "guardrails[1].tenants (rule \"p\"): 257 entries, at most 256",
        ),
    ];
    let fine = one("name = \"fine\"\nkind = \"pii\"");
    for (fields, expected) in cases {
        let error = compile_error(&[fine.clone(), one(&fields)]);
        assert!(error.starts_with(expected), "config:\n{fields}\nerror: {error}\nexpected prefix: {expected}");
    }
}

#[test]
fn rule_set_level_bounds_and_value_truncation() {
    let many: Vec<_> = (0..=MAX_RULES).map(|i| one(&format!("name = \"r{i}\"\nkind = \"pii\""))).collect();
    assert_eq!(compile_error(&many), "guardrails: 257 rules configured, at most 256 are allowed");
    assert!(RuleSet::compile(&many[..MAX_RULES]).is_ok());

    let duplicate = compile_error(&[one("name = \"same\"\nkind = \"pii\""), one("name = \"same\"\nkind = \"pii\"")]);
    assert_eq!(duplicate, "guardrails[1].name (rule \"same\"): duplicate rule name \"same\"");

    let too_many = vec!["a"; MAX_PATTERNS + 1];
    assert!(compile_error(&[regex_rule("r", &too_many)])
        .starts_with("guardrails[0].patterns (rule \"r\"): a regex rule needs"));

    // A hostile value is cut to 80 chars and escaped, so the message stays one readable line.
    let pattern = format!("(\n{}", "a".repeat(300));
    let error = compile_error(&[regex_rule("r", &[&pattern])]);
    assert!(error.contains(&format!("\"(\\n{}\"... (302 bytes)", "a".repeat(78))), "{error}");
    assert!(error.ends_with("unclosed group at byte 0") && !error.contains(&"a".repeat(79)), "{error}");
}

#[test]
fn mask_merges_overlapping_and_touching_findings() {
    let text = "call alice at 555 now";
    assert_eq!(mask(text, &[]), text);
    let overlapping = [finding(5, 10, "[A]"), finding(8, 13, "[B]")];
    assert_eq!(mask(text, &overlapping), "call [A] 555 now");
    // Unsorted, touching (13 == 13) and from several rules: one token, the earliest finding's.
    let unsorted = [finding(14, 17, "[N]"), finding(13, 14, "[S]"), finding(5, 13, "[A]")];
    assert_eq!(mask(text, &unsorted), "call [A] now");
    let separate = [finding(14, 17, "[N]"), finding(5, 10, "[A]")];
    assert_eq!(mask(text, &separate), "call [A] at [N] now");
    let contained = [finding(0, 21, "[ALL]"), finding(5, 10, "[A]")];
    assert_eq!(mask(text, &contained), "[ALL]");
    let empty_and_outside = [finding(3, 3, "[E]"), finding(30, 40, "[X]")];
    assert_eq!(mask(text, &empty_and_outside), text);
}

#[test]
fn mask_keeps_utf8_intact_and_widens_bad_spans() {
    let text = "café 🙂 secret é";
    let start = text.find("secret").unwrap();
    assert_eq!(mask(text, &[finding(start, start + 6, "[S]")]), "café 🙂 [S] é");
    assert_eq!(mask(text, &[finding(0, 5, "[C]")]), "[C] 🙂 secret é");
    // Spans inside a multi-byte char widen to cover it instead of panicking or leaking half of it.
    let emoji = text.find('🙂').unwrap();
    assert_eq!(mask(text, &[finding(emoji + 1, emoji + 2, "[E]")]), "café [E] secret é");
    assert_eq!(mask(text, &[finding(text.len() - 1, text.len() + 5, "[T]")]), "café 🙂 secret [T]");
}

#[test]
fn select_respects_routes_tenants_and_stage() {
    let configs = parse(
        r#"
        [[guardrails]]
        name = "everywhere"
        kind = "pii"
        [[guardrails]]
        name = "llama-only-input"
        kind = "pii"
        apply_to = "input"
        routes = ["llama", "qwen"]
        [[guardrails]]
        name = "acme-output"
        kind = "pii"
        apply_to = "output"
        tenants = ["acme"]
        [[guardrails]]
        name = "guard"
        kind = "classifier"
        route = "llama-guard"
        routes = ["qwen"]
        "#,
    );
    let rules = RuleSet::compile(&configs).unwrap();
    assert_eq!(rules.select("llama", "acme", Stage::Input), vec![0, 1]);
    assert_eq!(rules.select("llama", "acme", Stage::Output), vec![0, 2]);
    assert_eq!(rules.select("qwen", "other", Stage::Input), vec![0, 1, 3]);
    assert_eq!(rules.select("qwen", "other", Stage::Output), vec![0, 3]);
    assert_eq!(rules.select("mistral", "other", Stage::Output), vec![0]);
    assert!(rules.rules()[1].applies("llama", "", Stage::Input));
    assert!(!rules.rules()[1].applies("llama-2", "", Stage::Input));
    assert_eq!((Stage::Input.as_str(), Stage::Output.as_str()), ("input", "output"));
}

#[test]
fn regex_rules_are_case_insensitive_unless_told() {
    let loose = compile_one(regex_rule("loose", &[r"\bproject[- ]x\b"]));
    assert!(loose.is_match("Status of PROJECT-X today"));
    assert_eq!(spans(&loose, "Project X and project-x"), vec![(0, 9), (14, 23)]);
    assert!(!loose.is_match("projectxx"));

    let mut strict = regex_rule("strict", &[r"\bProject\b"]);
    strict.case_sensitive = true;
    let strict = compile_one(strict);
    assert!(strict.is_match("the Project"));
    assert!(!strict.is_match("the project"));
    assert_eq!((strict.kind, strict.action, strict.max_match_chars), (RuleKind::Regex, Action::Block, 128));
}

#[test]
fn unicode_word_boundaries_keep_their_meaning() {
    // The set drops `\b` to stay fast on non-ASCII text; each hit is confirmed with the exact pattern.
    let rule = compile_one(regex_rule("words", &[r"\bcafé\b", r"\bterm\b", r"plain"]));
    assert!(rule.is_match("un café."));
    assert!(!rule.is_match("les cafés"));
    assert!(!rule.is_match("termé 🙂 determined terms"));
    assert!(rule.is_match("é 🙂 term é"));
    assert!(rule.is_match("éplainé"));
    assert_eq!(spans(&rule, "termé term cafés café"), vec![(7, 11), (19, 24)]);
    assert!(spans(&rule, "termé cafés").is_empty());
}

#[test]
fn the_pattern_set_agrees_with_each_pattern_on_its_own() {
    // The set holds re-printed (and, for `\b`, relaxed) patterns; it must never miss what a pattern matches alone.
    let patterns = [
        r"\bterm\b",
        r"\Bx\B",
        r"(?m)^start",
        r"end$",
        r"a|\bb\b|c{2,}",
        r"(?P<n>\d{3})-\w+",
        r"[[:upper:]]é",
        r"\b{start}go\b{end}",
        r"\b{start-half}st",
        r"(?s)o.k",
        r"\p{Greek}+",
        r"(?-i:Case)",
        r"x\by",
    ];
    let texts = [
        "term",
        "terms",
        "é term é",
        "axb",
        "x",
        "start\nline",
        "line\nstart",
        "the end",
        "end.",
        "b",
        "abc",
        "cc",
        "123-é",
        "12-a",
        "Éé",
        "Ké",
        "go",
        "ago",
        "stop",
        "o\nk",
        "λόγος",
        "case",
        "Case",
        "x y",
        "x-y",
        "xy",
    ];
    for case_sensitive in [false, true] {
        let mut config = regex_rule("agree", &patterns);
        config.case_sensitive = case_sensitive;
        let rule = compile_one(config);
        for text in texts {
            let alone = patterns
                .iter()
                .any(|p| RegexBuilder::new(p).case_insensitive(!case_sensitive).build().unwrap().is_match(text));
            assert_eq!(rule.is_match(text), alone, "{text:?}, case_sensitive {case_sensitive}");
            assert_eq!(!spans(&rule, text).is_empty(), alone, "{text:?}");
        }
    }
}

#[test]
fn keywords_match_substrings_with_chosen_case() {
    let rule = compile_one(one("name = \"k\"\nkind = \"keywords\"\nkeywords = ['pass', 'password', 'Ünïcode']"));
    // Leftmost-longest: "password" wins over its prefix "pass"; substrings inside words count.
    assert_eq!(spans(&rule, "my PASSWORD and passport"), vec![(3, 11), (16, 20)]);
    assert!(rule.is_match("Ünïcode"));
    assert!(!rule.is_match("ünïcode"), "case folding is ASCII-only");
    let mut sensitive = one("name = \"k\"\nkind = \"keywords\"\nkeywords = ['Secret']\nmask_token = '***'");
    sensitive.case_sensitive = true;
    let rule = compile_one(sensitive);
    assert!(rule.is_match("a Secret"));
    assert!(!rule.is_match("a secret or SECRET"));
    let mut found = Vec::new();
    rule.find("é Secret", &mut found);
    assert_eq!(found, vec![finding(3, 9, "***")]);
    assert_eq!(mask("é Secret!", &found), "é ***!");
}

#[test]
fn a_thousand_patterns_compile_and_find_the_right_spans() {
    let mut patterns: Vec<String> = (0..990).map(|i| format!(r"\bforbidden-term-{i}\b")).collect();
    patterns.extend((0..10).map(|i| format!(r"\bcode-{i}[0-9]{{3}}-[a-z]+\b")));
    let config = one(&format!("name = \"big\"\nkind = \"regex\"\npatterns = {patterns:?}\nmask_token = '[X]'"));
    let rule = compile_one(config);
    let text = "é forbidden-term-7 then forbidden-term-989, forbidden-term-9999 and CODE-3123-abc 🙂 code-99999-x";
    assert!(rule.is_match(text));
    let start7 = text.find("forbidden-term-7").unwrap();
    let start989 = text.find("forbidden-term-989").unwrap();
    let code = text.find("CODE-3123-abc").unwrap();
    assert_eq!(spans(&rule, text), vec![(start7, start7 + 16), (start989, start989 + 18), (code, code + 13)]);
    let mut found = Vec::new();
    rule.find(text, &mut found);
    let masked = mask(text, &found);
    assert_eq!(masked, "é [X] then [X], forbidden-term-9999 and [X] 🙂 code-99999-x");
    assert!(!rule.is_match("forbidden-term-9999 forbidden-term-12345 forbidden-terms"));
}

#[test]
fn pii_rules_report_the_enclosing_finding() {
    let rule = compile_one(one("name = \"p\"\nkind = \"pii\"\naction = \"mask\""));
    let text = "card 4111 1111 1111 1111, mail bob@example.com, call (555) 123-4567.";
    assert!(rule.is_match(text));
    let mut found = Vec::new();
    rule.find(text, &mut found);
    let tokens: Vec<&str> = found.iter().map(|f| &*f.token).collect();
    assert_eq!(tokens, vec!["[CARD]", "[EMAIL]", "[PHONE]"]);
    assert_eq!(mask(text, &found), "card [CARD], mail [EMAIL], call [PHONE].");
    // A card-looking number inside an email address is reported as the email.
    let mut found = Vec::new();
    rule.find("x 4111111111111111@example.com", &mut found);
    assert_eq!(found, vec![finding(2, 30, "[EMAIL]")]);

    let only_email = compile_one(one("name = \"e\"\nkind = \"pii\"\ndetectors = [\"email\", \"email\"]"));
    assert!(!only_email.is_match(text.replace("bob@example.com", "bob").as_str()));
    assert_eq!(spans(&only_email, text), vec![(31, 46)]);
}

#[test]
fn classifier_rules_judge_answers_and_scan_nothing() {
    let rule = compile_one(one("name = \"g\"\nkind = \"classifier\"\nroute = \"llama-guard\"\ntimeout_ms = 500"));
    let guard = rule.classifier.as_ref().unwrap();
    assert_eq!(guard.timeout, Duration::from_millis(500));
    assert!(guard.is_unsafe("unsafe\nS1"));
    assert!(guard.is_unsafe("  UNSAFE"));
    assert!(!guard.is_unsafe("safe"));
    assert!(!guard.is_unsafe("this is not unsafe"));
    assert!(!rule.is_match("unsafe text") && spans(&rule, "unsafe text").is_empty());
    let custom = compile_one(one(
        "name = \"g\"\nkind = \"classifier\"\nroute = \"g\"\nunsafe_pattern = '\"label\":\\s*\"block\"'",
    ));
    assert!(custom.classifier.as_ref().unwrap().is_unsafe(r#"{"label": "block"}"#));
}

#[test]
fn pathological_megabyte_inputs_scan_correctly() {
    let rules = RuleSet::compile(&[
        one("name = \"pii\"\nkind = \"pii\""),
        regex_rule("words", &[r"\ba+b\b", r"(x+x+)+y", r"[0-9]{5,}-end"]),
        one("name = \"k\"\nkind = \"keywords\"\nkeywords = ['aaab', '@@x']"),
    ])
    .unwrap();
    let megabyte = 1 << 20;
    let inputs = [
        "a".repeat(megabyte),
        "@".repeat(megabyte),
        "9".repeat(megabyte),
        "x".repeat(megabyte),
        "é".repeat(megabyte / 2),
        "1 ".repeat(megabyte / 2),
        "a@".repeat(megabyte / 2),
        "sk-".repeat(megabyte / 3),
        "-----BEGIN RSA PRIVATE KEY-----".repeat(megabyte / 31),
    ];
    for text in &inputs {
        let label = &text[..8];
        for rule in &rules.rules()[1..] {
            assert!(!rule.is_match(text), "{} on {label}", rule.name);
        }
        let mut found = Vec::new();
        rules.rules()[0].find(text, &mut found);
        let pem = text.starts_with("-----BEGIN");
        assert_eq!(found.is_empty(), !pem, "pii on {label}");
        if pem {
            // Unterminated keys with no body: each BEGIN line is a finding; touching, they mask as one token.
            assert_eq!(found.len(), megabyte / 31);
            assert!(mask(text, &found) == "[API_KEY]");
        }
    }
    let mut text = "a".repeat(megabyte);
    text.push_str("b 12345-end");
    assert!(rules.rules()[1].is_match(&text));
    assert_eq!(spans(&rules.rules()[1], &text), vec![(0, megabyte + 1), (megabyte + 2, megabyte + 11)]);
}
