//! The report of a finished [`Results`] (`report.md` of an experiment folder).

use super::Results;

impl Results {
    /// The run's `report.md`: warnings first, then every model's scores with the evaluation's
    /// settings, what each score means, the noise floors and the exact likelihood, and the
    /// figures' links.
    pub fn markdown(&self) -> String {
        let r = self;
        let mut s = String::new();
        s.push_str("# Bimodal random walk (Sec. 4): DDSSM vs DKF vs LOCF\n\n");
        if !r.warnings.is_empty() {
            s.push_str("**Warnings** — read these before any number below:\n\n");
            for w in &r.warnings {
                s.push_str(&format!("- {w}\n"));
            }
            s.push('\n');
        }
        s.push_str(&format!(
            "{} test sequences × {} one-step samples; seed {}; commit {}; threads {}; wall {:.0} s.\n\n",
            r.config.evaluation.test_sequences,
            r.config.evaluation.samples,
            r.config.seed,
            r.git_commit,
            r.threads,
            r.wall_seconds
        ));
        s.push_str(
            "| model | jsd_exact ↓ | jsd_paper ↓ | CRPS ↓ | −ELBO ↓ (nats/seq) | between modes | \
             outside histogram | train s |\n",
        );
        s.push_str("|---|---|---|---|---|---|---|---|\n");
        for name in ["ddssm", "dkf", "locf"] {
            if let Some(m) = r.models.get(name) {
                s.push_str(&format!(
                    "| {name} | {} | {} | {} | {} | {:.1} % | {:.2} % | {:.0} |\n",
                    m.jsd_exact,
                    m.jsd_paper,
                    m.crps,
                    m.negative_elbo.map_or("–".into(), |e| e.to_string()),
                    100.0 * m.between_modes,
                    100.0 * m.out_of_range,
                    m.train_seconds
                ));
            }
        }
        let h = &r.config.evaluation.histogram;
        s.push_str(&format!(
            "\nLower is better for every score (↓); each is mean ± standard error over the test \
             sequences. `jsd_exact`: Jensen–Shannon divergence (nats, at most ln 2) between the \
             histogram of the centred samples x̂_T − φ·x_(T−1) and the exact predictive, {} bins on \
             [{}, {}] plus two open tail bins. `jsd_paper`: the same against the paper's \
             two-Gaussian reference with the paper's convention (samples outside [{}, {}] dropped; \
             see \"outside histogram\"). \"between modes\": share of centred samples with \
             |x̂_T − φ·x_(T−1)| < c/2 = {}, where the exact predictive has almost no mass: a model \
             that smears the two modes into one bump puts many samples there.\n",
            h.bins,
            h.lo,
            h.hi,
            h.lo,
            h.hi,
            r.config.data.sim.step / 2.0
        ));
        if let Some(m) = r.models.get("ddssm") {
            s.push_str(&format!(
                "\nNoise floors at this sample count: jsd_exact {}, jsd_paper {}. Exact −log p(x) \
                 per test sequence (Gaussian-sum filter, pruned mass ≤ {:.1e}): {}.\n",
                m.floor_exact,
                m.floor_paper,
                r.exact_filter_pruned_mass,
                r.exact_negative_log_likelihood
            ));
        }
        s.push_str(
            "\n![Fig. 1a: centred one-step predictive](fig1a.png)\n\n\
             ![Fig. 1b: one-step JSD](fig1b.png)\n\n\
             ![Fig. 2: data, reconstructions and forecasts](fig2.png)\n",
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A committed run of record's `report.md` is exactly what its `results.json` renders to.
    #[test]
    fn a_committed_report_is_its_results_rendered() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../docs/results/bimodal/runs/sharp-steps9000-s0");
        let results: Results =
            serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).unwrap())
                .unwrap();
        let report = std::fs::read_to_string(dir.join("report.md")).unwrap();
        assert_eq!(results.markdown(), report);
    }
}
