//! The engine thread of an embedding model: one request at a time, its inputs packed into as few llama.cpp
//! batches as fit (one sequence per input, up to `parallel` per batch), each input pooled into one vector.
//! Requests are short (no decoding loop), so none waits long behind another.
use super::embed::normalise;
use super::job::{Command, EmbedJob, Event};
use super::llm::LoadedModel;
use super::Load;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use std::sync::mpsc::Receiver;
use std::sync::Arc;

pub fn run(
    model: &LoadedModel,
    mut ctx: LlamaContext<'_>,
    parallel: usize,
    commands: Receiver<Command>,
    load: Arc<Load>,
) {
    let batch_size = ctx.n_batch() as usize;
    let mut batch = LlamaBatch::new(batch_size, 1);
    while let Ok(command) = commands.recv() {
        match command {
            Command::Stop => break,
            Command::Run(job) => {
                load.left_queue(1);
                let _ = job.events.send(Event::Failed("this engine serves embeddings only".into()));
            }
            Command::Embed(job) => {
                load.left_queue(1);
                load.publish(1, 0.0);
                let EmbedJob { inputs, reply } = job;
                let vectors = embed(model, &mut ctx, &mut batch, batch_size, parallel, &inputs);
                let _ = reply.send(vectors);
                load.publish(0, 0.0);
            }
        }
    }
    load.waiting_reset();
}

/// One pooled, unit-length vector per input, in order.
fn embed(
    model: &LoadedModel,
    ctx: &mut LlamaContext<'_>,
    batch: &mut LlamaBatch<'_>,
    batch_size: usize,
    parallel: usize,
    inputs: &[Vec<llama_cpp_2::token::LlamaToken>],
) -> Result<Vec<Vec<f32>>, String> {
    let mut vectors = Vec::with_capacity(inputs.len());
    let mut next = 0;
    while next < inputs.len() {
        batch.clear();
        let first = next;
        while next < inputs.len()
            && next - first < parallel
            && batch.n_tokens() as usize + inputs[next].len() <= batch_size
        {
            let seq = (next - first) as i32;
            for (pos, token) in inputs[next].iter().enumerate() {
                batch.add(*token, pos as i32, &[seq], true).map_err(|e| format!("cannot batch input {next}: {e}"))?;
            }
            next += 1;
        }
        if next == first {
            // `post` keeps every input within the window, which the batch holds whole.
            return Err(format!("input {next} is longer than the engine's batch ({batch_size} tokens)"));
        }
        ctx.clear_kv_cache();
        ctx.decode(batch).map_err(|e| format!("the model failed to embed: {e}"))?;
        for seq in 0..(next - first) {
            let pooled = ctx
                .embeddings_seq_ith(seq as i32)
                .map_err(|_| format!("the model returned no pooled embedding (n_embd {})", model.n_embd()))?;
            let mut vector = pooled.to_vec();
            normalise(&mut vector);
            vectors.push(vector);
        }
    }
    Ok(vectors)
}
