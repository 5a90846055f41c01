//! Just enough of apimachinery's field-selector parser
//! (`k8s.io/apimachinery/pkg/fields/selector.go`) to answer upstream's one
//! question: does the selector require `metadata.name` to equal a value?
//!
//! A private port rather than a loose `strip_prefix("metadata.name=")`,
//! because the answer feeds authorization: upstream only sets the request's
//! name when the *whole* selector parses, and the gateway must agree.

/// Returns the name an exact `metadata.name` term requires, `Ok(None)` when
/// there is no such term, and `Err(())` when the selector does not parse.
pub(crate) fn required_name(selector: &str) -> Result<Option<String>, ()> {
    let mut terms = split_terms(selector);
    // Upstream sorts terms before building the AND, and returns the first
    // matching term in that order.
    terms.sort_unstable();
    let mut found = None;
    for term in terms {
        if term.is_empty() {
            continue;
        }
        let (lhs, op, rhs) = split_term(term).ok_or(())?;
        let value = unescape_value(rhs)?;
        if found.is_none() && lhs == "metadata.name" && op != "!=" {
            found = Some(value);
        }
    }
    Ok(found)
}

/// Splits on commas that are not escaped with a backslash.
fn split_terms(selector: &str) -> Vec<&str> {
    if selector.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut in_slash = false;
    for (i, c) in selector.char_indices() {
        if in_slash {
            in_slash = false;
        } else if c == '\\' {
            in_slash = true;
        } else if c == ',' {
            terms.push(&selector[start..i]);
            start = i + 1;
        }
    }
    terms.push(&selector[start..]);
    terms
}

/// Finds the first operator, trying `!=`, `==`, `=` at each position.
fn split_term(term: &str) -> Option<(&str, &'static str, &str)> {
    for (i, _) in term.char_indices() {
        let rest = &term[i..];
        for op in ["!=", "==", "="] {
            if let Some(rhs) = rest.strip_prefix(op) {
                return Some((&term[..i], op, rhs));
            }
        }
    }
    None
}

/// `fields.UnescapeValue`: `\\`, `\,` and `\=` are escapes; any other
/// escape, a trailing backslash, or a bare `,` or `=` is an error.
fn unescape_value(s: &str) -> Result<String, ()> {
    let mut out = String::with_capacity(s.len());
    let mut in_slash = false;
    for c in s.chars() {
        if in_slash {
            if !matches!(c, '\\' | ',' | '=') {
                return Err(());
            }
            out.push(c);
            in_slash = false;
        } else {
            match c {
                '\\' => in_slash = true,
                ',' | '=' => return Err(()),
                c => out.push(c),
            }
        }
    }
    if in_slash {
        return Err(());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn required_name_table() {
        let cases: &[(&str, Result<Option<&str>, ()>)] = &[
            ("", Ok(None)),
            ("metadata.name=a", Ok(Some("a"))),
            ("metadata.name==a", Ok(Some("a"))),
            ("metadata.name!=a", Ok(None)),
            ("foo=bar", Ok(None)),
            ("metadata.namespace=a", Ok(None)),
            ("spec.nodeName=n,metadata.name=a", Ok(Some("a"))),
            // Sorted order decides between two name terms.
            ("metadata.name=b,metadata.name=a", Ok(Some("a"))),
            ("metadata.name=a\\,b", Ok(Some("a,b"))),
            ("metadata.name=a\\=b", Ok(Some("a=b"))),
            ("metadata.name=a\\\\", Ok(Some("a\\"))),
            (",metadata.name=a,", Ok(Some("a"))),
            // Whitespace is not trimmed: the key is "metadata.name ".
            ("metadata.name =a", Ok(None)),
            ("metadata.name=", Ok(Some(""))),
            ("metadata.name=a,foo", Err(())),
            ("metadata.name=a=b", Err(())),
            ("metadata.name=a\\x", Err(())),
            ("metadata.name=a\\", Err(())),
            ("foo", Err(())),
        ];
        for (sel, want) in cases {
            let want = want.map(|o| o.map(str::to_owned));
            assert_eq!(required_name(sel), want, "{sel:?}");
        }
    }
}
