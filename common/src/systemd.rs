//! systemd's readiness protocol (`Type=notify`), without libsystemd.

/// Sends `READY=1` to `$NOTIFY_SOCKET`, if the process was started with one (by systemd, or
/// by the end-to-end tests, which wait for it instead of sleeping).
pub fn notify_ready() {
    let Ok(path) = std::env::var("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sock) = std::os::unix::net::UnixDatagram::unbound() else {
        return;
    };
    let res = if let Some(abstract_name) = path.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(abstract_name.as_bytes())
            .and_then(|addr| sock.send_to_addr(b"READY=1", &addr))
    } else {
        sock.send_to(b"READY=1", &path)
    };
    if let Err(e) = res {
        tracing::warn!("cannot notify systemd: {e}");
    }
}
