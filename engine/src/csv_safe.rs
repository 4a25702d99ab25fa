//! CSV cells that a spreadsheet will not run. A cell starting with `=`,
//! `+`, `-`, `@`, a tab or a carriage return is read as a formula by
//! Excel, LibreOffice and Google Sheets (CSV injection); OWASP's advice is
//! to prefix it with a single quote, which shows the text as it is. Every
//! CSV we write passes its cells through [`cell`].

use std::borrow::Cow;

/// `text`, made inert for a spreadsheet.
pub fn cell(text: &str) -> Cow<'_, str> {
    match text.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => Cow::Owned(format!("'{text}")),
        _ => Cow::Borrowed(text),
    }
}

#[cfg(test)]
mod tests {
    use super::cell;

    #[test]
    fn formula_starts_are_quoted_and_other_text_is_kept() {
        for bad in [
            "=HYPERLINK(\"http://x\")",
            "+1",
            "-2+3",
            "@SUM(A1)",
            "\tx",
            "\rx",
        ] {
            assert_eq!(cell(bad), format!("'{bad}"));
        }
        for fine in ["", "ada@example.com", "p-1", "1-2", "plain"] {
            assert_eq!(cell(fine), fine);
        }
    }
}
