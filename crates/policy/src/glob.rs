//! Glob patterns for names: `*` matches any run of characters (including
//! none), `?` exactly one; everything else matches itself. Matching is
//! case-sensitive, as Kubernetes names are.

use std::fmt;

/// A compiled glob. The common shapes (`*`, `exact`, `prefix*`, `*suffix`)
/// skip the general matcher, which keeps evaluation of large policies cheap.
#[derive(Clone, PartialEq, Eq)]
pub struct Glob {
    source: String,
    kind: Kind,
}

#[derive(Clone, PartialEq, Eq)]
enum Kind {
    Any,
    Exact,
    Prefix(String),
    Suffix(String),
    General(Vec<char>),
}

// === impl Glob ===

impl Glob {
    /// Compiles `pattern`. Every string is a valid pattern.
    pub fn new(pattern: &str) -> Self {
        let stars = pattern.matches('*').count();
        let kind = if pattern.contains('?') {
            Kind::General(pattern.chars().collect())
        } else if pattern == "*" {
            Kind::Any
        } else if stars == 0 {
            Kind::Exact
        } else if stars == 1 && pattern.ends_with('*') {
            Kind::Prefix(pattern[..pattern.len() - 1].to_string())
        } else if stars == 1 && pattern.starts_with('*') {
            Kind::Suffix(pattern[1..].to_string())
        } else {
            Kind::General(pattern.chars().collect())
        };
        Self {
            source: pattern.to_string(),
            kind,
        }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the pattern is `*`.
    pub fn is_any(&self) -> bool {
        matches!(self.kind, Kind::Any)
    }

    /// Whether `text` matches the whole pattern.
    pub fn matches(&self, text: &str) -> bool {
        match &self.kind {
            Kind::Any => true,
            Kind::Exact => self.source == text,
            Kind::Prefix(p) => text.starts_with(p.as_str()),
            Kind::Suffix(s) => text.ends_with(s.as_str()),
            Kind::General(p) => general(p, text),
        }
    }
}

impl fmt::Debug for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Glob({:?})", self.source)
    }
}

/// Iterative wildcard matching with single-star backtracking: linear in
/// practice, never exponential.
fn general(pattern: &[char], text: &str) -> bool {
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, t));
                p += 1;
            }
            Some('?') => {
                p += 1;
                t += 1;
            }
            Some(c) if *c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

/// A list of globs: matches when any matches. An empty list matches
/// everything (the field was not given).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GlobSet(Vec<Glob>);

// === impl GlobSet ===

impl GlobSet {
    /// Compiles every pattern; a `*` anywhere makes the set match anything.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Self {
        let globs: Vec<Glob> = patterns.iter().map(|p| Glob::new(p.as_ref())).collect();
        if globs.iter().any(Glob::is_any) {
            return Self(vec![Glob::new("*")]);
        }
        Self(globs)
    }

    /// Whether no pattern was given, so the set constrains nothing.
    pub fn is_unconstrained(&self) -> bool {
        self.0.is_empty() || self.0.iter().any(Glob::is_any)
    }

    /// Whether `text` matches one of the patterns (or there are none).
    pub fn matches(&self, text: &str) -> bool {
        self.0.is_empty() || self.0.iter().any(|g| g.matches(text))
    }

    /// Whether any of `texts` matches one of the patterns (or there are
    /// none, or one is `*`: then even no text at all matches).
    pub fn matches_any<'a>(&self, texts: impl IntoIterator<Item = &'a str>) -> bool {
        self.is_unconstrained()
            || texts
                .into_iter()
                .any(|t| self.0.iter().any(|g| g.matches(t)))
    }

    /// Whether no pattern was given at all.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The patterns as written.
    pub fn patterns(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(Glob::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let cases: &[(&str, &str, bool)] = &[
            ("*", "", true),
            ("*", "anything", true),
            ("kube-*", "kube-system", true),
            ("kube-*", "kube-", true),
            ("kube-*", "kube", false),
            ("kube-*", "", false),
            ("prod*", "production", true),
            ("prod*", "preprod", false),
            ("*-system", "kube-system", true),
            ("*-system", "system", false),
            ("a*b*c", "abc", true),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXbYY", false),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("*/proxy", "nodes/proxy", true),
            ("", "", true),
            ("", "x", false),
            ("exact", "exact", true),
            ("exact", "exactly", false),
            ("**", "x", true),
            ("*a*", "bab", true),
            ("*a*", "bbb", false),
        ];
        for (pattern, text, want) in cases {
            assert_eq!(
                Glob::new(pattern).matches(text),
                *want,
                "{pattern:?} ~ {text:?}"
            );
        }
    }

    #[test]
    fn set_empty_matches_everything() {
        let set = GlobSet::new::<&str>(&[]);
        assert!(set.matches("x"));
        assert!(set.is_unconstrained());
        let set = GlobSet::new(&["a", "b*"]);
        assert!(set.matches("bc"));
        assert!(!set.matches("c"));
        assert!(set.matches_any(["c", "a"]));
    }
}
