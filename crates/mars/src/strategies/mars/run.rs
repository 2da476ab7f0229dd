//! One run of MARS: the population, every candidate text, the steps, and the phases that
//! do not rewrite the population in bulk (exploration, verification, improvement, selection).

use super::MarsConfig;
use super::prompts;
use super::verdict::{Assessment, estimate_confidence, parse_verdict};
use crate::client::{ChatRequest, SamplingOptions};
use crate::error::Result;
use crate::strategies::calls::Calls;
use crate::strategies::feedback::{Verification, render_feedback};
use crate::strategies::request::{question, rewrite_last_user_message};
use crate::strategies::sampling::derive_seeds;
use crate::strategies::trace::{Candidate, Outcome, Score, Step, failed_call_usage};
use crate::strategies::wrapper::Algorithm;

/// One solution of the population.
#[derive(Debug, Clone)]
pub(super) struct Solution {
    /// Its text's index in the candidates.
    pub(super) candidate: usize,
    /// The agent that wrote it; `None` for an aggregate.
    pub(super) author: Option<usize>,
    /// The temperature it was sampled at.
    pub(super) temperature: f32,
    /// Its heuristic confidence.
    pub(super) confidence: f64,
    /// Its name in the trace: `agent 1`, `aggregate 2.0`, `enhanced agent 1`.
    pub(super) name: String,
    /// Its verdicts since its text last changed.
    pub(super) verdicts: Vec<Assessment>,
    /// The last verifier reply.
    pub(super) report: Option<String>,
    /// The code check of its text, once run.
    pub(super) check: Option<Verification>,
}

impl Solution {
    pub(super) fn trailing_correct(&self) -> usize {
        self.verdicts
            .iter()
            .rev()
            .take_while(|a| **a == Assessment::Correct)
            .count()
    }

    pub(super) fn score(&self) -> f64 {
        match self.verdicts.len() {
            0 => 0.0,
            n => {
                let correct = self
                    .verdicts
                    .iter()
                    .filter(|a| **a == Assessment::Correct)
                    .count();
                correct as f64 / n as f64
            }
        }
    }

    pub(super) fn check_passed(&self) -> Option<bool> {
        self.check.as_ref().map(|c| c.score >= 1.0)
    }
}

/// Temperature an aggregate is sampled at and counted as (optillm's default).
pub(super) const AGGREGATE_TEMPERATURE: f32 = 0.7;

/// One run's state: every candidate text, the population, and the steps.
pub(super) struct Run<'a> {
    pub(super) config: &'a MarsConfig,
    pub(super) calls: Calls<'a>,
    pub(super) request: &'a ChatRequest,
    pub(super) problem: String,
    pub(super) base_seed: u64,
    pub(super) pool: Vec<Candidate>,
    pub(super) population: Vec<Solution>,
    pub(super) steps: Vec<Step>,
    pub(super) seeds_used: u64,
    /// Every verdict of the run: CORRECT, INCORRECT, INCOMPLETE.
    pub(super) tally: [usize; 3],
}

impl Run<'_> {
    /// The state of a run of `config` for `request`, seeded from the request's seed or
    /// `base_seed`.
    pub(super) fn new<'a>(
        config: &'a MarsConfig,
        calls: Calls<'a>,
        request: &'a ChatRequest,
        base_seed: u64,
    ) -> Result<Run<'a>> {
        Ok(Run {
            problem: question(request, MarsConfig::NAME)?,
            base_seed: request.options.seed.unwrap_or(base_seed),
            config,
            calls,
            request,
            pool: Vec::new(),
            population: Vec::new(),
            steps: Vec::new(),
            seeds_used: 0,
            tally: [0; 3],
        })
    }

    pub(super) fn agent_temperature(&self, agent: usize) -> f32 {
        let temps = &self.config.agent_temperatures;
        temps[agent % temps.len()]
    }

    /// The request's options at `temperature` with the run's next seed.
    pub(super) fn options(&mut self, temperature: f32) -> SamplingOptions {
        self.seeds_used += 1;
        let seed = derive_seeds(self.base_seed ^ 0x4D41_5253, self.seeds_used as usize)
            .pop()
            .unwrap_or_default();
        SamplingOptions {
            temperature: Some(temperature),
            seed: Some(seed),
            ..self.request.options.clone()
        }
    }

    /// The conversation with its last user message replaced by `prompt`, at `options`.
    pub(super) fn rewritten(
        &self,
        prompt: String,
        options: SamplingOptions,
    ) -> Result<ChatRequest> {
        Ok(
            rewrite_last_user_message(self.request.clone(), MarsConfig::NAME, |_| prompt)?
                .with_options(options),
        )
    }

    /// A fresh request outside the conversation: `system` and `prompt`, at `options`.
    pub(super) fn fresh(system: &str, prompt: String, options: SamplingOptions) -> ChatRequest {
        ChatRequest::new(prompt)
            .with_system(system)
            .with_options(options)
    }

    pub(super) fn record(&mut self, stage: &str, text: String, note: impl Into<String>) {
        self.steps.push(Step::record(stage, text, note));
    }

    pub(super) fn text(&self, solution: usize) -> &str {
        &self.pool[self.population[solution].candidate].text
    }

    pub(super) fn is_verified(&self, i: usize) -> bool {
        let s = &self.population[i];
        s.trailing_correct() >= self.config.passes_required && s.check_passed() != Some(false)
    }

    pub(super) fn verified(&self) -> Vec<usize> {
        (0..self.population.len())
            .filter(|&i| self.is_verified(i))
            .collect()
    }

    pub(super) fn record_population(&mut self, when: &str) {
        let lines: Vec<String> = self
            .population
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let verdicts: Vec<&str> = s.verdicts.iter().map(|a| a.as_str()).collect();
                let check = match s.check_passed() {
                    Some(true) => ", code check passed",
                    Some(false) => ", code check failed",
                    None => "",
                };
                format!(
                    "{}: candidate {}, confidence {:.2}, verdicts [{}]{check}{}",
                    s.name,
                    s.candidate,
                    s.confidence,
                    verdicts.join(", "),
                    if self.is_verified(i) {
                        ", verified"
                    } else {
                        ""
                    }
                )
            })
            .collect();
        let verified = self.verified().len();
        self.record(
            &format!("population {when}"),
            lines.join("\n"),
            format!("{} solutions, {verified} verified", self.population.len()),
        );
    }

    /// Runs solution-writing calls; each reply becomes a candidate, and its index comes back
    /// (`None` for a call that failed under [`FailurePolicy::Drop`]).
    pub(super) async fn write(
        &mut self,
        jobs: Vec<(String, ChatRequest)>,
    ) -> Result<Vec<Option<usize>>> {
        let (names, requests): (Vec<String>, Vec<ChatRequest>) = jobs.into_iter().unzip();
        let options: Vec<SamplingOptions> = requests.iter().map(|r| r.options.clone()).collect();
        let results = self.calls.answers(requests).await;
        let mut written = Vec::with_capacity(results.len());
        for ((name, options), result) in names.into_iter().zip(options).zip(results) {
            let candidate = match result {
                Ok(completion) => Candidate::generated(options, completion),
                Err(source) => Candidate::failed(options, self.calls.failed(name, source)?),
            };
            let alive = candidate.dropped.is_none();
            self.pool.push(candidate);
            written.push(alive.then_some(self.pool.len() - 1));
        }
        Ok(written)
    }

    /// Runs intermediate calls; each becomes a step, and its reply comes back (`None` for a
    /// call that failed under [`FailurePolicy::Drop`], recorded as a failed step).
    pub(super) async fn ask(
        &mut self,
        jobs: Vec<(String, ChatRequest)>,
    ) -> Result<Vec<Option<String>>> {
        let (names, requests): (Vec<String>, Vec<ChatRequest>) = jobs.into_iter().unzip();
        let results = self.calls.answers(requests).await;
        let mut replies = Vec::with_capacity(results.len());
        for (name, result) in names.into_iter().zip(results) {
            match result {
                Ok(completion) => {
                    replies.push(Some(completion.text.clone()));
                    self.steps.push(Step::new(name, completion));
                }
                Err(source) => {
                    let failure = self.calls.failed(name.clone(), source)?;
                    self.steps.push(Step {
                        usage: failed_call_usage(),
                        ..Step::record(name, String::new(), failure.error)
                    });
                    replies.push(None);
                }
            }
        }
        Ok(replies)
    }

    /// Phase 1: every agent answers the request as sent, at its temperature.
    pub(super) async fn explore(&mut self) -> Result<()> {
        let seeds = derive_seeds(self.base_seed, self.config.agents);
        let samples: Vec<SamplingOptions> = (0..self.config.agents)
            .map(|agent| SamplingOptions {
                temperature: Some(self.agent_temperature(agent)),
                seed: Some(seeds[agent]),
                ..self.request.options.clone()
            })
            .collect();
        let candidates = self.calls.candidates(self.request.clone(), samples).await?;
        self.calls.ensure_survivor(&candidates)?;
        for (agent, candidate) in candidates.into_iter().enumerate() {
            let alive = candidate.dropped.is_none();
            let confidence = estimate_confidence(&candidate.text);
            self.pool.push(candidate);
            if alive {
                self.population.push(Solution {
                    candidate: self.pool.len() - 1,
                    author: Some(agent),
                    temperature: self.agent_temperature(agent),
                    confidence,
                    name: format!("agent {agent}"),
                    verdicts: Vec::new(),
                    report: None,
                    check: None,
                });
            }
        }
        Ok(())
    }

    /// The agent that verifies solution `i`: the one whose temperature differs most from its
    /// author's (an aggregate's: 0.7), its author excluded; ties to the lower index.
    pub(super) fn verifier_of(&self, i: usize) -> usize {
        let s = &self.population[i];
        let mut best: Option<(usize, f32)> = None;
        for agent in 0..self.config.agents {
            if Some(agent) == s.author && self.config.agents > 1 {
                continue;
            }
            let distance = (self.agent_temperature(agent) - s.temperature).abs();
            if best.is_none_or(|(_, d)| distance > d) {
                best = Some((agent, distance));
            }
        }
        best.map_or(0, |(agent, _)| agent)
    }

    /// Phase 3 (and each round's re-verification) for the solutions `which`: code checks of
    /// texts not checked yet, then verification attempts until each is verified, out of
    /// attempts, or can no longer get there.
    pub(super) async fn verify(&mut self, which: &[usize]) -> Result<()> {
        if let Some(verifier) = &self.config.verifier {
            let unchecked: Vec<usize> = which
                .iter()
                .copied()
                .filter(|&i| self.population[i].check.is_none())
                .collect();
            let texts = unchecked.iter().map(|&i| self.text(i).to_owned()).collect();
            let checks = self.calls.check_all(self.request, verifier, texts).await;
            for (i, check) in unchecked.into_iter().zip(checks) {
                let feedback = check
                    .feedback
                    .as_ref()
                    .map_or_else(String::new, render_feedback);
                let name = self.population[i].name.clone();
                self.record(
                    &format!("code check of {name}"),
                    feedback,
                    format!("score {}", check.score),
                );
                self.population[i].check = Some(check);
            }
        }
        let (needed, attempts) = (
            self.config.passes_required,
            self.config.max_verification_attempts,
        );
        for attempt in 1..=attempts {
            let left = attempts - attempt + 1;
            let pending: Vec<usize> = which
                .iter()
                .copied()
                .filter(|&i| {
                    let trailing = self.population[i].trailing_correct();
                    trailing < needed && trailing + left >= needed
                })
                .collect();
            if pending.is_empty() {
                break;
            }
            let mut jobs = Vec::new();
            for &i in &pending {
                let agent = self.verifier_of(i);
                let options = self.options(self.config.verifier_temperature);
                let prompt = prompts::verification(&self.problem, self.text(i));
                let request = Run::fresh(prompts::VERIFIER_SYSTEM, prompt, options);
                let name = &self.population[i].name;
                jobs.push((
                    format!("verify {name}, attempt {attempt}, by agent {agent}"),
                    request,
                ));
            }
            // `ask` adds one step per call, in order.
            let first_step = self.steps.len();
            let replies = self.ask(jobs).await?;
            for (k, (i, reply)) in pending.into_iter().zip(replies).enumerate() {
                let (assessment, note) = match &reply {
                    Some(reply) => {
                        let verdict = parse_verdict(reply);
                        let confidence = verdict.confidence.map_or_else(
                            || "no confidence stated".to_owned(),
                            |c| format!("confidence {c}"),
                        );
                        let stated = if verdict.parsed {
                            ""
                        } else {
                            " (no assessment stated)"
                        };
                        let assessment = verdict.assessment;
                        (
                            assessment,
                            format!("{}{stated}, {confidence}", assessment.as_str()),
                        )
                    }
                    None => (
                        Assessment::Incomplete,
                        "INCOMPLETE: the call failed".to_owned(),
                    ),
                };
                if let Some(step) = self.steps.get_mut(first_step + k) {
                    step.note = Some(match step.note.take() {
                        Some(error) => format!("{note}: {error}"),
                        None => note,
                    });
                }
                self.tally[assessment as usize] += 1;
                let solution = &mut self.population[i];
                solution.verdicts.push(assessment);
                if let Some(reply) = reply {
                    solution.report = Some(reply);
                }
            }
        }
        Ok(())
    }

    /// Phase 4: one improvement round.
    pub(super) async fn improve(&mut self, round: usize) -> Result<()> {
        let targets: Vec<usize> = (0..self.population.len())
            .filter(|&i| {
                let s = &self.population[i];
                !self.is_verified(i)
                    && (s.verdicts.last() != Some(&Assessment::Correct)
                        || s.check_passed() == Some(false))
            })
            .collect();
        let mut jobs = Vec::new();
        for &i in &targets {
            let s = &self.population[i];
            let report = s.report.clone().unwrap_or_else(|| "(no report)".into());
            let execution = s
                .check
                .as_ref()
                .filter(|c| c.score < 1.0)
                .and_then(|c| c.feedback.as_ref())
                .map(render_feedback);
            let temperature = s.temperature * self.config.improvement_factor;
            let name = format!("improve {} in round {round}", s.name);
            let prompt =
                prompts::improvement(&self.problem, self.text(i), &report, execution.as_deref());
            let options = self.options(temperature);
            jobs.push((name, self.rewritten(prompt, options)?));
        }
        let written = self.write(jobs).await?;
        for (i, candidate) in targets.into_iter().zip(written) {
            if let Some(candidate) = candidate {
                let s = &mut self.population[i];
                s.candidate = candidate;
                s.verdicts.clear();
                s.report = None;
                s.check = None;
            }
        }
        Ok(())
    }

    /// Phase 5: the answer.
    pub(super) async fn select(mut self) -> Result<Outcome> {
        for solution in &self.population {
            self.pool[solution.candidate].score = Score::Verifier {
                score: Some(solution.score()),
            };
        }
        let verified = self.verified();
        if let Some(&best) = verified.iter().reduce(|best, i| {
            if self.population[*i].confidence > self.population[*best].confidence {
                i
            } else {
                best
            }
        }) {
            let s = &self.population[best];
            let note = format!(
                "{} of {} solutions verified; the most confident: {}",
                verified.len(),
                self.population.len(),
                s.name
            );
            let winner = s.candidate;
            self.record("selection", String::new(), note);
            return self.calls.finish(self.pool, winner, self.steps, &[]);
        }
        // Groups of agreeing solutions, in order of first appearance.
        let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
        for i in 0..self.population.len() {
            let key = self.config.answer_key.key(self.text(i));
            if key.is_empty() {
                continue;
            }
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, members)) => members.push(i),
                None => groups.push((key, vec![i])),
            }
        }
        let largest = groups
            .iter()
            .map(|(_, m)| m)
            .reduce(|a, b| if b.len() > a.len() { b } else { a });
        if let Some(members) = largest.filter(|m| m.len() >= 2) {
            let best = *members
                .iter()
                .reduce(|a, b| {
                    if self.population[*b].confidence > self.population[*a].confidence {
                        b
                    } else {
                        a
                    }
                })
                .unwrap_or(&members[0]);
            let note = format!(
                "no solution verified; {} of {} agree: the most confident of them, {}",
                members.len(),
                self.population.len(),
                self.population[best].name
            );
            let winner = self.population[best].candidate;
            self.record("selection", String::new(), note);
            return self.calls.finish(self.pool, winner, self.steps, &[]);
        }
        let mut order = self.ranking();
        if self.config.verifier.is_some() {
            // Code that passes its check first, then the ranking.
            order.sort_by_key(|&i| {
                std::cmp::Reverse(self.population[i].check_passed() == Some(true))
            });
        }
        let shown: Vec<usize> = order.into_iter().take(self.config.synthesis_size).collect();
        let texts: Vec<(String, f64)> = shown
            .iter()
            .map(|&i| (self.text(i).to_owned(), self.population[i].confidence))
            .collect();
        let tally = self.tally();
        let prompt = prompts::synthesis(&self.problem, &texts, &tally);
        let options = self.options(self.config.synthesis_temperature);
        let request = self.rewritten(prompt, options.clone())?;
        let names: Vec<&str> = shown
            .iter()
            .map(|&i| self.population[i].name.as_str())
            .collect();
        let note = format!(
            "no solution verified and no two agree: a synthesis of {}",
            names.join(", ")
        );
        self.record("selection", String::new(), note);
        let completion = self.calls.final_call("synthesis", request).await?;
        self.pool.push(Candidate::generated(options, completion));
        let winner = self.pool.len() - 1;
        self.calls.finish(self.pool, winner, self.steps, &[])
    }

    /// The run's verdicts, for the synthesis prompt.
    pub(super) fn tally(&self) -> String {
        let [correct, incorrect, incomplete] = self.tally;
        format!("{correct} CORRECT, {incorrect} INCORRECT, {incomplete} INCOMPLETE verdicts")
    }
}
