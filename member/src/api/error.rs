//! etcd's errors as gRPC statuses: same codes, same messages, so every etcd client recognises
//! them (clientv3 matches on the message text).

use tonic::{Code, Status};

use crate::mvcc::KvError;

impl From<KvError> for Status {
    fn from(e: KvError) -> Self {
        let code = match &e {
            KvError::EmptyKey
            | KvError::KeyNotFound
            | KvError::ValueProvided
            | KvError::LeaseProvided
            | KvError::TooManyOps
            | KvError::DuplicateKey
            | KvError::RequestTooLarge => Code::InvalidArgument,
            KvError::Compacted | KvError::FutureRev => Code::OutOfRange,
            KvError::LeaseNotFound => Code::NotFound,
            KvError::LeaseExists => Code::FailedPrecondition,
            KvError::LeaseTtlTooLarge => Code::OutOfRange,
            KvError::Storage(_) | KvError::Corrupt(_) => Code::Internal,
        };
        Status::new(code, e.to_string())
    }
}
