//! The protos' descriptors at run time (prost-reflect): what the gateway decodes JSON with and
//! describes itself from, and what the gRPC metrics learn each method's type from.

use std::sync::OnceLock;

use prost_reflect::DescriptorPool;

/// The descriptors of etcd's API, decoded once.
pub(crate) fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        // Built from the same protos as the generated code; a failure is a build defect.
        DescriptorPool::decode(oxetcd_common::FILE_DESCRIPTOR_SET)
            .expect("the descriptor set built with the protos decodes")
    })
}

/// The services clients call (not the peer and internal ones).
pub(crate) const CLIENT_SERVICES: &[&str] = &[
    "etcdserverpb.KV",
    "etcdserverpb.Watch",
    "etcdserverpb.Lease",
    "etcdserverpb.Cluster",
    "etcdserverpb.Maintenance",
    "etcdserverpb.Auth",
    "v3lockpb.Lock",
    "v3electionpb.Election",
];
