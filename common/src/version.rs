//! Versions reported to clients and operators.

/// Our own version.
pub const OXETCD_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The etcd server version we claim in `Status.version` and `GET /version`. Clients such as
/// Kubernetes switch features on by this number, so it names the etcd API level we implement.
pub const ETCD_SERVER_VERSION: &str = "3.6.0";

/// The cluster version (`etcdcluster` in `GET /version`): etcd reports major.minor.0.
pub const ETCD_CLUSTER_VERSION: &str = "3.6.0";

/// The storage version reported in `Status.storageVersion`.
pub const ETCD_STORAGE_VERSION: &str = "3.6.0";
