//! The CLI's output: aligned text tables for people, JSON for scripts.

use chrono::{DateTime, Utc};

/// A text table: a header row and rows of cells, columns padded to the
/// widest cell. Cells are cut at `MAX_CELL` characters (JSON output keeps
/// them whole).
pub struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

const MAX_CELL: usize = 60;

impl Table {
    pub fn new(header: Vec<&'static str>) -> Table {
        Table {
            header,
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells.into_iter().map(|c| cut(&c)).collect());
    }

    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                if let Some(w) = widths.get_mut(i) {
                    *w = (*w).max(cell.chars().count());
                }
            }
        }
        let mut out = String::new();
        let line = |cells: Vec<&str>, out: &mut String| {
            let padded: Vec<String> = cells
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            out.push_str(padded.join("  ").trim_end());
            out.push('\n');
        };
        line(self.header.clone(), &mut out);
        for row in &self.rows {
            line(row.iter().map(String::as_str).collect(), &mut out);
        }
        out
    }
}

/// One line, at most `MAX_CELL` characters, control characters (from
/// receivers or the web app) shown as spaces.
fn cut(cell: &str) -> String {
    let clean: String = cell
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if clean.chars().count() <= MAX_CELL {
        clean
    } else {
        let mut s: String = clean.chars().take(MAX_CELL - 1).collect();
        s.push('…');
        s
    }
}

pub fn time(at: Option<DateTime<Utc>>) -> String {
    at.map_or_else(|| "-".into(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string())
}

pub fn opt<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".into(), |v| v.to_string())
}

pub fn json(value: &impl serde::Serialize) -> String {
    let mut s =
        serde_json::to_string_pretty(value).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_aligns_and_cuts() {
        let mut t = Table::new(vec!["id", "url"]);
        t.row(vec!["1".into(), "https://a.example".into()]);
        t.row(vec!["10".into(), "x".repeat(100)]);
        let out = t.render();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "id  url");
        assert_eq!(lines[1], "1   https://a.example");
        assert_eq!(lines[2].chars().count(), 4 + MAX_CELL);
        assert!(lines[2].ends_with('…'));
    }

    #[test]
    fn control_characters_do_not_reach_the_terminal() {
        let mut t = Table::new(vec!["error"]);
        t.row(vec!["bad\x1b[31mred\nline".into()]);
        assert_eq!(t.render().lines().nth(1), Some("bad [31mred line"));
    }
}
