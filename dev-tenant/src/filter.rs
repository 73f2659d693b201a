//! A small OData `$filter` parser and evaluator covering what Graph answers without
//! advanced-query headers: `eq`, `in`, `startswith`, `any()` lambdas, `and`, `or`, parentheses.

use std::fmt;

#[derive(Clone, Debug, PartialEq)]
pub enum Literal {
    Str(String),
    Bool(bool),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    /// `prop eq value`; string values are stored lowercased because directory string
    /// comparisons are case-insensitive.
    Eq(&'static str, Literal),
    In(&'static str, Vec<Literal>),
    StartsWith(&'static str, String),
    /// `collection/any(x:x eq 'value')`, value lowercased.
    Any(&'static str, String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Str,
    Bool,
    Collection,
}

/// The filterable properties of one entity type, with their canonical spelling.
pub struct Schema {
    pub entity: &'static str,
    pub props: &'static [(&'static str, Kind)],
}

impl Schema {
    fn lookup(&self, name: &str) -> Option<(&'static str, Kind)> {
        self.props
            .iter()
            .find(|(p, _)| p.eq_ignore_ascii_case(name))
            .copied()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum FilterError {
    /// Not valid OData: Graph's `Request_BadRequest`.
    Syntax(String),
    /// Valid OData that Graph refuses without advanced-query headers: `Request_UnsupportedQuery`.
    Unsupported(String),
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FilterError::Syntax(m) | FilterError::Unsupported(m) => f.write_str(m),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    LParen,
    RParen,
    Comma,
    Colon,
    Slash,
    Ident(String),
    Str(String),
}

struct Lexed {
    toks: Vec<(Tok, usize)>,
}

fn lex(input: &str) -> Result<Lexed, FilterError> {
    let chars: Vec<(usize, char)> = input.char_indices().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let (pos, c) = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                toks.push((Tok::LParen, pos));
                i += 1;
            }
            ')' => {
                toks.push((Tok::RParen, pos));
                i += 1;
            }
            ',' => {
                toks.push((Tok::Comma, pos));
                i += 1;
            }
            ':' => {
                toks.push((Tok::Colon, pos));
                i += 1;
            }
            '/' => {
                toks.push((Tok::Slash, pos));
                i += 1;
            }
            '\'' => {
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => {
                            return Err(FilterError::Syntax(format!(
                                "Invalid filter clause: There is an unterminated string literal at position {pos} in '{input}'."
                            )));
                        }
                        Some((_, '\'')) => {
                            if matches!(chars.get(i + 1), Some((_, '\''))) {
                                s.push('\'');
                                i += 2;
                            } else {
                                i += 1;
                                break;
                            }
                        }
                        Some((_, ch)) => {
                            s.push(*ch);
                            i += 1;
                        }
                    }
                }
                toks.push((Tok::Str(s), pos));
            }
            c if c.is_alphanumeric() || c == '_' || c == '$' || c == '.' || c == '-' => {
                let mut s = String::new();
                while let Some((_, ch)) = chars.get(i) {
                    if ch.is_alphanumeric() || *ch == '_' || *ch == '$' || *ch == '.' || *ch == '-'
                    {
                        s.push(*ch);
                        i += 1;
                    } else {
                        break;
                    }
                }
                toks.push((Tok::Ident(s), pos));
            }
            other => {
                return Err(FilterError::Syntax(format!(
                    "Invalid filter clause: Syntax error: character '{other}' is not valid at position {pos} in '{input}'."
                )));
            }
        }
    }
    Ok(Lexed { toks })
}

struct Parser<'a> {
    toks: Vec<(Tok, usize)>,
    at: usize,
    input: &'a str,
    schema: &'a Schema,
}

fn lower(s: &str) -> String {
    s.to_lowercase()
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.at).map(|(t, _)| t)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.at).map(|(t, _)| t.clone());
        self.at += 1;
        t
    }

    fn pos(&self) -> usize {
        self.toks
            .get(self.at)
            .map(|(_, p)| *p)
            .unwrap_or(self.input.len())
    }

    fn syntax(&self, what: &str) -> FilterError {
        FilterError::Syntax(format!(
            "Invalid filter clause: {what} at position {} in '{}'.",
            self.pos(),
            self.input
        ))
    }

    fn expect(&mut self, tok: Tok, what: &str) -> Result<(), FilterError> {
        if self.peek() == Some(&tok) {
            self.at += 1;
            Ok(())
        } else {
            Err(self.syntax(&format!("Expected {what}")))
        }
    }

    fn keyword(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Tok::Ident(s)) if s.eq_ignore_ascii_case(kw))
    }

    fn or(&mut self) -> Result<Expr, FilterError> {
        let mut left = self.and()?;
        while self.keyword("or") {
            self.at += 1;
            let right = self.and()?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, FilterError> {
        let mut left = self.primary()?;
        while self.keyword("and") {
            self.at += 1;
            let right = self.primary()?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn property(&self, name: &str) -> Result<(&'static str, Kind), FilterError> {
        self.schema.lookup(name).ok_or_else(|| {
            FilterError::Syntax(format!(
                "Could not find a property named '{name}' on type 'microsoft.graph.{}'.",
                self.schema.entity
            ))
        })
    }

    fn literal(&mut self) -> Result<Literal, FilterError> {
        match self.next() {
            Some(Tok::Str(s)) => Ok(Literal::Str(s)),
            Some(Tok::Ident(s)) if s.eq_ignore_ascii_case("true") => Ok(Literal::Bool(true)),
            Some(Tok::Ident(s)) if s.eq_ignore_ascii_case("false") => Ok(Literal::Bool(false)),
            Some(Tok::Ident(s)) if s.eq_ignore_ascii_case("null") => Err(
                FilterError::Unsupported("Unsupported Query. Comparing with null requires an advanced query (ConsistencyLevel: eventual and $count=true).".into()),
            ),
            _ => {
                self.at -= 1;
                Err(self.syntax("Expected a literal"))
            }
        }
    }

    fn typed(&self, prop: &'static str, kind: Kind, lit: Literal) -> Result<Literal, FilterError> {
        match (kind, lit) {
            (Kind::Str, Literal::Str(s)) => Ok(Literal::Str(lower(&s))),
            (Kind::Bool, Literal::Bool(b)) => Ok(Literal::Bool(b)),
            (Kind::Collection, _) => Err(FilterError::Unsupported(format!(
                "Unsupported Query. The collection property '{prop}' can only be filtered with a lambda such as {prop}/any(x:x eq 'value')."
            ))),
            (Kind::Str, Literal::Bool(_)) => Err(FilterError::Syntax(
                "A binary operator with incompatible types was detected. Found operand types 'Edm.String' and 'Edm.Boolean' for operator kind 'Equal'.".into(),
            )),
            (Kind::Bool, Literal::Str(_)) => Err(FilterError::Syntax(
                "A binary operator with incompatible types was detected. Found operand types 'Edm.Boolean' and 'Edm.String' for operator kind 'Equal'.".into(),
            )),
        }
    }

    fn primary(&mut self) -> Result<Expr, FilterError> {
        match self.next() {
            Some(Tok::LParen) => {
                let e = self.or()?;
                self.expect(Tok::RParen, "')'")?;
                Ok(e)
            }
            Some(Tok::Ident(name)) => {
                if name.eq_ignore_ascii_case("not") {
                    return Err(FilterError::Unsupported(
                        "Unsupported Query. 'not' requires an advanced query (ConsistencyLevel: eventual and $count=true).".into(),
                    ));
                }
                if self.peek() == Some(&Tok::LParen) {
                    return self.function(&name);
                }
                if self.peek() == Some(&Tok::Slash) {
                    return self.lambda(&name);
                }
                let (prop, kind) = self.property(&name)?;
                let op = match self.next() {
                    Some(Tok::Ident(op)) => op.to_ascii_lowercase(),
                    _ => {
                        self.at -= 1;
                        return Err(self.syntax("Expected an operator"));
                    }
                };
                match op.as_str() {
                    "eq" => {
                        let lit = self.literal()?;
                        Ok(Expr::Eq(prop, self.typed(prop, kind, lit)?))
                    }
                    "in" => {
                        self.expect(Tok::LParen, "'('")?;
                        let mut values = Vec::new();
                        loop {
                            let lit = self.literal()?;
                            values.push(self.typed(prop, kind, lit)?);
                            match self.next() {
                                Some(Tok::Comma) => continue,
                                Some(Tok::RParen) => break,
                                _ => {
                                    self.at -= 1;
                                    return Err(self.syntax("Expected ',' or ')'"));
                                }
                            }
                        }
                        if values.len() > 15 {
                            return Err(FilterError::Unsupported(
                                "Unsupported Query. Too many values in the 'in' operator; at most 15 are allowed.".into(),
                            ));
                        }
                        Ok(Expr::In(prop, values))
                    }
                    "ne" | "gt" | "ge" | "lt" | "le" | "has" => {
                        Err(FilterError::Unsupported(format!(
                            "Unsupported Query. The operator '{op}' on '{prop}' requires an advanced query (ConsistencyLevel: eventual and $count=true)."
                        )))
                    }
                    _ => {
                        self.at -= 1;
                        Err(self.syntax(&format!("Syntax error: unknown operator '{op}'")))
                    }
                }
            }
            _ => {
                self.at = self.at.saturating_sub(1);
                Err(self.syntax("Expected an expression"))
            }
        }
    }

    fn function(&mut self, name: &str) -> Result<Expr, FilterError> {
        if !name.eq_ignore_ascii_case("startswith") {
            return Err(FilterError::Unsupported(format!(
                "Unsupported Query. The function '{name}' is not supported without an advanced query."
            )));
        }
        self.expect(Tok::LParen, "'('")?;
        let prop_name = match self.next() {
            Some(Tok::Ident(p)) => p,
            _ => {
                self.at -= 1;
                return Err(self.syntax("Expected a property name"));
            }
        };
        let (prop, kind) = self.property(&prop_name)?;
        if kind != Kind::Str {
            return Err(FilterError::Unsupported(format!(
                "Unsupported Query. startswith is not supported on '{prop}'."
            )));
        }
        self.expect(Tok::Comma, "','")?;
        let value = match self.literal()? {
            Literal::Str(s) => lower(&s),
            Literal::Bool(_) => return Err(self.syntax("Expected a string literal")),
        };
        self.expect(Tok::RParen, "')'")?;
        Ok(Expr::StartsWith(prop, value))
    }

    fn lambda(&mut self, name: &str) -> Result<Expr, FilterError> {
        let (prop, kind) = self.property(name)?;
        self.expect(Tok::Slash, "'/'")?;
        match self.next() {
            Some(Tok::Ident(op)) if op.eq_ignore_ascii_case("any") => {}
            Some(Tok::Ident(op)) if op.eq_ignore_ascii_case("all") => {
                return Err(FilterError::Unsupported(
                    "Unsupported Query. The lambda operator 'all' is not supported.".into(),
                ));
            }
            _ => {
                self.at -= 1;
                return Err(self.syntax("Expected 'any'"));
            }
        }
        if kind != Kind::Collection {
            return Err(FilterError::Syntax(format!(
                "The 'any' operator can only be applied to a collection; '{prop}' is not one."
            )));
        }
        self.expect(Tok::LParen, "'('")?;
        let var = match self.next() {
            Some(Tok::Ident(v)) => v,
            _ => {
                self.at -= 1;
                return Err(self.syntax("Expected a range variable"));
            }
        };
        self.expect(Tok::Colon, "':'")?;
        match self.next() {
            Some(Tok::Ident(v)) if v == var => {}
            _ => {
                self.at -= 1;
                return Err(self.syntax(&format!("Expected the range variable '{var}'")));
            }
        }
        match self.next() {
            Some(Tok::Ident(op)) if op.eq_ignore_ascii_case("eq") => {}
            Some(Tok::Ident(op)) => {
                return Err(FilterError::Unsupported(format!(
                    "Unsupported Query. The operator '{op}' inside a lambda requires an advanced query."
                )));
            }
            _ => {
                self.at -= 1;
                return Err(self.syntax("Expected 'eq'"));
            }
        }
        let value = match self.literal()? {
            Literal::Str(s) => lower(&s),
            Literal::Bool(_) => return Err(self.syntax("Expected a string literal")),
        };
        self.expect(Tok::RParen, "')'")?;
        Ok(Expr::Any(prop, value))
    }
}

/// Parses a decoded `$filter` value against an entity's schema.
pub fn parse(input: &str, schema: &Schema) -> Result<Expr, FilterError> {
    let lexed = lex(input)?;
    if lexed.toks.is_empty() {
        return Err(FilterError::Syntax(
            "Invalid filter clause: The filter expression is empty.".into(),
        ));
    }
    let mut p = Parser {
        toks: lexed.toks,
        at: 0,
        input,
        schema,
    };
    let e = p.or()?;
    if p.at < p.toks.len() {
        return Err(p.syntax("Syntax error: unexpected token"));
    }
    Ok(e)
}

/// A property value as the evaluator sees it.
pub enum Field<'a> {
    Str(Option<&'a str>),
    Bool(Option<bool>),
    Collection(&'a [String]),
}

pub trait Filterable {
    fn field(&self, prop: &str) -> Field<'_>;
}

fn ci_eq(stored: &str, lowered: &str) -> bool {
    if stored.is_ascii() && lowered.is_ascii() {
        stored.eq_ignore_ascii_case(lowered)
    } else {
        stored.to_lowercase() == lowered
    }
}

fn lit_matches(field: &Field<'_>, lit: &Literal) -> bool {
    match (field, lit) {
        (Field::Str(Some(s)), Literal::Str(v)) => ci_eq(s, v),
        (Field::Bool(Some(b)), Literal::Bool(v)) => b == v,
        _ => false,
    }
}

impl Expr {
    pub fn matches<T: Filterable + ?Sized>(&self, item: &T) -> bool {
        match self {
            Expr::And(a, b) => a.matches(item) && b.matches(item),
            Expr::Or(a, b) => a.matches(item) || b.matches(item),
            Expr::Eq(p, lit) => lit_matches(&item.field(p), lit),
            Expr::In(p, lits) => {
                let f = item.field(p);
                lits.iter().any(|l| lit_matches(&f, l))
            }
            Expr::StartsWith(p, v) => match item.field(p) {
                Field::Str(Some(s)) => s.to_lowercase().starts_with(v.as_str()),
                _ => false,
            },
            Expr::Any(p, v) => match item.field(p) {
                Field::Collection(items) => items.iter().any(|s| ci_eq(s, v)),
                _ => false,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Schema = Schema {
        entity: "user",
        props: &[
            ("mail", Kind::Str),
            ("userPrincipalName", Kind::Str),
            ("accountEnabled", Kind::Bool),
            ("otherMails", Kind::Collection),
        ],
    };

    #[test]
    fn doubled_quotes_are_one_quote() {
        let e = parse("mail eq 'o''brien@x.com'", &S).unwrap();
        assert_eq!(e, Expr::Eq("mail", Literal::Str("o'brien@x.com".into())));
    }

    #[test]
    fn precedence_and_binds_tighter_than_or() {
        let e = parse("mail eq 'a' or mail eq 'b' and accountEnabled eq true", &S).unwrap();
        assert!(matches!(e, Expr::Or(_, ref r) if matches!(**r, Expr::And(_, _))));
    }

    #[test]
    fn lambda_and_errors() {
        assert_eq!(
            parse("otherMails/any(x:x eq 'A@b.c')", &S).unwrap(),
            Expr::Any("otherMails", "a@b.c".into())
        );
        assert!(matches!(
            parse("otherMails/any(x:y eq 'a')", &S),
            Err(FilterError::Syntax(_))
        ));
        assert!(matches!(
            parse("mail ne 'a'", &S),
            Err(FilterError::Unsupported(_))
        ));
        assert!(matches!(
            parse("nope eq 'a'", &S),
            Err(FilterError::Syntax(_))
        ));
        assert!(matches!(
            parse("(mail eq 'a'", &S),
            Err(FilterError::Syntax(_))
        ));
        assert!(matches!(
            parse("mail eq 'a' mail", &S),
            Err(FilterError::Syntax(_))
        ));
    }
}
