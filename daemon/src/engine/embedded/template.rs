//! Chat templates llama.cpp's built-in engine does not know: the GGUF's own Jinja template (or the config's
//! `chat_template` file) rendered by minijinja, with the Python string methods Hugging Face templates use
//! (`minijinja-contrib`'s pycompat) and `raise_exception`, which templates call to refuse a conversation.
//! Rendering is bounded: fuel limits the work a template may do, and the output's size is capped.
use minijinja::{context, Environment, Error, ErrorKind, Value};

/// Template instructions a render may run (a loop over a long conversation stays far below it).
const FUEL: u64 = 5_000_000;
/// The largest rendered prompt (the context window is smaller still).
const MAX_OUTPUT_BYTES: usize = 8 * 1024 * 1024;
/// The largest template source taken.
pub const MAX_TEMPLATE_BYTES: usize = 256 * 1024;

pub struct JinjaTemplate {
    env: Environment<'static>,
}

impl JinjaTemplate {
    /// Compiles `source`; a template that does not parse is reported at load, not at the first request.
    pub fn new(source: String) -> Result<Self, String> {
        if source.len() > MAX_TEMPLATE_BYTES {
            return Err(format!("the chat template is larger than {MAX_TEMPLATE_BYTES} bytes"));
        }
        let mut env = Environment::new();
        env.set_fuel(Some(FUEL));
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |message: String| -> Result<String, Error> {
            Err(Error::new(ErrorKind::InvalidOperation, message))
        });
        env.add_template_owned("chat", source).map_err(|e| format!("the chat template does not parse: {e}"))?;
        Ok(Self { env })
    }

    /// The conversation as the model reads it, ending with the assistant's turn opened.
    pub fn render(&self, turns: &[(String, String)], bos: &str, eos: &str) -> Result<String, String> {
        let messages: Value = turns
            .iter()
            .map(|(role, content)| Value::from_pairs([("role", role.as_str()), ("content", content.as_str())]))
            .collect();
        let template = self.env.get_template("chat").map_err(|e| e.to_string())?;
        let rendered = template
            .render(context! {
                messages,
                add_generation_prompt => true,
                bos_token => bos,
                eos_token => eos,
            })
            .map_err(|e| match e.kind() {
                ErrorKind::InvalidOperation => e.detail().unwrap_or("the template refused").to_string(),
                ErrorKind::OutOfFuel => "the chat template ran too long".to_string(),
                _ => format!("the chat template failed: {e}"),
            })?;
        if rendered.len() > MAX_OUTPUT_BYTES {
            return Err(format!("the rendered prompt is larger than {MAX_OUTPUT_BYTES} bytes"));
        }
        Ok(rendered)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// In the style of Hugging Face templates: Python string methods, `raise_exception`, the special tokens.
    const TEMPLATE: &str =
        "{{ bos_token }}{% for m in messages %}{% if m.role not in ['user', 'assistant', 'system'] %}\
        {{ raise_exception('unknown role ' + m.role) }}{% endif %}[{{ m.role.upper() }}] {{ m.content.strip() }}\n\
        {% endfor %}{% if add_generation_prompt %}[ASSISTANT]{% endif %}";

    #[test]
    fn hugging_face_style_templates_render() {
        let template = JinjaTemplate::new(TEMPLATE.to_string()).expect("parses");
        let turns = vec![("system".to_string(), " Be brief. ".to_string()), ("user".to_string(), "Hi".to_string())];
        assert_eq!(
            template.render(&turns, "<s>", "</s>").expect("renders"),
            "<s>[SYSTEM] Be brief.\n[USER] Hi\n[ASSISTANT]"
        );
    }

    #[test]
    fn refusals_and_runaway_templates_are_errors() {
        let template = JinjaTemplate::new(TEMPLATE.to_string()).expect("parses");
        let error = template.render(&[("robot".to_string(), "x".to_string())], "", "").expect_err("refused");
        assert_eq!(error, "unknown role robot");
        let runaway = JinjaTemplate::new(
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}".into(),
        )
        .expect("parses");
        assert_eq!(runaway.render(&[], "", ""), Err("the chat template ran too long".to_string()));
        assert!(JinjaTemplate::new("{% for %}".into()).is_err());
        assert!(JinjaTemplate::new("x".repeat(MAX_TEMPLATE_BYTES + 1)).is_err());
    }

    #[test]
    fn a_template_file_is_read_within_the_bound() {
        // An endless device: read up to the bound and refused, not read forever.
        let source = super::super::llm::read_bounded("/dev/zero").expect("readable");
        assert_eq!(source.len(), MAX_TEMPLATE_BYTES + 1);
        assert!(JinjaTemplate::new(source).is_err());
    }
}
