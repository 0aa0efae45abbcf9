//! The `oxetcdctl` binary (see `etcdctl.rs`).

fn main() {
    oxetcd_ctl::etcdctl::main()
}
