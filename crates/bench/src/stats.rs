//! Percentiles and medians. Every latency is kept and sorted: at a few hundred thousand samples
//! per measurement that is cheaper and more honest than a bucketed histogram.

/// Nearest-rank percentile of sorted values; `p` in 0..=100. `None` when empty.
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// Median of unsorted floats (mean of the middle two for an even count). `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let v: Vec<u64> = (1..=100).collect();
        let cases = [(50.0, 50), (99.0, 99), (100.0, 100), (0.0, 1), (99.9, 100)];
        for (p, want) in cases {
            assert_eq!(percentile(&v, p), Some(want), "p{p}");
        }
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[7], 99.0), Some(7));
    }

    #[test]
    fn medians() {
        let cases: &[(&[f64], Option<f64>)] = &[
            (&[], None),
            (&[3.0], Some(3.0)),
            (&[3.0, 1.0, 2.0], Some(2.0)),
            (&[4.0, 1.0, 3.0, 2.0], Some(2.5)),
            (&[f64::NAN, 1.0], Some(1.0)),
        ];
        for (v, want) in cases {
            assert_eq!(median(v), *want, "{v:?}");
        }
    }
}
