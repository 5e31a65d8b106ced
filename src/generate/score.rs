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

impl Generator {
    /// Scores `text` token by token, as the model would have generated it. The
    /// sequence starts afresh. With the cache on, every token runs through it
    /// one at a time, so the cache's settings (a window, ...) shape what each
    /// prediction sees; with the cache off, one causal pass over the whole
    /// text, each layer masked as its plan says. Afterwards the sequence holds
    /// the text (its last token pending, as a prompt given with
    /// `max_new_tokens` 0), so a `generate` would continue it. On error
    /// nothing changes.
    pub fn score(&mut self, text: &str) -> Result<Score> {
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
        let (context, last) = ids.split_at(ids.len() - 1);
        let mut nll = Vec::with_capacity(context.len());
        let scored = match &mut self.cache {
            Some(cache) => context.iter().zip(&ids[1..]).try_for_each(|(&id, &next)| {
                let logits = self.model.forward_last(&[id], cache)?;
                nll.push(negative_log_likelihood(&logits, next));
                Ok::<(), Error>(())
            }),
            None => self
                .model
                .forward_all_uncached(context, &self.plans, |i, logits| {
                    nll.push(negative_log_likelihood(logits, ids[i + 1]))
                }),
        };
        if let Err(e) = scored {
            self.reset();
            return Err(e);
        }
        self.consumed = context.to_vec();
        self.pending = last.to_vec();
        let perplexity = (nll.iter().sum::<f64>() / nll.len() as f64).exp();
        Ok(Score {
            ids,
            nll,
            perplexity,
        })
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
