//! The learner's progress: `DATA_DIR/course-progress.json`, written whole through a temporary
//! file and a rename so a crash never leaves half of it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::CourseError;

/// The file's name inside the fleet's data dir.
pub const FILE: &str = "course-progress.json";

#[derive(Serialize, Deserialize, Default, Debug, Clone, PartialEq)]
pub struct Progress {
    /// Step number → when its check passed (Unix seconds).
    #[serde(default)]
    pub completed: BTreeMap<u8, u64>,
    /// Step 4's exercises passed so far.
    #[serde(default)]
    pub exercises: BTreeSet<String>,
    /// The trace step 5 generated and asks about.
    #[serde(default)]
    pub waterfall_trace: Option<String>,
    /// Quiz puzzles answered right: puzzle id → seconds from `fleet quiz start` to the answer.
    #[serde(default)]
    pub puzzles: BTreeMap<String, u64>,
}

pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE)
}

impl Progress {
    /// The progress in `data_dir`; none yet is an empty one.
    pub fn load(data_dir: &Path) -> Result<Progress, CourseError> {
        let path = path(data_dir);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|source| CourseError::BadProgress { path, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Progress::default()),
            Err(source) => Err(CourseError::Io { path, source }),
        }
    }

    pub fn save(&self, data_dir: &Path) -> Result<(), CourseError> {
        let path = path(data_dir);
        let io = |source| CourseError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(data_dir).map_err(io)?;
        let tmp = data_dir.join(format!("{FILE}.tmp"));
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| CourseError::Io {
            path: path.clone(),
            source: std::io::Error::other(e),
        })?;
        std::fs::write(&tmp, bytes).map_err(|source| CourseError::Io {
            path: tmp.clone(),
            source,
        })?;
        std::fs::rename(&tmp, &path).map_err(io)
    }

    pub fn done(&self, step: u8) -> bool {
        self.completed.contains_key(&step)
    }

    pub fn mark_done(&mut self, step: u8) {
        self.completed.entry(step).or_insert_with(now);
    }

    pub fn count(&self) -> usize {
        self.completed.len()
    }

    /// Forgets step `n`: its completion and what counts towards it (exercises, the generated
    /// trace, the puzzles).
    pub fn reset_step(&mut self, n: u8) {
        use super::checks::puzzles_of;
        self.completed.remove(&n);
        match n {
            4 => self.exercises.clear(),
            5 => self.waterfall_trace = None,
            _ => {}
        }
        for id in puzzles_of(n) {
            self.puzzles.remove(*id);
        }
    }
}

/// Loads, changes and saves the progress in one go.
pub fn update(
    data_dir: &Path,
    change: impl FnOnce(&mut Progress),
) -> Result<Progress, CourseError> {
    let mut progress = Progress::load(data_dir)?;
    change(&mut progress);
    progress.save(data_dir)?;
    Ok(progress)
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_a_missing_file_is_empty() {
        let dir = std::env::temp_dir().join(format!("course-{}", uuid::Uuid::new_v4().simple()));
        assert_eq!(Progress::load(&dir).unwrap(), Progress::default());
        let p = update(&dir, |p| {
            p.mark_done(3);
            p.exercises.insert("failed-checkouts".into());
        })
        .unwrap();
        assert!(p.done(3) && !p.done(1));
        let mut q = p.clone();
        q.mark_done(4);
        q.mark_done(6);
        q.puzzles.insert("n-plus-one".into(), 30);
        q.puzzles.insert("charge-errors".into(), 30);
        q.reset_step(4);
        q.reset_step(6);
        assert!(q.exercises.is_empty() && !q.done(4) && !q.done(6) && q.done(3));
        assert_eq!(q.puzzles.keys().collect::<Vec<_>>(), ["charge-errors"]);
        assert_eq!(Progress::load(&dir).unwrap(), p);
        std::fs::write(path(&dir), "{not json").unwrap();
        let err = Progress::load(&dir).unwrap_err().to_string();
        assert!(err.contains("course reset"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
