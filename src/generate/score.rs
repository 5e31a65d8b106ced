//! Teacher-forced scoring: how surprised the model is by each token of a
//! given text, the measure of what a cache setting (a window, sinks, a
//! lower-precision cache) does to the model's output.

use serde::Serialize;

use super::Generator;
use crate::cache;
use crate::error::{Error, Result};

/// What [`Generator::score`] returns.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Score {
    /// The text's token ids, as a prompt starting a sequence (BOS first where the model adds one).
    pub ids: Vec<u32>,
    /// `nll[i]`: the negative log-likelihood, in nats, of `ids[i + 1]` given
    /// `ids[..=i]`; `ids.len() - 1` values (the first token is context only).
    pub nll: Vec<f64>,
    /// `exp` of the mean of `nll`.
    pub perplexity: f64,
}

/// A scoring in progress ([`Generator::score_start`]): the text's ids and the
/// predictions made so far, `nll[i]` of `ids[i + 1]`.
pub(super) struct Scoring {
    ids: Vec<u32>,
    nll: Vec<f64>,
}

impl Scoring {
    /// The predictions left to make.
    fn left(&self) -> usize {
        self.ids.len() - 1 - self.nll.len()
    }
}

impl Generator {
    /// Scores `text` token by token, as the model would have generated it. The
    /// sequence starts afresh. With the cache on, every token runs through it
    /// one at a time, so the cache's settings (a window, ...) shape what each
    /// prediction sees; with the cache off, one causal pass over the whole
    /// text, each layer masked as its plan says. Afterwards the sequence holds
    /// the text (its last token pending, as a prompt given with
    /// `max_new_tokens` 0), so a `generate` would continue it. A text that
    /// cannot be scored changes nothing; a failed forward pass leaves the
    /// sequence empty.
    pub fn score(&mut self, text: &str) -> Result<Score> {
        self.score_start(text)?;
        self.score_step(usize::MAX)?;
        self.score_finish()
    }

    /// [`Self::score`] in parts, so that a caller can stop between them: this
    /// checks `text` and starts the sequence afresh, [`Self::score_step`] makes
    /// the predictions a few at a time, [`Self::score_finish`] returns the
    /// score. Returns how many predictions there are to make (the text's
    /// tokens less one). On error nothing changes.
    pub fn score_start(&mut self, text: &str) -> Result<usize> {
        self.tokenizer.check_text_fits(text, self.max_seq_len)?;
        let ids = self.tokenizer.encode_prompt(text, true)?;
        if ids.len() < 2 {
            return Err(Error::invalid(format!(
                "score needs a text of at least two tokens (the first is context only), got {}",
                ids.len()
            )));
        }
        self.model
            .check_room(0, ids.len(), cache::max_len(&self.plans))?;
        self.reset();
        let predictions = ids.len() - 1;
        self.scoring = Some(Scoring {
            nll: Vec::with_capacity(predictions),
            ids,
        });
        Ok(predictions)
    }

    /// Makes up to `count` (at least 1) more of the predictions
    /// [`Self::score_start`] began, each token through the cache; without the
    /// cache, the first call makes them all in one causal pass. Returns how many
    /// are left. Fails if no scoring is in progress or the sequence changed
    /// since it began; a failed forward pass ends the scoring and empties the
    /// sequence.
    pub fn score_step(&mut self, count: usize) -> Result<usize> {
        if count == 0 {
            return Err(Error::invalid("score step: count must be at least 1"));
        }
        let left = self.scoring_in_progress()?.left();
        if left == 0 {
            return Ok(0);
        }
        let Scoring { ids, mut nll } = self.scoring.take().expect("checked above");
        let scored = match &mut self.cache {
            Some(cache) => {
                let from = nll.len();
                (from..from + left.min(count)).try_for_each(|i| {
                    let logits = self.model.forward_last(&[ids[i]], cache)?;
                    nll.push(negative_log_likelihood(&logits, ids[i + 1]));
                    self.consumed.push(ids[i]);
                    Ok::<(), Error>(())
                })
            }
            None => {
                let context = &ids[..ids.len() - 1];
                let done = self
                    .model
                    .forward_all_uncached(context, &self.plans, |i, logits| {
                        nll.push(negative_log_likelihood(logits, ids[i + 1]))
                    });
                if done.is_ok() {
                    self.consumed = context.to_vec();
                }
                done
            }
        };
        if let Err(e) = scored {
            self.reset();
            return Err(e);
        }
        let scoring = Scoring { ids, nll };
        let left = scoring.left();
        self.scoring = Some(scoring);
        Ok(left)
    }

    /// The score, once [`Self::score_step`] has made every prediction; ends the
    /// scoring. The sequence then holds the text, as after [`Self::score`].
    pub fn score_finish(&mut self) -> Result<Score> {
        let left = self.scoring_in_progress()?.left();
        if left > 0 {
            return Err(Error::invalid(format!(
                "score finish: {left} predictions are left to make (score step first)"
            )));
        }
        let Scoring { ids, nll } = self.scoring.take().expect("checked above");
        self.pending = vec![*ids.last().expect("two tokens at least")];
        let perplexity = (nll.iter().sum::<f64>() / nll.len() as f64).exp();
        Ok(Score {
            ids,
            nll,
            perplexity,
        })
    }

    /// The scoring in progress, if the sequence is still the one it built: the
    /// text's tokens scored so far, nothing pending and no run.
    fn scoring_in_progress(&mut self) -> Result<&mut Scoring> {
        let Some(scoring) = &mut self.scoring else {
            return Err(Error::invalid(
                "no scoring in progress: call scoreStart first",
            ));
        };
        let intact = self.run.is_none()
            && self.pending.is_empty()
            && self.consumed[..] == scoring.ids[..scoring.nll.len()];
        if !intact {
            self.scoring = None;
            return Err(Error::invalid(
                "the sequence changed since scoreStart (a reset, a run or new settings): start the scoring again",
            ));
        }
        Ok(self.scoring.as_mut().expect("checked above"))
    }
}

/// `-log_softmax(logits)[target]`, computed in `f64`: the log of the sum of
/// exponentials, shifted by the largest logit so that none overflows, minus
/// the target's logit.
pub fn negative_log_likelihood(logits: &[f32], target: u32) -> f64 {
    let top = logits
        .iter()
        .fold(f64::NEG_INFINITY, |m, &x| m.max(x as f64));
    let sum: f64 = logits.iter().map(|&x| (x as f64 - top).exp()).sum();
    top + sum.ln() - logits[target as usize] as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nll_is_minus_the_log_of_the_softmax() {
        let logits = [1.0f32, 2.0, 3.0];
        let total: f64 = [1.0f64, 2.0, 3.0].iter().map(|x| x.exp()).sum();
        for (target, logit) in [(0, 1.0f64), (1, 2.0), (2, 3.0)] {
            let expected = -(logit.exp() / total).ln();
            assert!((negative_log_likelihood(&logits, target) - expected).abs() < 1e-12);
        }
        // Large logits do not overflow.
        let big = [1000.0f32, 1000.0];
        assert!((negative_log_likelihood(&big, 1) - 2f64.ln()).abs() < 1e-12);
    }
}
