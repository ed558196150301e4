use super::*;

/// The matched texts; also checks that `is_match` agrees with `find`.
fn found(detector: Detector, text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    find(detector, text, &mut out);
    assert_eq!(is_match(detector, text), !out.is_empty(), "{detector:?} on {text:?}");
    assert!(out.iter().all(|f| f.start < f.end && *f.token == *token(detector)));
    out.iter().map(|f| &text[f.start..f.end]).collect()
}

fn assert_finds(detector: Detector, cases: &[(&str, &str)]) {
    for (text, expected) in cases {
        assert_eq!(found(detector, text), vec![*expected], "{detector:?} on {text:?}");
    }
}

fn assert_ignores(detector: Detector, texts: &[&str]) {
    for text in texts {
        assert_eq!(found(detector, text), Vec::<&str>::new(), "{detector:?} on {text:?}");
    }
}

#[test]
fn tokens_and_names() {
    let tokens = Detector::ALL.map(token);
    assert_eq!(tokens, ["[EMAIL]", "[PHONE]", "[CARD]", "[IBAN]", "[SSN]", "[API_KEY]"]);
    assert_eq!(Detector::ALL.map(Detector::as_str), ["email", "phone", "card", "iban", "ssn", "api_key"]);
}

#[test]
fn email() {
    assert_finds(
        Detector::Email,
        &[
            ("mail bob@example.com now", "bob@example.com"),
            ("é first.last+tag@sub.example.co.uk 🙂", "first.last+tag@sub.example.co.uk"),
            ("<x_y@a-b.io>.", "x_y@a-b.io"),
        ],
    );
    let long_local = format!("{}@example.com", "a".repeat(65));
    let long_tld = "bob@example.comabcdefghijklmnopqrstuvwxyz";
    let near_misses = ["bob@localhost", ".bob@example.com", "a..b@example.com", "bob@-example.com", "bob@example.c"];
    assert_ignores(Detector::Email, &near_misses);
    assert_ignores(Detector::Email, &["@example.com", "bob@example.com2", long_tld, &long_local]);
}

#[test]
fn card() {
    assert_finds(
        Detector::Card,
        &[
            ("pay 4111 1111 1111 1111 now", "4111 1111 1111 1111"),
            ("4111-1111-1111-1111", "4111-1111-1111-1111"),
            ("card:4111111111111111.", "4111111111111111"),
            ("amex 3782 822463 10005", "3782 822463 10005"),
            ("order 12 6011 0009 9013 9424 ok", "6011 0009 9013 9424"),
            ("4111 1111 1111 1111 2025", "4111 1111 1111 1111"),
        ],
    );
    let near_misses = [
        "4111 1111 1111 1112",
        "4111111111111112",
        "x4111111111111111",
        "41111111111111110000000",
        "0000 0000 0000 0000",
        "4111 1111-1111 1111",
        "pi 3.4111111111111111",
        "41 11 11 11 11 11 11 11",
        "2024-01-15",
    ];
    assert_ignores(Detector::Card, &near_misses);
}

#[test]
fn iban() {
    assert_finds(
        Detector::Iban,
        &[
            ("iban DE89370400440532013000.", "DE89370400440532013000"),
            ("GB82 WEST 1234 5698 7654 32", "GB82 WEST 1234 5698 7654 32"),
            ("lower gb82west12345698765432 ok", "gb82west12345698765432"),
            ("BE68 5390 0754 7034 from here", "BE68 5390 0754 7034"),
        ],
    );
    let near_misses = [
        "DE89370400440532013001",
        "DE88 3704 0044 0532 0130 00",
        "XDE89370400440532013000",
        "DE8937040044",
        "DE89 3704",
    ];
    assert_ignores(Detector::Iban, &near_misses);
}

#[test]
fn ssn() {
    assert_finds(Detector::Ssn, &[("ssn 123-45-6789", "123-45-6789"), ("SSN: 078-05-1120.", "078-05-1120")]);
    let near_misses =
        ["000-12-3456", "666-12-3456", "900-12-3456", "123-00-6789", "123-45-0000", "1123-45-6789", "123-45-67890"];
    assert_ignores(Detector::Ssn, &near_misses);
    assert_ignores(Detector::Ssn, &["123-45-6789-1", "a123-45-6789", "12-123-45-6789"]);
}

#[test]
fn phone() {
    assert_finds(
        Detector::Phone,
        &[
            ("call +1 (555) 123-4567.", "+1 (555) 123-4567"),
            ("+44 20 7946 0958", "+44 20 7946 0958"),
            ("e164 +15551234567", "+15551234567"),
            ("+33 1 23 45 67 89", "+33 1 23 45 67 89"),
            ("+49 (0)30 1234567", "+49 (0)30 1234567"),
            ("(555) 123-4567", "(555) 123-4567"),
            ("tel 555-123-4567, thanks", "555-123-4567"),
            ("555.123.4567", "555.123.4567"),
            ("1-555-123-4567", "1-555-123-4567"),
            ("2024-01-15 555-123-4567", "555-123-4567"),
        ],
    );
    let near_misses = [
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        "4111111111111111",
        "123-45-6789",
        "DE89 3704 0044 0532 0130 00",
        "2024-01-15",
        "2024-01-15T10:30:00+01:00",
        "5551234567",
        "555-123.4567",
        "155-123-4567",
        "555-123-45678",
        "12.555.123.4567",
        "v555-123-4567",
        "+1 555",
        "+1234567890123456",
        "12 555 123 4567",
    ];
    assert_ignores(Detector::Phone, &near_misses);
}

#[test]
fn api_key() {
    let github = format!("ghp_{}", "aB3".repeat(12));
    let google = format!("AIza{}", "Sy-_9".repeat(7));
    let pat = format!("github_pat_11ABCDEFG0123456789abc_{}", "x1".repeat(29));
    let line = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj";
    // Cut before its END line: the body is still covered, up to its short last line.
    let cut_pem = format!("-----BEGIN PRIVATE KEY-----\n{line}\n{line}\nMIIEvQ==\nnext words");
    let encrypted = format!(
        "-----BEGIN RSA PRIVATE KEY-----\r\nProc-Type: 4,ENCRYPTED\r\nDEK-Info: AES-128-CBC,AB12\r\n\r\n{line}\r\n{line}\n\nnext"
    );
    let pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA3Tz2\nq9+/=\n-----END RSA PRIVATE KEY-----";
    let cases = [
        ("OPENAI_API_KEY=sk-proj-abc123DEF456ghi789JKL0 ok", "sk-proj-abc123DEF456ghi789JKL0"),
        ("'sk-ant-api03-AbCdEf1234567890_xyz-QRS'", "sk-ant-api03-AbCdEf1234567890_xyz-QRS"),
        ("id AKIAIOSFODNN7EXAMPLE.", "AKIAIOSFODNN7EXAMPLE"),
        ("ASIAY34FZKBOKMUTVV7A", "ASIAY34FZKBOKMUTVV7A"),
        (&github, &github),
        (&google, &google),
        (&pat, &pat),
        ("slack xoxb-1234567890-abcdefghij", "xoxb-1234567890-abcdefghij"),
        ("stripe sk_live_4eC39HqLyjWDarjtT1zdp7dc", "sk_live_4eC39HqLyjWDarjtT1zdp7dc"),
        (&format!("key:\n{pem}\nthanks"), pem),
        (&cut_pem, cut_pem.trim_end_matches("\nnext words")),
        (&encrypted, encrypted.trim_end_matches("\n\nnext")),
    ];
    assert_finds(Detector::ApiKey, &cases);
    let near_misses = [
        "task-management-framework-overview2024",
        "sk-this-is-not-a-key-at-all-really",
        "AKIAIOSFODNN7EXAMPL",
        "AKIAIOSFODNN7EXAMPLEX",
        "xAKIAIOSFODNN7EXAMPLE",
        "ghp_short",
        "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8A\n-----END PUBLIC KEY-----",
    ];
    assert_ignores(Detector::ApiKey, &near_misses);
}
