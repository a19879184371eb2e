//! Reading series from a CSV file (the `csv` crate), with every error pointing at its line and
//! column.

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{Columns, Error, Result, SeriesName};

/// A time stamp: a number, or text that sorts in time order (an ISO date).
#[derive(Debug, Clone, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Time {
    /// A numeric time (a year, a step index, seconds, …).
    Number(f64),
    /// A textual time stamp, ordered as text.
    Text(String),
}

impl std::fmt::Display for Time {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Time::Number(v) => write!(f, "{v}"),
            Time::Text(s) => f.write_str(s),
        }
    }
}

/// One series: `T` steps of `D` targets, `V` covariates and `P` statics, row-major.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Series {
    /// Its id (`""` when the file holds one series).
    pub id: String,
    /// The time of each step, strictly increasing.
    pub times: Vec<Time>,
    /// `[T, D]` target values; a missing entry holds 0 (finite, and masked out).
    pub targets: Vec<f64>,
    /// `[T, D]`: whether each target entry was observed.
    pub observed: Vec<bool>,
    /// `[T, V]` covariate values; an absent entry holds 0.
    pub covariates: Vec<f64>,
    /// `[T, V]`: whether each covariate entry was given.
    pub covariates_present: Vec<bool>,
    /// `[P]` static covariates.
    pub statics: Vec<f64>,
    /// The file line (1-based, the header is line 1) of each step, for error messages.
    pub lines: Vec<u64>,
}

impl Series {
    /// Number of steps `T`.
    pub fn len(&self) -> usize {
        self.times.len()
    }

    /// Whether the series has no steps.
    pub fn is_empty(&self) -> bool {
        self.times.is_empty()
    }

    /// The number of steps up to and including the last one with an observed target (rows after
    /// it carry only covariates: the future a forecast is asked for).
    pub fn observed_len(&self, d: usize) -> usize {
        (0..self.len())
            .rev()
            .find(|&t| self.observed[t * d..(t + 1) * d].iter().any(|&o| o))
            .map_or(0, |t| t + 1)
    }

    /// The `d` targets of step `t`, `None` where missing (as the file had them).
    pub fn targets_at(&self, t: usize, d: usize) -> Vec<Option<f64>> {
        (t * d..(t + 1) * d)
            .map(|i| self.observed[i].then_some(self.targets[i]))
            .collect()
    }
}

/// Every series of a file, with the roles of its columns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Panel {
    /// The file it was read from (for messages).
    pub path: String,
    /// The column roles.
    pub columns: Columns,
    /// The series, in order of first appearance.
    pub series: Vec<Series>,
}

impl Panel {
    /// Targets per step `D`.
    pub fn target_dim(&self) -> usize {
        self.columns.targets.len()
    }

    /// Dynamic covariates per step `V`.
    pub fn covariate_dim(&self) -> usize {
        self.columns.covariates.len()
    }

    /// Static covariates per series `P`.
    pub fn static_dim(&self) -> usize {
        self.columns.statics.len()
    }
}

/// A target cell: `Some(value)`, or `None` for a missing value (empty, `NA`, `NaN`, `nan`).
fn parse_value(cell: &str) -> std::result::Result<Option<f64>, String> {
    let cell = cell.trim();
    if matches!(cell, "" | "NA" | "NaN" | "nan") {
        return Ok(None);
    }
    match cell.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(Some(v)),
        Ok(v) => Err(format!("{v} is not a finite number")),
        Err(_) => Err(format!(
            "{cell:?} is not a number (missing values are written as an empty cell, NA or NaN)"
        )),
    }
}

/// Reads the series of `path` as `columns` describes them.
///
/// # Errors
/// An [`Error`] naming the file, line and column: a column missing from the header or named
/// twice, a ragged row, a non-numeric cell, a static value that changes within a series, times
/// that repeat or go backwards within a series or mix numbers and text, a target column with no
/// observed value, an empty file.
pub fn read_csv(path: &Path, columns: &Columns) -> Result<Panel> {
    let name = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|source| Error::Io {
        path: name.clone(),
        source,
    })?;
    read_from(file, &name, columns)
}

/// [`read_csv`] from any reader; `name` stands for the file in messages.
pub(crate) fn read_from<R: std::io::Read>(
    input: R,
    name: &str,
    columns: &Columns,
) -> Result<Panel> {
    let csv_error = |e: csv::Error| Error::Csv {
        path: name.to_string(),
        line: e.position().map_or(0, |p| p.line()),
        message: match e.kind() {
            csv::ErrorKind::UnequalLengths {
                expected_len, len, ..
            } => format!("{len} fields, the header has {expected_len}"),
            _ => e.to_string(),
        },
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::Headers)
        .from_reader(input);
    let header: Vec<String> = reader
        .headers()
        .map_err(csv_error)?
        .iter()
        .map(str::to_string)
        .collect();
    let column_error = |message: String| Error::Column {
        path: name.to_string(),
        message,
        available: header.join(", "),
    };
    if columns.targets.is_empty() {
        return Err(column_error("no target column given".into()));
    }
    let mut seen: HashMap<&str, &str> = HashMap::new();
    for (col, role) in columns.roles() {
        if let Some(other) = seen.insert(col, role) {
            return Err(column_error(format!(
                "column `{col}` is named as {other} and as {role}"
            )));
        }
    }
    let index = |col: &str, role: &str| -> Result<usize> {
        header
            .iter()
            .position(|h| h == col)
            .ok_or_else(|| column_error(format!("no {role} column `{col}`")))
    };
    let time_col = index(&columns.time, "time")?;
    let target_cols = columns
        .targets
        .iter()
        .map(|c| index(c, "target"))
        .collect::<Result<Vec<_>>>()?;
    let covariate_cols = columns
        .covariates
        .iter()
        .map(|c| index(c, "covariate"))
        .collect::<Result<Vec<_>>>()?;
    let static_cols = columns
        .statics
        .iter()
        .map(|c| index(c, "static"))
        .collect::<Result<Vec<_>>>()?;
    let id_col = columns.id.as_deref().map(|c| index(c, "id")).transpose()?;

    let mut series: Vec<Series> = Vec::new();
    let mut by_id: HashMap<String, usize> = HashMap::new();
    let mut numeric_time: Option<bool> = None;
    for record in reader.records() {
        let record = record.map_err(csv_error)?;
        let line = record.position().map_or(0, |p| p.line());
        let cell_error = |col: usize, message: String| Error::Cell {
            path: name.to_string(),
            line,
            column: header[col].clone(),
            message,
        };
        let cell = |col: usize| record.get(col).unwrap_or("");
        let id = id_col.map_or(String::new(), |c| cell(c).trim().to_string());
        let raw_time = cell(time_col).trim();
        if raw_time.is_empty() {
            return Err(cell_error(time_col, "the time is empty".into()));
        }
        let time = match raw_time.parse::<f64>() {
            Ok(v) if v.is_finite() => Time::Number(v),
            Ok(v) => return Err(cell_error(time_col, format!("{v} is not a finite time"))),
            Err(_) => Time::Text(raw_time.to_string()),
        };
        let is_number = matches!(time, Time::Number(_));
        if *numeric_time.get_or_insert(is_number) != is_number {
            return Err(cell_error(
                time_col,
                format!("{raw_time:?}: the file mixes numeric and text times"),
            ));
        }
        let mut statics = Vec::with_capacity(static_cols.len());
        for &c in &static_cols {
            match parse_value(cell(c)) {
                Ok(Some(v)) => statics.push(v),
                Ok(None) => return Err(cell_error(c, "a static covariate is missing".into())),
                Err(e) => return Err(cell_error(c, e)),
            }
        }
        let k = *by_id.entry(id.clone()).or_insert_with(|| {
            series.push(Series {
                id: id.clone(),
                times: Vec::new(),
                targets: Vec::new(),
                observed: Vec::new(),
                covariates: Vec::new(),
                covariates_present: Vec::new(),
                statics: statics.clone(),
                lines: Vec::new(),
            });
            series.len() - 1
        });
        let s = &mut series[k];
        if let Some((i, (&c, _))) = static_cols
            .iter()
            .zip(&statics)
            .enumerate()
            .find(|(i, (_, v))| **v != s.statics[*i])
        {
            return Err(cell_error(
                c,
                format!(
                    "the static value {} differs from {} on line {} of the same series",
                    statics[i], s.statics[i], s.lines[0]
                ),
            ));
        }
        if let Some(last) = s.times.last() {
            if time <= *last {
                let what = if time == *last {
                    "repeats"
                } else {
                    "goes back to"
                };
                return Err(cell_error(
                    time_col,
                    format!(
                        "time {what} {time} after {last} (line {}) in {}: times must increase \
                         within a series",
                        s.lines[s.lines.len() - 1],
                        SeriesName(&id)
                    ),
                ));
            }
        }
        for &c in &target_cols {
            match parse_value(cell(c)) {
                Ok(v) => {
                    s.targets.push(v.unwrap_or(0.0));
                    s.observed.push(v.is_some());
                }
                Err(e) => return Err(cell_error(c, e)),
            }
        }
        for &c in &covariate_cols {
            match parse_value(cell(c)) {
                Ok(v) => {
                    s.covariates.push(v.unwrap_or(0.0));
                    s.covariates_present.push(v.is_some());
                }
                Err(e) => return Err(cell_error(c, e)),
            }
        }
        s.times.push(time);
        s.lines.push(line);
    }
    if series.is_empty() {
        return Err(Error::Csv {
            path: name.to_string(),
            line: 1,
            message: "the file has a header but no rows".into(),
        });
    }
    let d = target_cols.len();
    for (k, col) in columns.targets.iter().enumerate() {
        let any = series
            .iter()
            .any(|s| s.observed.iter().skip(k).step_by(d).any(|&o| o));
        if !any {
            return Err(Error::Series {
                path: name.to_string(),
                series: if series.len() == 1 {
                    SeriesName(&series[0].id).to_string()
                } else {
                    "every series".into()
                },
                message: format!("target column `{col}` has no observed value"),
            });
        }
    }
    Ok(Panel {
        path: name.to_string(),
        columns: columns.clone(),
        series,
    })
}
