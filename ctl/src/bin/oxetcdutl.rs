//! The `oxetcdutl` binary (see `etcdutl.rs`).

fn main() {
    oxetcd_ctl::etcdutl::main()
}
