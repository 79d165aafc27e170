//! A step's Markdown for a terminal: headings in bold (the five parts in colour), code blocks
//! indented, `**bold**` kept bold, links shown as their address, and the list with ✓ marks.

use super::progress::Progress;
use super::text::{STEPS, Step};

const BOLD: &str = "\x1b[1m";
const CYAN: &str = "\x1b[1;36m";
const DIM: &str = "\x1b[2m";
const GREEN: &str = "\x1b[32m";
const RESET: &str = "\x1b[0m";

struct Paint(bool);

impl Paint {
    fn with(&self, code: &str, text: &str) -> String {
        if self.0 {
            format!("{code}{text}{RESET}")
        } else {
            text.to_owned()
        }
    }
}

/// `fleet course show N`.
pub fn show(step: &Step, progress: &Progress, color: bool) -> String {
    let paint = Paint(color);
    let mut out = String::new();
    let mut in_code = false;
    for line in step.markdown.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            out.push_str(&format!("    {}\n", paint.with(DIM, line)));
            continue;
        }
        if let Some(title) = line.strip_prefix("# ") {
            let mark = if progress.done(step.number) {
                format!("  {}", paint.with(GREEN, "✓ completed"))
            } else {
                String::new()
            };
            out.push_str(&format!("{}{mark}\n", paint.with(BOLD, title)));
            out.push_str(&format!("{}\n", "═".repeat(title.chars().count())));
            if step.docker_only {
                out.push_str(
                    "Needs the Docker stack (`make up`); see below for what the no-Docker track can do.\n",
                );
            }
        } else if let Some(h) = line.strip_prefix("## ") {
            out.push_str(&format!("{}\n", paint.with(CYAN, &format!("▌ {h}"))));
        } else {
            out.push_str(&inline(line, &paint));
            out.push('\n');
        }
    }
    out
}

/// `**bold**` to bold, `[text](url)` and `<url>` to `text (url)` / `url`.
fn inline(line: &str, paint: &Paint) -> String {
    let mut out = String::new();
    for (i, part) in line.split("**").enumerate() {
        if i % 2 == 1 {
            out.push_str(&paint.with(BOLD, part));
        } else {
            out.push_str(part);
        }
    }
    let mut rest = out.as_str();
    let mut done = String::new();
    while let Some(open) = rest.find('[') {
        let after = &rest[open..];
        let Some(mid) = after.find("](") else { break };
        let Some(close) = after[mid..].find(')') else {
            break;
        };
        done.push_str(&rest[..open]);
        done.push_str(&format!(
            "{} ({})",
            &after[1..mid],
            &after[mid + 2..mid + close]
        ));
        rest = &after[mid + close + 1..];
    }
    done.push_str(rest);
    done.replace("<http", "http").replace("/>", "/")
}

/// `fleet course list`.
pub fn list(progress: &Progress, color: bool) -> String {
    let paint = Paint(color);
    let mut out = format!(
        "{}\n",
        paint.with(BOLD, "303 — Distributed Tracing with Grafana Tempo")
    );
    for s in STEPS {
        let mark = if progress.done(s.number) {
            paint.with(GREEN, "✓")
        } else {
            " ".to_owned()
        };
        let docker = if s.docker_only {
            "  (Docker, or --offline)"
        } else {
            ""
        };
        out.push_str(&format!(
            "  [{mark}] {:>2}. {}{docker}\n",
            s.number,
            s.title()
        ));
    }
    out.push_str(&format!(
        "All steps ({} / {} completed)\n",
        progress.count(),
        STEPS.len()
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::course::text::step;

    #[test]
    fn list_marks_completed_steps_and_counts_them() {
        let mut p = Progress::default();
        p.mark_done(1);
        p.mark_done(4);
        let text = list(&p, false);
        assert!(
            text.contains("[✓]  1. Distributed tracing concepts"),
            "{text}"
        );
        assert!(
            text.contains("[ ]  2. Deploy and configure Tempo"),
            "{text}"
        );
        assert!(text.contains("All steps (2 / 10 completed)"), "{text}");
        assert!(list(&Progress::default(), false).contains("(0 / 10 completed)"));
    }

    #[test]
    fn show_renders_the_five_parts_without_markdown_noise() {
        let text = show(step(8).unwrap(), &Progress::default(), false);
        assert!(text.starts_with("Step 8 — Tail sampling\n"), "{text}");
        assert!(text.contains("Needs the Docker stack"));
        for h in crate::course::text::SECTIONS {
            assert!(text.contains(&format!("▌ {h}\n")), "{h}");
        }
        assert!(!text.contains("```") && !text.contains("**"));
        assert!(text.contains("    fleet course check 8\n"));
        assert_eq!(
            inline("see [the doc](docs/x.md) at <http://h/>", &Paint(false)),
            "see the doc (docs/x.md) at http://h/"
        );
    }
}
