"""The classical state space reference of `cargo xtask real-data`: for every test window, a
statsmodels model fitted by maximum likelihood on the series' whole history before the forecast
origin, then `samples` joint sample paths of the horizon per seed (`simulate(anchor="end")`, which
starts from the filtered state distribution at the origin). Reads the request JSON written by
xtask, writes the draws as JSON laid out [seed][window][step][target][sample].

Needs `pip install statsmodels` (tested with 0.15.0). Models (the request's `statsmodels` table):
- {"model": "varmax", "order": p}: a VAR(p) with a constant (VARMAX(p, 0)), several targets;
- {"model": "unobserved-components", "period": s, "harmonics": h}: a local linear trend with a
  trigonometric seasonal of period s (h harmonics) and an irregular term, one target; missing
  values are handled by the Kalman filter.
"""
import json
import sys
import time
import warnings

import numpy as np
import statsmodels
from statsmodels.tsa.statespace.varmax import VARMAX
from statsmodels.tsa.statespace.structural import UnobservedComponents


def fit(spec, history):
    y = np.array([[np.nan if v is None else v for v in row] for row in history], dtype=float)
    kind = spec["model"]
    if kind == "varmax":
        # Trim leading rows with gaps: VARMAX wants complete rows at the start.
        model = VARMAX(y, order=(int(spec.get("order", 2)), 0), trend="c")
        return model.fit(disp=False, maxiter=int(spec.get("maxiter", 200)))
    if kind == "unobserved-components":
        if y.shape[1] != 1:
            raise SystemExit("unobserved-components takes one target; use varmax for several")
        model = UnobservedComponents(
            y[:, 0],
            level="local linear trend",
            freq_seasonal=[
                {"period": float(spec["period"]), "harmonics": int(spec.get("harmonics", 2))}
            ],
        )
        return model.fit(disp=False, maxiter=int(spec.get("maxiter", 200)))
    raise SystemExit(f"statsmodels.model = {kind!r}: use 'varmax' or 'unobserved-components'")


def main():
    request = json.load(open(sys.argv[1]))
    spec, horizon, n = request["statsmodels"], request["horizon"], request["samples"]
    seeds = request["seeds"]
    draws = [[] for _ in seeds]
    fit_seconds = 0.0
    for w, window in enumerate(request["windows"]):
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = fit(spec, window["history"])
        fit_seconds += time.perf_counter() - start
        d = len(window["history"][0])
        for i, seed in enumerate(seeds):
            rng = np.random.default_rng([seed, w])
            sims = result.simulate(
                horizon, repetitions=n, anchor="end", rng=rng
            )
            sims = np.asarray(sims, dtype=float).reshape(horizon, d, n)
            draws[i].append(sims.tolist())
        print(f"statsmodels {spec['model']}: window {w + 1}/{len(request['windows'])}",
              file=sys.stderr, flush=True)
    json.dump(
        {
            "statsmodels_version": statsmodels.__version__,
            "fit_seconds": fit_seconds,
            "draws": draws,
        },
        open(sys.argv[2], "w"),
    )


if __name__ == "__main__":
    main()
