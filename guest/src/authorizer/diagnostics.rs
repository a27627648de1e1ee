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

/// One problem with a source file: where (when known) and what. Displayed as
/// `file:line:col: message (help: …)`; hosts can also render the source snippet from the span.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// File name.
    pub file: String,
    /// 1-based line, when the problem has a position.
    pub line: Option<usize>,
    /// 1-based column, in characters.
    pub column: Option<usize>,
    /// Byte offset of the span in the file.
    pub offset: Option<usize>,
    /// Byte length of the span.
    pub length: usize,
    /// What is wrong.
    pub message: String,
    /// How to fix it, when Cedar knows.
    pub help: Option<String>,
}

impl Problem {
    /// A problem located by a diagnostic whose labels point into `text`.
    pub fn at(file: &str, text: &str, diagnostic: &dyn Diagnostic) -> Self {
        let label = diagnostic.labels().and_then(|mut labels| labels.next());
        let offset = label.as_ref().map(|l| l.offset());
        let position = offset.map(|o| position(text, o));
        Problem {
            file: file.to_owned(),
            line: position.map(|p| p.line),
            column: position.map(|p| p.column),
            offset,
            length: label.map_or(0, |l| l.len()),
            message: diagnostic.to_string(),
            help: diagnostic.help().map(|h| h.to_string()),
        }
    }

    /// A problem with a file as a whole.
    pub fn general(file: &str, message: impl Into<String>) -> Self {
        Problem { file: file.to_owned(), line: None, column: None, offset: None, length: 0, message: message.into(), help: None }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.line, self.column) {
            (Some(line), Some(column)) => write!(f, "{}:{line}:{column}: {}", self.file, self.message)?,
            _ => write!(f, "{}: {}", self.file, self.message)?,
        }
        if let Some(help) = &self.help {
            write!(f, " (help: {help})")?;
        }
        Ok(())
    }
}

/// Problems as the one-line-each text of a configuration error.
pub fn lines(problems: &[Problem]) -> String {
    problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
}

/// `file:line:col: message (help)` for a diagnostic whose labels point into `text`.
pub fn locate(file: &str, text: &str, diagnostic: &dyn Diagnostic) -> String {
    Problem::at(file, text, diagnostic).to_string()
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
