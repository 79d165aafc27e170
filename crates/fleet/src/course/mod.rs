//! `fleet course`: the ten labs of "303 — Distributed Tracing with Grafana Tempo" on this
//! fleet. `list`, `show N`, `check N [ARGS]`, `progress`, `reset`; the text lives once in
//! `course/*.md` (src/course/text.rs), progress in `DATA_DIR/course-progress.json`.

pub mod checks;
pub mod progress;
pub mod render;
pub mod text;

use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use crate::supervisor::FleetState;
use crate::topology;
use progress::Progress;

#[derive(Debug, thiserror::Error)]
pub enum CourseError {
    #[error("no step {0}: the course has steps 1 to 10 (`fleet course list`)")]
    NoStep(u8),
    #[error("cannot read or write {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a progress file ({source}); `fleet course reset` starts over", path.display())]
    BadProgress {
        path: PathBuf,
        source: serde_json::Error,
    },
    /// The check ran and the expected outcome is not there; the text says what is missing.
    #[error("{0}")]
    NotYet(String),
    /// The check could not run (bad arguments, backend unreachable).
    #[error("{0}")]
    Usage(String),
}

#[derive(Args, Debug, Clone)]
pub struct CourseArgs {
    #[command(subcommand)]
    action: Action,
    /// `fleet up`'s data dir: the course's progress file lives there, and the running fleet's
    /// addresses are read from its state file.
    #[arg(
        long,
        global = true,
        env = "FLEET_DATA_DIR",
        default_value = "fleet-data"
    )]
    data_dir: PathBuf,
    /// No ANSI colours (also when NO_COLOR is set or stdout is not a terminal).
    #[arg(long, global = true)]
    no_color: bool,
}

#[derive(Subcommand, Debug, Clone)]
enum Action {
    /// The ten steps, ✓ for the completed ones.
    List,
    /// One step in the course's five parts.
    Show {
        #[arg(value_parser = clap::value_parser!(u8).range(1..=10))]
        step: u8,
    },
    /// Verify a step's expected outcome against the fleet and the traces; passing marks it done.
    Check(checks::CheckArgs),
    /// Which steps are done, and when.
    Progress,
    /// Forget all progress (or one step's).
    Reset {
        #[arg(long, value_parser = clap::value_parser!(u8).range(1..=10))]
        step: Option<u8>,
    },
    /// Write docs/course/ from the embedded text (what the docs test compares against).
    ExportDocs {
        #[arg(long, default_value = "docs/course")]
        dir: PathBuf,
    },
}

/// Where the running fleet's component `name` listens: its state file, else the default port.
pub fn fleet_url(data_dir: &Path, name: &str) -> String {
    FleetState::read(data_dir)
        .and_then(|s| s.components.into_iter().find(|c| c.name == name))
        .map(|c| c.url)
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| {
            let port = topology::component(name).map_or(0, |c| c.default_port());
            format!("http://127.0.0.1:{port}")
        })
}

fn color_wanted(no_color: bool) -> bool {
    !no_color
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        && std::io::stdout().is_terminal()
}

fn print(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

pub async fn run(args: CourseArgs) -> anyhow::Result<()> {
    let color = color_wanted(args.no_color);
    let result = match args.action {
        Action::List => Progress::load(&args.data_dir)
            .map(|p| render::list(&p, color))
            .map_err(anyhow::Error::from),
        Action::Show { step } => text::step(step)
            .and_then(|s| Ok(render::show(s, &Progress::load(&args.data_dir)?, color)))
            .map_err(anyhow::Error::from),
        Action::Progress => Progress::load(&args.data_dir)
            .map(|p| progress_text(&p, &args.data_dir))
            .map_err(anyhow::Error::from),
        Action::Reset { step } => progress::update(&args.data_dir, |p| match step {
            Some(n) => p.reset_step(n),
            None => *p = Progress::default(),
        })
        .map(|p| format!("Progress reset: {} / 10 completed.\n", p.count()))
        .map_err(anyhow::Error::from),
        Action::ExportDocs { dir } => export_docs(&dir),
        Action::Check(check) => checks::run(check, &args.data_dir)
            .await
            .map_err(anyhow::Error::from),
    };
    match result {
        Ok(text) => print(&text),
        Err(e) => {
            // A failed check is an answer, not a crash: its message, exit status 1.
            eprintln!("{e:#}");
            std::process::exit(1);
        }
    }
}

fn progress_text(p: &Progress, data_dir: &Path) -> String {
    let mut out = String::new();
    for s in text::STEPS {
        match p.completed.get(&s.number) {
            Some(at) => out.push_str(&format!(
                "✓ {:>2}. {} — completed {}\n",
                s.number,
                s.title(),
                crate::traces::list::utc(at.saturating_mul(1_000_000_000))
            )),
            None => out.push_str(&format!("  {:>2}. {}\n", s.number, s.title())),
        }
    }
    if !p.exercises.is_empty() {
        let done: Vec<&str> = p.exercises.iter().map(String::as_str).collect();
        out.push_str(&format!("Step 4 exercises passed: {}\n", done.join(", ")));
    }
    if !p.puzzles.is_empty() {
        let solved: Vec<String> = p
            .puzzles
            .iter()
            .map(|(id, secs)| format!("{id} ({secs} s)"))
            .collect();
        out.push_str(&format!("Puzzles solved: {}\n", solved.join(", ")));
    }
    out.push_str(&format!(
        "{} / 10 completed (kept in {})\n",
        p.count(),
        progress::path(data_dir).display()
    ));
    out
}

fn export_docs(dir: &Path) -> anyhow::Result<String> {
    std::fs::create_dir_all(dir)?;
    let pages = text::docs_pages();
    for (name, content) in &pages {
        std::fs::write(dir.join(name), content)?;
    }
    Ok(format!(
        "wrote {} pages to {}\n",
        pages.len(),
        dir.display()
    ))
}

/// Records a solved `fleet quiz` puzzle in the course's progress (steps 6 and 9 count them,
/// with the time they took). A failure to save is reported, not fatal: the answer stands.
pub fn record_puzzle(data_dir: &std::path::Path, puzzle: &str, took_secs: u64) {
    if let Err(e) = progress::update(data_dir, |p| {
        p.puzzles.insert(puzzle.to_owned(), took_secs);
    }) {
        eprintln!("fleet quiz: the course's progress was not saved: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    /// docs/course/ is generated from course/; this keeps them equal.
    #[test]
    fn docs_course_is_in_sync_with_course() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/course");
        if std::env::var_os("UPDATE_DOCS").is_some() {
            export_docs(&dir).unwrap();
        }
        for (name, content) in text::docs_pages() {
            let on_disk = std::fs::read_to_string(dir.join(&name)).unwrap_or_default();
            assert!(
                on_disk == content,
                "docs/course/{name} is out of date with course/: regenerate with \
                 `cargo run -p fleet -- course export-docs` (from the repository root) or \
                 `UPDATE_DOCS=1 cargo test -p fleet docs_course`"
            );
        }
        let readme =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
                .unwrap();
        assert!(
            readme.contains("docs/course/README.md"),
            "the README links the course"
        );
    }

    /// Every `fleet …` command the text shows parses with the real parser, and every TraceQL
    /// query in it parses in the desk.
    #[test]
    fn every_command_and_query_in_the_text_parses() {
        let mut commands = 0;
        let mut queries = 0;
        for s in text::STEPS {
            for args in s.fleet_commands() {
                let argv = std::iter::once("fleet".to_owned()).chain(args.iter().cloned());
                if let Err(e) = crate::Cli::try_parse_from(argv) {
                    panic!(
                        "{}: `fleet {}` does not parse:\n{e}",
                        s.file_name(),
                        args.join(" ")
                    );
                }
                commands += 1;
            }
            for q in s.traceql() {
                if let Err(e) = trace_desk::traceql::parse(&q) {
                    panic!(
                        "{}: TraceQL `{q}` does not parse in the desk: {e}",
                        s.file_name()
                    );
                }
                queries += 1;
            }
        }
        // Counted so an extraction that silently finds nothing fails.
        assert!(commands >= 30, "only {commands} fleet commands found");
        assert!(queries >= 15, "only {queries} TraceQL queries found");
    }

    /// Every `make TARGET` the text shows is a target of the Makefile.
    #[test]
    fn every_make_target_in_the_text_exists() {
        let makefile =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Makefile"))
                .unwrap();
        let mut seen = 0;
        for s in text::STEPS {
            for (lang, body) in s.code_blocks() {
                if lang != "sh" {
                    continue;
                }
                for line in body.lines() {
                    let words: Vec<&str> = line.split_whitespace().collect();
                    if words.first() == Some(&"make") {
                        for target in words[1..].iter().filter(|w| !w.contains('=')) {
                            assert!(
                                makefile.contains(&format!("\n{target}:")),
                                "{}: `make {target}` is not a Makefile target",
                                s.file_name()
                            );
                            seen += 1;
                        }
                    }
                }
            }
        }
        assert!(seen >= 3, "only {seen} make targets found");
    }

    #[test]
    fn the_lint_rejects_what_does_not_parse() {
        assert!(crate::Cli::try_parse_from(["fleet", "course", "chek", "1"]).is_err());
        assert!(crate::Cli::try_parse_from(["fleet", "course", "show", "11"]).is_err());
        assert!(trace_desk::traceql::parse("{ name = }").is_err());
    }
}
