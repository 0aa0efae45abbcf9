//! `version`.

use crate::error::Failure;

/// Prints this client's version and the API version it speaks.
pub(crate) fn run() -> Result<(), Failure> {
    println!(
        "oxetcdctl version: {}",
        oxetcd_common::version::OXETCD_VERSION
    );
    println!("API version: 3.6");
    Ok(())
}
