//! Optimal one-to-one assignment (the Hungarian method, Jonker-Volgenant style shortest augmenting paths), for
//! the tracker's association and the identity metrics.

/// Minimum-cost assignment of rows to columns of a `rows` x `cols` cost matrix (row-major). Returns, per row,
/// the column it gets (`None` when there are more rows than columns and it got none). Costs must be finite.
pub fn assign(costs: &[f64], rows: usize, cols: usize) -> Vec<Option<usize>> {
    assert_eq!(costs.len(), rows * cols, "cost matrix is {rows}x{cols}");
    if rows == 0 || cols == 0 {
        return vec![None; rows];
    }
    // The algorithm wants rows <= cols: solve the transpose otherwise.
    if rows > cols {
        let transposed: Vec<f64> = (0..cols * rows).map(|i| costs[(i % rows) * cols + i / rows]).collect();
        let by_col = assign(&transposed, cols, rows);
        let mut out = vec![None; rows];
        for (c, r) in by_col.into_iter().enumerate() {
            if let Some(r) = r {
                out[r] = Some(c);
            }
        }
        return out;
    }
    let (n, m) = (rows, cols);
    let cost = |i: usize, j: usize| costs[(i - 1) * m + (j - 1)];
    // Potentials u (rows), v (columns); p[j] = row matched to column j (1-based, 0 = none).
    let (mut u, mut v) = (vec![0.0; n + 1], vec![0.0; m + 1]);
    let (mut p, mut way) = (vec![0usize; m + 1], vec![0usize; m + 1]);
    for i in 1..=n {
        p[0] = i;
        let mut j0 = 0;
        let mut minv = vec![f64::INFINITY; m + 1];
        let mut used = vec![false; m + 1];
        loop {
            used[j0] = true;
            let i0 = p[j0];
            let (mut delta, mut j1) = (f64::INFINITY, 0);
            for j in 1..=m {
                if !used[j] {
                    let cur = cost(i0, j) - u[i0] - v[j];
                    if cur < minv[j] {
                        minv[j] = cur;
                        way[j] = j0;
                    }
                    if minv[j] < delta {
                        delta = minv[j];
                        j1 = j;
                    }
                }
            }
            for j in 0..=m {
                if used[j] {
                    u[p[j]] += delta;
                    v[j] -= delta;
                } else {
                    minv[j] -= delta;
                }
            }
            j0 = j1;
            if p[j0] == 0 {
                break;
            }
        }
        loop {
            let j1 = way[j0];
            p[j0] = p[j1];
            j0 = j1;
            if j0 == 0 {
                break;
            }
        }
    }
    let mut out = vec![None; n];
    for j in 1..=m {
        if p[j] != 0 {
            out[p[j] - 1] = Some(j - 1);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn total(costs: &[f64], cols: usize, a: &[Option<usize>]) -> f64 {
        a.iter()
            .enumerate()
            .filter_map(|(r, c)| c.map(|c| costs[r * cols + c]))
            .sum()
    }

    /// Every assignment by brute force, for small matrices.
    fn best(costs: &[f64], rows: usize, cols: usize) -> f64 {
        fn go(r: usize, rows: usize, cols: usize, costs: &[f64], used: &mut Vec<bool>) -> f64 {
            if r == rows {
                return 0.0;
            }
            let mut b = f64::INFINITY;
            let free = cols - used.iter().filter(|u| **u).count();
            if rows - r > free {
                // This row may stay unassigned (more rows than columns).
                b = go(r + 1, rows, cols, costs, used);
            }
            for c in 0..cols {
                if !used[c] {
                    used[c] = true;
                    b = b.min(costs[r * cols + c] + go(r + 1, rows, cols, costs, used));
                    used[c] = false;
                }
            }
            b
        }
        go(0, rows, cols, costs, &mut vec![false; cols])
    }

    #[test]
    fn finds_the_optimum_on_random_matrices_of_every_shape() {
        let mut state = 7u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 33) % 100) as f64 / 10.0
        };
        for rows in 0..6 {
            for cols in 0..6 {
                for _ in 0..20 {
                    let costs: Vec<f64> = (0..rows * cols).map(|_| next()).collect();
                    let a = assign(&costs, rows, cols);
                    assert_eq!(a.len(), rows);
                    assert_eq!(a.iter().flatten().count(), rows.min(cols));
                    let mut seen: Vec<usize> = a.iter().flatten().copied().collect();
                    seen.sort();
                    seen.dedup();
                    assert_eq!(seen.len(), rows.min(cols), "a column twice");
                    let got = total(&costs, cols, &a);
                    assert!((got - best(&costs, rows, cols)).abs() < 1e-9, "{rows}x{cols} {costs:?}");
                }
            }
        }
    }
}
