//! Token buckets in their GCRA form, for answers the app gives peers that have no vote here.

/// `paid_up` is when the answers given so far are paid for (one `interval_ms` each; `None`
/// before the first). Returns the new `paid_up` if one more answer fits in `burst` now,
/// `None` if not (and then nothing is charged). Monotonic milliseconds; never overflows.
pub fn within_rate(paid_up: Option<u64>, now_ms: u64, interval_ms: u64, burst: u64) -> Option<u64> {
    let paid_up = paid_up.map_or(now_ms, |at| at.max(now_ms));
    let room = burst.saturating_sub(1).saturating_mul(interval_ms);
    (paid_up - now_ms <= room).then(|| paid_up.saturating_add(interval_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers given out of `asks` at `now_ms`, carrying `paid_up` along.
    fn answered(paid_up: &mut Option<u64>, now_ms: u64, asks: usize) -> usize {
        (0..asks)
            .filter(|_| match within_rate(*paid_up, now_ms, 100, 8) {
                Some(next) => {
                    *paid_up = Some(next);
                    true
                }
                None => false,
            })
            .count()
    }

    #[test]
    fn a_burst_then_one_per_interval_and_idle_time_refills_it() {
        let mut paid_up = None;
        assert_eq!(answered(&mut paid_up, 1_000, 50), 8);
        assert_eq!(answered(&mut paid_up, 1_099, 50), 0);
        assert_eq!(answered(&mut paid_up, 1_100, 50), 1);
        assert_eq!(answered(&mut paid_up, 1_350, 50), 2);
        // Idle long enough, the whole burst is back, never more.
        assert_eq!(answered(&mut paid_up, 60_000, 50), 8);
        // Extremes neither panic nor overflow.
        assert_eq!(within_rate(Some(u64::MAX), 0, 100, 8), None);
        assert_eq!(
            within_rate(None, u64::MAX, u64::MAX, u64::MAX),
            Some(u64::MAX)
        );
        assert_eq!(
            within_rate(None, 5, 100, 0),
            Some(105),
            "a zero burst still allows one"
        );
    }
}
