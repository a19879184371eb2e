//! Command-line handling shared by the timing examples: `<example> [ddssm|dkf] [n1] [n2] …`.

use ddssm_model::ModelConfig;

/// The process arguments, the allocator tuned for timing (as the experiments run).
pub struct Args(Vec<String>);

impl Args {
    /// Reads the arguments and tunes the allocator.
    pub fn read() -> Self {
        ddssm_tensor_ops::tune_allocator();
        if let Err(err) = ddssm_tensor_ops::configure_threads(None) {
            panic!("{err}");
        }
        Self(std::env::args().collect())
    }

    /// The paper model named by the first argument (`dkf`, otherwise the DDSSM).
    pub fn config(&self) -> ModelConfig {
        match self.0.get(1).map(String::as_str) {
            Some("dkf") => ModelConfig::paper_dkf(),
            _ => ModelConfig::paper_ddssm(),
        }
    }

    /// Argument `i` as a count, or `default`.
    pub fn count(&self, i: usize, default: usize) -> usize {
        self.0
            .get(i)
            .and_then(|s| s.parse().ok())
            .unwrap_or(default)
    }
}
