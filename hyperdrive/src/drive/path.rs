//! Path normalisation (hyperdrive.md §2): hyperdrive's `fixName` followed by
//! mountable-hypertrie's `normalize`. No `.`/`..` resolution happens, on purpose: the
//! reference stores such components verbatim and we must find the same keys.

/// `remove-trailing-separator`: strings shorter than 3 chars keep their slash.
fn strip_trailing(s: &str) -> &str {
    if s.len() < 3 {
        return s;
    }
    let trimmed = s.trim_end_matches('/');
    if trimmed.is_empty() {
        // Index 0 is never treated as a separator.
        &s[..1]
    } else {
        trimmed
    }
}

/// `unixify@1.0.0`: collapse runs of `/` and `\` into `/`, strip a trailing `/`, then
/// strip a leading `[A-Za-z]+:` or `./`.
pub fn unixify(path: &str) -> String {
    let mut collapsed = String::with_capacity(path.len());
    let mut prev_sep = false;
    for c in path.chars() {
        if c == '/' || c == '\\' {
            if !prev_sep {
                collapsed.push('/');
            }
            prev_sep = true;
        } else {
            collapsed.push(c);
            prev_sep = false;
        }
    }
    let s = strip_trailing(&collapsed);
    let letters = s.bytes().take_while(|b| b.is_ascii_alphabetic()).count();
    if letters > 0 && s.as_bytes().get(letters) == Some(&b':') {
        return s[letters + 1..].to_string();
    }
    if let Some(rest) = s.strip_prefix("./") {
        return rest.to_string();
    }
    s.to_string()
}

/// hyperdrive's `fixName`: unixify and make absolute.
pub fn fix_name(name: &str) -> String {
    let u = unixify(name);
    if u.starts_with('/') {
        u
    } else {
        format!("/{u}")
    }
}

/// The trie key a drive path ends up as (no leading slash; `""` is the root).
pub fn trie_key(name: &str) -> String {
    let u = unixify(&fix_name(name));
    match u.strip_prefix('/') {
        Some(rest) => rest.to_string(),
        None => u,
    }
}

/// Node's `path.dirname` for a trie key without leading slash (`""` for top level).
pub fn dirname(key: &str) -> &str {
    match key.rfind('/') {
        Some(i) => &key[..i],
        None => "",
    }
}

/// Joins trie keys the way `path.join` would for our already-normalised keys.
pub fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_string(),
        (_, true) => a.to_string(),
        _ => format!("{}/{}", a.trim_end_matches('/'), b.trim_start_matches('/')),
    }
}

/// Whether `key` equals `dir` or lies below it (component-wise).
pub fn is_within(dir: &str, key: &str) -> bool {
    dir.is_empty()
        || key == dir
        || (key.len() > dir.len() && key.starts_with(dir) && key.as_bytes()[dir.len()] == b'/')
}

/// Resolves a symlink target relative to the link's key, like `path.resolve(dirname)`
/// in the reference (here `.` and `..` are resolved, as the kernel would).
pub fn resolve_link(link_key: &str, target: &str) -> String {
    let base = if target.starts_with('/') {
        String::new()
    } else {
        dirname(link_key).to_string()
    };
    let mut parts: Vec<&str> = base.split('/').filter(|s| !s.is_empty()).collect();
    for seg in target.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    trie_key(&parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn examples_from_the_spec() {
        for (i, o) in [
            ("//double//slash//", "double/slash"),
            ("a\\b\\c", "a/b/c"),
            ("abc:def", "def"),
            ("/abc:def", "abc:def"),
            ("C:\\win\\x", "win/x"),
            ("/a/../b", "a/../b"),
            ("/", ""),
            ("", ""),
            ("a/", "a"),
            ("./x", "x"),
        ] {
            assert_eq!(trie_key(i), o, "{i}");
        }
        assert_eq!(resolve_link("a/b", "c"), "a/c");
        assert_eq!(resolve_link("a/b", "/x/../y"), "y");
        assert!(is_within("a", "a/b") && !is_within("a", "ab") && is_within("", "x"));
    }
}
