//! The terminal waterfall: header, one line per span, footer.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::model::Span;
use super::tree::{self, bar, human};

/// Attributes `--attrs` prints under a span, when it has them.
pub const KEY_ATTRIBUTES: [&str; 7] = [
    "http.route",
    "http.response.status_code",
    "rpc.method",
    "rpc.status_code",
    "rpc.response.status_code",
    "db.query.text",
    "error.type",
];

/// Service colours (ANSI SGR); red is kept for errors.
const PALETTE: [&str; 8] = ["36", "33", "35", "32", "34", "96", "93", "95"];
const RED: &str = "1;31";
const BOLD: &str = "1";
const DIM: &str = "2";

/// How to draw.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Total line width the columns and the bar are fitted to (annotations may go past it).
    pub width: usize,
    pub color: bool,
    pub attrs: bool,
}

/// Columns around the bar: label, ` `, kind (4), ` `, duration (8), ` `, mark, ` `, `│`, bar, `│`.
const FIXED_COLUMNS: usize = 19;
const MIN_BAR: usize = 10;

struct Painter {
    color: bool,
}

impl Painter {
    fn paint(&self, text: &str, sgr: &str) -> String {
        if self.color && !text.is_empty() {
            format!("\x1b[{sgr}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }
}

fn chars(s: &str) -> usize {
    s.chars().count()
}

fn truncate(s: &str, max: usize) -> String {
    if chars(s) <= max {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

fn pad(s: &str, width: usize) -> String {
    let n = chars(s);
    format!("{s}{}", " ".repeat(width.saturating_sub(n)))
}

/// The whole waterfall as text (lines end with `\n`).
pub fn waterfall(trace_id: &str, spans: &[Span], opt: Options) -> String {
    let p = Painter { color: opt.color };
    let mut out = String::new();
    if spans.is_empty() {
        let _ = writeln!(out, "trace {trace_id}: no spans");
        return out;
    }
    let rows = tree::layout(spans);
    let self_times = tree::self_times(spans);
    let slowest = tree::slowest(&rows, &self_times);
    let t0 = spans.iter().map(|s| s.start).min().unwrap_or(0);
    let t_end = spans.iter().map(|s| s.end.max(s.start)).max().unwrap_or(t0);
    let total = t_end - t0;

    // Services in the order they first appear in the tree; colours follow that order.
    let mut services: Vec<(&str, usize, usize)> = Vec::new(); // (name, spans, errors)
    for r in &rows {
        let s = &spans[r.span];
        match services.iter_mut().find(|(n, _, _)| *n == s.service) {
            Some(e) => {
                e.1 += 1;
                e.2 += usize::from(s.error);
            }
            None => services.push((&s.service, 1, usize::from(s.error))),
        }
    }
    let colour_of = |service: &str| {
        services
            .iter()
            .position(|(n, _, _)| *n == service)
            .map_or(PALETTE[0], |i| PALETTE[i % PALETTE.len()])
    };

    // Header.
    let root = &spans[rows[0].span];
    let errors = spans.iter().filter(|s| s.error).count();
    let _ = writeln!(out, "{} {}", p.paint("trace", BOLD), trace_id);
    let _ = writeln!(
        out,
        "root      {}  {}",
        p.paint(&root.service, colour_of(&root.service)),
        root.name
    );
    let _ = writeln!(out, "duration  {}", human(total));
    let _ = writeln!(
        out,
        "spans     {}{}",
        spans.len(),
        match errors {
            0 => String::new(),
            n => format!(", {}", p.paint(&format!("{n} with errors ✗"), RED)),
        }
    );
    let _ = writeln!(
        out,
        "services  {}",
        services
            .iter()
            .map(|(n, count, errs)| {
                let errs = if *errs > 0 {
                    p.paint(&format!(" ✗{errs}"), RED)
                } else {
                    String::new()
                };
                format!("{} ×{count}{errs}", p.paint(n, colour_of(n)))
            })
            .collect::<Vec<_>>()
            .join(", ")
    );
    out.push('\n');

    // Columns.
    let labels: Vec<String> = rows
        .iter()
        .map(|r| {
            let s = &spans[r.span];
            format!("{}{}  {}", r.prefix, s.service, s.name)
        })
        .collect();
    let longest = labels.iter().map(|l| chars(l)).max().unwrap_or(0);
    // Labels get what the bar (at least 24 columns, or 45% of the line) leaves.
    let label_room = opt
        .width
        .saturating_sub(FIXED_COLUMNS + 24)
        .max(opt.width * 45 / 100);
    let label_w = longest.min(label_room).max(12);
    let bar_w = opt
        .width
        .saturating_sub(label_w + FIXED_COLUMNS)
        .max(MIN_BAR);

    // Column titles and the time axis over the bar.
    let mut axis: Vec<char> = vec![' '; bar_w + 2];
    let mut place = |text: &str, at: usize| {
        for (i, c) in text.chars().enumerate() {
            if let Some(slot) = axis.get_mut(at + i) {
                *slot = c;
            }
        }
    };
    place("0", 1);
    let end_label = human(total);
    let mid_label = human(total / 2);
    let mid_at = 1 + bar_w / 2 - chars(&mid_label) / 2;
    if mid_at > 3 && mid_at + chars(&mid_label) + 2 < bar_w + 1 - chars(&end_label) {
        place(&mid_label, mid_at);
    }
    place(&end_label, (bar_w + 1).saturating_sub(chars(&end_label)));
    let axis: String = axis.into_iter().collect();
    let _ = writeln!(
        out,
        "{}",
        p.paint(
            format!(
                "{} {:<4} {:>8}   {}",
                pad("service  span", label_w),
                "kind",
                "duration",
                axis
            )
            .trim_end(),
            DIM
        )
    );

    for (row, label) in rows.iter().zip(&labels) {
        let s = &spans[row.span];
        let label = truncate(label, label_w);
        let padded = pad(&label, label_w);
        // Colour the service part of the label if it survived truncation.
        let label_out = if opt.color {
            let pre = chars(&row.prefix);
            let svc = chars(&s.service);
            let intact = format!("{}{}", row.prefix, s.service);
            if label.starts_with(&intact)
                && !(label.ends_with('…') && chars(&label) == pre + svc + 1)
            {
                let head: String = padded.chars().take(pre).collect();
                let tail: String = padded.chars().skip(pre + svc).collect();
                format!(
                    "{}{}{}",
                    head,
                    p.paint(&s.service, colour_of(&s.service)),
                    tail
                )
            } else {
                padded
            }
        } else {
            padded
        };
        let mark = if s.error {
            p.paint("✗", RED)
        } else {
            " ".into()
        };
        let b = bar(s.start, s.end, t0, total, bar_w);
        let b = if s.error {
            p.paint(&b, RED)
        } else {
            p.paint(&b, colour_of(&s.service))
        };
        let mut notes = Vec::new();
        if s.error {
            // The status message, else the `error.type` attribute.
            let why = Some(s.status_message.as_str())
                .filter(|m| !m.is_empty())
                .or_else(|| s.attr("error.type"));
            if let Some(why) = why {
                notes.push(p.paint(&format!("✗ {why}"), RED));
            }
        }
        if row.orphan {
            notes.push(format!(
                "⚠ parent {} not in trace",
                s.parent_id.as_deref().unwrap_or_default()
            ));
        }
        if slowest == Some(row.span) {
            notes.push(p.paint(
                &format!("◀ slowest (self time {})", human(self_times[row.span])),
                BOLD,
            ));
        }
        let notes = if notes.is_empty() {
            String::new()
        } else {
            format!(" {}", notes.join("  "))
        };
        let _ = writeln!(
            out,
            "{label_out} {:<4} {:>8} {mark} │{b}│{notes}",
            s.kind.abbrev(),
            human(s.duration()),
        );
        if opt.attrs {
            let indent = format!(
                "{}{}",
                row.continuation,
                if row.has_children { "│  " } else { "   " }
            );
            for key in KEY_ATTRIBUTES {
                if let Some(v) = s.attr(key) {
                    let v = truncate(&v.split_whitespace().collect::<Vec<_>>().join(" "), 100);
                    let _ = writeln!(out, "{indent}{}", p.paint(&format!("· {key} = {v}"), DIM));
                }
            }
        }
    }

    // Footer.
    out.push('\n');
    if let Some(i) = slowest {
        let s = &spans[i];
        let _ = writeln!(
            out,
            "◀ slowest = largest self time (its duration less the time its child spans cover): {}  {}, {} of {}",
            p.paint(&s.service, colour_of(&s.service)),
            s.name,
            human(self_times[i]),
            human(s.duration()),
        );
    }
    let faults: Vec<(&Span, &super::model::Event)> = rows
        .iter()
        .map(|r| &spans[r.span])
        .flat_map(|s| {
            s.events
                .iter()
                .filter(|e| e.name == "fault.injected")
                .map(move |e| (s, e))
        })
        .collect();
    if !faults.is_empty() {
        let _ = writeln!(out, "{}", p.paint("faults injected:", RED));
        for (s, e) in faults {
            let attrs: BTreeMap<&str, &str> = e
                .attributes
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let point = attrs.get("fault.point").copied().unwrap_or("?");
            let rest = attrs
                .iter()
                .filter(|(k, _)| **k != "fault.point")
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("  ");
            let _ = writeln!(
                out,
                "  +{:<8} {}  {}  fault.point={}{}{}",
                human(e.time.saturating_sub(t0)),
                p.paint(&s.service, colour_of(&s.service)),
                s.name,
                p.paint(point, BOLD),
                if rest.is_empty() { "" } else { "  " },
                rest
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::model::{Event, Kind};
    use super::*;

    fn sp(id: &str, parent: Option<&str>, service: &str, start: u64, end: u64) -> Span {
        Span {
            trace_id: "t".into(),
            span_id: id.into(),
            parent_id: parent.map(str::to_owned),
            service: service.into(),
            name: format!("op-{id}"),
            kind: Kind::Server,
            start,
            end,
            error: false,
            status_message: String::new(),
            attributes: vec![],
            events: vec![],
        }
    }

    #[test]
    fn lines_have_fixed_columns_and_notes() {
        let mut spans = vec![
            sp("r", None, "gw", 0, 10_000_000),
            sp("a", Some("r"), "api", 1_000_000, 9_000_000),
            sp("o", Some("zz"), "api", 2_000_000, 3_000_000),
        ];
        spans[1].error = true;
        spans[1].status_message = "boom".into();
        spans[1].attributes = vec![("http.route".into(), "/x".into())];
        spans[1].events = vec![Event {
            name: "fault.injected".into(),
            time: 4_000_000,
            attributes: vec![
                ("fault.point".into(), "db.insert".into()),
                ("fault.spec".into(), "error".into()),
            ],
        }];
        let text = waterfall(
            "abc",
            &spans,
            Options {
                width: 60,
                color: false,
                attrs: true,
            },
        );
        let bars: Vec<&str> = text.lines().filter(|l| l.contains('│')).collect();
        // Same column for every bar start.
        let starts: Vec<usize> = bars
            .iter()
            .filter(|l| l.contains("op-"))
            .map(|l| l.chars().position(|c| c == '│').unwrap_or(0))
            .collect();
        assert!(starts.windows(2).all(|w| w[0] == w[1]), "{text}");
        assert!(text.contains("✗ boom"), "{text}");
        assert!(text.contains("⚠ parent zz not in trace"), "{text}");
        assert!(text.contains("◀ slowest (self time 8.00 ms)"), "{text}");
        assert!(text.contains("· http.route = /x"), "{text}");
        assert!(
            text.contains("+4.00 ms  api  op-a  fault.point=db.insert  fault.spec=error"),
            "{text}"
        );
        assert!(!text.contains('\x1b'));
        let coloured = waterfall(
            "abc",
            &spans,
            Options {
                width: 60,
                color: true,
                attrs: false,
            },
        );
        assert!(coloured.contains("\x1b[36mgw\x1b[0m"), "{coloured}");
    }
}
