//! Waiting for the signals that end a process, shared by the member and the CLI.

/// Resolves on SIGINT (Ctrl-C) or SIGTERM, whichever comes first.
pub async fn terminated() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            // No SIGTERM handler could be installed: only Ctrl-C ends the wait.
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}
