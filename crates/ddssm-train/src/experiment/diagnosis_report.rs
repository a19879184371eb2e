//! A [`Diagnosis`] as a reader sees it: markdown tables of the width decomposition and the
//! likelihood split, and the `diagnosis.{json,md}` pair written into an experiment folder.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use ddssm_model::checkpoint::write_atomic;

use super::{Diagnosis, LikelihoodSplit};
use crate::{Error, Result};

impl Diagnosis {
    /// The width table (one row per model; the diffusion schedule's facts below it when a model
    /// has a diffusion transition) in markdown.
    pub fn width_table(&self) -> String {
        let mut s = String::from(
            "| model | predictive (exact) | encoder (exact) | transition (exact 0) | emission \
             (exact) | encoder, latent | transition, latent | mode gap, latent | latent scale | \
             centring (exact 1) | encoder centring (exact 1) |\n\
             |---|---|---|---|---|---|---|---|---|---|---|\n",
        );
        for (name, d) in &self.models {
            let slope = |c: Option<f64>, se: Option<f64>| match (c, se) {
                (Some(c), Some(se)) => format!("{c:.2} ± {se:.2}"),
                _ => "–".to_string(),
            };
            let centring = slope(d.centring, d.centring_se);
            let encoder_centring = slope(d.encoder_centring, d.encoder_centring_se);
            let _ = writeln!(
                s,
                "| {name} | {:.3} ({:.3}) | {:.3} ({:.3}) | {:.3} | {:.3} ({:.3}) | {:.4} | {:.4} \
                 | {:.3} | {:.3} | {centring} | {encoder_centring} |",
                d.predictive,
                d.exact_predictive,
                d.encoder,
                d.exact_encoder,
                d.transition,
                d.emission,
                d.exact_emission,
                d.encoder_latent,
                d.transition_latent,
                d.mode_separation_latent,
                d.latent_scale,
            );
        }
        let with_schedule = self
            .models
            .values()
            .find_map(|d| d.schedule.map(|f| (d, f)));
        if let Some((d, f)) = with_schedule {
            let _ = writeln!(
                s,
                "\nDiffusion schedule (latent units): K = {}, σ_1 = {:.4}, σ_K = {:.1}, ᾱ_K = \
                 {:.1e}; √β_1 = {:.4} (the bound's last kernel), last sampler noise √β_2 = {:.4} \
                 (β) or √β̃_2 = {:.4} (β̃); ELBO weight K·w̃_k from {:.3e} (k = 1) to {:.3e} \
                 (k = K). The transition's latent mode width is {:.2} σ_1; the latent's scale is \
                 {:.2} (EDM's preconditioning assumes σ_data = {}).",
                f.levels,
                f.sigma_1,
                f.sigma_k,
                f.alpha_bar_k,
                f.sqrt_beta_1,
                f.sqrt_beta_2,
                f.sqrt_beta_tilde_2,
                f.weight_1,
                f.weight_k,
                d.transition_latent / (f.sigma_1 * f.diffusion_scale),
                d.latent_scale,
                f.sigma_data,
            );
            if f.reverse_variance == ddssm_diffusion::ReverseVariance::BetaTilde {
                let _ = writeln!(
                    s,
                    "The bound's reverse kernels have variance β̃_k for k ≥ 2 \
                     (`transition.schedule.reverse_variance`, not the paper's β_k)."
                );
            }
            if f.diffusion_scale != 1.0 {
                let _ = writeln!(
                    s,
                    "The transition learns the latent's scale: the diffusion runs on z / s with \
                     s = {:.3}, so its levels above are in units of s (σ_1·s = {:.4} in latent \
                     units).",
                    f.diffusion_scale,
                    f.sigma_1 * f.diffusion_scale,
                );
            }
        }
        s
    }

    /// The likelihood table (one row per model with a split; empty when there is none) in
    /// markdown.
    pub fn likelihood_table(&self) -> String {
        if self.likelihood.is_empty() {
            return String::new();
        }
        let mut s = String::from(
            "| model | −ELBO | −IWAE-k | exact −log p(x) | slack (−ELBO − −IWAE) | \
             misfit (−IWAE − exact) |\n|---|---|---|---|---|---|\n",
        );
        for (name, l) in &self.likelihood {
            let LikelihoodSplit {
                negative_elbo: e,
                exact: x,
                slack: sl,
                misfit: m,
                ..
            } = l;
            let iwae: Vec<String> = l
                .negative_iwae
                .iter()
                .map(|(k, v)| format!("k = {k}: {:.2} ± {:.2}", v.mean, v.sem))
                .collect();
            let _ = writeln!(
                s,
                "| {name} | {:.2} ± {:.2} | {} | {:.2} ± {:.2} | {:.2} ± {:.2} | {:.2} ± {:.2} |",
                e.mean,
                e.sem,
                iwae.join("; "),
                x.mean,
                x.sem,
                sl.mean,
                sl.sem,
                m.mean,
                m.sem,
            );
        }
        s
    }

    /// The encoder's lookahead table (one row per model with a probe; empty when there is none)
    /// in markdown: the gain on `x_t` and the ratios of the gains on the later observations to
    /// it.
    pub fn lookahead_table(&self) -> String {
        let Some(first) = self.lookahead.values().next() else {
            return String::new();
        };
        let ahead = first.gains.len();
        let mut s = String::from("| model | gain on x_t (latent units per data unit) |");
        for k in 1..ahead {
            let _ = write!(s, " x_(t+{k}) / x_t |");
        }
        let _ = writeln!(s, "\n|---|---|{}", "---|".repeat(ahead.saturating_sub(1)));
        for (name, l) in &self.lookahead {
            let _ = write!(s, "| {name} | {:.4} |", l.gains[0]);
            for k in 1..l.gains.len() {
                let _ = write!(s, " {:.3} |", l.ratio(k));
            }
            s.push('\n');
        }
        s
    }

    /// The whole report in markdown: what was measured on `source` (the run folder's name), the
    /// width table and, when there is one, the likelihood table.
    pub fn markdown(&self, source: &str) -> String {
        let o = &self.options;
        let mut text = format!(
            "Width of the one-step predictive and its sources, data units unless \"latent\" \
             ({source}: {} test sequences × {} draws of each part; within-mode standard \
             deviations, split at φ·x_(T−1), root-mean-square over sequences; the centring is \
             the least-squares slope, across sequences, of the model predictive's midpoint \
             between its modes on the exact predictive's, both less φ·x_(T−1): 1 for a model \
             that knows the state, 0 for one that takes the last observation for it, as the \
             paper's two-Gaussian reference of jsd_paper does; the encoder centring is the same \
             slope for the state estimate alone, the encoder's mean μ_θ(z_(T−1)) on the exact \
             E[z_(T−1) | x_(1:T−1)], both less x_(T−1): 0 for an encoder that copies the last \
             observation)\n\n{}",
            o.sequences,
            o.draws,
            self.width_table()
        );
        if let Some(l) = self.lookahead.values().next() {
            let _ = write!(
                text,
                "\nHow far ahead the encoder reads: the mean derivative of E_q[z_t] along one \
                 encoder trajectory per sequence with respect to x_t and to each later \
                 observation (central differences of ±{} data units, steps {}–{}, the same \
                 sequences); the ratio to the gain on x_t is 0 for a filter and about 0.3 for \
                 the exact posterior of the paper's walk:\n\n{}",
                l.delta,
                l.steps.0 + 1,
                l.steps.1,
                self.lookahead_table()
            );
        }
        if !self.likelihood.is_empty() {
            let _ = write!(
                text,
                "\nNegative log-likelihood bounds on the first {} test sequences, nats per \
                 sequence ({} importance weights per sequence; IWAE-k is the mean over disjoint \
                 groups of k; slack and misfit are paired per sequence):\n\n{}",
                o.iwae_sequences,
                o.iwae_draws,
                self.likelihood_table()
            );
        }
        text
    }

    /// Writes `diagnosis.json` (this, with the folder under `"run"`) and `diagnosis.md`
    /// ([`Diagnosis::markdown`]) into the experiment folder `run`, each atomically; returns
    /// their paths.
    pub fn write(&self, run: &Path) -> Result<(PathBuf, PathBuf)> {
        let json_err = |e: serde_json::Error| Error::State(format!("diagnosis.json: {e}"));
        let mut value = serde_json::to_value(self).map_err(json_err)?;
        value["run"] = serde_json::json!(run);
        let json = serde_json::to_string_pretty(&value).map_err(json_err)?;
        let paths = (run.join("diagnosis.json"), run.join("diagnosis.md"));
        write_atomic(&paths.0, json.as_bytes())?;
        write_atomic(
            &paths.1,
            self.markdown(&run.display().to_string()).as_bytes(),
        )?;
        Ok(paths)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed diagnosis of the paper run (seed 0) reads back, its report carries the
    /// recorded numbers in the tables' places, and a write round-trips through `diagnosis.json`;
    /// without a likelihood split there is no likelihood table.
    #[test]
    fn the_paper_runs_diagnosis_reports_and_round_trips() {
        let run = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/results/bimodal/runs");
        let text = std::fs::read_to_string(run.join("paper-s0/diagnosis.json")).unwrap();
        let d: Diagnosis = serde_json::from_str(&text).unwrap();
        let md = d.markdown("paper-s0");
        for expected in [
            "(paper-s0: 128 test sequences × 128 draws",
            "| ddssm | 0.528 (0.200) | 0.232 (0.004) | 0.408 | 0.269 (0.200) | 0.4068 | 0.7129 \
             | 14.306 | 17.202 |",
            "K = 128, σ_1 = 0.0280",
            "mode width is 25.49 σ_1",
            "first 32 test sequences",
            "k = 256: 35.17 ± 0.38",
            "| 6.02 ± 3.52 | 18.19 ± 0.73 |",
        ] {
            assert!(md.contains(expected), "{expected:?} not in\n{md}");
        }

        let scratch = tempfile::tempdir().unwrap();
        let dir = scratch.path();
        let (json, written_md) = d.write(dir).unwrap();
        let back: Diagnosis =
            serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
        assert_eq!(back, d);
        let md_back = std::fs::read_to_string(written_md).unwrap();
        assert_eq!(md_back, d.markdown(&dir.display().to_string()));

        // The paper run's diagnosis predates the lookahead: no table.
        assert!(d.lookahead.is_empty() && d.lookahead_table().is_empty());
        let mut with_lookahead = d.clone();
        with_lookahead.lookahead.insert(
            "ddssm".into(),
            ddssm_eval::Lookahead {
                sequences: 128,
                delta: 0.2,
                steps: (8, 24),
                gains: vec![2.0, 0.5, 0.1, -0.02],
            },
        );
        let md = with_lookahead.markdown("x");
        for expected in [
            "| model | gain on x_t (latent units per data unit) | x_(t+1) / x_t | x_(t+2) / x_t \
             | x_(t+3) / x_t |\n|---|---|---|---|---|\n",
            "| ddssm | 2.0000 | 0.250 | 0.050 | -0.010 |",
            "±0.2 data units, steps 9–24",
        ] {
            assert!(md.contains(expected), "{expected:?} not in\n{md}");
        }

        let widths_only = Diagnosis {
            likelihood: Default::default(),
            ..d
        };
        assert!(widths_only.likelihood_table().is_empty());
        assert!(!widths_only.markdown("x").contains("IWAE"));
    }
}
