fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/kv.proto",
        "proto/auth.proto",
        "proto/rpc.proto",
        "proto/v3lock.proto",
        "proto/v3election.proto",
        "proto/raft_internal.proto",
        "proto/raft_peer.proto",
    ];
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptors = out.join("descriptors.bin");
    // Type names (`prost::Name`) let the gateway find a message's descriptor in the
    // descriptor set, which it decodes requests with and describes itself from.
    let mut config = prost_build::Config::new();
    config.enable_type_names();
    tonic_prost_build::configure()
        .codec_path("crate::codec::ProtoCodec")
        .build_client(true)
        .build_server(true)
        .file_descriptor_set_path(&descriptors)
        .compile_with_config(config, &protos, &["proto"])?;
    // JSON for the HTTP gateway, as grpc-gateway v1 with etcd's marshaler writes it: proto
    // field names, 64-bit integers as strings, bytes as base64, enums by name, zero values
    // left out; unknown fields are ignored on input.
    pbjson_build::Builder::new()
        .register_descriptors(&std::fs::read(&descriptors)?)?
        .preserve_proto_field_names()
        .ignore_unknown_fields()
        .build(&[
            ".etcdserverpb",
            ".mvccpb",
            ".authpb",
            ".v3lockpb",
            ".v3electionpb",
        ])?;
    Ok(())
}
