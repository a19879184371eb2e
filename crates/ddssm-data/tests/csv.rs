//! Reading CSV series and cutting them into rolling-origin windows: what is read, and every bad
//! input as an error naming file, line and column.

use std::path::PathBuf;

use ddssm_data::{read_csv, rolling_origin, Columns, Error, Panel, Time, Window, WindowSpec};

fn file(name: &str, text: &str) -> PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("ddssm-data-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Two series in long format: id, time, two targets with gaps, a covariate, a static.
fn long_format() -> String {
    let mut text = String::from("id,t,a,b,u,size\n");
    for id in ["north", "south"] {
        for t in 0..20 {
            let a = match t {
                3 => String::new(),
                5 => "NA".into(),
                _ => format!(
                    "{}",
                    t as f64 * 0.5 + if id == "north" { 0.0 } else { 10.0 }
                ),
            };
            let b = if t == 6 {
                "NaN".to_string()
            } else {
                format!("{}", (t * t) as f64)
            };
            let size = if id == "north" { 1.5 } else { 2.5 };
            text.push_str(&format!("{id},{t},{a},{b},{},{size}\n", t % 3));
        }
    }
    text
}

fn long_columns() -> Columns {
    Columns {
        covariates: vec!["u".into()],
        statics: vec!["size".into()],
        id: Some("id".into()),
        ..Columns::new("t", &["a", "b"])
    }
}

#[test]
fn long_format_with_gaps_covariates_and_statics_is_read_as_written() {
    let path = file("long.csv", &long_format());
    let panel = read_csv(&path, &long_columns()).unwrap();
    assert_eq!(panel.series.len(), 2);
    assert_eq!(
        (
            panel.target_dim(),
            panel.covariate_dim(),
            panel.static_dim()
        ),
        (2, 1, 1)
    );
    let south = &panel.series[1];
    assert_eq!(south.id, "south");
    assert_eq!(south.len(), 20);
    assert_eq!(south.times[4], Time::Number(4.0));
    assert_eq!(south.statics, vec![2.5]);
    // Empty, NA and NaN are missing: masked, held as 0, never imputed.
    for (t, k) in [(3, 0), (5, 0), (6, 1)] {
        assert!(!south.observed[t * 2 + k], "{t} {k}");
        assert_eq!(south.targets[t * 2 + k], 0.0);
    }
    assert!(south.observed[4 * 2]);
    assert_eq!(south.targets[4 * 2], 12.0);
    // A step's targets as the file had them: a missing one is None, not its stored 0.
    assert_eq!(south.targets_at(6, 2)[1], None);
    assert_eq!(south.targets_at(3, 2)[0], None);
    assert_eq!(south.targets_at(4, 2)[0], Some(12.0));
    assert_eq!(south.covariates[7], 1.0);
    // Lines point into the file: the header is line 1, south's first row line 22.
    assert_eq!(south.lines[0], 22);
}

#[test]
fn observed_from_starts_each_series_at_its_first_window() {
    let path = file("observed.csv", &long_format());
    let panel = read_csv(&path, &long_columns()).unwrap();
    let windows = [
        Window {
            series: 1,
            start: 9,
        },
        Window {
            series: 1,
            start: 4,
        },
    ];
    let observed = panel.observed_from(&windows);
    assert_eq!(observed.len(), 2);
    // The first series has no window: from its first step.
    assert_eq!(observed[0][0].0, 0);
    let south = &panel.series[1];
    assert_eq!(observed[1].len(), south.observed_len(2) - 4);
    assert_eq!(
        observed[1][0],
        (4, south.times[4].to_string(), south.targets_at(4, 2))
    );
    assert_eq!(observed[1][2].2, south.targets_at(6, 2));
}

#[test]
fn rolling_origin_windows_and_scaling_from_the_training_part_only() {
    let path = file("roll.csv", &long_format());
    let panel = read_csv(&path, &long_columns()).unwrap();
    let spec = WindowSpec {
        context: 5,
        horizon: 3,
        test_windows: 2,
        validation_windows: 1,
    };
    let s = rolling_origin(&panel, &spec).unwrap();
    // Per series of 20 steps: test origins after steps 17 and 14 (windows start at 12 and 9),
    // validation origin after step 11 (start 6), training windows end by step 11: starts 0..=3.
    let starts = |ws: &[ddssm_data::Window], k: usize| -> Vec<usize> {
        ws.iter()
            .filter(|w| w.series == k)
            .map(|w| w.start)
            .collect()
    };
    for k in 0..2 {
        assert_eq!(starts(&s.test, k), vec![9, 12]);
        assert_eq!(starts(&s.validation, k), vec![6]);
        assert_eq!(starts(&s.train, k), vec![0, 1, 2, 3]);
    }
    // Scaling: the observed `a` of steps 0..11 of both series (3 and 5 missing).
    let a: Vec<f64> = (0..11)
        .filter(|t| *t != 3 && *t != 5)
        .flat_map(|t| [t as f64 * 0.5, t as f64 * 0.5 + 10.0])
        .collect();
    let mean = a.iter().sum::<f64>() / a.len() as f64;
    let sd = (a.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (a.len() as f64 - 1.0)).sqrt();
    assert!((s.scaling.mean[0] - mean).abs() < 1e-12);
    assert!((s.scaling.std[0] - sd).abs() < 1e-12);
    // A value in the test part does not move the scaling; one in the training part does.
    let mut moved: Panel = panel.clone();
    moved.series[0].targets[18 * 2] = 1e6;
    assert_eq!(rolling_origin(&moved, &spec).unwrap().scaling, s.scaling);
    moved.series[0].targets[2 * 2] = 1e6;
    assert_ne!(rolling_origin(&moved, &spec).unwrap().scaling, s.scaling);
}

#[test]
fn future_rows_with_covariates_only_are_not_part_of_the_windows() {
    let mut text = String::from("t,y,u\n");
    for t in 0..30 {
        let y = if t < 24 {
            format!("{}", (t as f64).sin())
        } else {
            String::new()
        };
        text.push_str(&format!("{t},{y},{t}\n"));
    }
    let panel = read_csv(
        &file("future.csv", &text),
        &Columns {
            covariates: vec!["u".into()],
            ..Columns::new("t", &["y"])
        },
    )
    .unwrap();
    assert_eq!(panel.series[0].observed_len(1), 24);
    let s = rolling_origin(
        &panel,
        &WindowSpec {
            context: 6,
            horizon: 2,
            test_windows: 1,
            validation_windows: 1,
        },
    )
    .unwrap();
    assert_eq!(s.test[0].start + 6 + 2, 24);
}

/// Every bad input: an error (never a panic) whose message names what the user must fix.
#[test]
fn bad_files_and_requests_are_errors_naming_file_line_and_column() {
    let cols = Columns::new("t", &["y"]);
    let cases: Vec<(&str, String, Columns, Vec<&str>)> = vec![
        (
            "ragged",
            "t,y\n0,1\n1,2,3\n".into(),
            cols.clone(),
            vec!["line 3", "3 fields"],
        ),
        (
            "text",
            "t,y\n0,1\n1,abc\n".into(),
            cols.clone(),
            vec!["line 3", "`y`", "\"abc\""],
        ),
        (
            "infinite",
            "t,y\n0,1\n1,inf\n".into(),
            cols.clone(),
            vec!["line 3", "finite"],
        ),
        (
            "duplicate",
            "t,y\n0,1\n0,2\n".into(),
            cols.clone(),
            vec!["line 3", "`t`", "repeats", "in the series:"],
        ),
        (
            "unsorted",
            "t,y\n1,1\n0,2\n".into(),
            cols.clone(),
            vec!["line 3", "goes back"],
        ),
        (
            "mixed",
            "t,y\n0,1\n2020-01-01,2\n".into(),
            cols.clone(),
            vec!["line 3", "mixes"],
        ),
        (
            "empty time",
            "t,y\n0,1\n,2\n".into(),
            cols.clone(),
            vec!["line 3", "empty"],
        ),
        (
            "unknown",
            "t,y\n0,1\n".into(),
            Columns::new("t", &["z"]),
            vec!["no target column `z`", "t, y"],
        ),
        (
            "twice",
            "t,y\n0,1\n".into(),
            Columns::new("t", &["y", "y"]),
            vec!["`y`", "twice"],
        ),
        (
            "all missing",
            "t,y,w\n0,1,\n1,2,NA\n".into(),
            Columns::new("t", &["y", "w"]),
            vec!["`w`", "no observed"],
        ),
        ("header only", "t,y\n".into(), cols.clone(), vec!["no rows"]),
        (
            "static varies",
            "id,t,y,s\na,0,1,5\na,1,2,6\n".into(),
            Columns {
                statics: vec!["s".into()],
                id: Some("id".into()),
                ..cols.clone()
            },
            vec!["line 3", "`s`", "differs"],
        ),
        (
            "static missing",
            "id,t,y,s\na,0,1,\n".into(),
            Columns {
                statics: vec!["s".into()],
                id: Some("id".into()),
                ..cols.clone()
            },
            vec!["line 2", "`s`", "missing"],
        ),
    ];
    for (what, text, columns, needles) in cases {
        let path = file(&format!("{}.csv", what.replace(' ', "-")), &text);
        let err = read_csv(&path, &columns).unwrap_err().to_string();
        assert!(err.contains(path.to_str().unwrap()), "{what}: {err}");
        for n in needles {
            assert!(err.contains(n), "{what}: {n:?} not in {err}");
        }
        // A file without an id column holds one series, whose id is "": never named as "``".
        assert!(!err.contains("``"), "{what}: an empty series name in {err}");
    }
    let missing =
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("ddssm-data-tests-no-such-file.csv");
    let err = read_csv(&missing, &cols).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");

    // Windowing errors.
    let mut text = String::from("t,y,u\n");
    for t in 0..12 {
        let u = if t == 4 { String::new() } else { "1".into() };
        text.push_str(&format!("{t},{},{u}\n", t as f64 * 1.5));
    }
    let path = file("windows.csv", &text);
    let panel = read_csv(
        &path,
        &Columns {
            covariates: vec!["u".into()],
            ..cols.clone()
        },
    )
    .unwrap();
    let spec = |context, horizon, test_windows| WindowSpec {
        context,
        horizon,
        test_windows,
        validation_windows: 1,
    };
    for (s, needles) in [
        (spec(0, 2, 1), vec!["context = 0"]),
        (spec(3, 0, 1), vec!["horizon = 0"]),
        (spec(3, 2, 0), vec!["test_windows = 0"]),
        (
            spec(8, 2, 1),
            vec![
                "windows.csv: the series: 12 observed steps",
                "14 are needed",
            ],
        ),
        (
            spec(3, 2, 1),
            vec!["line 6", "`u`", "covariate missing", "of the series"],
        ),
    ] {
        let err = rolling_origin(&panel, &s).unwrap_err().to_string();
        for n in needles {
            assert!(err.contains(n), "{s:?}: {n:?} not in {err}");
        }
        assert!(!err.contains("``"), "{s:?}: an empty series name in {err}");
    }
    let constant = read_csv(
        &file("constant.csv", "t,y\n0,1\n1,1\n2,1\n3,1\n4,1\n5,1\n"),
        &cols,
    )
    .unwrap();
    let err = rolling_origin(&constant, &spec(1, 1, 1))
        .unwrap_err()
        .to_string();
    assert!(err.contains("constant"), "{err}");
}
