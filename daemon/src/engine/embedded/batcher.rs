//! The decode loop: one thread owns the llama.cpp context and runs every admitted request in one batch per
//! step (continuous batching). Requests join between steps (their prompts fed in chunks, so answers already
//! running keep flowing) and leave the moment they finish or their client goes away, freeing their sequence
//! and its KV-cache slot for the next request in the queue.
use super::job::{Command, EmbedJob, Event, Finish, FinishReason, Job};
use super::llm::LoadedModel;
use super::text::{Piece, TextOut};
use super::Load;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::token::LlamaToken;
use std::collections::VecDeque;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;

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
    text: TextOut,
    /// Where this sequence's logits are in the current batch.
    logits_at: Option<i32>,
}

pub struct Batcher<'m> {
    model: &'m LoadedModel,
    ctx: LlamaContext<'m>,
    batch: LlamaBatch<'static>,
    batch_size: usize,
    schedule: Schedule,
    commands: Receiver<Command>,
    piece: Vec<u8>,
}

/// The decode loop's bookkeeping, kept apart from llama.cpp so tests can drive it without a model: which
/// request holds which sequence, which wait, and what each sequence puts into the next batch.
struct Schedule {
    slots: Vec<Option<Slot>>,
    waiting: VecDeque<Job>,
    load: Arc<Load>,
}

/// Where one step's tokens go: llama.cpp's batch (or, in tests, a plain list).
trait StepBatch {
    /// Adds `token` at position `pos` of sequence `seq`, asking for its logits or not; false when full.
    fn push(&mut self, token: LlamaToken, pos: i32, seq: i32, logits: bool) -> bool;
    fn n_tokens(&self) -> i32;
}

impl StepBatch for LlamaBatch<'_> {
    fn push(&mut self, token: LlamaToken, pos: i32, seq: i32, logits: bool) -> bool {
        self.add(token, pos, &[seq], logits).is_ok()
    }

    fn n_tokens(&self) -> i32 {
        LlamaBatch::n_tokens(self)
    }
}

impl Schedule {
    fn new(parallel: usize, load: Arc<Load>) -> Self {
        Self { slots: (0..parallel).map(|_| None).collect(), waiting: VecDeque::new(), load }
    }

    fn running(&self) -> bool {
        self.slots.iter().any(Option::is_some)
    }

    fn busy(&self) -> bool {
        !self.waiting.is_empty() || self.running()
    }

    /// Forgets waiting jobs whose client has gone, and returns the slots whose client has gone (for the
    /// caller to free with their KV cache).
    fn cancelled(&mut self) -> Vec<usize> {
        let before = self.waiting.len();
        self.waiting.retain(|job| !job.events.is_closed());
        self.load.left_queue(before - self.waiting.len());
        let gone = |slot: &Option<Slot>| slot.as_ref().is_some_and(|slot| slot.job.events.is_closed());
        (0..self.slots.len()).filter(|&index| gone(&self.slots[index])).collect()
    }

    /// Gives each free sequence to the oldest waiting job.
    fn admit(&mut self) {
        for index in 0..self.slots.len() {
            if self.slots[index].is_some() {
                continue;
            }
            let Some(job) = self.waiting.pop_front() else { break };
            self.load.left_queue(1);
            self.slots[index] = Some(Slot {
                seq: index as i32,
                text: TextOut::new(job.stop.clone()),
                job,
                fed: 0,
                pos: 0,
                next: None,
                generated: 0,
                logits_at: None,
            });
        }
    }

    /// Fills one decode step: first the last sampled token of every running answer (so answers keep flowing),
    /// then as much of the prompts still to feed as fits in `batch_size` (a long prompt goes in over several
    /// steps). A prompt's last token asks for logits; each slot notes where its logits will be.
    fn fill(&mut self, batch: &mut impl StepBatch, batch_size: usize) {
        for slot in self.slots.iter_mut().flatten() {
            slot.logits_at = None;
            if let Some(token) = slot.next.take() {
                if batch.push(token, slot.pos, slot.seq, true) {
                    slot.logits_at = Some(batch.n_tokens() - 1);
                    slot.pos += 1;
                }
            }
        }
        for slot in self.slots.iter_mut().flatten() {
            while slot.fed < slot.job.prompt.len() && (batch.n_tokens() as usize) < batch_size {
                let last = slot.fed + 1 == slot.job.prompt.len();
                if !batch.push(slot.job.prompt[slot.fed], slot.pos, slot.seq, last) {
                    break;
                }
                if last {
                    slot.logits_at = Some(batch.n_tokens() - 1);
                }
                slot.fed += 1;
                slot.pos += 1;
            }
        }
    }
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
            schedule: Schedule::new(parallel, load),
            commands,
            piece: Vec::with_capacity(32),
        }
    }

    /// Runs until told to stop (or the engine is dropped); requests still running then end with an error.
    pub fn run(mut self) {
        while self.receive() {
            for index in self.schedule.cancelled() {
                self.free(index);
            }
            self.schedule.admit();
            if self.schedule.running() {
                self.step();
            }
            self.publish_load();
        }
        for job in self.schedule.waiting.drain(..) {
            let _ = job.events.send(Event::Failed("the engine stopped before the request started".into()));
        }
        for slot in self.schedule.slots.iter_mut().filter_map(Option::take) {
            let _ = slot.job.events.send(Event::Failed("the engine stopped".into()));
        }
        self.schedule.load.waiting_reset();
        self.publish_load();
    }

    /// Takes new jobs: waits for one when there is nothing to do, else only takes what has arrived.
    fn receive(&mut self) -> bool {
        if !self.schedule.busy() {
            match self.commands.recv() {
                Ok(Command::Run(job)) => self.schedule.waiting.push_back(job),
                Ok(Command::Embed(job)) => self.refuse_embedding(job),
                Ok(Command::Stop) | Err(_) => return false,
            }
        }
        loop {
            match self.commands.try_recv() {
                Ok(Command::Run(job)) => self.schedule.waiting.push_back(job),
                Ok(Command::Embed(job)) => self.refuse_embedding(job),
                Ok(Command::Stop) | Err(TryRecvError::Disconnected) => return false,
                Err(TryRecvError::Empty) => return true,
            }
        }
    }

    /// `post` sends embeddings only to an embedding engine; this answers one that got here regardless.
    fn refuse_embedding(&self, job: EmbedJob) {
        self.schedule.load.left_queue(1);
        let _ = job.reply.send(Err("this engine generates text; it does not serve embeddings".into()));
    }

    /// One decode step: the next token of every running answer, then as much of waiting prompts as fits.
    fn step(&mut self) {
        self.batch.clear();
        self.schedule.fill(&mut self.batch, self.batch_size);
        if self.batch.n_tokens() == 0 {
            return;
        }
        if let Err(error) = self.ctx.decode(&mut self.batch) {
            // Every sequence in this batch is in an unknown state: end them, keep the others.
            tracing::error!(%error, "llama.cpp decode failed");
            for index in 0..self.schedule.slots.len() {
                if let Some(slot) = &self.schedule.slots[index] {
                    let _ = slot.job.events.send(Event::Failed(format!("the model failed to decode: {error}")));
                    self.free(index);
                }
            }
            return;
        }
        for index in 0..self.schedule.slots.len() {
            self.sample(index);
        }
    }

    /// Samples the slot's next token (when it had logits this step) and hands its text to the client.
    fn sample(&mut self, index: usize) {
        let Some(slot) = self.schedule.slots[index].as_mut() else { return };
        let Some(at) = slot.logits_at.take() else { return };
        let token = slot.job.sampler.sample(&self.ctx, at);
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
        if let Some(slot) = &self.schedule.slots[index] {
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
        if let Some(slot) = self.schedule.slots[index].take() {
            if let Err(error) = self.ctx.clear_kv_cache_seq(Some(slot.seq as u32), None, None) {
                tracing::warn!(%error, seq = slot.seq, "cannot clear a sequence's KV cache");
            }
        }
    }

    fn publish_load(&self) {
        let slots = &self.schedule.slots;
        let running = slots.iter().flatten().count();
        let cells: i64 = slots.iter().flatten().map(|slot| i64::from(slot.pos)).sum();
        let capacity = slots.len() as f64 * f64::from(self.model.context_size);
        self.schedule.load.publish(running as u64, cells as f64 / capacity);
    }
}

#[cfg(test)]
mod tests {
    //! The scheduling of continuous batching, step by step, without a model: `Schedule` fills a recording
    //! batch, and a "decoded" step stands in for llama.cpp's decode and sampling (each sequence that asked for
    //! logits gets its next token).
    use super::*;
    use std::sync::atomic::Ordering;
    use tokio::sync::mpsc::UnboundedReceiver;

    /// One batch entry: (token, position, sequence, logits wanted).
    type Entry = (i32, i32, i32, bool);

    struct Recorded {
        entries: Vec<Entry>,
        capacity: usize,
    }

    impl StepBatch for Recorded {
        fn push(&mut self, token: LlamaToken, pos: i32, seq: i32, logits: bool) -> bool {
            if self.entries.len() >= self.capacity {
                return false;
            }
            self.entries.push((token.0, pos, seq, logits));
            true
        }

        fn n_tokens(&self) -> i32 {
            self.entries.len() as i32
        }
    }

    /// A schedule of `parallel` sequences.
    fn schedule(parallel: usize) -> Schedule {
        Schedule::new(parallel, Arc::new(Load::default()))
    }

    /// Queues a job whose prompt is the tokens `first..first + len`, as `EmbeddedEngine::post` does (counted
    /// as waiting); the receiver is the client.
    fn queue(schedule: &mut Schedule, first: i32, len: i32) -> UnboundedReceiver<Event> {
        let (events, client) = tokio::sync::mpsc::unbounded_channel();
        let prompt = (first..first + len).map(LlamaToken).collect();
        schedule.load.waiting.fetch_add(1, Ordering::Relaxed);
        schedule.waiting.push_back(Job {
            prompt,
            sampler: crate::engine::embedded::sampler::RequestSampler::greedy(),
            max_tokens: 100,
            stop: Vec::new(),
            events,
        });
        client
    }

    fn admit(schedule: &mut Schedule) {
        schedule.admit();
    }

    /// The next step's batch, at most `capacity` tokens.
    fn fill(schedule: &mut Schedule, capacity: usize) -> Vec<Entry> {
        let mut batch = Recorded { entries: Vec::new(), capacity };
        schedule.fill(&mut batch, capacity);
        batch.entries
    }

    /// Stands in for decode and sampling: every sequence that asked for logits this step samples
    /// `900 + seq` as its next token.
    fn decoded(schedule: &mut Schedule) {
        for slot in schedule.slots.iter_mut().flatten() {
            if slot.logits_at.take().is_some() {
                slot.next = Some(LlamaToken(900 + slot.seq));
                slot.generated += 1;
            }
        }
    }

    fn waiting(schedule: &Schedule) -> u64 {
        schedule.load.waiting.load(Ordering::Relaxed)
    }

    #[test]
    fn a_sequence_joins_a_running_batch() {
        let mut s = schedule(2);
        let _a = queue(&mut s, 10, 3);
        admit(&mut s);
        assert_eq!(fill(&mut s, 8), [(10, 0, 0, false), (11, 1, 0, false), (12, 2, 0, true)], "A's prompt");
        decoded(&mut s);
        assert_eq!(fill(&mut s, 8), [(900, 3, 0, true)], "A decodes alone");
        decoded(&mut s);

        // B arrives while A is decoding: the next step carries A's next token and all of B's prompt.
        let _b = queue(&mut s, 20, 2);
        assert_eq!(waiting(&s), 1);
        admit(&mut s);
        assert_eq!(waiting(&s), 0, "admitted jobs leave the queue");
        assert_eq!(fill(&mut s, 8), [(900, 4, 0, true), (20, 0, 1, false), (21, 1, 1, true)], "B joins A's batch");
        decoded(&mut s);
        assert_eq!(fill(&mut s, 8), [(900, 5, 0, true), (901, 2, 1, true)], "one step decodes both");
        assert_eq!(s.slots.iter().flatten().map(|slot| slot.generated).collect::<Vec<_>>(), [3, 1]);
    }

    #[test]
    fn a_sequence_that_leaves_frees_its_slot_for_the_next_waiting_job() {
        let mut s = schedule(2);
        let a = queue(&mut s, 10, 1);
        let _b = queue(&mut s, 20, 1);
        let c = queue(&mut s, 30, 1);
        let _d = queue(&mut s, 40, 2);
        admit(&mut s);
        assert_eq!(fill(&mut s, 8), [(10, 0, 0, true), (20, 0, 1, true)], "A and B run; C and D wait");
        assert_eq!(waiting(&s), 2);
        decoded(&mut s);

        // A's client and C's (still waiting) go away.
        drop((a, c));
        assert_eq!(s.cancelled(), [0], "A's slot is to be freed");
        assert_eq!(waiting(&s), 1, "C left the queue without running");
        s.slots[0] = None; // what `Batcher::free` does, besides clearing the sequence's KV cache
        assert_eq!(fill(&mut s, 8), [(901, 1, 1, true)], "B decodes on alone");
        decoded(&mut s);

        // D takes A's sequence, from position 0, beside B.
        admit(&mut s);
        assert_eq!(waiting(&s), 0);
        assert_eq!(fill(&mut s, 8), [(901, 2, 1, true), (40, 0, 0, false), (41, 1, 0, true)]);
        assert!(s.cancelled().is_empty() && s.waiting.is_empty());
    }

    #[test]
    fn a_long_prompt_is_fed_in_steps_while_a_running_answer_keeps_flowing() {
        let mut s = schedule(2);
        let _a = queue(&mut s, 10, 1);
        admit(&mut s);
        fill(&mut s, 4);
        decoded(&mut s);

        // B's prompt of 7 tokens, batches of 4: A's token first in every step, B's prompt in 3 + 3 + 1.
        let _b = queue(&mut s, 100, 7);
        admit(&mut s);
        let mut fed = Vec::new();
        for step in 0..3 {
            let batch = fill(&mut s, 4);
            assert_eq!(batch[0], (900, 1 + step, 0, true), "step {step}: A's next token leads");
            assert!(batch.len() <= 4, "step {step}: {batch:?}");
            fed.extend(batch[1..].iter().copied());
            decoded(&mut s);
        }
        let expected: Vec<Entry> = (0..7).map(|i| (100 + i, i, 1, i == 6)).collect();
        assert_eq!(fed, expected, "B's prompt in order, logits only for its last token");
        assert_eq!(fill(&mut s, 4), [(900, 4, 0, true), (901, 7, 1, true)], "then both decode");
    }
}
