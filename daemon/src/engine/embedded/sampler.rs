//! A request's sampler chain, built on the caller's task (a grammar that does not compile is the client's 400,
//! not a failure in the decode loop): logit bias, penalties, the grammar, then truncation, temperature and
//! the draw, in llama.cpp's usual order. Temperature 0 is greedy (bias, penalties and grammar still apply).
use super::constraint::Constraint;
use super::llm::LoadedModel;
use super::request::{Refusal, Sampling};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::logit_bias::LlamaLogitBias;
use llama_cpp_2::token::LlamaToken;

/// How far back frequency, presence and repetition penalties look, in tokens (llama.cpp's default).
const PENALTY_LAST_N: i32 = 64;

pub fn build(
    model: &LoadedModel,
    sampling: &Sampling,
    constraint: Option<&Constraint>,
) -> Result<LlamaSampler, Refusal> {
    let n_vocab = model.n_vocab();
    let mut chain = Vec::new();
    if !sampling.logit_bias.is_empty() {
        if let Some((token, _)) = sampling.logit_bias.iter().find(|(token, _)| !(0..n_vocab).contains(token)) {
            return Err(Refusal::invalid(
                "logit_bias",
                format!("token id {token} is not in the vocabulary (0 to {})", n_vocab - 1),
            ));
        }
        let biases: Vec<LlamaLogitBias> =
            sampling.logit_bias.iter().map(|&(token, bias)| LlamaLogitBias::new(LlamaToken(token), bias)).collect();
        chain.push(LlamaSampler::logit_bias(n_vocab, &biases));
    }
    if sampling.frequency_penalty != 0.0 || sampling.presence_penalty != 0.0 || sampling.repetition_penalty != 1.0 {
        chain.push(LlamaSampler::penalties(
            n_vocab,
            PENALTY_LAST_N,
            sampling.repetition_penalty,
            sampling.frequency_penalty,
            sampling.presence_penalty,
        ));
    }
    if let Some(constraint) = constraint {
        chain.push(grammar(model, constraint)?);
    }
    if sampling.temperature <= 0.0 {
        chain.push(LlamaSampler::greedy());
        return Ok(LlamaSampler::chain_simple(chain));
    }
    if sampling.top_k > 0 {
        chain.push(LlamaSampler::top_k(sampling.top_k));
    }
    if sampling.top_p < 1.0 {
        chain.push(LlamaSampler::top_p(sampling.top_p, 1));
    }
    if sampling.min_p > 0.0 {
        chain.push(LlamaSampler::min_p(sampling.min_p, 1));
    }
    chain.push(LlamaSampler::temp(sampling.temperature));
    chain.push(LlamaSampler::dist(sampling.seed));
    Ok(LlamaSampler::chain_simple(chain))
}

fn grammar(model: &LoadedModel, constraint: &Constraint) -> Result<LlamaSampler, Refusal> {
    let vocab_model = &model.model;
    let sampler = match &constraint.trigger {
        None => LlamaSampler::grammar(vocab_model, &constraint.grammar, &constraint.root),
        Some(word) => LlamaSampler::grammar_lazy(vocab_model, &constraint.grammar, &constraint.root, [word], &[]),
    };
    sampler.map_err(|error| {
        let param = if constraint.root == "root" { "response_format" } else { "tools" };
        Refusal::invalid(
            param,
            format!("llama.cpp cannot compile the grammar for this schema ({error}); simplify the schema"),
        )
    })
}
