//! URL and key-range helpers every binary needs, in one place.

/// A comma-separated URL list (etcd's `--listen-client-urls` and friends), blanks dropped.
pub fn split_urls(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(String::from)
        .collect()
}

/// `host:port` of a URL (`http://h:p`, `https://h:p/`, or already `h:p`).
pub fn url_host_port(url: &str) -> &str {
    let s = url.trim();
    let s = s.split_once("://").map_or(s, |(_, rest)| rest);
    s.split('/').next().unwrap_or(s)
}

/// Go's `net.SplitHostPort`: `host:port` or `[v6]:port`, the port all digits (at most
/// 65535); `None` for anything else, including a path or a missing port.
pub fn split_host_port(hp: &str) -> Option<(&str, u16)> {
    let (host, port) = if let Some(rest) = hp.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        (host, after.strip_prefix(':')?)
    } else {
        let (host, port) = hp.rsplit_once(':')?;
        if host.contains(':') {
            return None;
        }
        (host, port)
    };
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) || host.contains('/') {
        return None;
    }
    Some((host, port.parse().ok()?))
}

/// The first key after every key that starts with `prefix` (etcd's `GetPrefixRangeEnd`);
/// `"\0"` (every key) when there is none, for a prefix of only 0xff bytes or an empty one.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_like_go() {
        assert_eq!(split_host_port("127.0.0.1:2380"), Some(("127.0.0.1", 2380)));
        assert_eq!(split_host_port("[::1]:2380"), Some(("::1", 2380)));
        assert_eq!(split_host_port("host:"), None);
        assert_eq!(split_host_port("host"), None);
        assert_eq!(split_host_port("a url"), None);
        assert_eq!(split_host_port("h:1/path"), None);
        assert_eq!(split_host_port("h:99999"), None);
        assert_eq!(url_host_port("https://h:1/"), "h:1");
        assert_eq!(url_host_port("h:1"), "h:1");
    }

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"a"), b"b");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff"), b"\0");
        assert_eq!(prefix_end(b""), b"\0");
    }

    #[test]
    fn urls_split() {
        assert_eq!(split_urls(" a, ,b "), vec!["a", "b"]);
    }
}
