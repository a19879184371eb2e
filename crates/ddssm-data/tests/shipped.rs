//! The data files shipped in `data/` read as their README describes them.

use std::path::Path;

use ddssm_data::{read_csv, rolling_origin, Columns, WindowSpec};

fn data(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../data")
        .join(name)
}

#[test]
fn co2_has_its_rows_and_its_gaps_as_masks() {
    let panel = read_csv(&data("co2-weekly.csv"), &Columns::new("date", &["co2"])).unwrap();
    let s = &panel.series[0];
    assert_eq!(s.len(), 2284);
    assert_eq!(s.observed.iter().filter(|o| !**o).count(), 59);
    assert_eq!(s.times[0].to_string(), "1958-03-29");
    let splits = rolling_origin(
        &panel,
        &WindowSpec {
            context: 104,
            horizon: 13,
            test_windows: 4,
            validation_windows: 2,
        },
    )
    .unwrap();
    assert_eq!((splits.test.len(), splits.validation.len()), (4, 2));
    assert!(splits.scaling.mean[0] > 300.0 && splits.scaling.mean[0] < 400.0);
}

#[test]
fn us_macro_is_multivariate_and_complete() {
    let columns = Columns::new("quarter", &["realgdp", "realcons", "realinv"]);
    let panel = read_csv(&data("us-macro-quarterly.csv"), &columns).unwrap();
    let s = &panel.series[0];
    assert_eq!(s.len(), 203);
    assert!(s.observed.iter().all(|o| *o));
    assert_eq!(s.times[202].to_string(), "2009-Q3");
}
