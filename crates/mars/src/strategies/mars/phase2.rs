//! Phase 2 of MARS: RSA-style aggregation loops and the strategy network, which add solutions
//! to the population in bulk.

use super::Aggregation;
use super::prompts;
use super::run::{AGGREGATE_TEMPERATURE, Run, Solution};
use super::verdict::ExtractedStrategy;
use crate::client::SamplingOptions;
use crate::error::Result;
use crate::strategies::sampling::derive_seeds;

impl Run<'_> {
    /// The population's indices, best first: verification score, then confidence (stable).
    pub(super) fn ranking(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.population.len()).collect();
        order.sort_by(|&a, &b| {
            let (a, b) = (&self.population[a], &self.population[b]);
            (b.score(), b.confidence)
                .partial_cmp(&(a.score(), a.confidence))
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        order
    }

    /// The groups of one aggregation loop (see the [module docs](self)).
    fn groups(&self, aggregation: &Aggregation, shuffle_seed: u64) -> Vec<Vec<usize>> {
        let k = aggregation.group_size;
        let ranking = self.ranking();
        if self.population.len() < k {
            return vec![ranking];
        }
        let count = (aggregation.population / k).clamp(1, 3);
        let mut groups = vec![ranking.iter().copied().take(k).collect::<Vec<_>>()];
        if count > 1 {
            let mut per_agent: Vec<usize> = Vec::new();
            for &i in &ranking {
                let author = self.population[i].author;
                if author.is_some()
                    && per_agent.len() < k
                    && !per_agent
                        .iter()
                        .any(|&j| self.population[j].author == author)
                {
                    per_agent.push(i);
                }
            }
            for &i in &ranking {
                if per_agent.len() < k && !per_agent.contains(&i) {
                    per_agent.push(i);
                }
            }
            groups.push(per_agent);
        }
        if count > 2 {
            // A seeded Fisher-Yates shuffle; its first k.
            let mut order: Vec<usize> = (0..self.population.len()).collect();
            let draws = derive_seeds(shuffle_seed, order.len());
            for i in (1..order.len()).rev() {
                order.swap(i, (draws[i] % (i as u64 + 1)) as usize);
            }
            groups.push(order.into_iter().take(k).collect());
        }
        groups
    }

    /// Phase 2a: aggregation loops.
    pub(super) async fn aggregate(&mut self, aggregation: &Aggregation) -> Result<()> {
        for pass in 0..aggregation.loops {
            let groups = self.groups(aggregation, self.base_seed.wrapping_add(pass as u64));
            let mut jobs = Vec::new();
            for (g, group) in groups.iter().enumerate() {
                let shown: Vec<(String, f64)> = group
                    .iter()
                    .map(|&i| (self.text(i).to_owned(), self.population[i].confidence))
                    .collect();
                let options = self.options(aggregation.temperature);
                let request =
                    self.rewritten(prompts::aggregation(&self.problem, &shown), options)?;
                jobs.push((format!("aggregate {pass}.{g}"), request));
            }
            let names: Vec<String> = jobs.iter().map(|(n, _)| n.clone()).collect();
            for (name, written) in names.into_iter().zip(self.write(jobs).await?) {
                if let Some(candidate) = written {
                    self.population.push(Solution {
                        candidate,
                        author: None,
                        temperature: AGGREGATE_TEMPERATURE,
                        confidence: 0.8,
                        name,
                        verdicts: Vec::new(),
                        report: None,
                        check: None,
                    });
                }
            }
            if self.population.len() > aggregation.population {
                let keep: Vec<usize> = self
                    .ranking()
                    .into_iter()
                    .take(aggregation.population)
                    .collect();
                let mut kept: Vec<usize> = keep;
                kept.sort_unstable();
                self.population = kept.iter().map(|&i| self.population[i].clone()).collect();
            }
            let groups: Vec<String> = groups.iter().map(|g| format!("{g:?}")).collect();
            self.record_population(&format!(
                "after aggregation loop {pass} (groups {})",
                groups.join(", ")
            ));
        }
        Ok(())
    }

    /// Phase 2b: the strategy network.
    pub(super) async fn strategy_network(&mut self) -> Result<()> {
        let agents: Vec<usize> = (0..self.population.len())
            .filter(|&i| self.population[i].author.is_some())
            .collect();
        if agents.is_empty() {
            self.record(
                "strategy network",
                String::new(),
                "no agent's solution is left in the population: nothing to extract",
            );
            return Ok(());
        }
        let mut jobs = Vec::new();
        for &i in &agents {
            let options = self.options(self.config.extraction_temperature);
            let options = SamplingOptions {
                max_tokens: options.max_tokens.map(|m| (m / 4).max(1)),
                ..options
            };
            let prompt = prompts::extraction(&self.problem, self.text(i));
            let request = Run::fresh(prompts::EXTRACTION_SYSTEM, prompt, options);
            jobs.push((format!("strategy of {}", self.population[i].name), request));
        }
        let replies = self.ask(jobs).await?;
        // (author, confidence, strategy) of every solution whose reply states one.
        let strategies: Vec<(Option<usize>, f64, ExtractedStrategy)> = agents
            .iter()
            .zip(replies)
            .filter_map(|(&i, reply)| {
                let strategy = ExtractedStrategy::parse(&reply?)?;
                let s = &self.population[i];
                Some((s.author, s.confidence, strategy))
            })
            .collect();
        if strategies.is_empty() {
            self.record(
                "strategy network",
                String::new(),
                "no strategy could be read: no enhancement",
            );
            return Ok(());
        }
        let mut effective: Vec<&(Option<usize>, f64, ExtractedStrategy)> =
            strategies.iter().filter(|s| s.1 >= 0.6).collect();
        if effective.is_empty() {
            let mut by_confidence: Vec<_> = strategies.iter().collect();
            by_confidence
                .sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap_or(std::cmp::Ordering::Equal));
            effective = by_confidence.into_iter().take(2).collect();
        }
        let mut jobs = Vec::new();
        let mut sources = Vec::new();
        for &i in &agents {
            let author = self.population[i].author;
            let peers: Vec<&ExtractedStrategy> = effective
                .iter()
                .filter(|s| s.0 != author)
                .take(2)
                .map(|s| &s.2)
                .collect();
            if peers.is_empty() {
                continue;
            }
            let temperature = self.population[i].temperature * self.config.enhancement_factor;
            let options = self.options(temperature);
            let prompt = prompts::enhancement(&self.problem, self.text(i), &peers);
            jobs.push((
                format!("enhanced {}", self.population[i].name),
                self.rewritten(prompt, options)?,
            ));
            sources.push(i);
        }
        let names: Vec<String> = jobs.iter().map(|(n, _)| n.clone()).collect();
        let written = self.write(jobs).await?;
        for ((name, source), candidate) in names.into_iter().zip(sources).zip(written) {
            if let Some(candidate) = candidate {
                let s = &self.population[source];
                let solution = Solution {
                    candidate,
                    author: s.author,
                    temperature: s.temperature,
                    confidence: (s.confidence + 0.1).min(1.0),
                    name,
                    verdicts: Vec::new(),
                    report: None,
                    check: None,
                };
                self.population.push(solution);
            }
        }
        self.record_population("after the strategy network");
        Ok(())
    }
}
