//! Rendering a version's templates with a request's variables (minijinja). Bounded: strict undefined (a
//! missing variable is an error, not an empty string), fuel per template (instructions and allocations), a low
//! recursion limit, no include/extends/macros (the crate is built without them), and at most
//! [`limits::MAX_RENDERED_BYTES`] of output for all messages together (writing stops there).
use super::model::{NewVersion, PromptMessage, PromptVersion};
use super::{limits, PromptError};
use minijinja::{Environment, UndefinedBehavior};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

/// Instructions (and allocations, about 64 bytes a unit) one message's template may spend per render.
const FUEL_PER_MESSAGE: u64 = 200_000;
/// Nesting of loops, ifs and calls.
const RECURSION_LIMIT: usize = 64;

/// The rendered messages of one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub messages: Vec<PromptMessage>,
}

pub struct Renderer {
    env: Environment<'static>,
    /// Names templates may use without a variable: the environment's functions (`range`, `namespace`, ...).
    globals: BTreeSet<String>,
}

impl Default for Renderer {
    fn default() -> Self {
        Self::new()
    }
}

impl Renderer {
    pub fn new() -> Self {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_fuel(Some(FUEL_PER_MESSAGE));
        env.set_recursion_limit(RECURSION_LIMIT);
        let globals = env.globals().map(|(name, _)| name.to_string()).collect();
        Self { env, globals }
    }

    /// Compiles every template of a version (a syntax error names the message and line) and lists the variables
    /// they use, sorted.
    pub fn check(&self, content: &NewVersion) -> Result<Vec<String>, PromptError> {
        let mut variables = BTreeSet::new();
        for (index, message) in content.messages.iter().enumerate() {
            let template = self.env.template_from_str(&message.content).map_err(|error| {
                PromptError::Invalid(format!("message {} ({}): template error: {error}", index + 1, message.role))
            })?;
            variables.extend(template.undeclared_variables(false).into_iter().filter(|v| !self.globals.contains(v)));
        }
        if variables.len() > limits::MAX_VARIABLES {
            return Err(PromptError::Invalid(format!(
                "the templates use {} variables; at most {} are allowed",
                variables.len(),
                limits::MAX_VARIABLES
            )));
        }
        Ok(variables.into_iter().collect())
    }

    /// Renders every message of `version` with `variables`. A variable the templates use and the request did
    /// not give is named; so is a template error at run time, with its message.
    pub fn render(
        &self,
        version: &PromptVersion,
        variables: &BTreeMap<String, String>,
    ) -> Result<Rendered, PromptError> {
        if let Some(missing) = version.variables.iter().find(|name| !variables.contains_key(*name)) {
            return Err(PromptError::Render {
                message: format!("missing variable `{missing}` (the templates use: {})", version.variables.join(", ")),
                variable: Some(missing.clone()),
            });
        }
        let context = minijinja::Value::from_pairs(variables.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let mut out = BoundedWriter { bytes: Vec::new(), room: limits::MAX_RENDERED_BYTES, overflowed: false };
        let mut messages = Vec::with_capacity(version.content.messages.len());
        for (index, message) in version.content.messages.iter().enumerate() {
            let failed = |error: String| PromptError::Render {
                message: format!("message {} ({}): {error}", index + 1, message.role),
                variable: None,
            };
            let template = self.env.template_from_str(&message.content).map_err(|e| failed(e.to_string()))?;
            out.bytes.clear();
            if let Err(error) = template.render_captured_to(context.clone(), &mut out) {
                if out.overflowed {
                    return Err(PromptError::Render {
                        message: format!(
                            "the rendered prompt is over {} bytes (message {})",
                            limits::MAX_RENDERED_BYTES,
                            index + 1
                        ),
                        variable: None,
                    });
                }
                return Err(failed(error.to_string()));
            }
            let content = String::from_utf8(std::mem::take(&mut out.bytes))
                .map_err(|_| failed("the template wrote invalid UTF-8".into()))?;
            messages.push(PromptMessage { role: message.role.clone(), content });
        }
        Ok(Rendered { messages })
    }
}

/// Collects output until `room` bytes are used up (over all messages), then fails the write: minijinja stops.
struct BoundedWriter {
    bytes: Vec<u8>,
    room: usize,
    overflowed: bool,
}

impl Write for BoundedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.len() > self.room {
            self.overflowed = true;
            return Err(std::io::Error::other("rendered prompt too large"));
        }
        self.room -= buf.len();
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(contents: &[(&str, &str)]) -> PromptVersion {
        let messages =
            contents.iter().map(|(r, c)| PromptMessage { role: (*r).into(), content: (*c).into() }).collect();
        let content = NewVersion::from_parts(messages, "", "").expect("valid");
        let variables = Renderer::new().check(&content).expect("compiles");
        PromptVersion {
            name: "t".into(),
            version: 1,
            content,
            sha256: String::new(),
            created_at_unix_ms: 0,
            created_by: "t".into(),
            variables,
        }
    }

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_string(), (*v).to_string())).collect()
    }

    #[test]
    fn templates_render_with_their_variables() {
        let v = version(&[
            ("system", "You help {{ company }} customers.{% if tone %} Be {{ tone | lower }}.{% endif %}"),
            ("user", "{% for c in topic %}[{{ c }}]{% endfor %} ({{ topic | length }})"),
        ]);
        assert_eq!(v.variables, ["company", "tone", "topic"]);
        let rendered = Renderer::new()
            .render(&v, &vars(&[("company", "Acme"), ("tone", "WARM"), ("topic", "ab")]))
            .expect("renders");
        assert_eq!(rendered.messages[0].content, "You help Acme customers. Be warm.");
        assert_eq!(rendered.messages[1], PromptMessage { role: "user".into(), content: "[a][b] (2)".into() });
    }

    #[test]
    fn a_missing_variable_is_named() {
        let v = version(&[("system", "Hi {{ name }}, about {{ topic }}")]);
        let error = Renderer::new().render(&v, &vars(&[("name", "x")])).expect_err("missing");
        assert!(matches!(&error, PromptError::Render { variable: Some(v), .. } if v == "topic"), "{error:?}");
        assert!(error.to_string().contains("missing variable `topic`"), "{error}");
    }

    #[test]
    fn syntax_errors_are_refused_at_push_with_the_message_number() {
        let content = NewVersion::from_parts(
            vec![
                PromptMessage { role: "system".into(), content: "ok".into() },
                PromptMessage { role: "user".into(), content: "{% if x %}never closed".into() },
            ],
            "",
            "",
        )
        .expect("valid shape");
        let error = Renderer::new().check(&content).expect_err("syntax").to_string();
        assert!(error.starts_with("message 2 (user): template error"), "{error}");
    }

    #[test]
    fn hostile_templates_are_bounded() {
        let renderer = Renderer::new();
        // Output over 256 KiB: stopped by the writer.
        let big = version(&[("user", "{% for i in range(100000) %}{{ x }}{% endfor %}")]);
        let error = renderer.render(&big, &vars(&[("x", &"y".repeat(1000))])).expect_err("too big").to_string();
        assert!(error.contains("over 262144 bytes") || error.contains("fuel"), "{error}");
        // A loop that burns instructions without writing: stopped by fuel.
        let spin =
            version(&[("user", "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}")]);
        let error = renderer.render(&spin, &BTreeMap::new()).expect_err("fuel").to_string();
        assert!(error.contains("fuel"), "{error}");
        // String repetition is charged against fuel too.
        let repeat = version(&[("user", "{{ x * 100000000 }}")]);
        assert!(renderer.render(&repeat, &vars(&[("x", "ab")])).is_err());
        // Deep nesting: the recursion limit.
        let deep = format!("{}x{}", "{% if true %}".repeat(200), "{% endif %}".repeat(200));
        let content =
            NewVersion::from_parts(vec![PromptMessage { role: "user".into(), content: deep }], "", "").expect("shape");
        let nested = renderer.check(&content).and_then(|variables| {
            let v = PromptVersion {
                name: "t".into(),
                version: 1,
                content,
                sha256: String::new(),
                created_at_unix_ms: 0,
                created_by: String::new(),
                variables,
            };
            renderer.render(&v, &BTreeMap::new()).map(|_| ())
        });
        assert!(nested.is_err(), "200 nested ifs are refused");
        // No loader: an include finds nothing, so a version cannot reach another template or a file.
        let include = version(&[("user", "{% include '/etc/passwd' %}")]);
        let error = renderer.render(&include, &BTreeMap::new()).expect_err("no templates to include").to_string();
        assert!(error.contains("not found"), "{error}");
    }
}
