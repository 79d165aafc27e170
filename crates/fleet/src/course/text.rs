//! The course's text: ten Markdown files under `course/` at the repository root, embedded into
//! the binary. Each has the five parts of the course page (Commands to run, What this does,
//! Expected outcome, Pro tips, Check); `docs/course/` is generated from the same files.

use super::CourseError;

/// One step of the course.
pub struct Step {
    pub number: u8,
    /// The file's name without `NN-` and `.md`, e.g. `concepts`.
    pub slug: &'static str,
    pub markdown: &'static str,
    /// Needs the Docker stack (`make up`) for its check; `show` says so.
    pub docker_only: bool,
}

macro_rules! step {
    ($n:literal, $slug:literal, $file:literal, $docker:literal) => {
        Step {
            number: $n,
            slug: $slug,
            markdown: include_str!(concat!("../../../../course/", $file)),
            docker_only: $docker,
        }
    };
}

pub const STEPS: &[Step] = &[
    step!(1, "concepts", "01-concepts.md", false),
    step!(2, "deploy-tempo", "02-deploy-tempo.md", false),
    step!(3, "collector-otlp", "03-collector-otlp.md", false),
    step!(4, "search-traceql", "04-search-traceql.md", false),
    step!(5, "waterfalls", "05-waterfalls.md", false),
    step!(6, "bottlenecks", "06-bottlenecks.md", false),
    step!(7, "head-sampling", "07-head-sampling.md", false),
    step!(8, "tail-sampling", "08-tail-sampling.md", true),
    step!(9, "troubleshooting", "09-troubleshooting.md", false),
    step!(10, "production", "10-production.md", false),
];

/// The five parts every step has, as `##` headings.
pub const SECTIONS: [&str; 5] = [
    "Commands to run",
    "What this does",
    "Expected outcome",
    "Pro tips",
    "Check",
];

impl Step {
    /// The title from the `# Step N — Title` line.
    pub fn title(&self) -> &'static str {
        let first = self.markdown.lines().next().unwrap_or_default();
        first
            .split_once('—')
            .map(|(_, t)| t.trim())
            .unwrap_or_else(|| first.trim_start_matches('#').trim())
    }

    /// `NN-slug.md`, the file's name under `course/` and `docs/course/`.
    pub fn file_name(&self) -> String {
        format!("{:02}-{}.md", self.number, self.slug)
    }

    /// The `##` headings in order.
    pub fn headings(&self) -> Vec<&'static str> {
        self.markdown
            .lines()
            .filter_map(|l| l.strip_prefix("## "))
            .map(str::trim)
            .collect()
    }

    /// Fenced code blocks as (language, body).
    pub fn code_blocks(&self) -> Vec<(&'static str, String)> {
        let mut blocks = Vec::new();
        let mut current: Option<(&'static str, String)> = None;
        for line in self.markdown.lines() {
            let fence = line.trim_start().strip_prefix("```");
            match (&mut current, fence) {
                (None, Some(lang)) => current = Some((lang.trim(), String::new())),
                (Some(_), Some(_)) => blocks.extend(current.take()),
                (Some((_, body)), None) => {
                    body.push_str(line);
                    body.push('\n');
                }
                (None, None) => {}
            }
        }
        blocks
    }

    /// Every `fleet …` command in the step's `sh` blocks, as arguments (after `fleet`);
    /// `cargo run … -p fleet -- ARGS` counts as `fleet ARGS`. Leading `VAR=value` assignments
    /// and trailing `# comments` are dropped, `\` continuations joined.
    pub fn fleet_commands(&self) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        for (lang, body) in self.code_blocks() {
            if lang != "sh" {
                continue;
            }
            for line in body.replace("\\\n", " ").lines() {
                let Some(words) = shlex::split(line) else {
                    continue;
                };
                let words: Vec<String> =
                    words.into_iter().skip_while(|w| is_assignment(w)).collect();
                match words.first().map(String::as_str) {
                    Some("fleet") => out.push(words[1..].to_vec()),
                    Some("cargo") => {
                        if let Some(i) = words.iter().position(|w| w == "--")
                            && words.windows(2).any(|w| w[0] == "-p" && w[1] == "fleet")
                        {
                            out.push(words[i + 1..].to_vec());
                        }
                    }
                    _ => {}
                }
            }
        }
        out
    }

    /// Every TraceQL query the step shows: each line of a `traceql` block, and the `-q` /
    /// `--query` argument of each `fleet traces` command.
    pub fn traceql(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .code_blocks()
            .into_iter()
            .filter(|(lang, _)| *lang == "traceql")
            .flat_map(|(_, body)| {
                body.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect();
        for cmd in self.fleet_commands() {
            for pair in cmd.windows(2) {
                if pair[0] == "-q" || pair[0] == "--query" {
                    out.push(pair[1].clone());
                }
            }
        }
        out
    }
}

fn is_assignment(word: &str) -> bool {
    word.split_once('=').is_some_and(|(name, _)| {
        !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
    })
}

/// Step `n` (1 to 10), or an error naming the range.
pub fn step(n: u8) -> Result<&'static Step, CourseError> {
    STEPS
        .iter()
        .find(|s| s.number == n)
        .ok_or(CourseError::NoStep(n))
}

/// Pages under `docs/course/`: (file name, content). One per step (the step's text with a
/// header saying where it comes from and links to its neighbours), and `README.md`, the index.
pub fn docs_pages() -> Vec<(String, String)> {
    let mut pages = Vec::new();
    let mut index = String::from(
        "# The course: Distributed Tracing with Grafana Tempo\n\n\
         <!-- Generated by `fleet course export-docs` from course/*.md; edit those, not this. -->\n\n\
         Ten labs on the fleet, each ending in a check that verifies its expected outcome against\n\
         the traces. Start the fleet (`cargo run --profile quick -p fleet -- up`), then follow the steps\n\
         in the terminal (`fleet course list`, `fleet course show 1`, `fleet course check 1 …`) or\n\
         here. Progress is kept in `fleet-data/course-progress.json` (`fleet course progress`,\n\
         `fleet course reset`). Every check works against the trace desk and against a real Tempo\n\
         (`--tempo URL`).\n\n",
    );
    for (i, s) in STEPS.iter().enumerate() {
        let docker = if s.docker_only {
            " (the Docker stack, or its offline track)"
        } else {
            ""
        };
        index.push_str(&format!(
            "{}. [{}]({}){docker}\n",
            s.number,
            s.title(),
            s.file_name()
        ));
        let mut nav = String::from("\n---\n\n");
        if let Some(prev) = i.checked_sub(1).and_then(|p| STEPS.get(p)) {
            nav.push_str(&format!(
                "[← Step {}]({}) · ",
                prev.number,
                prev.file_name()
            ));
        }
        nav.push_str("[All steps](README.md)");
        if let Some(next) = STEPS.get(i + 1) {
            nav.push_str(&format!(
                " · [Step {} →]({})",
                next.number,
                next.file_name()
            ));
        }
        nav.push('\n');
        let page = format!(
            "<!-- Generated by `fleet course export-docs` from course/{}; edit that, not this. -->\n\n{}{nav}",
            s.file_name(),
            s.markdown
        );
        pages.push((s.file_name(), page));
    }
    index.push_str(&checks_and_bounds());
    pages.push(("README.md".to_owned(), index));
    pages
}

/// The index's section on how the checks work, with every bound they have (from the code, so
/// the page cannot drift from it).
fn checks_and_bounds() -> String {
    use super::checks::bounds as b;
    format!(
        "\n## How the checks work\n\n\
         `fleet course check N [ARGS]` talks to the backend at `--tempo URL` (default: the desk of the \
         fleet whose `fleet-state.json` is in `--data-dir`, else `http://127.0.0.1:3200`) and to the \
         gateway at `--gateway URL` (same default rule, else port 8080). It uses only Tempo's HTTP API \
         (`/ready`, `/api/status/buildinfo`, `/api/traces/ID`, `/api/v2/traces/ID`, `/api/search`), so \
         it works against a real Tempo too. A check that passes marks its step done and exits 0; one \
         that fails says what is missing and exits 1. Checks that make their own checkouts send a \
         sampled `traceparent`, so their traces are kept under any parent-based head sampler.\n\n\
         ### Bounds\n\n\
         | bound | value |\n| --- | --- |\n\
         | wait for a trace's spans to arrive and stop growing | {} s |\n\
         | step 4 search window | the last {} min |\n\
         | traces one search returns (a query reaching it gets no verdict) | {} |\n\
         | step 7: checkouts sent, 8 at a time | {} |\n\
         | step 7 and 8: tolerance around the expected kept count | {} standard deviations of the binomial (at least half a trace) |\n\
         | step 8: wait for the tail sampler's decision (`decision_wait` is 12 s) | {} s |\n\
         | step 8: baseline, and the latency over which a trace counts as slow | {:.0} %, {} ms |\n\
         | step 9: time allowed per drill, from `fleet quiz start` to the right answer | {} s |\n",
        b::TRACE_WAIT.as_secs(),
        b::WINDOW.as_secs() / 60,
        b::SEARCH_LIMIT,
        b::HEAD_SAMPLE,
        b::SIGMAS,
        b::TAIL_WAIT.as_secs(),
        b::TAIL_BASELINE * 100.0,
        b::TAIL_SLOW_MS,
        b::DRILL_LIMIT_SECS,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_steps_each_with_the_five_parts_in_order() {
        assert_eq!(STEPS.len(), 10);
        for (i, s) in STEPS.iter().enumerate() {
            assert_eq!(usize::from(s.number), i + 1);
            assert!(
                s.markdown.starts_with(&format!("# Step {} — ", s.number)),
                "{}",
                s.file_name()
            );
            let headings = s.headings();
            let mut at = 0;
            for section in SECTIONS {
                let pos = headings[at..]
                    .iter()
                    .position(|h| *h == section)
                    .unwrap_or_else(|| {
                        panic!(
                            "{} has no `## {section}` after `## {}`",
                            s.file_name(),
                            SECTIONS[at.min(4)]
                        )
                    });
                at += pos;
            }
            assert!(
                s.fleet_commands()
                    .iter()
                    .any(|c| c.starts_with(&["course".to_owned(), "check".to_owned()])),
                "{} shows no `fleet course check`",
                s.file_name()
            );
        }
    }

    #[test]
    fn commands_are_extracted_from_sh_blocks() {
        let s = step(7).unwrap();
        let cmds = s.fleet_commands();
        assert!(cmds.contains(&vec!["up".to_owned()]), "{cmds:?}");
        assert!(
            cmds.iter()
                .any(|c| c[..] == ["course", "check", "7", "0.25"])
        );
        assert!(is_assignment("OTEL_TRACES_SAMPLER=x"));
        assert!(!is_assignment("--rate=3"));
    }

    #[test]
    fn steps_that_need_docker_say_so_and_offer_the_no_docker_track() {
        for s in STEPS {
            if s.docker_only {
                assert!(
                    s.markdown.contains("needs the Docker stack"),
                    "{}",
                    s.file_name()
                );
                assert!(s.markdown.contains("Without Docker"), "{}", s.file_name());
            }
            // Every step with a Docker track says what to click in Grafana.
            if s.markdown.contains("Docker track") {
                assert!(s.markdown.contains("In Grafana"), "{}", s.file_name());
            }
        }
    }
}
