//! Choosing the next token from logits: penalties, then top-k, temperature, top-p, min-p, then a seeded draw
//! (llama.cpp's default order). Temperature 0 is greedy.

/// Sampling settings. `Default` is greedy with no penalties.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// 0 (or less) picks the most likely token.
    pub temperature: f32,
    /// 0 disables.
    pub top_k: usize,
    /// 1.0 disables.
    pub top_p: f32,
    /// 0.0 disables.
    pub min_p: f32,
    /// Divides positive (multiplies negative) logits of tokens seen in the last `repeat_last_n`; 1.0 disables.
    pub repeat_penalty: f32,
    pub repeat_last_n: usize,
    /// OpenAI's additive penalties: subtract `presence` once and `frequency × count` for every token this sampler
    /// has generated (not the prompt's, as OpenAI counts them).
    pub presence_penalty: f32,
    pub frequency_penalty: f32,
    pub seed: u64,
}

/// The default temperatures, chosen here and only here. `SamplingParams::default()` is greedy (0): the library's
/// default is deterministic, for tests and references. A front-end whose user does not say samples, at the
/// temperature its users compare us with:
impl SamplingParams {
    /// The server's: 1.0, what the OpenAI API documents; a client that leaves `temperature` out expects it.
    pub const API_TEMPERATURE: f32 = 1.0;
    /// `hearth run`'s: 0.8, llama.cpp's `llama-cli` default, which a user running a model in a terminal expects.
    pub const CLI_TEMPERATURE: f32 = 0.8;
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            seed: 0,
        }
    }
}

/// The values a sampling setting may take: `lo..=hi`, or `lo` excluded when `lo_open`. NaN is in none.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Range {
    pub lo: f32,
    pub hi: f32,
    pub lo_open: bool,
}

impl Range {
    pub fn contains(&self, x: f32) -> bool {
        (if self.lo_open {
            x > self.lo
        } else {
            x >= self.lo
        }) && x <= self.hi
    }
}

impl std::fmt::Display for Range {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let open = if self.lo_open { '(' } else { '[' };
        write!(f, "{open}{}, {}]", self.lo, self.hi)
    }
}

/// The one table of valid sampling settings, shared by the CLI and the server (OpenAI's documented ranges for
/// its fields; a repetition penalty must be positive since it divides logits).
pub const RANGES: [(&str, Range); 6] = {
    const fn r(lo: f32, hi: f32, lo_open: bool) -> Range {
        Range { lo, hi, lo_open }
    }
    [
        ("temperature", r(0.0, 2.0, false)),
        ("top_p", r(0.0, 1.0, false)),
        ("min_p", r(0.0, 1.0, false)),
        ("presence_penalty", r(-2.0, 2.0, false)),
        ("frequency_penalty", r(-2.0, 2.0, false)),
        ("repeat_penalty", r(0.0, 10.0, true)),
    ]
};

/// A sampling setting outside its [`RANGES`] entry.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{name} is {value}; it must be in {range}")]
pub struct InvalidSetting {
    pub name: &'static str,
    pub value: f32,
    pub range: Range,
}

/// Checks setting `name` (a [`RANGES`] name) against its range.
pub fn check_setting(name: &str, value: f32) -> Result<(), InvalidSetting> {
    match RANGES.iter().find(|(n, _)| *n == name) {
        Some((name, range)) if !range.contains(value) => Err(InvalidSetting {
            name,
            value,
            range: *range,
        }),
        _ => Ok(()),
    }
}

impl SamplingParams {
    /// Every setting against [`RANGES`].
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        check_setting("temperature", self.temperature)?;
        check_setting("top_p", self.top_p)?;
        check_setting("min_p", self.min_p)?;
        check_setting("presence_penalty", self.presence_penalty)?;
        check_setting("frequency_penalty", self.frequency_penalty)?;
        check_setting("repeat_penalty", self.repeat_penalty)
    }
}

/// A seeded sampler for one sequence: the same seed and logits give the same tokens.
#[derive(Debug, Clone)]
pub struct Sampler {
    pub params: SamplingParams,
    rng: SplitMix64,
    /// How often each token was sampled so far (for the presence and frequency penalties).
    generated: std::collections::HashMap<u32, u32>,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Sampler {
        let rng = SplitMix64(params.seed);
        Sampler {
            params,
            rng,
            generated: Default::default(),
        }
    }

    /// Applies the penalties to `logits` in place: the repetition penalty over the last `repeat_last_n` of
    /// `history` (the sequence's tokens so far, prompt included, as llama.cpp does), the presence and frequency
    /// penalties over the tokens this sampler generated.
    pub fn apply_penalties(&self, logits: &mut [f32], history: &[u32]) {
        let p = &self.params;
        if p.repeat_penalty != 1.0 && p.repeat_last_n > 0 {
            let recent = &history[history.len().saturating_sub(p.repeat_last_n)..];
            let mut seen = std::collections::HashSet::new();
            for &id in recent {
                if let Some(l) = logits.get_mut(id as usize) {
                    if seen.insert(id) {
                        *l = if *l > 0.0 {
                            *l / p.repeat_penalty
                        } else {
                            *l * p.repeat_penalty
                        };
                    }
                }
            }
        }
        if p.presence_penalty != 0.0 || p.frequency_penalty != 0.0 {
            for (&id, &n) in &self.generated {
                if let Some(l) = logits.get_mut(id as usize) {
                    *l -= p.presence_penalty + p.frequency_penalty * n as f32;
                }
            }
        }
    }

    /// Picks the next token. `logits` (n_vocab) are modified (penalised).
    pub fn sample(&mut self, logits: &mut [f32], history: &[u32]) -> u32 {
        self.apply_penalties(logits, history);
        let id = self.choose(logits);
        *self.generated.entry(id).or_default() += 1;
        id
    }

    /// Top-k, temperature, top-p, min-p and the draw, on penalised logits.
    fn choose(&mut self, logits: &[f32]) -> u32 {
        let p = self.params.clone();
        if p.temperature <= 0.0 {
            return argmax(logits);
        }
        // Candidates sorted by logit, best first; tokens a grammar masked out (-inf) are never candidates.
        let mut cand: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .filter(|(_, &l)| l > f32::NEG_INFINITY)
            .map(|(i, &l)| (i as u32, l))
            .collect();
        if cand.is_empty() {
            return argmax(logits);
        }
        let k = if p.top_k > 0 {
            p.top_k.min(cand.len())
        } else {
            cand.len()
        };
        if k < cand.len() {
            cand.select_nth_unstable_by(k - 1, |a, b| b.1.total_cmp(&a.1));
            cand.truncate(k);
        }
        cand.sort_unstable_by(|a, b| b.1.total_cmp(&a.1));
        // Temperature, then probabilities.
        let max = cand[0].1 / p.temperature;
        let mut probs: Vec<f32> = cand
            .iter()
            .map(|c| (c.1 / p.temperature - max).exp())
            .collect();
        let sum: f32 = probs.iter().sum();
        probs.iter_mut().for_each(|x| *x /= sum);
        // Top-p: keep the smallest prefix whose mass reaches top_p.
        let mut keep = probs.len();
        if p.top_p < 1.0 {
            let mut acc = 0.0;
            for (i, &x) in probs.iter().enumerate() {
                acc += x;
                if acc >= p.top_p {
                    keep = i + 1;
                    break;
                }
            }
        }
        // Min-p: drop tokens less likely than min_p × the best.
        if p.min_p > 0.0 {
            let floor = probs[0] * p.min_p;
            keep = keep.min(probs.iter().take_while(|&&x| x >= floor).count().max(1));
        }
        let total: f32 = probs[..keep].iter().sum();
        let mut r = self.rng.next_f32() * total;
        for i in 0..keep {
            r -= probs[i];
            if r <= 0.0 {
                return cand[i].0;
            }
        }
        cand[keep - 1].0
    }
}

/// Index of the largest logit (the first of ties).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

/// Log-probabilities over the whole vocabulary: returns (log p of `chosen`, the `k` most likely as (id, log p)).
pub fn log_probs(logits: &[f32], chosen: u32, k: usize) -> (f32, Vec<(u32, f32)>) {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let lse = max
        + logits
            .iter()
            .map(|&l| ((l - max) as f64).exp())
            .sum::<f64>()
            .ln() as f32;
    let mut top: Vec<(u32, f32)> = Vec::with_capacity(k + 1);
    for (i, &l) in logits.iter().enumerate() {
        // Masked-out tokens (-inf) are not alternatives.
        if l == f32::NEG_INFINITY {
            continue;
        }
        if top.len() < k || top.last().is_some_and(|t| l > t.1) {
            let at = top.partition_point(|t| t.1 >= l);
            top.insert(at, (i as u32, l));
            top.truncate(k);
        }
    }
    let chosen_lp = logits
        .get(chosen as usize)
        .map_or(f32::NEG_INFINITY, |l| l - lse);
    (
        chosen_lp,
        top.into_iter().map(|(i, l)| (i, l - lse)).collect(),
    )
}

/// A small, fast, seedable generator (SplitMix64); sampling needs reproducibility, not cryptography.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(temperature: f32) -> SamplingParams {
        SamplingParams {
            temperature,
            seed: 42,
            ..Default::default()
        }
    }

    #[test]
    fn greedy_picks_argmax() {
        let mut s = Sampler::new(params(0.0));
        assert_eq!(s.sample(&mut [0.1, 3.0, 2.9, -1.0], &[]), 1);
    }

    #[test]
    fn same_seed_same_tokens_and_different_seeds_differ() {
        let logits: Vec<f32> = (0..100).map(|i| (i % 7) as f32 * 0.3).collect();
        let draw = |seed| {
            let mut s = Sampler::new(SamplingParams {
                seed,
                ..params(1.0)
            });
            (0..50)
                .map(|_| s.sample(&mut logits.clone(), &[]))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(1), draw(1));
        assert_ne!(draw(1), draw(2));
    }

    #[test]
    fn top_k_one_is_greedy() {
        let mut s = Sampler::new(SamplingParams {
            top_k: 1,
            ..params(5.0)
        });
        for _ in 0..20 {
            assert_eq!(s.sample(&mut [0.0, 1.0, 0.5], &[]), 1);
        }
    }

    #[test]
    fn top_p_and_min_p_cut_the_tail() {
        // p ≈ [0.88, 0.12, 1e-5]: top_p 0.5 and min_p 0.5 both leave only the best token.
        for p in [
            SamplingParams {
                top_p: 0.5,
                ..params(1.0)
            },
            SamplingParams {
                min_p: 0.5,
                ..params(1.0)
            },
        ] {
            let mut s = Sampler::new(p);
            for _ in 0..50 {
                assert_eq!(s.sample(&mut [4.0, 2.0, -7.0], &[]), 0);
            }
        }
    }

    #[test]
    fn repetition_penalty_changes_the_choice() {
        let mut s = Sampler::new(SamplingParams {
            repeat_penalty: 2.0,
            ..params(0.0)
        });
        assert_eq!(s.sample(&mut [3.0, 2.0], &[0]), 1, "3.0/2 < 2.0");
        // Presence and frequency count the tokens the sampler generated, not the prompt's (OpenAI's rule).
        let mut s = Sampler::new(SamplingParams {
            presence_penalty: 1.5,
            ..params(0.0)
        });
        assert_eq!(s.sample(&mut [3.0, 2.0], &[0, 0]), 0, "prompt tokens");
        assert_eq!(s.sample(&mut [3.0, 2.0], &[0, 0, 0]), 1, "3.0 - 1.5 < 2.0");
        let mut s = Sampler::new(SamplingParams {
            frequency_penalty: 0.4,
            ..params(0.0)
        });
        // Token 0 is chosen twice (3.0, then 3.0 - 0.4), then 3.0 - 0.8 < 2.5.
        let picks: Vec<u32> = (0..3).map(|_| s.sample(&mut [3.0, 2.5], &[])).collect();
        assert_eq!(picks, [0, 0, 1]);
    }

    #[test]
    fn masked_tokens_are_never_drawn() {
        // Allowed tokens with tiny probabilities beside masked ones: the rounding tail of the draw must not land on
        // a masked token.
        let mut logits = vec![f32::NEG_INFINITY; 64];
        logits[7] = -30.0;
        logits[9] = -31.0;
        for seed in 0..200 {
            let mut s = Sampler::new(SamplingParams {
                seed,
                top_k: 40,
                ..params(1.0)
            });
            let id = s.sample(&mut logits.clone(), &[]);
            assert!(id == 7 || id == 9, "seed {seed} drew masked token {id}");
        }
        let (lp, top) = log_probs(&logits, 7, 5);
        assert!(lp.is_finite());
        assert_eq!(top.iter().map(|t| t.0).collect::<Vec<_>>(), vec![7, 9]);
    }

    #[test]
    fn log_probs_are_normalised_and_sorted() {
        let logits = [1.0f32, 3.0, 2.0, 0.0];
        let (lp, top) = log_probs(&logits, 1, 3);
        let total: f32 = logits.iter().map(|l| (l - 3.0).exp()).sum();
        assert!((lp - (-(total.ln()))).abs() < 1e-5);
        assert_eq!(top.iter().map(|t| t.0).collect::<Vec<_>>(), vec![1, 2, 0]);
        assert!(top[0].1 > top[1].1 && top[1].1 > top[2].1);
    }
}
