//! `fleet course check N [ARGS]`: each step's expected outcome, verified against the fleet and
//! the trace backend (the desk or any Tempo).

use std::path::Path;

use clap::Args;

use super::{CourseError, text};

#[derive(Args, Debug, Clone)]
pub struct CheckArgs {
    #[arg(value_parser = clap::value_parser!(u8).range(1..=10))]
    step: u8,
    /// The step's answers (see the step's Check part).
    #[arg(trailing_var_arg = true)]
    args: Vec<String>,
    /// Tempo (or trace desk) base URL; default: the desk of the running fleet.
    #[arg(long, env = "FLEET_TEMPO_URL")]
    tempo: Option<String>,
}

pub async fn run(args: CheckArgs, _data_dir: &Path) -> Result<String, CourseError> {
    let step = text::step(args.step)?;
    Err(CourseError::Usage(format!(
        "the check of step {} is not written yet",
        step.number
    )))
}
