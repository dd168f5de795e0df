//! Drive paths, as hyperdrive normalizes them (`unix-path-resolve('/', name)`): absolute, `/`
//! separated (`\` counts as `/`), `.` and empty segments dropped, `..` resolved (one too many
//! is an error), no trailing `/`. A Windows drive letter (`C:\x`) or URL scheme (`file:/x`,
//! `http://host/x`) prefix makes the rest absolute, as in JS. Vectors: `10-paths.out`.

use super::DriveError;

/// The path `name` names in a drive (JS `unixPathResolve('/', name)`); `/` for the root.
pub fn resolve(name: &str) -> Result<String, DriveError> {
    resolve_from("/", name)
}

/// `name` resolved against the absolute path `base` (JS `unixPathResolve(base, name)`, which
/// a symlink's target goes through: relative targets resolve against the link's own path).
pub fn resolve_from(base: &str, name: &str) -> Result<String, DriveError> {
    let (b_abs, b_names) = parse(name);
    if b_abs {
        return to_string("/".to_string(), &b_names, name);
    }
    let (a_abs, a_names) = parse(base);
    if !a_abs {
        return Err(DriveError::InvalidPath {
            path: name.to_string(),
            reason: "one of the two paths must be absolute",
        });
    }
    let a = to_string("/".to_string(), &a_names, name)?;
    to_string(a, &b_names, name)
}

/// JS `parse`: whether the path is absolute, and its segments.
fn parse(addr: &str) -> (bool, Vec<&str>) {
    let names: Vec<&str> = addr.split(['/', '\\']).collect();
    if names.len() > 1 && names[0].ends_with(':') {
        if names[0].len() == 2 || names[0] == "file:" {
            return (true, names[1..].to_vec());
        }
        return (
            true,
            names.get(3..).map(<[&str]>::to_vec).unwrap_or_default(),
        );
    }
    (addr.starts_with('/') || addr.starts_with('\\'), names)
}

/// JS `toString`.
fn to_string(mut p: String, names: &[&str], original: &str) -> Result<String, DriveError> {
    for n in names {
        match *n {
            "" | "." => {}
            ".." => {
                if p.len() == 1 {
                    return Err(DriveError::InvalidPath {
                        path: original.to_string(),
                        reason: "too many '..'",
                    });
                }
                let cut = p.rfind('/').unwrap_or(0);
                p.truncate(cut);
                if p.is_empty() {
                    p.push('/');
                }
            }
            n => {
                if p.len() != 1 {
                    p.push('/');
                }
                p.push_str(n);
            }
        }
    }
    Ok(p)
}

/// The key of a file (JS `std(name, false)`): resolved; the root is not a file.
pub fn file_key(name: &str) -> Result<String, DriveError> {
    let p = resolve(name)?;
    if p == "/" {
        return Err(DriveError::InvalidPath {
            path: name.to_string(),
            reason: "the root `/` is not a file name",
        });
    }
    Ok(p)
}

/// A folder as a key prefix (JS `std(folder, true)`): resolved, without a trailing `/` (the
/// root is `""`).
pub fn folder_prefix(folder: &str) -> Result<String, DriveError> {
    let mut p = resolve(folder)?;
    if p.ends_with('/') {
        p.pop();
    }
    Ok(p)
}

/// The keys under `folder` (a [`folder_prefix`]) after `prev` (JS `prefixRange(name, prev)`):
/// `(gt, lt)` = `(folder ‖ prev, folder ‖ "0")` (`'0'` is `'/'` + 1).
pub fn prefix_range(folder: &str, prev: &str) -> (String, String) {
    (format!("{folder}{prev}"), format!("{folder}0"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_like_js() {
        // tests/vectors/data/10-paths.out
        for (i, o) in [
            ("a.txt", "/a.txt"),
            ("/a.txt", "/a.txt"),
            ("dir/../b", "/b"),
            ("./x/", "/x"),
            ("//x//y", "/x/y"),
            ("/x/y/", "/x/y"),
            ("C:\\win\\p", "/win/p"),
            ("file:/x/y", "/x/y"),
            ("http://host/x", "/x"),
            ("", "/"),
            ("/a/b/../../c", "/c"),
        ] {
            assert_eq!(resolve(i).unwrap(), o, "{i:?}");
        }
        assert!(resolve("..").is_err());
        assert!(resolve("/a/../..").is_err());
        assert!(file_key("/").is_err());
        assert!(file_key("/a/..").is_err());
        assert_eq!(folder_prefix("/").unwrap(), "");
        assert_eq!(folder_prefix("dir/").unwrap(), "/dir");
        assert_eq!(
            prefix_range("/dir", "/"),
            ("/dir/".to_string(), "/dir0".to_string())
        );
        assert_eq!(resolve_from("/a/link", "../b").unwrap(), "/a/b");
        assert_eq!(resolve_from("/a/link", "/x").unwrap(), "/x");
        assert_eq!(resolve_from("/link", "b").unwrap(), "/link/b");
    }
}
