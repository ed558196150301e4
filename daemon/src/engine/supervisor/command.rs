//! What a launched engine is started with, and how its command line may be shown: an explicit environment
//! (a short allow-list from the daemon's, then `launch_env`), and the command with its secrets as `***`.
use crate::config::OpenAiEngineConfig;
use std::ffi::OsString;

/// What a secret is shown as.
pub const REDACTED: &str = "***";

/// The launched command's whole environment: the variables of `parent` (the daemon's) that `config` lets
/// through, then `launch_env` over them. Names that are not UTF-8 are never passed on.
pub fn environment(
    config: &OpenAiEngineConfig,
    parent: impl IntoIterator<Item = (OsString, OsString)>,
) -> Vec<(OsString, OsString)> {
    let mut env: std::collections::BTreeMap<OsString, OsString> =
        parent.into_iter().filter(|(name, _)| name.to_str().is_some_and(|name| config.launch_inherits(name))).collect();
    env.extend(config.launch_env.iter().map(|(name, value)| (name.into(), value.into())));
    env.into_iter().collect()
}

/// `command` as it may be logged or shown: the value after a secret-looking flag (`--api-key X`,
/// `--hf-token=X`), the value of a secret-looking `NAME=VALUE` (`HF_TOKEN=X`) and the credentials in a URL
/// (`https://user:pass@host`) become `***`; so do those inside an argument of several words (`sh -c "..."`).
pub fn redact(command: &[String]) -> Vec<String> {
    let mut shown = Vec::with_capacity(command.len());
    let mut hide_next = false;
    for arg in command {
        if std::mem::take(&mut hide_next) {
            shown.push(REDACTED.to_string());
        } else if arg.contains(char::is_whitespace) {
            shown.push(redact_words(arg));
        } else {
            shown.push(redact_arg(arg, &mut hide_next));
        }
    }
    shown
}

/// A shell script or other several-word argument: its words redacted as arguments are, when any needs it.
fn redact_words(arg: &str) -> String {
    let words: Vec<String> = arg.split_whitespace().map(str::to_string).collect();
    let redacted = redact(&words);
    if redacted == words {
        arg.to_string()
    } else {
        redacted.join(" ")
    }
}

fn redact_arg(arg: &str, hide_next: &mut bool) -> String {
    if let Some(flag) = arg.strip_prefix('-').map(|f| f.trim_start_matches('-')).filter(|f| !f.is_empty()) {
        match flag.split_once('=') {
            Some((name, _)) if secret_flag(name) => {
                let name_end = arg.len() - flag.len() + name.len();
                return format!("{}={REDACTED}", &arg[..name_end]);
            }
            None if secret_flag(flag) => *hide_next = true,
            _ => {}
        }
        return redact_url(arg);
    }
    if let Some((name, _)) = arg.split_once('=') {
        let variable = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if variable && secret_name(name) {
            return format!("{name}={REDACTED}");
        }
    }
    redact_url(arg)
}

/// `--api-key`, `--hf-token`, `--authtoken`, `--db-password`, `--client-secret`; not `--max-tokens` or
/// `--tokenizer`.
fn secret_flag(name: &str) -> bool {
    name.split(['-', '_', '.']).map(str::to_ascii_lowercase).any(|word| {
        word.ends_with("key")
            || word.ends_with("token")
            || ["secret", "password", "passwd", "credential"].iter().any(|s| word.contains(s))
    })
}

/// `OPENAI_API_KEY`, `HF_TOKEN`, `DB_PASSWORD`, `CLIENT_SECRET`.
fn secret_name(name: &str) -> bool {
    let name = name.to_ascii_uppercase();
    ["KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL"].iter().any(|s| name.contains(s))
}

/// `scheme://user:pass@host/...` with `***` for `user:pass`.
fn redact_url(arg: &str) -> String {
    let Some(scheme_end) = arg.find("://").map(|i| i + 3) else { return arg.to_string() };
    let authority_len = arg[scheme_end..].find(['/', '?', '#']).unwrap_or(arg.len() - scheme_end);
    match arg[scheme_end..scheme_end + authority_len].rfind('@') {
        Some(at) => format!("{}{REDACTED}{}", &arg[..scheme_end], &arg[scheme_end + at..]),
        None => arg.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &[&str]) -> Vec<String> {
        line.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn secrets_in_a_command_line_are_hidden() {
        let command = args(&[
            "vllm",
            "serve",
            "Qwen/Qwen2.5-7B-Instruct",
            "--api-key",
            "sk-one",
            "--hf-token=hf-two",
            "-password",
            "three",
            "--max-num-batched-tokens",
            "8192",
            "--tokenizer",
            "Qwen/Qwen2.5-7B-Instruct",
            "HF_TOKEN=four",
            "openai_api_key=five",
            "--served-model-name=qwen",
            "--upstream=https://me:six@example.com/v1",
            "--client_secret",
            "seven",
        ]);
        let shown = redact(&command).join(" ");
        for secret in ["sk-one", "hf-two", "three", "four", "five", "six", "seven"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert_eq!(
            shown,
            "vllm serve Qwen/Qwen2.5-7B-Instruct --api-key *** --hf-token=*** -password *** \
             --max-num-batched-tokens 8192 --tokenizer Qwen/Qwen2.5-7B-Instruct HF_TOKEN=*** openai_api_key=*** \
             --served-model-name=qwen --upstream=https://***@example.com/v1 --client_secret ***"
        );
    }

    #[test]
    fn a_shell_script_argument_is_redacted_word_by_word() {
        let command = args(&["/bin/sh", "-c", "exec  llama-server --api-key sk-x --port 8080", "sh"]);
        assert_eq!(redact(&command)[2], "exec llama-server --api-key *** --port 8080");
        let plain = args(&["/bin/sh", "-c", "exec  llama-server --port 8080"]);
        assert_eq!(redact(&plain), plain, "left as written when nothing is secret");
        assert_eq!(redact(&args(&["x", "--token"])), args(&["x", "--token"]), "a flag with nothing after it");
    }

    fn config(toml: &str) -> OpenAiEngineConfig {
        let text = format!("base_url = \"http://127.0.0.1:1/v1\"\nmodels = [\"m\"]\n{toml}");
        toml::from_str(&text).expect("engine config")
    }

    #[test]
    fn the_environment_is_the_allow_list_then_launch_env() {
        let parent = [
            ("PATH", "/usr/bin"),
            ("HOME", "/home/llmops"),
            ("LC_ALL", "C.UTF-8"),
            ("CUDA_VISIBLE_DEVICES", "1"),
            ("LLMOPS_TOKEN", "grpc-secret"),
            ("OPENAI_API_KEY", "sk-upstream"),
            ("HF_TOKEN", "hf-secret"),
            ("VLLM_API_KEY", "engine-key"),
            ("RANDOM_THING", "x"),
        ]
        .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        let config = config(
            "launch_env = { CUDA_VISIBLE_DEVICES = \"0\", MARK = \"yes\" }\nlaunch_inherit_env = [\"VLLM_API_KEY\"]\n",
        );
        let env: Vec<(String, String)> = environment(&config, parent)
            .into_iter()
            .map(|(k, v)| (k.to_string_lossy().into_owned(), v.to_string_lossy().into_owned()))
            .collect();
        let expected = [
            ("CUDA_VISIBLE_DEVICES", "0"),
            ("HOME", "/home/llmops"),
            ("LC_ALL", "C.UTF-8"),
            ("MARK", "yes"),
            ("PATH", "/usr/bin"),
            ("VLLM_API_KEY", "engine-key"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        assert_eq!(env, expected);
    }
}
