//! The one table: every figure with its unit, its target and whether it met it.

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    pub section: &'static str,
    pub name: String,
    /// The number, when the figure is one (NaN-free: absent instead).
    pub value: Option<f64>,
    pub unit: String,
    /// How the value reads in the table.
    pub display: String,
    pub target: Option<String>,
    pub pass: Option<bool>,
    pub note: String,
}

#[derive(Default)]
pub struct Table {
    pub figures: Vec<Figure>,
}

/// Three significant digits, no trailing noise.
pub fn num(v: f64) -> String {
    if !v.is_finite() {
        return "n/a".into();
    }
    let a = v.abs();
    if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

impl Table {
    pub fn add(
        &mut self,
        section: &'static str,
        name: impl Into<String>,
        value: f64,
        unit: &str,
        target: Option<(&str, bool)>,
        note: impl Into<String>,
    ) {
        let display = if unit == "×" {
            format!("{}×", num(value))
        } else if unit == "%" {
            format!("{}%", num(value))
        } else {
            format!("{} {unit}", num(value))
        };
        self.figures.push(Figure {
            section,
            name: name.into(),
            value: value.is_finite().then_some(value),
            unit: unit.to_owned(),
            display,
            target: target.map(|(t, _)| t.to_owned()),
            pass: target.map(|(_, p)| p),
            note: note.into(),
        });
    }

    pub fn text(
        &mut self,
        section: &'static str,
        name: impl Into<String>,
        display: impl Into<String>,
        note: impl Into<String>,
    ) {
        self.figures.push(Figure {
            section,
            name: name.into(),
            value: None,
            unit: String::new(),
            display: display.into(),
            target: None,
            pass: None,
            note: note.into(),
        });
    }

    /// A Markdown table (it reads in a terminal too, and pastes into docs/performance.md).
    pub fn render(&self) -> String {
        let mut out = String::from(
            "| # | figure | value | target | result | how measured |\n| --- | --- | --- | --- | --- | --- |\n",
        );
        for f in &self.figures {
            let result = match f.pass {
                Some(true) => "pass",
                Some(false) => "**FAIL**",
                None => "",
            };
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} |\n",
                f.section,
                f.name,
                f.display,
                f.target.as_deref().unwrap_or(""),
                result,
                f.note.replace('|', "\\|")
            ));
        }
        out
    }
}
