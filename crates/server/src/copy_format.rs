//! `COPY`'s text and CSV formats, as Postgres reads and writes them.
//!
//! - text: one line per row, fields separated by the delimiter (tab by default), `\N` for
//!   NULL, and backslash escapes (`\t`, `\n`, `\r`, `\\`, `\b`, `\f`, `\v`, octal `\NNN`,
//!   hex `\xHH`); a line `\.` ends the data (old clients send it);
//! - CSV: fields separated by the delimiter (`,`), quoted with the quote character (`"`)
//!   when they hold a delimiter, quote, newline or carriage return, the quote doubled (or
//!   preceded by the escape character) inside; an unquoted empty field (or the NULL
//!   string) is NULL, a quoted empty string is an empty string; an optional header line.

use std::fmt;

use freshet_planner::sqlparser::ast::{CopyLegacyCsvOption, CopyLegacyOption, CopyOption};

/// How COPY's data is laid out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyFormat {
    pub csv: bool,
    pub delimiter: char,
    pub null: String,
    pub header: bool,
    pub quote: char,
    pub escape: char,
}

impl CopyFormat {
    /// The format `COPY … WITH (…)` (or the pre-9.0 spellings psycopg2 uses) asks for.
    pub fn from_options(
        options: &[CopyOption],
        legacy: &[CopyLegacyOption],
    ) -> Result<CopyFormat, String> {
        let mut csv = false;
        let (mut delimiter, mut null, mut header, mut quote, mut escape) =
            (None, None, false, None, None);
        for o in options {
            match o {
                CopyOption::Format(f) => match f.value.to_ascii_lowercase().as_str() {
                    "text" => csv = false,
                    "csv" => csv = true,
                    "binary" => {
                        return Err("COPY … FORMAT binary is not supported: use text or csv".into())
                    }
                    other => return Err(format!("COPY format \"{other}\" not recognized")),
                },
                CopyOption::Delimiter(c) => delimiter = Some(*c),
                CopyOption::Null(s) => null = Some(s.clone()),
                CopyOption::Header(h) => header = *h,
                CopyOption::Quote(c) => quote = Some(*c),
                CopyOption::Escape(c) => escape = Some(*c),
                CopyOption::Encoding(e)
                    if e.eq_ignore_ascii_case("utf8") || e.eq_ignore_ascii_case("utf-8") => {}
                CopyOption::Freeze(_) => {}
                other => return Err(format!("COPY option {other} is not supported")),
            }
        }
        for o in legacy {
            match o {
                CopyLegacyOption::Binary => {
                    return Err("COPY … BINARY is not supported: use text or csv".into())
                }
                CopyLegacyOption::Delimiter(c) => delimiter = Some(*c),
                CopyLegacyOption::Null(s) => null = Some(s.clone()),
                CopyLegacyOption::Csv(opts) => {
                    csv = true;
                    for c in opts {
                        match c {
                            CopyLegacyCsvOption::Header => header = true,
                            CopyLegacyCsvOption::Quote(q) => quote = Some(*q),
                            CopyLegacyCsvOption::Escape(e) => escape = Some(*e),
                            other => return Err(format!("COPY option {other} is not supported")),
                        }
                    }
                }
                other => return Err(format!("COPY option {other} is not supported")),
            }
        }
        if !csv && (quote.is_some() || escape.is_some()) {
            return Err("COPY quote and escape are available only in CSV mode".into());
        }
        if header && !csv {
            return Err("COPY HEADER is available only in CSV mode".into());
        }
        let quote = quote.unwrap_or('"');
        Ok(CopyFormat {
            csv,
            delimiter: delimiter.unwrap_or(if csv { ',' } else { '\t' }),
            null: null.unwrap_or_else(|| if csv { String::new() } else { "\\N".into() }),
            header,
            quote,
            escape: escape.unwrap_or(quote),
        })
    }
}

/// A line of COPY data that cannot be read.
#[derive(Debug, PartialEq, Eq)]
pub struct BadLine {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for BadLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (line {})", self.message, self.line)
    }
}

/// One row's fields (`None`: NULL) and the line it starts on.
pub type Record = (usize, Vec<Option<String>>);

/// The records of COPY data.
pub fn parse(data: &str, f: &CopyFormat) -> Result<Vec<Record>, BadLine> {
    let mut out = if f.csv {
        parse_csv(data, f)?
    } else {
        parse_text(data, f)?
    };
    if f.header && !out.is_empty() {
        out.remove(0);
    }
    Ok(out)
}

fn parse_text(data: &str, f: &CopyFormat) -> Result<Vec<Record>, BadLine> {
    let mut out = Vec::new();
    let lines: Vec<&str> = data.split('\n').collect();
    let last = lines.len();
    for (i, line) in lines.into_iter().enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line == "\\." {
            break;
        }
        if line.is_empty() && i + 1 == last {
            break; // the newline ending the last row
        }
        let fields = line
            .split(f.delimiter)
            .map(|raw| {
                if raw == f.null {
                    Ok(None)
                } else {
                    unescape(raw).map(Some)
                }
            })
            .collect::<Result<Vec<_>, String>>()
            .map_err(|message| BadLine {
                line: i + 1,
                message,
            })?;
        out.push((i + 1, fields));
    }
    Ok(out)
}

fn unescape(raw: &str) -> Result<String, String> {
    if !raw.contains('\\') {
        return Ok(raw.to_string());
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('b') => out.push('\u{8}'),
            Some('f') => out.push('\u{c}'),
            Some('v') => out.push('\u{b}'),
            Some('x') => {
                let mut v = 0u32;
                let mut n = 0;
                while n < 2 {
                    match chars.peek().and_then(|c| c.to_digit(16)) {
                        Some(d) => {
                            v = v * 16 + d;
                            chars.next();
                            n += 1;
                        }
                        None => break,
                    }
                }
                if n == 0 {
                    out.push('x');
                } else {
                    out.push(char::from_u32(v).ok_or("invalid \\x escape")?);
                }
            }
            Some(d @ '0'..='7') => {
                let mut v = d.to_digit(8).unwrap_or(0);
                for _ in 0..2 {
                    match chars.peek().and_then(|c| c.to_digit(8)) {
                        Some(d) => {
                            v = v * 8 + d;
                            chars.next();
                        }
                        None => break,
                    }
                }
                out.push(char::from_u32(v).ok_or("invalid octal escape")?);
            }
            Some(other) => out.push(other),
            None => return Err("end-of-copy marker corrupt: a lone backslash".into()),
        }
    }
    Ok(out)
}

fn parse_csv(data: &str, f: &CopyFormat) -> Result<Vec<Record>, BadLine> {
    let mut out = Vec::new();
    let mut line = 1;
    let mut chars = data.chars().peekable();
    while chars.peek().is_some() {
        let start = line;
        let mut fields = Vec::new();
        let mut field = String::new();
        let mut quoted = false;
        let mut was_quoted = false;
        loop {
            let Some(c) = chars.next() else {
                if quoted {
                    return Err(BadLine {
                        line: start,
                        message: "unterminated CSV quoted field".into(),
                    });
                }
                break;
            };
            if quoted {
                if c == f.escape && chars.peek() == Some(&f.quote) && f.escape != f.quote {
                    chars.next();
                    field.push(f.quote);
                } else if c == f.quote {
                    if f.escape == f.quote && chars.peek() == Some(&f.quote) {
                        chars.next();
                        field.push(f.quote);
                    } else {
                        quoted = false;
                    }
                } else {
                    if c == '\n' {
                        line += 1;
                    }
                    field.push(c);
                }
            } else if c == f.quote {
                quoted = true;
                was_quoted = true;
            } else if c == f.delimiter {
                fields.push(csv_value(std::mem::take(&mut field), was_quoted, f));
                was_quoted = false;
            } else if c == '\n' {
                line += 1;
                break;
            } else if c == '\r' && chars.peek() == Some(&'\n') {
                continue;
            } else {
                field.push(c);
            }
        }
        // `\.` alone on a line ends the data.
        if fields.is_empty() && !was_quoted && field == "\\." {
            break;
        }
        fields.push(csv_value(field, was_quoted, f));
        out.push((start, fields));
    }
    Ok(out)
}

fn csv_value(field: String, quoted: bool, f: &CopyFormat) -> Option<String> {
    if !quoted && field == f.null {
        None
    } else {
        Some(field)
    }
}

/// One row in COPY's output format, with its newline.
pub fn format_row(fields: &[Option<String>], f: &CopyFormat, out: &mut String) {
    for (i, v) in fields.iter().enumerate() {
        if i > 0 {
            out.push(f.delimiter);
        }
        match v {
            None => out.push_str(&f.null),
            Some(s) if f.csv => {
                let needs = s.is_empty() && f.null.is_empty()
                    || *s == f.null
                    || s.contains([f.delimiter, f.quote, '\n', '\r']);
                if needs {
                    out.push(f.quote);
                    for c in s.chars() {
                        if c == f.quote || c == f.escape {
                            out.push(f.escape);
                        }
                        out.push(c);
                    }
                    out.push(f.quote);
                } else {
                    out.push_str(s);
                }
            }
            Some(s) => {
                for c in s.chars() {
                    match c {
                        '\\' => out.push_str("\\\\"),
                        '\n' => out.push_str("\\n"),
                        '\r' => out.push_str("\\r"),
                        '\t' => out.push_str("\\t"),
                        c if c == f.delimiter => {
                            out.push('\\');
                            out.push(c);
                        }
                        c => out.push(c),
                    }
                }
            }
        }
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text() -> CopyFormat {
        CopyFormat::from_options(&[], &[]).unwrap()
    }

    fn csv() -> CopyFormat {
        CopyFormat {
            csv: true,
            ..CopyFormat::from_options(&[], &[CopyLegacyOption::Csv(vec![])]).unwrap()
        }
    }

    fn s(v: &str) -> Option<String> {
        Some(v.to_string())
    }

    #[test]
    fn text_rows_with_escapes_and_nulls() {
        let rows = parse(
            "1\tone\\ttab\t\\N\n2\ta\\\\b\\nc\t\\x41\\101\n\\.\n",
            &text(),
        )
        .unwrap();
        assert_eq!(
            rows,
            vec![
                (1, vec![s("1"), s("one\ttab"), None]),
                (2, vec![s("2"), s("a\\b\nc"), s("AA")]),
            ]
        );
        let mut out = String::new();
        format_row(&[s("a\tb"), None, s("x\\y")], &text(), &mut out);
        assert_eq!(out, "a\\tb\t\\N\tx\\\\y\n");
    }

    #[test]
    fn csv_quotes_newlines_and_nulls() {
        let f = csv();
        let rows = parse("1,\"a,b\",\n2,\"\",\"line\nbreak \"\"q\"\"\"\r\n", &f).unwrap();
        assert_eq!(
            rows,
            vec![
                (1, vec![s("1"), s("a,b"), None]),
                (2, vec![s("2"), s(""), s("line\nbreak \"q\"")]),
            ]
        );
        let mut out = String::new();
        format_row(&[s("a,b"), s(""), None, s("q\"")], &f, &mut out);
        assert_eq!(out, "\"a,b\",\"\",,\"q\"\"\"\n");
        let with_header = CopyFormat {
            header: true,
            ..f.clone()
        };
        assert_eq!(
            parse("id,v\n1,x\n", &with_header).unwrap(),
            vec![(2, vec![s("1"), s("x")])]
        );
        assert!(parse("1,\"open\n", &f).is_err());
    }

    #[test]
    fn options_and_their_mistakes() {
        use freshet_planner::sqlparser::ast::Ident;
        let f = CopyFormat::from_options(
            &[
                CopyOption::Format(Ident::new("csv")),
                CopyOption::Header(true),
                CopyOption::Delimiter(';'),
                CopyOption::Null("NULL".into()),
            ],
            &[],
        )
        .unwrap();
        assert!(f.csv && f.header && f.delimiter == ';' && f.null == "NULL");
        assert!(
            CopyFormat::from_options(&[CopyOption::Format(Ident::new("binary"))], &[]).is_err()
        );
        assert!(CopyFormat::from_options(&[CopyOption::Header(true)], &[]).is_err());
    }
}
