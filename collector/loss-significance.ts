/**
 * Whether a path's losses say more than the background loss every network has: a binomial
 * upper tail. `lost` of `n` probes were lost (or failed); under a tolerated background loss
 * `p0` per probe, the chance of seeing at least `lost` is P(X ≥ lost), X ~ Binomial(n, p0).
 * Below `alpha` the loss is taken as real. A ratio threshold alone fired on healthy paths
 * with 1–2 % random loss (2 of 6 lost is 33 %, and among a hundred paths some path sees that
 * every few seconds); the tail asks for as many losses as chance would not give: with
 * p0 = 5 % and alpha = 1e-4, 4 of 6, 8 of 30 — while 30 % loss on a link (half of the round
 * trips lost) still shows within a few probes.
 */
export function lossIsSignificant(lost: number, n: number, p0: number, alpha: number): boolean {
  if (n <= 0 || lost <= 0) return false;
  if (p0 <= 0) return true;
  if (p0 >= 1) return false;
  // The tail is summed in floating point: at the boundary (4 of 4 at p0 = 0.1 is exactly
  // 1e-4) a rounding error must not decide.
  return binomialUpperTail(Math.min(n, Math.ceil(lost - 1e-9)), n, p0) <= alpha * (1 + 1e-9);
}

/** P(X ≥ k) for X ~ Binomial(n, p), summed in log space from k up (n is small: a window). */
export function binomialUpperTail(k: number, n: number, p: number): number {
  if (k <= 0) return 1;
  if (k > n) return 0;
  const lp = Math.log(p);
  const lq = Math.log1p(-p);
  // log C(n, k) via a running product, then each next term from the previous one.
  let logC = 0;
  for (let i = 1; i <= k; i++) logC += Math.log((n - k + i) / i);
  let logTerm = logC + k * lp + (n - k) * lq;
  let sum = 0;
  for (let x = k; x <= n; x++) {
    sum += Math.exp(logTerm);
    // C(n, x+1)/C(n, x) = (n − x)/(x + 1)
    logTerm += Math.log((n - x) / (x + 1)) + lp - lq;
  }
  return Math.min(1, sum);
}
