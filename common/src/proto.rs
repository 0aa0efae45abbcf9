//! Generated etcd v3 protocol code. Each module is one protobuf package, named as in etcd so
//! that `etcdserverpb::KvClient`, `mvccpb::KeyValue` etc. read like etcd's Go API.
#![allow(clippy::all, missing_docs)]

pub mod mvccpb {
    tonic::include_proto!("mvccpb");
    include!(concat!(env!("OUT_DIR"), "/mvccpb.serde.rs"));
}
pub mod authpb {
    tonic::include_proto!("authpb");
    include!(concat!(env!("OUT_DIR"), "/authpb.serde.rs"));
}
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
    include!(concat!(env!("OUT_DIR"), "/etcdserverpb.serde.rs"));
}
pub mod v3lockpb {
    tonic::include_proto!("v3lockpb");
    include!(concat!(env!("OUT_DIR"), "/v3lockpb.serde.rs"));
}
pub mod v3electionpb {
    tonic::include_proto!("v3electionpb");
    include!(concat!(env!("OUT_DIR"), "/v3electionpb.serde.rs"));
}
pub mod oxetcdpb {
    tonic::include_proto!("oxetcdpb");
}
pub mod oxetcdpeerpb {
    tonic::include_proto!("oxetcdpeerpb");
}

/// The descriptors of every message and service above (`protoc`'s `FileDescriptorSet`, with
/// source info): what the HTTP gateway decodes JSON requests with and describes itself from.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptors.bin"));
