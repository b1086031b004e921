//! `${ENV_VAR}` interpolation in string values, so that secrets stay out of config files.
//!
//! `${NAME}` is replaced by the variable's value, and a missing variable is an error naming it;
//! `${NAME:-default}` falls back to `default`; `$${` writes a literal `${`. A `$` not followed by
//! `{` is left alone (it starts request variables such as `$host`).

use std::borrow::Cow;

/// Replaces every `${NAME}` in `text`, looking names up with `lookup`.
pub fn interpolate<'a>(
    text: &'a str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Cow<'a, str>, String> {
    if !text.contains("${") {
        return Ok(Cow::Borrowed(text));
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('$') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        if let Some(escaped) = after.strip_prefix("${") {
            out.push_str("${");
            rest = escaped;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body
                .find('}')
                .ok_or_else(|| format!("unterminated \"${{\" in \"{text}\""))?;
            let (name, default) = match body[..end].split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (&body[..end], None),
            };
            if !is_env_name(name) {
                return Err(format!(
                    "invalid environment variable name \"{name}\" in \"{text}\""
                ));
            }
            match (lookup(name), default) {
                (Some(value), _) => out.push_str(&value),
                (None, Some(default)) => out.push_str(default),
                (None, None) => {
                    return Err(format!("environment variable {name} is not set"));
                }
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(Cow::Owned(out))
}

fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "SECRET" => Some("s3cr3t".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    fn run(text: &str) -> Result<String, String> {
        interpolate(text, &env).map(Cow::into_owned)
    }

    #[test]
    fn replaces_variables() {
        assert_eq!(run("key=${SECRET}!").unwrap(), "key=s3cr3t!");
        assert_eq!(run("${SECRET}${SECRET}").unwrap(), "s3cr3ts3cr3t");
        assert_eq!(run("[${EMPTY}]").unwrap(), "[]");
        assert_eq!(run("${NOPE:-fallback}").unwrap(), "fallback");
        assert_eq!(run("${SECRET:-fallback}").unwrap(), "s3cr3t");
    }

    #[test]
    fn leaves_request_variables_and_escapes_alone() {
        assert_eq!(
            run("$host and $remote_addr").unwrap(),
            "$host and $remote_addr"
        );
        assert_eq!(run("$${SECRET} costs $5").unwrap(), "${SECRET} costs $5");
        assert!(matches!(interpolate("plain", &env), Ok(Cow::Borrowed(_))));
    }

    #[test]
    fn errors_name_the_variable() {
        assert_eq!(
            run("${MISSING}").unwrap_err(),
            "environment variable MISSING is not set"
        );
        assert!(run("${OPEN").unwrap_err().contains("unterminated"));
        assert!(
            run("${1BAD}")
                .unwrap_err()
                .contains("invalid environment variable name")
        );
    }
}
