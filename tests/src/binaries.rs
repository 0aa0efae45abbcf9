//! Where the built binaries are: `oxetcd`, `oxetcdctl` and `oxetcd-proxy`.

use std::path::{Path, PathBuf};

/// Directory holding the built binaries: `OXETCD_BIN_DIR`, else next to the test executable
/// (`target/debug/deps/..`).
pub fn bin_dir() -> PathBuf {
    if let Ok(d) = std::env::var("OXETCD_BIN_DIR") {
        return PathBuf::from(d);
    }
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/debug/deps/<test>")
        .to_path_buf()
}

pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.exists(),
        "{} is not built: run `cargo build --workspace --bins` (or `make test`) first",
        p.display()
    );
    p
}
