//! The member's background tasks, named and managed together: started in one place
//! (`member::run`), stopped together at shutdown, and logged if one ends on its own (each is
//! meant to run for the member's whole life).

use std::future::Future;

use tokio::task::JoinSet;

#[derive(Default)]
pub(crate) struct Tasks {
    set: JoinSet<&'static str>,
}

impl Tasks {
    /// Starts `task`, known as `name` in the logs.
    pub(crate) fn spawn(
        &mut self,
        name: &'static str,
        task: impl Future<Output = ()> + Send + 'static,
    ) {
        tracing::debug!(task = name, "starting");
        self.set.spawn(async move {
            task.await;
            name
        });
    }

    /// Resolves when a task ends by itself (and logs it); pending while every task runs.
    pub(crate) async fn ended(&mut self) {
        loop {
            match self.set.join_next().await {
                Some(Ok(name)) => tracing::debug!(task = name, "ended"),
                Some(Err(e)) if e.is_panic() => tracing::error!("a background task panicked: {e}"),
                Some(Err(_)) => {}
                None => return std::future::pending().await,
            }
        }
    }

    /// Stops every task.
    pub(crate) async fn shutdown(mut self) {
        self.set.abort_all();
        while self.set.join_next().await.is_some() {}
    }
}
