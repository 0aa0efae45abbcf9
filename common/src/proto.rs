//! Generated etcd v3 protocol code. Each module is one protobuf package, named as in etcd so
//! that `etcdserverpb::KvClient`, `mvccpb::KeyValue` etc. read like etcd's Go API.
#![allow(clippy::all, missing_docs)]

pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}
pub mod authpb {
    tonic::include_proto!("authpb");
}
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}
pub mod v3lockpb {
    tonic::include_proto!("v3lockpb");
}
pub mod v3electionpb {
    tonic::include_proto!("v3electionpb");
}
pub mod oxetcdpb {
    tonic::include_proto!("oxetcdpb");
}
pub mod oxetcdpeerpb {
    tonic::include_proto!("oxetcdpeerpb");
}
