//! The waterfall's geometry: the span tree in display order, self times, bars on a shared
//! time axis, and human durations.

use std::collections::{HashMap, HashSet};

use super::model::Span;

/// One line of the waterfall: which span, and the tree glyphs in front of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Index into the spans.
    pub span: usize,
    /// Glyphs before the span (`├─ `, `│  └─ `, …); empty for roots.
    pub prefix: String,
    /// The glyphs that continue this span's subtree (for lines under it, e.g. attributes).
    pub continuation: String,
    pub depth: usize,
    pub has_children: bool,
    /// A root because its parent is not in the trace (not a true root).
    pub orphan: bool,
}

/// Orders spans as a tree: roots (true roots and spans whose parent is missing) by start time,
/// each followed by its children by start time, depth first. Every span appears exactly once,
/// also when ids repeat or parents form a cycle (the leftovers become extra roots).
pub fn layout(spans: &[Span]) -> Vec<Row> {
    let by_id: HashMap<&str, usize> = spans
        .iter()
        .enumerate()
        .map(|(i, s)| (s.span_id.as_str(), i))
        .collect();
    let order = |a: &usize, b: &usize| {
        let (x, y) = (&spans[*a], &spans[*b]);
        (x.start, x.end, &x.name, &x.span_id).cmp(&(y.start, y.end, &y.name, &y.span_id))
    };
    let mut children: HashMap<usize, Vec<usize>> = HashMap::new();
    let mut roots = Vec::new();
    for (i, s) in spans.iter().enumerate() {
        match s.parent_id.as_deref().and_then(|p| by_id.get(p)) {
            Some(&p) if p != i => children.entry(p).or_default().push(i),
            _ => roots.push(i),
        }
    }
    for list in children.values_mut() {
        list.sort_by(order);
    }
    roots.sort_by(order);

    let mut rows = Vec::with_capacity(spans.len());
    let mut seen = HashSet::new();
    let visit = |roots: &[usize], rows: &mut Vec<Row>, seen: &mut HashSet<usize>| {
        for &root in roots {
            // (span, prefix, continuation, depth)
            let mut stack = vec![(root, String::new(), String::new(), 0usize)];
            while let Some((i, prefix, cont, depth)) = stack.pop() {
                if !seen.insert(i) {
                    continue;
                }
                let kids: Vec<usize> = children
                    .get(&i)
                    .map(|k| k.iter().copied().filter(|k| !seen.contains(k)).collect())
                    .unwrap_or_default();
                rows.push(Row {
                    span: i,
                    prefix,
                    continuation: cont.clone(),
                    depth,
                    has_children: !kids.is_empty(),
                    orphan: depth == 0 && spans[i].parent_id.is_some(),
                });
                for (n, &k) in kids.iter().enumerate().rev() {
                    let last = n + 1 == kids.len();
                    let glyph = if last { "└─ " } else { "├─ " };
                    let more = if last { "   " } else { "│  " };
                    stack.push((
                        k,
                        format!("{cont}{glyph}"),
                        format!("{cont}{more}"),
                        depth + 1,
                    ));
                }
            }
        }
    };
    visit(&roots, &mut rows, &mut seen);
    // Cycles: spans never reached from a root.
    let mut left: Vec<usize> = (0..spans.len()).filter(|i| !seen.contains(i)).collect();
    left.sort_by(order);
    visit(&left, &mut rows, &mut seen);
    rows
}

/// A span's self time: its duration less the time covered by its direct children (the union of
/// their intervals, clipped to the span, so overlapping children are not counted twice).
pub fn self_times(spans: &[Span]) -> Vec<u64> {
    let by_id: HashMap<&str, usize> = spans
        .iter()
        .enumerate()
        .map(|(i, s)| (s.span_id.as_str(), i))
        .collect();
    let mut kids: Vec<Vec<(u64, u64)>> = vec![Vec::new(); spans.len()];
    for (i, s) in spans.iter().enumerate() {
        if let Some(&p) = s.parent_id.as_deref().and_then(|p| by_id.get(p))
            && p != i
        {
            kids[p].push((s.start, s.end));
        }
    }
    spans
        .iter()
        .zip(kids)
        .map(|(s, intervals)| {
            s.duration()
                .saturating_sub(covered(s.start, s.end, intervals))
        })
        .collect()
}

/// Length of the union of `intervals` within `[start, end]`.
pub fn covered(start: u64, end: u64, mut intervals: Vec<(u64, u64)>) -> u64 {
    intervals.sort_unstable();
    let mut total = 0;
    let mut reach = start;
    for (a, b) in intervals {
        let (a, b) = (a.max(reach), b.min(end));
        if b > a {
            total += b - a;
            reach = b;
        }
    }
    total
}

/// The span with the largest self time (ties: the earlier in `rows`).
pub fn slowest(rows: &[Row], self_times: &[u64]) -> Option<usize> {
    rows.iter()
        .map(|r| r.span)
        .fold(None, |best: Option<usize>, i| match best {
            Some(b) if self_times[b] >= self_times[i] => Some(b),
            _ => Some(i),
        })
}

const PARTIAL: [char; 8] = [' ', '▏', '▎', '▍', '▌', '▋', '▊', '▉'];

/// A bar exactly `width` characters wide for the interval `[start, end]` on the axis
/// `[t0, t0 + total]`: blanks up to the start cell, then full blocks, then an eighth-block for
/// the remainder. The start snaps down to a whole cell; the end is rounded to an eighth; a
/// span is never drawn shorter than one eighth.
pub fn bar(start: u64, end: u64, t0: u64, total: u64, width: usize) -> String {
    if width == 0 {
        return String::new();
    }
    let w = width as u128;
    let scale = |t: u64, units: u128| -> u128 {
        if total == 0 {
            0
        } else {
            (u128::from(t.saturating_sub(t0)) * units * 2 + u128::from(total))
                / (2 * u128::from(total))
        }
    };
    let (s8, e8) = (scale(start, w * 8), scale(end.max(start), w * 8));
    let first = (s8 / 8).min(w - 1);
    let end8 = if e8 <= s8 {
        first * 8 + 1
    } else {
        e8.clamp(first * 8 + 1, w * 8)
    };
    let full = end8 / 8 - first;
    let part = (end8 % 8) as usize;
    let mut out = String::with_capacity(width * 3);
    out.extend(std::iter::repeat_n(' ', first as usize));
    out.extend(std::iter::repeat_n('█', full as usize));
    let mut used = (first + full) as usize;
    if part > 0 && used < width {
        out.push(PARTIAL[part]);
        used += 1;
    }
    out.extend(std::iter::repeat_n(' ', width - used));
    out
}

/// A duration in nanoseconds in human units with three significant digits: `850 ns`,
/// `12.3 µs`, `47.0 ms`, `1.23 s`, `2m05s`.
pub fn human(ns: u64) -> String {
    fn three(v: f64, unit: &str) -> String {
        if v < 9.995 {
            format!("{v:.2} {unit}")
        } else if v < 99.95 {
            format!("{v:.1} {unit}")
        } else {
            format!("{v:.0} {unit}")
        }
    }
    let f = ns as f64;
    if ns < 1_000 {
        format!("{ns} ns")
    } else if ns < 999_500 {
        three(f / 1e3, "µs")
    } else if ns < 999_500_000 {
        three(f / 1e6, "ms")
    } else if ns < 59_950_000_000 {
        three(f / 1e9, "s")
    } else {
        let s = (ns + 500_000_000) / 1_000_000_000;
        if s < 3600 {
            format!("{}m{:02}s", s / 60, s % 60)
        } else {
            format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::model::Kind;
    use super::*;

    fn sp(id: &str, parent: Option<&str>, start: u64, end: u64) -> Span {
        Span {
            trace_id: "t".into(),
            span_id: id.into(),
            parent_id: parent.map(str::to_owned),
            service: "svc".into(),
            name: id.into(),
            kind: Kind::Internal,
            start,
            end,
            error: false,
            status_message: String::new(),
            attributes: vec![],
            events: vec![],
        }
    }

    fn lines(spans: &[Span]) -> Vec<String> {
        layout(spans)
            .iter()
            .map(|r| {
                format!(
                    "{}{}{}",
                    r.prefix,
                    spans[r.span].name,
                    if r.orphan { " (orphan)" } else { "" }
                )
            })
            .collect()
    }

    #[test]
    fn tree_orders_children_by_start_and_draws_glyphs() {
        let spans = vec![
            sp("c2", Some("root"), 50, 90),
            sp("g", Some("c1"), 12, 20),
            sp("root", None, 0, 100),
            sp("c1", Some("root"), 10, 40),
            sp("g2", Some("c1"), 21, 30),
            sp("x", Some("c2"), 60, 70),
        ];
        assert_eq!(
            lines(&spans),
            ["root", "├─ c1", "│  ├─ g", "│  └─ g2", "└─ c2", "   └─ x"]
        );
        let rows = layout(&spans);
        assert_eq!(rows[1].continuation, "│  ");
        assert!(rows[1].has_children && !rows[2].has_children);
        assert_eq!(rows.iter().map(|r| r.depth).max(), Some(2));
    }

    #[test]
    fn missing_parents_become_marked_roots_and_cycles_do_not_hang() {
        let spans = vec![
            sp("root", None, 10, 100),
            sp("lost", Some("gone"), 5, 20),
            sp("kid", Some("lost"), 6, 8),
            sp("a", Some("b"), 30, 31),
            sp("b", Some("a"), 32, 33),
            sp("self", Some("self"), 40, 41),
        ];
        let out = lines(&spans);
        assert_eq!(out.len(), spans.len());
        assert_eq!(&out[..3], ["lost (orphan)", "└─ kid", "root"]);
        assert!(out.contains(&"self (orphan)".to_owned()));
        assert!(out.contains(&"a (orphan)".to_owned()));
        assert!(out.contains(&"└─ b".to_owned()));
    }

    #[test]
    fn self_time_is_duration_less_covered_child_time() {
        let spans = vec![
            sp("root", None, 0, 100),
            sp("a", Some("root"), 10, 40),
            sp("b", Some("root"), 30, 50), // overlaps a: covered 10..50 = 40
            sp("c", Some("root"), 90, 120), // sticks out: clipped to 90..100
            sp("d", Some("a"), 10, 15),
        ];
        assert_eq!(self_times(&spans), vec![100 - 50, 25, 20, 30, 5]);
        let rows = layout(&spans);
        assert_eq!(slowest(&rows, &self_times(&spans)), Some(0));
        assert_eq!(covered(0, 10, vec![]), 0);
        assert_eq!(covered(0, 10, vec![(2, 4), (3, 6), (8, 20)]), 6);
    }

    #[test]
    fn bars_share_the_axis() {
        // The whole trace fills the bar.
        assert_eq!(bar(0, 100, 0, 100, 10), "██████████");
        // First half, second half.
        assert_eq!(bar(0, 50, 0, 100, 10), "█████     ");
        assert_eq!(bar(50, 100, 0, 100, 10), "     █████");
        // Eighths: 0..25 on 10 cells is 2.5 cells.
        assert_eq!(bar(0, 25, 0, 100, 10), "██▌       ");
        // An instant still shows, at its place.
        assert_eq!(bar(70, 70, 0, 100, 10), "       ▏  ");
        // At the very end it stays inside the bar.
        assert_eq!(bar(100, 100, 0, 100, 10), "         ▏");
        // An absolute axis start (t0).
        assert_eq!(bar(1_010, 1_020, 1_000, 100, 10), " █        ");
        // A zero-length trace.
        assert_eq!(bar(5, 5, 5, 0, 4), "▏   ");
        for (s, e) in [(0, 1), (3, 97), (33, 34), (99, 100)] {
            assert_eq!(bar(s, e, 0, 100, 37).chars().count(), 37);
        }
    }

    #[test]
    fn human_durations() {
        assert_eq!(human(0), "0 ns");
        assert_eq!(human(850), "850 ns");
        assert_eq!(human(1_000), "1.00 µs");
        assert_eq!(human(12_345), "12.3 µs");
        assert_eq!(human(841_000), "841 µs");
        assert_eq!(human(999_700), "1.00 ms");
        assert_eq!(human(47_011_756), "47.0 ms");
        assert_eq!(human(1_936_617), "1.94 ms");
        assert_eq!(human(1_234_000_000), "1.23 s");
        assert_eq!(human(125_000_000_000), "2m05s");
        assert_eq!(human(7_500_000_000_000), "2h05m");
    }
}
