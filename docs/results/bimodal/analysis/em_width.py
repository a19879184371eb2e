"""Exact EM on the bimodal walk with the signs known: how fast can a coordinate ascent shrink a
transition's width toward the truth (0)?

Given the signs s_t (which the data reveal: the modes are 8 apart against 0.2 of noise), the
walk z_t = phi*z_{t-1} + 4*s_t + w*eta_t, x_t = z_t + 0.2*eps_t is linear-Gaussian, and EM for
the process variance Q = w^2 (the emission variance fixed at the truth, 0.04) alternates an exact
Kalman/RTS posterior (the encoder's ideal) with the maximum-likelihood fit of the transition to
that posterior's draws (the transition's ideal). The truth Q = 0 is EM's fixed point, reached
only sublinearly: the DDSSM's encoder/transition pair is coupled in the same way (issue 17,
docs/results/bimodal.md section 4). Each row prints the transition's width w, the posterior's
standard deviation of z_T given x_{1:T} (the encoder's spread) and the one-step predictive's
within-mode width sqrt(w^2 + (phi*sd)^2 + 0.04) against the exact 0.2. A second table tempers the
posterior (its covariance times gamma = 0.5, what `train.entropy_weight = 0.5` does to a Gaussian
encoder): the same loop then contracts geometrically.

A third table sets the exact posterior (a smoother: z_t given z_{t-1} and x_{t:T}) beside a filter
(z_t given z_{t-1} and x_t only), each with the emission tempered by lambda (the lambda of the
ELBO weighting, App. I.2: the optimal encoder of the lambda-weighted objective is the posterior
under an emission variance lambda*0.04). The trained DDSSMs' encoders are as wide as the filter
(docs/results/bimodal.md section 1, "the encoder is the posterior under the transition"): under
the filter the loop has a fixed point above 0 for lambda near 1 and reaches 0 only for larger
lambda, while the smoother's speed hardly depends on lambda.

Run: python3 docs/results/bimodal/analysis/em_width.py  (standard library only; ~2 min)
"""

import math
import random

PHI, STEP, R, T, N = 0.9, 4.0, 0.04, 32, 256
START_W = 0.24  # the 9000-step DDSSM's transition width (seed 0), data units
REPORT = (1, 2, 3, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)
LAMBDA_REPORT = (1, 3, 10, 30, 100, 300, 1000, 3000)


def simulate(seed):
    rng = random.Random(seed)
    out = []
    for _ in range(N):
        z = rng.gauss(0.0, 1.0)
        xs, us, zs = [], [], []
        for _ in range(T):
            u = STEP if rng.random() < 0.5 else -STEP
            z = PHI * z + u
            xs.append(z + 0.2 * rng.gauss(0.0, 1.0))
            us.append(u)
            zs.append(z)
        out.append((xs, us, zs))
    return out


def em_step(data, q, gamma, lam=1.0):
    """One EM iteration with the posterior's covariance tempered by gamma (1: exact EM) and the
    emission's variance by lam: the new Q and the mean (tempered) posterior variance of z_T."""
    total, count, last_var = 0.0, 0, 0.0
    for xs, us, _ in data:
        m, p, mp, pp = [0.0] * T, [0.0] * T, [0.0] * T, [0.0] * T
        for t in range(T):
            mp[t] = us[0] if t == 0 else PHI * m[t - 1] + us[t]
            pp[t] = (PHI * PHI + q) if t == 0 else PHI * PHI * p[t - 1] + q
            k = pp[t] / (pp[t] + lam * R)
            m[t] = mp[t] + k * (xs[t] - mp[t])
            p[t] = (1.0 - k) * pp[t]
        last_var += gamma * p[T - 1]
        ms, ps, cross = m[:], p[:], [0.0] * T
        for t in range(T - 2, -1, -1):
            j = p[t] * PHI / pp[t + 1]
            ms[t] = m[t] + j * (ms[t + 1] - mp[t + 1])
            ps[t] = p[t] + j * j * (ps[t + 1] - pp[t + 1])
            cross[t + 1] = j * ps[t + 1]
        for t in range(1, T):
            r = ms[t] - PHI * ms[t - 1] - us[t]
            total += r * r + gamma * (ps[t] + PHI * PHI * ps[t - 1] - 2.0 * PHI * cross[t])
            count += 1
    return total / count, last_var / len(data)


def filter_step(data, q, lam):
    """One round of the loop with a filtering encoder: z_t drawn from its posterior given z_{t-1}
    and x_t alone (emission variance lam*R), chained along the sequence; the transition refitted to
    the draws' increments. Returns the new Q and the mean variance of the draws' z_T."""
    total, count, last_var = 0.0, 0, 0.0
    for xs, us, zs in data:
        # The draws' error e_t = z_t - z_t(true) has mean mu and variance v over the encoder.
        mu, v = 0.0, 0.0
        for t in range(T):
            prior_var = q if t > 0 else PHI * PHI + q  # z_1's prior: z_0 ~ N(0, 1) integrated
            k = prior_var / (prior_var + lam * R)
            draw_var = (1.0 - k) * prior_var
            noise = xs[t] - zs[t]
            if t == 0:
                # The prior mean u_1 misses the true z_1 by -phi*z_0(true).
                mu, v = k * noise - (1.0 - k) * PHI * (zs[0] - us[0]) / PHI, draw_var
                continue
            # z_t - phi z_{t-1} - u_t = k (noise_t - phi e_{t-1}) + the draw's own noise.
            total += k * k * ((noise - PHI * mu) ** 2 + PHI * PHI * v) + draw_var
            count += 1
            mu, v = k * noise + (1.0 - k) * PHI * mu, (1.0 - k) ** 2 * PHI * PHI * v + draw_var
        last_var += v
    return total / count, last_var / len(data)


def main():
    data = simulate(0)
    print("| posterior | EM iterations | transition w | encoder sd of z_T | predictive width (exact 0.200) |")
    print("|---|---|---|---|---|")
    for gamma, last in [(1.0, max(REPORT)), (0.5, 50)]:
        q = START_W**2
        for it in range(1, last + 1):
            q, var_t = em_step(data, q, gamma)
            if it in REPORT:
                width = math.sqrt(q + PHI * PHI * var_t + R)
                print(
                    f"| gamma = {gamma} | {it} | {math.sqrt(q):.4f} | {math.sqrt(var_t):.4f} "
                    f"| {width:.3f} |"
                )
    print()
    print("| encoder | lambda | start w | EM iterations | transition w | encoder sd of z_T |")
    print("|---|---|---|---|---|---|")
    runs = [("smoother (exact)", lambda d, q, lam: em_step(d, q, 1.0, lam), lam, START_W, 300)
            for lam in (1.0, 1.243, 2.0)]
    runs += [("filter (x_t only)", filter_step, lam, START_W, 3000) for lam in (1.0, 1.243, 1.5, 2.0)]
    # From below: whether the filter's w = 0.112 at lambda = 1.243 is a stable fixed point.
    runs.append(("filter (x_t only)", filter_step, 1.243, 0.05, 1000))
    for name, step, lam, start, last in runs:
        q = start**2
        for it in range(1, last + 1):
            q, var_t = step(data, q, lam)
            if it in LAMBDA_REPORT:
                print(
                    f"| {name} | {lam} | {start} | {it} | {math.sqrt(q):.4f} "
                    f"| {math.sqrt(var_t):.4f} |"
                )


if __name__ == "__main__":
    main()
