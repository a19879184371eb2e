//! Which columns of a file play which role.

use serde::{Deserialize, Serialize};

/// The roles of a file's columns. Names are matched exactly against the header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Columns {
    /// The time column: numbers, or text that sorts in time order (ISO dates such as
    /// `2020-01-31`).
    pub time: String,
    /// The observed variables (at least one). Empty, `NA` or `NaN` cells are missing values.
    pub targets: Vec<String>,
    /// Dynamic covariates, known over the history and the forecast horizon.
    #[serde(default)]
    pub covariates: Vec<String>,
    /// Static covariates: one value per series (the same on each of its rows).
    #[serde(default)]
    pub statics: Vec<String>,
    /// The series id for files holding many series in long format (`None`: one series).
    #[serde(default)]
    pub id: Option<String>,
}

impl Columns {
    /// A single series with targets only.
    pub fn new(time: &str, targets: &[&str]) -> Self {
        Self {
            time: time.into(),
            targets: targets.iter().map(|s| s.to_string()).collect(),
            covariates: Vec::new(),
            statics: Vec::new(),
            id: None,
        }
    }

    /// Every named column with its role, in the order roles are listed above.
    pub(crate) fn roles(&self) -> Vec<(&str, &'static str)> {
        let mut out = vec![(self.time.as_str(), "time")];
        out.extend(self.targets.iter().map(|c| (c.as_str(), "target")));
        out.extend(self.covariates.iter().map(|c| (c.as_str(), "covariate")));
        out.extend(self.statics.iter().map(|c| (c.as_str(), "static")));
        if let Some(id) = &self.id {
            out.push((id.as_str(), "id"));
        }
        out
    }
}
