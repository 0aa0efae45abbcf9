//! What Go programs (etcd, etcdctl) print for OS errors, for tools that must print the same.

/// Go's text for a failed file operation (`*os.PathError`): `open f.db: no such file or
/// directory`.
pub fn path_error(op: &str, path: &str, e: &std::io::Error) -> String {
    format!("{op} {path}: {}", errno_text(e))
}

/// Go's words for an OS error: the C library's, lower case, without Rust's `(os error N)`.
pub fn errno_text(e: &std::io::Error) -> String {
    let s = e.to_string();
    let words = match (e.raw_os_error(), s.rfind(" (os error ")) {
        (Some(_), Some(i)) => &s[..i],
        _ => s.as_str(),
    };
    words.to_lowercase()
}
