//! Postgres' SQL/JSON path language (`jsonpath`): the operators `jsonb @? path` and
//! `jsonb @@ path`, and `jsonb_path_exists`, `jsonb_path_match`, `jsonb_path_query`
//! (a set), `jsonb_path_query_array` and `jsonb_path_query_first`, each with optional
//! `vars` and `silent` arguments.
//!
//! A path is text (`'$.track[*] ? (@.ms > 1000).title'`), parsed when a call runs
//! (once per distinct path). What it reads: `lax` (the default) and `strict` modes, `$`,
//! `@`, `$var`, `.key`, `."key"`, `.*`, `.**` (with `{n}`, `{n to m}`, `last`), `[n]`,
//! `[n to m]`, `[last - 1]`, `[*]`, filters `? (…)`, `== != <> < <= > >=`, `&& || !`,
//! `exists (…)`, `like_regex "…" flag "…"`, `starts with`, `is unknown`, `+ - * / %`,
//! and the methods `type()`, `size()`, `double()`, `ceiling()`, `floor()`, `abs()`.
//! Lax mode unwraps arrays and ignores missing keys, as Postgres does; strict mode
//! raises them (unless `silent`). `@?` and `@@` are silent, as in Postgres.
//!
//! Numbers are JSON's 64-bit ones (`crate::jsonb`): arithmetic stays integral when
//! both sides are, else it is a double (Postgres computes `numeric`s: `$.a / 4` is
//! `2.5`, Postgres `2.5000000000000000`). `.datetime()`, `.keyvalue()` and `like_regex`
//! flags other than `i`, `s`, `m`, `x` and `q` are not supported (an error names them).

use std::borrow::Cow;
use std::cell::RefCell;

use serde_json::{Number, Value};

/// Why a path does not parse or evaluate, with Postgres' SQLSTATE.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct PathError {
    pub code: &'static str,
    pub message: String,
}

fn error(code: &'static str, message: impl Into<String>) -> PathError {
    PathError {
        code,
        message: message.into(),
    }
}

fn syntax(message: impl std::fmt::Display) -> PathError {
    error("42601", format!("syntax error in jsonpath: {message}"))
}

/// A parsed path.
#[derive(Debug, Clone, PartialEq)]
pub struct Path {
    strict: bool,
    expr: Node,
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Root,
    Current,
    Var(String),
    Last,
    Literal(Value),
    Step(Box<Node>, Step),
    Arith(char, Box<Node>, Box<Node>),
    Neg(Box<Node>),
    Plus(Box<Node>),
    Compare(Cmp, Box<Node>, Box<Node>),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Not(Box<Node>),
    IsUnknown(Box<Node>),
    Exists(Box<Node>),
    LikeRegex(Box<Node>, String, String),
    StartsWith(Box<Node>, Box<Node>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Key(String),
    AnyKey,
    AnyIndex,
    /// Subscripts: each an index or a range (`from to to`).
    Index(Vec<(Node, Option<Node>)>),
    /// `.**{from to to}` (levels; `None`: to the last).
    Descend(u32, Option<u32>),
    Filter(Box<Node>),
    Method(&'static str),
}

impl Node {
    fn is_predicate(&self) -> bool {
        matches!(
            self,
            Node::Compare(..)
                | Node::And(..)
                | Node::Or(..)
                | Node::Not(_)
                | Node::IsUnknown(_)
                | Node::Exists(_)
                | Node::LikeRegex(..)
                | Node::StartsWith(..)
        )
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Dollar,
    Var(String),
    At,
    Ident(String),
    Str(String),
    Num(Number),
    Punct(&'static str),
}

fn tokenize(s: &str) -> Result<Vec<Token>, PathError> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    // Postgres takes any character past ASCII in a key (`$.😀`).
    let ident_char = |c: char| c.is_alphanumeric() || c == '_' || !c.is_ascii();
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c == '$' {
            i += 1;
            if chars.get(i).is_some_and(|c| ident_char(*c)) {
                let start = i;
                while chars.get(i).is_some_and(|c| ident_char(*c)) {
                    i += 1;
                }
                out.push(Token::Var(chars[start..i].iter().collect()));
            } else if chars.get(i) == Some(&'"') {
                let (name, next) = string(&chars, i)?;
                out.push(Token::Var(name));
                i = next;
            } else {
                out.push(Token::Dollar);
            }
            continue;
        }
        if c == '@' {
            out.push(Token::At);
            i += 1;
            continue;
        }
        if c == '"' {
            let (text, next) = string(&chars, i)?;
            out.push(Token::Str(text));
            i = next;
            continue;
        }
        if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit) && {
                // `.5` is a number only where a value may start.
                !matches!(
                    out.last(),
                    Some(Token::Dollar | Token::At | Token::Var(_) | Token::Ident(_))
                        | Some(Token::Punct("]" | ")"))
                )
            })
        {
            let start = i;
            while chars.get(i).is_some_and(char::is_ascii_digit) {
                i += 1;
            }
            if chars.get(i) == Some(&'.') && chars.get(i + 1).is_some_and(char::is_ascii_digit) {
                i += 1;
                while chars.get(i).is_some_and(char::is_ascii_digit) {
                    i += 1;
                }
            }
            if matches!(chars.get(i), Some('e' | 'E')) {
                let mut j = i + 1;
                if matches!(chars.get(j), Some('+' | '-')) {
                    j += 1;
                }
                if chars.get(j).is_some_and(char::is_ascii_digit) {
                    i = j;
                    while chars.get(i).is_some_and(char::is_ascii_digit) {
                        i += 1;
                    }
                }
            }
            let text: String = chars[start..i].iter().collect();
            let number = if let Ok(n) = text.parse::<i64>() {
                Number::from(n)
            } else {
                text.parse::<f64>()
                    .ok()
                    .and_then(Number::from_f64)
                    .ok_or_else(|| syntax(format!("bad number \"{text}\"")))?
            };
            if chars.get(i).is_some_and(|c| ident_char(*c)) {
                return Err(syntax(format!(
                    "trailing junk after numeric literal \"{text}\""
                )));
            }
            out.push(Token::Num(number));
            continue;
        }
        if ident_char(c) {
            let start = i;
            while chars.get(i).is_some_and(|c| ident_char(*c)) {
                i += 1;
            }
            out.push(Token::Ident(chars[start..i].iter().collect()));
            continue;
        }
        const PUNCT: [&str; 24] = [
            "**", "==", "!=", "<>", "<=", ">=", "&&", "||", ".", "[", "]", "(", ")", "{", "}", ",",
            "?", "*", "<", ">", "!", "+", "-", "/",
        ];
        let rest: String = chars[i..chars.len().min(i + 2)].iter().collect();
        if let Some(p) = PUNCT.iter().find(|p| rest.starts_with(**p)) {
            out.push(Token::Punct(p));
            i += p.len();
            continue;
        }
        if c == '%' {
            out.push(Token::Punct("%"));
            i += 1;
            continue;
        }
        return Err(syntax(format!("unexpected character \"{c}\"")));
    }
    Ok(out)
}

/// A double-quoted string from `chars[start]`, with JSON's escapes; and where it ends.
fn string(chars: &[char], start: usize) -> Result<(String, usize), PathError> {
    let mut out = String::new();
    let mut i = start + 1;
    loop {
        match chars.get(i) {
            None => return Err(syntax("unterminated quoted string")),
            Some('"') => return Ok((out, i + 1)),
            Some('\\') => {
                i += 1;
                match chars.get(i) {
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some('r') => out.push('\r'),
                    Some('b') => out.push('\u{8}'),
                    Some('f') => out.push('\u{c}'),
                    Some('v') => out.push('\u{b}'),
                    Some('u') => {
                        let hex: String = chars.get(i + 1..i + 5).unwrap_or(&[]).iter().collect();
                        let code = u32::from_str_radix(&hex, 16)
                            .ok()
                            .and_then(char::from_u32)
                            .ok_or_else(|| syntax("invalid Unicode escape"))?;
                        out.push(code);
                        i += 4;
                    }
                    Some(c) => out.push(*c),
                    None => return Err(syntax("unterminated quoted string")),
                }
                i += 1;
            }
            Some(c) => {
                out.push(*c);
                i += 1;
            }
        }
    }
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    /// How deeply the expression being read nests (parentheses, filters, `exists`).
    depth: usize,
}

/// The most tokens a path may have, and the deepest it may nest: evaluation recurses
/// over its tree.
const MAX_TOKENS: usize = 1000;
const MAX_DEPTH: usize = 64;

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }
    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }
    fn eat(&mut self, p: &str) -> bool {
        if matches!(self.peek(), Some(Token::Punct(q)) if *q == p) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn eat_word(&mut self, w: &str) -> bool {
        if matches!(self.peek(), Some(Token::Ident(i)) if i == w) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn expect(&mut self, p: &str) -> Result<(), PathError> {
        if self.eat(p) {
            Ok(())
        } else {
            Err(self.unexpected())
        }
    }
    fn unexpected(&self) -> PathError {
        match self.peek() {
            None => error("42601", "syntax error at end of jsonpath input"),
            Some(t) => error(
                "42601",
                format!("syntax error at or near {t:?} of jsonpath input"),
            ),
        }
    }

    fn or(&mut self) -> Result<Node, PathError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(error(
                "54001",
                format!("jsonpath nests more than {MAX_DEPTH} levels deep"),
            ));
        }
        let mut left = self.and()?;
        while self.eat("||") {
            left = Node::Or(Box::new(left), Box::new(self.and()?));
        }
        self.depth -= 1;
        Ok(left)
    }
    fn and(&mut self) -> Result<Node, PathError> {
        let mut left = self.not()?;
        while self.eat("&&") {
            left = Node::And(Box::new(left), Box::new(self.not()?));
        }
        Ok(left)
    }
    fn not(&mut self) -> Result<Node, PathError> {
        if self.eat("!") {
            return Ok(Node::Not(Box::new(self.not()?)));
        }
        self.comparison()
    }
    fn comparison(&mut self) -> Result<Node, PathError> {
        let left = self.additive()?;
        let op = match self.peek() {
            Some(Token::Punct("==")) => Some(Cmp::Eq),
            Some(Token::Punct("!=" | "<>")) => Some(Cmp::Ne),
            Some(Token::Punct("<")) => Some(Cmp::Lt),
            Some(Token::Punct("<=")) => Some(Cmp::Le),
            Some(Token::Punct(">")) => Some(Cmp::Gt),
            Some(Token::Punct(">=")) => Some(Cmp::Ge),
            _ => None,
        };
        if let Some(op) = op {
            self.pos += 1;
            let right = self.additive()?;
            return Ok(Node::Compare(op, Box::new(left), Box::new(right)));
        }
        if self.eat_word("like_regex") {
            let Some(Token::Str(pattern)) = self.next() else {
                return Err(self.unexpected());
            };
            let mut flags = String::new();
            if self.eat_word("flag") {
                let Some(Token::Str(f)) = self.next() else {
                    return Err(self.unexpected());
                };
                flags = f;
            }
            return Ok(Node::LikeRegex(Box::new(left), pattern, flags));
        }
        if self.eat_word("starts") {
            if !self.eat_word("with") {
                return Err(self.unexpected());
            }
            let right = self.additive()?;
            return Ok(Node::StartsWith(Box::new(left), Box::new(right)));
        }
        Ok(left)
    }
    fn additive(&mut self) -> Result<Node, PathError> {
        let mut left = self.multiplicative()?;
        loop {
            let op = if self.eat("+") {
                '+'
            } else if self.eat("-") {
                '-'
            } else {
                return Ok(left);
            };
            left = Node::Arith(op, Box::new(left), Box::new(self.multiplicative()?));
        }
    }
    fn multiplicative(&mut self) -> Result<Node, PathError> {
        let mut left = self.unary()?;
        loop {
            let op = if self.eat("*") {
                '*'
            } else if self.eat("/") {
                '/'
            } else if self.eat("%") {
                '%'
            } else {
                return Ok(left);
            };
            left = Node::Arith(op, Box::new(left), Box::new(self.unary()?));
        }
    }
    fn unary(&mut self) -> Result<Node, PathError> {
        if self.eat("-") {
            return Ok(Node::Neg(Box::new(self.unary()?)));
        }
        if self.eat("+") {
            return Ok(Node::Plus(Box::new(self.unary()?)));
        }
        self.postfix()
    }
    fn primary(&mut self) -> Result<Node, PathError> {
        match self.next() {
            Some(Token::Dollar) => Ok(Node::Root),
            Some(Token::At) => Ok(Node::Current),
            Some(Token::Var(v)) => Ok(Node::Var(v)),
            Some(Token::Num(n)) => Ok(Node::Literal(Value::Number(n))),
            Some(Token::Str(s)) => Ok(Node::Literal(Value::String(s))),
            Some(Token::Ident(w)) => match w.as_str() {
                "true" => Ok(Node::Literal(Value::Bool(true))),
                "false" => Ok(Node::Literal(Value::Bool(false))),
                "null" => Ok(Node::Literal(Value::Null)),
                "last" => Ok(Node::Last),
                "exists" => {
                    self.expect("(")?;
                    let inner = self.or()?;
                    self.expect(")")?;
                    Ok(Node::Exists(Box::new(inner)))
                }
                _ => {
                    self.pos -= 1;
                    Err(self.unexpected())
                }
            },
            Some(Token::Punct("(")) => {
                let inner = self.or()?;
                self.expect(")")?;
                if inner.is_predicate() && self.eat_word("is") {
                    if !self.eat_word("unknown") {
                        return Err(self.unexpected());
                    }
                    return Ok(Node::IsUnknown(Box::new(inner)));
                }
                Ok(inner)
            }
            _ => {
                self.pos = self.pos.saturating_sub(1);
                Err(self.unexpected())
            }
        }
    }
    fn postfix(&mut self) -> Result<Node, PathError> {
        let mut node = self.primary()?;
        loop {
            if self.eat(".") {
                let step = match self.next() {
                    Some(Token::Punct("*")) => Step::AnyKey,
                    Some(Token::Punct("**")) => self.levels()?,
                    Some(Token::Str(key)) => Step::Key(key),
                    Some(Token::Ident(name)) => {
                        if self.eat("(") {
                            self.expect(")")?;
                            Step::Method(method(&name)?)
                        } else {
                            Step::Key(name)
                        }
                    }
                    _ => {
                        self.pos = self.pos.saturating_sub(1);
                        return Err(self.unexpected());
                    }
                };
                node = Node::Step(Box::new(node), step);
            } else if self.eat("[") {
                if self.eat("*") {
                    self.expect("]")?;
                    node = Node::Step(Box::new(node), Step::AnyIndex);
                    continue;
                }
                let mut subscripts = Vec::new();
                loop {
                    let from = self.additive()?;
                    let to = if self.eat_word("to") {
                        Some(self.additive()?)
                    } else {
                        None
                    };
                    subscripts.push((from, to));
                    if !self.eat(",") {
                        break;
                    }
                }
                self.expect("]")?;
                node = Node::Step(Box::new(node), Step::Index(subscripts));
            } else if self.eat("?") {
                self.expect("(")?;
                let predicate = self.or()?;
                self.expect(")")?;
                node = Node::Step(Box::new(node), Step::Filter(Box::new(predicate)));
            } else {
                return Ok(node);
            }
        }
    }
    /// `.**` and its optional `{n}` / `{n to m}` levels.
    fn levels(&mut self) -> Result<Step, PathError> {
        if !self.eat("{") {
            return Ok(Step::Descend(0, None));
        }
        let level = |p: &mut Parser| -> Result<Option<u32>, PathError> {
            match p.next() {
                Some(Token::Num(n)) => n
                    .as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .map(Some)
                    .ok_or_else(|| syntax("invalid level")),
                Some(Token::Ident(w)) if w == "last" => Err(error(
                    "0A000",
                    "jsonpath .**{last} is not supported: give the levels as numbers",
                )),
                _ => Err(p.unexpected()),
            }
        };
        let from = level(self)?;
        let to = if self.eat_word("to") {
            level(self)?
        } else {
            from
        };
        self.expect("}")?;
        Ok(Step::Descend(from.unwrap_or(u32::MAX), to))
    }
}

fn method(name: &str) -> Result<&'static str, PathError> {
    Ok(match name {
        "type" => "type",
        "size" => "size",
        "double" => "double",
        "ceiling" => "ceiling",
        "floor" => "floor",
        "abs" => "abs",
        other => {
            return Err(error(
                "0A000",
                format!("jsonpath method .{other}() is not supported"),
            ))
        }
    })
}

/// Parses a path (Postgres' `jsonpath` input).
pub fn parse(text: &str) -> Result<Path, PathError> {
    let tokens = tokenize(text)?;
    if tokens.len() > MAX_TOKENS {
        return Err(error(
            "54001",
            format!("jsonpath has more than {MAX_TOKENS} tokens"),
        ));
    }
    let mut parser = Parser {
        tokens,
        pos: 0,
        depth: 0,
    };
    let strict = if parser.eat_word("strict") {
        true
    } else {
        parser.eat_word("lax");
        false
    };
    let expr = parser.or()?;
    if parser.peek().is_some() {
        return Err(parser.unexpected());
    }
    Ok(Path { strict, expr })
}

/// Three-valued logic of predicates.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Tri {
    True,
    False,
    Unknown,
}

impl Tri {
    fn of(b: bool) -> Tri {
        if b {
            Tri::True
        } else {
            Tri::False
        }
    }
}

/// The most items one evaluation may produce (`.**` repeated multiplies them).
const MAX_ITEMS: usize = 1_000_000;

struct Eval<'a> {
    root: &'a Value,
    vars: &'a Value,
    strict: bool,
    /// Items produced so far.
    spent: std::cell::Cell<usize>,
}

/// An item: a part of the document or of `vars` (borrowed), or a value computed.
type Item<'a> = Cow<'a, Value>;

impl Path {
    /// The items the path gives for `doc` with `vars` (an object, or null).
    pub fn query(&self, doc: &Value, vars: &Value) -> Result<Vec<Value>, PathError> {
        let e = Eval {
            root: doc,
            vars,
            strict: self.strict,
            spent: std::cell::Cell::new(0),
        };
        let at = Cow::Borrowed(doc);
        if self.expr.is_predicate() {
            return Ok(vec![tri_value(e.predicate(&self.expr, &at, None)?)]);
        }
        Ok(e.items(&self.expr, &at, None)?
            .into_iter()
            .map(Cow::into_owned)
            .collect())
    }
}

fn tri_value(t: Tri) -> Value {
    match t {
        Tri::True => Value::Bool(true),
        Tri::False => Value::Bool(false),
        Tri::Unknown => Value::Null,
    }
}

/// The elements of an array item.
fn elements<'a>(item: &Item<'a>) -> Option<Vec<Item<'a>>> {
    match item {
        Cow::Borrowed(Value::Array(a)) => Some(a.iter().map(Cow::Borrowed).collect()),
        Cow::Owned(Value::Array(a)) => Some(a.iter().cloned().map(Cow::Owned).collect()),
        _ => None,
    }
}

/// The member `key` of an object item (`None` for one without it, or no object).
fn member<'a>(item: &Item<'a>, key: &str) -> Option<Item<'a>> {
    match item {
        Cow::Borrowed(Value::Object(o)) => o.get(key).map(Cow::Borrowed),
        Cow::Owned(Value::Object(o)) => o.get(key).cloned().map(Cow::Owned),
        _ => None,
    }
}

/// The members of an object item.
fn members<'a>(item: &Item<'a>) -> Option<Vec<Item<'a>>> {
    match item {
        Cow::Borrowed(Value::Object(o)) => Some(o.values().map(Cow::Borrowed).collect()),
        Cow::Owned(Value::Object(o)) => Some(o.values().cloned().map(Cow::Owned).collect()),
        _ => None,
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A double as Postgres writes it back into `jsonb` (a `numeric` of its shortest
/// digits: `1`, not `1.0`).
fn double(f: f64) -> Result<Value, PathError> {
    if f.fract() == 0.0 && f.abs() < 9.0e15 {
        Ok(Value::from(f as i64))
    } else {
        number(f)
    }
}

fn number(f: f64) -> Result<Value, PathError> {
    Number::from_f64(f)
        .map(Value::Number)
        .ok_or_else(|| error("22003", "numeric value out of range"))
}

impl<'a> Eval<'a> {
    /// Counts `n` more items; an error past [`MAX_ITEMS`].
    fn spend(&self, n: usize) -> Result<(), PathError> {
        let spent = self.spent.get().saturating_add(n);
        self.spent.set(spent);
        if spent > MAX_ITEMS {
            return Err(error(
                "54000",
                format!("jsonpath evaluation produces more than {MAX_ITEMS} items"),
            ));
        }
        Ok(())
    }

    /// Arrays unwrapped into their elements (lax mode), or the items as they are.
    fn unwrap(&self, items: Vec<Item<'a>>) -> Vec<Item<'a>> {
        if self.strict {
            return items;
        }
        let mut out = Vec::with_capacity(items.len());
        for v in items {
            match elements(&v) {
                Some(e) => out.extend(e),
                None => out.push(v),
            }
        }
        out
    }

    fn items(
        &self,
        node: &Node,
        at: &Item<'a>,
        last: Option<i64>,
    ) -> Result<Vec<Item<'a>>, PathError> {
        let out = match node {
            Node::Root => vec![Cow::Borrowed(self.root)],
            Node::Current => vec![at.clone()],
            Node::Var(name) => match self.vars.get(name) {
                Some(v) => vec![Cow::Borrowed(v)],
                None => {
                    return Err(error(
                        "42704",
                        format!("could not find jsonpath variable \"{name}\""),
                    ))
                }
            },
            Node::Last => match last {
                Some(l) => vec![Cow::Owned(Value::from(l))],
                None => return Err(error("42601", "LAST is allowed only in array subscripts")),
            },
            Node::Literal(v) => vec![Cow::Owned(v.clone())],
            Node::Step(base, step) => {
                let base = self.items(base, at, last)?;
                let mut out = Vec::new();
                for item in base {
                    self.step(step, item, at, &mut out)?;
                }
                out
            }
            Node::Arith(op, l, r) => {
                let single = |side: &str, items: Vec<Item<'a>>| -> Result<Value, PathError> {
                    let items = self.unwrap(items);
                    match items.as_slice() {
                        [v] if v.is_number() => Ok(v.as_ref().clone()),
                        _ => Err(error(
                            "22038",
                            format!(
                                "{side} operand of jsonpath operator {op} is not a single numeric value"
                            ),
                        )),
                    }
                };
                let a = single("left", self.items(l, at, last)?)?;
                let b = single("right", self.items(r, at, last)?)?;
                vec![Cow::Owned(arith(*op, &a, &b)?)]
            }
            Node::Neg(n) | Node::Plus(n) => {
                let negate = matches!(node, Node::Neg(_));
                let mut out = Vec::new();
                for v in self.unwrap(self.items(n, at, last)?) {
                    let Value::Number(x) = v.as_ref() else {
                        return Err(error(
                            "22038",
                            format!(
                                "operand of unary jsonpath operator {} is not a numeric value",
                                if negate { '-' } else { '+' }
                            ),
                        ));
                    };
                    out.push(if !negate {
                        v.clone()
                    } else if let Some(i) = x.as_i64().and_then(i64::checked_neg) {
                        Cow::Owned(Value::from(i))
                    } else {
                        Cow::Owned(number(-x.as_f64().unwrap_or(0.0))?)
                    });
                }
                out
            }
            predicate => vec![Cow::Owned(tri_value(self.predicate(predicate, at, last)?))],
        };
        self.spend(out.len())?;
        Ok(out)
    }

    /// `step` applied to `item`; `at` is the filter's current item (for `@` in
    /// subscripts).
    fn step(
        &self,
        step: &Step,
        item: Item<'a>,
        at: &Item<'a>,
        out: &mut Vec<Item<'a>>,
    ) -> Result<(), PathError> {
        match step {
            Step::Key(key) => {
                if let Some(v) = member(&item, key) {
                    out.push(v);
                } else if item.is_object() {
                    if self.strict {
                        return Err(error(
                            "2203A",
                            format!("JSON object does not contain key \"{key}\""),
                        ));
                    }
                } else if let (false, Some(elements)) = (self.strict, elements(&item)) {
                    // Lax mode unwraps one level of array.
                    out.extend(elements.iter().filter_map(|e| member(e, key)));
                } else if self.strict {
                    return Err(error(
                        "2203A",
                        "jsonpath member accessor can only be applied to an object",
                    ));
                }
            }
            Step::AnyKey => {
                if let Some(values) = members(&item) {
                    out.extend(values);
                } else if let (false, Some(elements)) = (self.strict, elements(&item)) {
                    for e in &elements {
                        out.extend(members(e).unwrap_or_default());
                    }
                } else if self.strict {
                    return Err(error(
                        "2203C",
                        "jsonpath wildcard member accessor can only be applied to an object",
                    ));
                }
            }
            Step::AnyIndex => match elements(&item) {
                Some(e) => out.extend(e),
                None if self.strict => {
                    return Err(error(
                        "22039",
                        "jsonpath wildcard array accessor can only be applied to an array",
                    ))
                }
                None => out.push(item),
            },
            Step::Index(subscripts) => {
                let elements = match elements(&item) {
                    Some(e) => e,
                    None if self.strict => {
                        return Err(error(
                            "22039",
                            "jsonpath array accessor can only be applied to an array",
                        ))
                    }
                    None => vec![item],
                };
                let last = elements.len() as i64 - 1;
                for (from, to) in subscripts {
                    let index = |n: &Node| -> Result<i64, PathError> {
                        let items = self.items(n, at, Some(last))?;
                        match items.as_slice() {
                            [v] => match v.as_ref() {
                                Value::Number(x) => Ok(x
                                    .as_i64()
                                    .unwrap_or_else(|| x.as_f64().unwrap_or(0.0).trunc() as i64)),
                                _ => Err(error(
                                    "22033",
                                    "jsonpath array subscript is not a single numeric value",
                                )),
                            },
                            _ => Err(error(
                                "22033",
                                "jsonpath array subscript is not a single numeric value",
                            )),
                        }
                    };
                    let start = index(from)?;
                    let end = match to {
                        Some(t) => index(t)?,
                        None => start,
                    };
                    if self.strict && (start < 0 || end > last || start > end) {
                        return Err(error("22033", "jsonpath array subscript is out of bounds"));
                    }
                    let (start, end) = (start.max(0), end.min(last));
                    if start <= end {
                        for i in start..=end {
                            if let Some(v) = usize::try_from(i).ok().and_then(|i| elements.get(i)) {
                                out.push(v.clone());
                            }
                        }
                    }
                }
            }
            Step::Descend(from, to) => {
                let mut found = Vec::new();
                match &item {
                    Cow::Borrowed(v) => descend(v, 0, *from, *to, &mut found, &|| self.spend(1))?,
                    Cow::Owned(v) => {
                        let mut owned = Vec::new();
                        descend(v, 0, *from, *to, &mut owned, &|| self.spend(1))?;
                        found.extend(owned.into_iter().map(|v| Cow::Owned(v.into_owned())));
                    }
                }
                out.extend(found);
            }
            Step::Filter(predicate) => {
                for v in self.unwrap(vec![item]) {
                    if self.predicate(predicate, &v, None)? == Tri::True {
                        out.push(v);
                    }
                }
            }
            Step::Method(m) => self.method(m, item, out)?,
        }
        Ok(())
    }

    fn method(&self, m: &str, item: Item<'a>, out: &mut Vec<Item<'a>>) -> Result<(), PathError> {
        match (m, item.as_ref()) {
            ("type", v) => out.push(Cow::Owned(Value::String(type_name(v).into()))),
            ("size", Value::Array(a)) => out.push(Cow::Owned(Value::from(a.len() as i64))),
            ("size", _) if self.strict => {
                return Err(error(
                    "22039",
                    "jsonpath item method .size() can only be applied to an array",
                ))
            }
            ("size", _) => out.push(Cow::Owned(Value::from(1))),
            (_, Value::Array(_)) if !self.strict => {
                for v in elements(&item).unwrap_or_default() {
                    self.method(m, v, out)?;
                }
            }
            ("double", Value::Number(n)) => {
                out.push(Cow::Owned(double(n.as_f64().unwrap_or(0.0))?))
            }
            ("double", Value::String(s)) => {
                let f = s
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite())
                    .ok_or_else(|| {
                        error(
                            "22036",
                            "string argument of jsonpath item method .double() is not a valid \
                         representation of a double precision number",
                        )
                    })?;
                out.push(Cow::Owned(double(f)?));
            }
            (m @ ("ceiling" | "floor" | "abs"), Value::Number(n)) => {
                out.push(Cow::Owned(if let Some(i) = n.as_i64() {
                    Value::from(if m == "abs" { i.saturating_abs() } else { i })
                } else {
                    let f = n.as_f64().unwrap_or(0.0);
                    let r = match m {
                        "ceiling" => f.ceil(),
                        "floor" => f.floor(),
                        _ => f.abs(),
                    };
                    if r.fract() == 0.0 && r.abs() < 9.0e15 {
                        Value::from(r as i64)
                    } else {
                        number(r)?
                    }
                }));
            }
            (m, _) => {
                return Err(error(
                    "22036",
                    format!(
                        "jsonpath item method .{m}() can only be applied to a {} value",
                        if m == "double" {
                            "string or numeric"
                        } else {
                            "numeric"
                        }
                    ),
                ))
            }
        }
        Ok(())
    }

    fn predicate(&self, node: &Node, at: &Item<'a>, last: Option<i64>) -> Result<Tri, PathError> {
        Ok(match node {
            Node::And(l, r) => match self.predicate(l, at, last)? {
                Tri::False => Tri::False,
                left => match (left, self.predicate(r, at, last)?) {
                    (_, Tri::False) => Tri::False,
                    (Tri::True, Tri::True) => Tri::True,
                    _ => Tri::Unknown,
                },
            },
            Node::Or(l, r) => match self.predicate(l, at, last)? {
                Tri::True => Tri::True,
                left => match (left, self.predicate(r, at, last)?) {
                    (_, Tri::True) => Tri::True,
                    (Tri::False, Tri::False) => Tri::False,
                    _ => Tri::Unknown,
                },
            },
            Node::Not(p) => match self.predicate(p, at, last)? {
                Tri::True => Tri::False,
                Tri::False => Tri::True,
                Tri::Unknown => Tri::Unknown,
            },
            Node::IsUnknown(p) => Tri::of(self.predicate(p, at, last)? == Tri::Unknown),
            Node::Exists(p) => match self.operand(p, at, last)? {
                Some(items) => Tri::of(!items.is_empty()),
                None => Tri::Unknown,
            },
            Node::Compare(op, l, r) => {
                let (Some(left), Some(right)) =
                    (self.operand(l, at, last)?, self.operand(r, at, last)?)
                else {
                    return Ok(Tri::Unknown);
                };
                let (left, right) = (self.unwrap(left), self.unwrap(right));
                let mut found = false;
                let mut unknown = false;
                for a in &left {
                    for b in &right {
                        match compare(*op, a.as_ref(), b.as_ref()) {
                            Tri::True if !self.strict => return Ok(Tri::True),
                            Tri::True => found = true,
                            Tri::Unknown if self.strict => return Ok(Tri::Unknown),
                            Tri::Unknown => unknown = true,
                            Tri::False => {}
                        }
                    }
                }
                if found {
                    Tri::True
                } else if unknown {
                    Tri::Unknown
                } else {
                    Tri::False
                }
            }
            Node::LikeRegex(l, pattern, flags) => {
                let re = like_regex(pattern, flags)?;
                let Some(items) = self.operand(l, at, last)? else {
                    return Ok(Tri::Unknown);
                };
                self.any_string(items, |s| re.is_match(s))?
            }
            Node::StartsWith(l, r) => {
                let prefix = match self
                    .operand(r, at, last)?
                    .map(|v| self.unwrap(v))
                    .as_deref()
                {
                    Some([p]) => match p.as_ref() {
                        Value::String(p) => p.clone(),
                        _ => return Ok(Tri::Unknown),
                    },
                    _ => return Ok(Tri::Unknown),
                };
                let Some(items) = self.operand(l, at, last)? else {
                    return Ok(Tri::Unknown);
                };
                self.any_string(items, |s| s.starts_with(&prefix))?
            }
            other => {
                // A path used as a predicate: its single boolean.
                match self.items(other, at, last)?.as_slice() {
                    [v] => match v.as_ref() {
                        Value::Bool(b) => Tri::of(*b),
                        _ => Tri::Unknown,
                    },
                    _ => Tri::Unknown,
                }
            }
        })
    }

    /// A predicate's operand: `None` for an error of the data (the predicate is then
    /// unknown); a missing variable or too many items are errors of the query, raised.
    fn operand(
        &self,
        node: &Node,
        at: &Item<'a>,
        last: Option<i64>,
    ) -> Result<Option<Vec<Item<'a>>>, PathError> {
        match self.items(node, at, last) {
            Ok(items) => Ok(Some(items)),
            Err(e) if matches!(e.code, "42704" | "54000") => Err(e),
            Err(_) => Ok(None),
        }
    }

    /// Whether any string item matches; unknown for an item that is no string.
    fn any_string(
        &self,
        items: Vec<Item<'a>>,
        matches: impl Fn(&str) -> bool,
    ) -> Result<Tri, PathError> {
        let mut found = false;
        let mut unknown = false;
        for v in self.unwrap(items) {
            match v.as_ref() {
                Value::String(s) if matches(s) => {
                    if !self.strict {
                        return Ok(Tri::True);
                    }
                    found = true;
                }
                Value::String(_) => {}
                _ if self.strict => return Ok(Tri::Unknown),
                _ => unknown = true,
            }
        }
        Ok(if found {
            Tri::True
        } else if unknown {
            Tri::Unknown
        } else {
            Tri::False
        })
    }
}

/// `like_regex`'s pattern compiled with its flags (once per thread and pattern).
fn like_regex(pattern: &str, flags: &str) -> Result<regex::Regex, PathError> {
    crate::pg_functions::cached_regex("like_regex", pattern, flags, || {
        build_like_regex(pattern, flags)
    })
}

fn build_like_regex(pattern: &str, flags: &str) -> Result<regex::Regex, PathError> {
    let quoted;
    let text = if flags.contains('q') {
        quoted = regex::escape(pattern);
        quoted.as_str()
    } else {
        pattern
    };
    let mut builder = regex::RegexBuilder::new(text);
    for f in flags.chars() {
        match f {
            'i' => {
                builder.case_insensitive(true);
            }
            's' => {
                builder.dot_matches_new_line(true);
            }
            'm' => {
                builder.multi_line(true);
            }
            'q' => {}
            'x' => {
                return Err(error(
                    "0A000",
                    "XQuery \"x\" flag (expanded regular expressions) is not implemented",
                ))
            }
            other => {
                return Err(error(
                    "42601",
                    format!("unrecognized flag character \"{other}\" in LIKE_REGEX predicate"),
                ))
            }
        }
    }
    let re = builder
        .build()
        .map_err(|e| error("2201B", format!("invalid regular expression: {e}")))?;
    Ok(re)
}

/// The items `.**{from to to}` reaches from `v` at `level` (each counted by `spend`).
fn descend<'v>(
    v: &'v Value,
    level: u32,
    from: u32,
    to: Option<u32>,
    out: &mut Vec<Item<'v>>,
    spend: &dyn Fn() -> Result<(), PathError>,
) -> Result<(), PathError> {
    if to.is_some_and(|t| level > t) {
        return Ok(());
    }
    if level >= from {
        spend()?;
        out.push(Cow::Borrowed(v));
    }
    let children: Vec<&Value> = match v {
        Value::Object(o) => o.values().collect(),
        Value::Array(a) => a.iter().collect(),
        _ => return Ok(()),
    };
    for c in children {
        descend(c, level + 1, from, to, out, spend)?;
    }
    Ok(())
}

fn arith(op: char, a: &Value, b: &Value) -> Result<Value, PathError> {
    let (Value::Number(x), Value::Number(y)) = (a, b) else {
        return Err(error("22038", "jsonpath arithmetic needs numbers"));
    };
    if let (Some(i), Some(j)) = (x.as_i64(), y.as_i64()) {
        let exact = match op {
            '+' => i.checked_add(j),
            '-' => i.checked_sub(j),
            '*' => i.checked_mul(j),
            '%' if j == 0 => return Err(error("22012", "division by zero")),
            '%' => i.checked_rem(j),
            _ => None,
        };
        if let Some(v) = exact {
            return Ok(Value::from(v));
        }
    }
    let (f, g) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
    if matches!(op, '/' | '%') && g == 0.0 {
        return Err(error("22012", "division by zero"));
    }
    let r = match op {
        '+' => f + g,
        '-' => f - g,
        '*' => f * g,
        '/' => f / g,
        _ => f % g,
    };
    // An integral quotient of integers stays an integer (`4 / 2` is `2`).
    if op == '/' && x.is_i64() && y.is_i64() && r.fract() == 0.0 && r.abs() < 9.0e15 {
        return Ok(Value::from(r as i64));
    }
    number(r)
}

fn compare(op: Cmp, a: &Value, b: &Value) -> Tri {
    use std::cmp::Ordering;
    let ordering = match (a, b) {
        (Value::Null, Value::Null) => Some(Ordering::Equal),
        (Value::Null, _) | (_, Value::Null) => {
            return Tri::of(op == Cmp::Ne);
        }
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => Some(i.cmp(&j)),
            _ => x
                .as_f64()
                .zip(y.as_f64())
                .and_then(|(f, g)| f.partial_cmp(&g)),
        },
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => None,
    };
    let Some(o) = ordering else {
        return Tri::Unknown;
    };
    Tri::of(match op {
        Cmp::Eq => o == Ordering::Equal,
        Cmp::Ne => o != Ordering::Equal,
        Cmp::Lt => o == Ordering::Less,
        Cmp::Le => o != Ordering::Greater,
        Cmp::Gt => o == Ordering::Greater,
        Cmp::Ge => o != Ordering::Less,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(doc: &str, path: &str) -> String {
        let doc: Value = serde_json::from_str(doc).expect("json");
        match parse(path).and_then(|p| p.query(&doc, &Value::Null)) {
            Ok(items) => items
                .iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join(" "),
            Err(e) => format!("error: {e}"),
        }
    }

    /// Each expectation is PostgreSQL 15's answer (`jsonb_path_query`, one item per
    /// row, joined by blanks here).
    #[test]
    fn queries_as_postgres() {
        let d = r#"{"a": [1, 2, 3, 4], "b": {"c": "x", "d": null}, "e": [{"f": 1}, {"f": 5}]}"#;
        assert_eq!(q(d, "$.a[*] ? (@ > 2)"), "3 4");
        assert_eq!(q(d, "$.a[1 to last]"), "2 3 4");
        assert_eq!(q(d, "$.a[last - 1, 0]"), "3 1");
        assert_eq!(q(d, "$.b.c"), "\"x\"");
        assert_eq!(q(d, "$.e.f"), "1 5");
        assert_eq!(q(d, "$.e[*] ? (@.f > 2).f"), "5");
        assert_eq!(q(d, "$.missing"), "");
        assert_eq!(
            q(d, "strict $.missing"),
            "error: JSON object does not contain key \"missing\""
        );
        assert_eq!(q(d, "$.a.size()"), "4");
        assert_eq!(q(d, "$.b.type()"), "\"object\"");
        assert_eq!(q(d, "$.a[0] + $.a[3] * 2"), "9");
        assert_eq!(q(d, "$.a[*] > 3"), "true");
        assert_eq!(q(d, "$.b.c == 1"), "null");
        assert_eq!(q(d, "$.b.d == null"), "true");
        assert_eq!(q(d, "$.b.c like_regex \"^X\" flag \"i\""), "true");
        assert_eq!(q(d, "$.b.c starts with \"x\""), "true");
        assert_eq!(q(d, "exists($.b.d)"), "true");
        assert_eq!(q(d, "$.** ? (@ == 5)"), "5");
        assert_eq!(q(d, "$.a[*] ? (@ % 2 == 0 && @ > 2)"), "4");
        assert_eq!(q(d, "-$.a[*]"), "-1 -2 -3 -4");
        assert_eq!(q(d, "$.e[*].f.double()"), "1 5");
        assert_eq!(q(d, "($.b.c == 1) is unknown"), "true");
        assert!(q(d, "$.a[").starts_with("error: syntax error"));
    }
}

// The SQL functions and operators.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::ScalarValue;
use datafusion::error::DataFusionError;
use datafusion::prelude::SessionContext;
use freshet_storage::jsonb as canonical;

/// The internal function `jsonb_path_query` unnests (`crate::json_sets`).
pub const QUERY_LIST: &str = "jsonb_path_query_list";

/// Registers the functions in `ctx` (the operators are `crate::jsonb`'s).
pub fn register(ctx: &SessionContext) {
    let json = DataType::LargeUtf8;
    let takes: crate::pg_functions::Takes = |a| {
        let types = [
            DataType::LargeUtf8,
            DataType::Utf8,
            DataType::LargeUtf8,
            DataType::Boolean,
        ];
        (2..=4)
            .contains(&a.len())
            .then(|| types[..a.len()].to_vec())
    };
    crate::pg_functions::define(ctx, "jsonb_path_exists", takes, DataType::Boolean, |a| {
        run(a, |items| Ok(ScalarValue::Boolean(Some(!items.is_empty()))))
    });
    crate::pg_functions::define(ctx, "jsonb_path_match", takes, DataType::Boolean, |a| {
        run(a, |items| match items.as_slice() {
            [Value::Bool(b)] => Ok(ScalarValue::Boolean(Some(*b))),
            [Value::Null] => Ok(ScalarValue::Boolean(None)),
            _ => Err(error("22038", "single boolean result is expected")),
        })
    });
    crate::pg_functions::define(ctx, "jsonb_path_query_array", takes, json.clone(), |a| {
        run_silent(
            a,
            |items| {
                Ok(ScalarValue::LargeUtf8(Some(canonical::text(
                    &Value::Array(items),
                ))))
            },
            Some(()),
        )
    });
    crate::pg_functions::define(ctx, "jsonb_path_query_first", takes, json.clone(), |a| {
        run(a, |items| {
            Ok(ScalarValue::LargeUtf8(items.first().map(canonical::text)))
        })
    });
    crate::pg_functions::define(
        ctx,
        QUERY_LIST,
        takes,
        DataType::List(Arc::new(Field::new_list_field(json, true))),
        |a| {
            run_silent(
                a,
                |items| {
                    let items: Vec<ScalarValue> = items
                        .iter()
                        .map(|v| ScalarValue::LargeUtf8(Some(canonical::text(v))))
                        .collect();
                    Ok(ScalarValue::List(ScalarValue::new_list_nullable(
                        &items,
                        &DataType::LargeUtf8,
                    )))
                },
                Some(()),
            )
        },
    );
}

/// A path's text read, or why not.
type Parsed = Result<Arc<Path>, PathError>;

thread_local! {
    /// The last path parsed on this thread: a call's path is usually one constant.
    static LAST: RefCell<Option<(String, Parsed)>> = const { RefCell::new(None) };
}

fn parsed(text: &str) -> Result<Arc<Path>, PathError> {
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        if let Some((t, p)) = last.as_ref() {
            if t == text {
                return p.clone();
            }
        }
        let p = parse(text).map(Arc::new);
        *last = Some((text.to_string(), p.clone()));
        p
    })
}

fn sql_error(e: PathError) -> DataFusionError {
    DataFusionError::External(Box::new(crate::pg_catalog::SqlStateError {
        code: e.code,
        message: e.message,
        detail: None,
        hint: None,
    }))
}

/// Runs a path function's arguments (`target, path [, vars [, silent]]`) and gives its
/// items to `finish`; NULL for a NULL argument, or for an error when `silent`.
fn run(
    a: &[ScalarValue],
    finish: impl Fn(Vec<Value>) -> Result<ScalarValue, PathError>,
) -> datafusion::error::Result<ScalarValue> {
    run_silent(a, finish, None)
}

/// [`run`], where a silent error gives what `finish` makes of no items if
/// `no_items` (the query functions: `[]`, no rows), else NULL.
fn run_silent(
    a: &[ScalarValue],
    finish: impl Fn(Vec<Value>) -> Result<ScalarValue, PathError>,
    no_items: Option<()>,
) -> datafusion::error::Result<ScalarValue> {
    let text = |v: &ScalarValue| match v {
        ScalarValue::Utf8(s) | ScalarValue::LargeUtf8(s) | ScalarValue::Utf8View(s) => s.clone(),
        _ => None,
    };
    let (Some(target), Some(path)) = (text(&a[0]), text(&a[1])) else {
        return Ok(ScalarValue::Null);
    };
    let silent = match a.get(3) {
        Some(ScalarValue::Boolean(Some(b))) => *b,
        Some(ScalarValue::Boolean(None)) => return Ok(ScalarValue::Null),
        _ => false,
    };
    let vars = match a.get(2) {
        None => Value::Null,
        Some(v) => match text(v) {
            None => return Ok(ScalarValue::Null),
            Some(s) => {
                serde_json::from_str(&s).map_err(|e| DataFusionError::Execution(e.to_string()))?
            }
        },
    };
    if !matches!(vars, Value::Object(_) | Value::Null) {
        return Err(sql_error(error(
            "22023",
            "\"vars\" argument is not an object",
        )));
    }
    let path = parsed(&path).map_err(sql_error)?;
    let doc: Value =
        serde_json::from_str(&target).map_err(|e| DataFusionError::Execution(e.to_string()))?;
    match path.query(&doc, &vars).and_then(&finish) {
        Ok(v) => Ok(v),
        // Errors of the data, not of the path's text, are suppressed when silent.
        Err(e) if silent && !matches!(e.code, "42601" | "42704" | "54000" | "54001") => {
            match no_items {
                Some(()) => finish(Vec::new()).map_err(sql_error),
                None => Ok(ScalarValue::Null),
            }
        }
        Err(e) => Err(sql_error(e)),
    }
}
