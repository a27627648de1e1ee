//! Turns Cedar's diagnostics into `file:line:col: message` lines that an operator can jump to.

use miette::Diagnostic;

/// A source position, 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// Line.
    pub line: usize,
    /// Column, in characters.
    pub column: usize,
}

/// The line and column of byte `offset` in `text`.
pub fn position(text: &str, offset: usize) -> Position {
    let before = text.get(..offset.min(text.len())).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(line_start..).map_or(0, |l| l.chars().count()) + 1;
    Position { line, column }
}

/// `file:line:col: message (help)` for a diagnostic whose labels point into `text`.
pub fn locate(file: &str, text: &str, diagnostic: &dyn Diagnostic) -> String {
    let offset = diagnostic.labels().and_then(|mut labels| labels.next()).map(|label| label.offset());
    let message = describe(diagnostic);
    match offset {
        Some(offset) => {
            let p = position(text, offset);
            format!("{file}:{}:{}: {message}", p.line, p.column)
        }
        None => format!("{file}: {message}"),
    }
}

/// The message of a diagnostic with its help text, on one line.
pub fn describe(diagnostic: &dyn Diagnostic) -> String {
    let mut message = diagnostic.to_string();
    if let Some(help) = diagnostic.help() {
        message.push_str(&format!(" (help: {help})"));
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based() {
        let text = "ab\ncdé\nf";
        assert_eq!(position(text, 0), Position { line: 1, column: 1 });
        assert_eq!(position(text, 3), Position { line: 2, column: 1 });
        assert_eq!(position(text, 7), Position { line: 2, column: 4 });
        assert_eq!(position(text, 8), Position { line: 3, column: 1 });
    }
}
