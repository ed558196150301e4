//! The decode loop: one thread owns the llama.cpp context and runs every admitted request in one batch per
//! step (continuous batching). Requests join between steps (their prompts fed in chunks, so answers already
//! running keep flowing) and leave the moment they finish or their client goes away, freeing their sequence
//! and its KV-cache slot for the next request in the queue.
use super::job::{Command, Event, Finish, FinishReason, Job};
use super::model::LoadedModel;
use super::request::Sampling;
use super::text::{Piece, TextOut};
use super::Load;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use std::collections::VecDeque;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;

/// How far back frequency, presence and repetition penalties look, in tokens (llama.cpp's default).
const PENALTY_LAST_N: i32 = 64;

struct Slot {
    seq: i32,
    job: Job,
    /// Prompt tokens already in the KV cache.
    fed: usize,
    /// Position of the next token in this sequence.
    pos: i32,
    /// The last sampled token, fed in the next step.
    next: Option<LlamaToken>,
    generated: u32,
    sampler: LlamaSampler,
    text: TextOut,
    /// Where this sequence's logits are in the current batch.
    logits_at: Option<i32>,
}

pub struct Batcher<'m> {
    model: &'m LoadedModel,
    ctx: LlamaContext<'m>,
    batch: LlamaBatch<'static>,
    batch_size: usize,
    slots: Vec<Option<Slot>>,
    waiting: VecDeque<Job>,
    commands: Receiver<Command>,
    load: Arc<Load>,
    piece: Vec<u8>,
}

impl<'m> Batcher<'m> {
    pub fn new(
        model: &'m LoadedModel,
        ctx: LlamaContext<'m>,
        parallel: usize,
        commands: Receiver<Command>,
        load: Arc<Load>,
    ) -> Self {
        let batch_size = ctx.n_batch() as usize;
        Self {
            model,
            ctx,
            batch: LlamaBatch::new(batch_size, 1),
            batch_size,
            slots: (0..parallel).map(|_| None).collect(),
            waiting: VecDeque::new(),
            commands,
            load,
            piece: Vec::with_capacity(32),
        }
    }

    /// Runs until told to stop (or the engine is dropped); requests still running then end with an error.
    pub fn run(mut self) {
        while self.receive() {
            self.drop_cancelled();
            self.admit();
            if self.slots.iter().any(Option::is_some) {
                self.step();
            }
            self.publish_load();
        }
        for job in self.waiting.drain(..) {
            let _ = job.events.send(Event::Failed("the engine stopped before the request started".into()));
        }
        for slot in self.slots.iter_mut().filter_map(Option::take) {
            let _ = slot.job.events.send(Event::Failed("the engine stopped".into()));
        }
        self.load.waiting_reset();
        self.publish_load();
    }

    /// Takes new jobs: waits for one when there is nothing to do, else only takes what has arrived.
    fn receive(&mut self) -> bool {
        let busy = !self.waiting.is_empty() || self.slots.iter().any(Option::is_some);
        if !busy {
            match self.commands.recv() {
                Ok(Command::Run(job)) => self.waiting.push_back(job),
                Ok(Command::Stop) | Err(_) => return false,
            }
        }
        loop {
            match self.commands.try_recv() {
                Ok(Command::Run(job)) => self.waiting.push_back(job),
                Ok(Command::Stop) | Err(TryRecvError::Disconnected) => return false,
                Err(TryRecvError::Empty) => return true,
            }
        }
    }

    fn drop_cancelled(&mut self) {
        let before = self.waiting.len();
        self.waiting.retain(|job| !job.events.is_closed());
        self.load.left_queue(before - self.waiting.len());
        for index in 0..self.slots.len() {
            if self.slots[index].as_ref().is_some_and(|slot| slot.job.events.is_closed()) {
                self.free(index);
            }
        }
    }

    fn admit(&mut self) {
        for index in 0..self.slots.len() {
            if self.slots[index].is_some() {
                continue;
            }
            let Some(job) = self.waiting.pop_front() else { break };
            self.load.left_queue(1);
            let sampler = sampler(&job.sampling, self.model.n_vocab());
            self.slots[index] = Some(Slot {
                seq: index as i32,
                text: TextOut::new(job.stop.clone()),
                job,
                fed: 0,
                pos: 0,
                next: None,
                generated: 0,
                sampler,
                logits_at: None,
            });
        }
    }

    /// One decode step: the next token of every running answer, then as much of waiting prompts as fits.
    fn step(&mut self) {
        self.batch.clear();
        for slot in self.slots.iter_mut().flatten() {
            slot.logits_at = None;
            if let Some(token) = slot.next.take() {
                if self.batch.add(token, slot.pos, &[slot.seq], true).is_ok() {
                    slot.logits_at = Some(self.batch.n_tokens() - 1);
                    slot.pos += 1;
                }
            }
        }
        for slot in self.slots.iter_mut().flatten() {
            while slot.fed < slot.job.prompt.len() && (self.batch.n_tokens() as usize) < self.batch_size {
                let last = slot.fed + 1 == slot.job.prompt.len();
                if self.batch.add(slot.job.prompt[slot.fed], slot.pos, &[slot.seq], last).is_err() {
                    break;
                }
                if last {
                    slot.logits_at = Some(self.batch.n_tokens() - 1);
                }
                slot.fed += 1;
                slot.pos += 1;
            }
        }
        if self.batch.n_tokens() == 0 {
            return;
        }
        if let Err(error) = self.ctx.decode(&mut self.batch) {
            // Every sequence in this batch is in an unknown state: end them, keep the others.
            tracing::error!(%error, "llama.cpp decode failed");
            for index in 0..self.slots.len() {
                if let Some(slot) = &self.slots[index] {
                    let _ = slot.job.events.send(Event::Failed(format!("the model failed to decode: {error}")));
                    self.free(index);
                }
            }
            return;
        }
        for index in 0..self.slots.len() {
            self.sample(index);
        }
    }

    /// Samples the slot's next token (when it had logits this step) and hands its text to the client.
    fn sample(&mut self, index: usize) {
        let Some(slot) = self.slots[index].as_mut() else { return };
        let Some(at) = slot.logits_at.take() else { return };
        let token = slot.sampler.sample(&self.ctx, at);
        slot.generated += 1;
        let outcome = if self.model.is_end_of_generation(token) {
            let rest = slot.text.finish();
            Some((FinishReason::Stop, rest))
        } else {
            self.model.piece(token, &mut self.piece);
            match slot.text.push(&self.piece) {
                Piece::Stopped(text) => Some((FinishReason::Stop, text)),
                Piece::Text(text) if slot.generated >= slot.job.max_tokens => {
                    Some((FinishReason::Length, text + &slot.text.finish()))
                }
                Piece::Text(text) => {
                    slot.next = Some(token);
                    if !text.is_empty() && slot.job.events.send(Event::Text(text)).is_err() {
                        self.free(index);
                    }
                    None
                }
            }
        };
        if let Some((reason, text)) = outcome {
            self.finish(index, reason, text);
        }
    }

    fn finish(&mut self, index: usize, reason: FinishReason, text: String) {
        if let Some(slot) = &self.slots[index] {
            if !text.is_empty() {
                let _ = slot.job.events.send(Event::Text(text));
            }
            let finish =
                Finish { reason, prompt_tokens: slot.job.prompt.len() as u32, completion_tokens: slot.generated };
            let _ = slot.job.events.send(Event::Finished(finish));
        }
        self.free(index);
    }

    /// Ends the slot's sequence and clears its KV cache for the next request.
    fn free(&mut self, index: usize) {
        if let Some(slot) = self.slots[index].take() {
            if let Err(error) = self.ctx.clear_kv_cache_seq(Some(slot.seq as u32), None, None) {
                tracing::warn!(%error, seq = slot.seq, "cannot clear a sequence's KV cache");
            }
        }
    }

    fn publish_load(&self) {
        let running = self.slots.iter().flatten().count();
        let cells: i64 = self.slots.iter().flatten().map(|slot| i64::from(slot.pos)).sum();
        let capacity = self.slots.len() as f64 * f64::from(self.model.context_size);
        self.load.publish(running as u64, cells as f64 / capacity);
    }
}

/// llama.cpp's sampler chain in its usual order: penalties, then truncation, then temperature and the draw.
/// Temperature 0 is greedy (the penalties still apply).
fn sampler(sampling: &Sampling, n_vocab: i32) -> LlamaSampler {
    let mut chain = Vec::new();
    if sampling.frequency_penalty != 0.0 || sampling.presence_penalty != 0.0 || sampling.repetition_penalty != 1.0 {
        chain.push(LlamaSampler::penalties(
            n_vocab,
            PENALTY_LAST_N,
            sampling.repetition_penalty,
            sampling.frequency_penalty,
            sampling.presence_penalty,
        ));
    }
    if sampling.temperature <= 0.0 {
        chain.push(LlamaSampler::greedy());
        return LlamaSampler::chain_simple(chain);
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
    LlamaSampler::chain_simple(chain)
}
