//! The Prometheus text exposition format, for the desk's hand-written `/metrics` families.

use std::fmt::Write as _;

/// Appends one single-sample family: its `# HELP` and `# TYPE` lines and the sample.
pub fn write(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    // Writing to a String cannot fail.
    let _ = write!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
    );
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_family() {
        let mut out = String::new();
        super::write(&mut out, "x_total", "counter", "Things.", 3);
        assert_eq!(
            out,
            "# HELP x_total Things.\n# TYPE x_total counter\nx_total 3\n"
        );
    }
}
