//! etcd's errors as gRPC statuses, in one table: same codes, same messages, so every etcd
//! client recognises them (clientv3 matches on the message text). Only `api` builds statuses.

use tonic::{Code, Status};

use crate::error::ServerError;
use crate::mvcc::KvError;

/// The gRPC code etcd answers each error with (`v3rpc/rpctypes/error.go`).
fn code(e: &ServerError) -> Code {
    match e {
        ServerError::Kv(kv) => match kv {
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
        },
        ServerError::NoLeader
        | ServerError::TimedOut
        | ServerError::Stopped
        | ServerError::Unavailable(_) => Code::Unavailable,
        ServerError::NotLeader
        | ServerError::BadTransferee
        | ServerError::TransferInProgress
        | ServerError::PeerUrlExists
        | ServerError::NotEnoughStartedMembers
        | ServerError::NotALearner
        | ServerError::LearnerNotReady => Code::FailedPrecondition,
        ServerError::TransferTimedOut => Code::DeadlineExceeded,
        ServerError::MemberNotFound => Code::NotFound,
        ServerError::InvalidPeerUrls => Code::InvalidArgument,
        ServerError::Internal(_) => Code::Internal,
        // etcd's v3election/v3lock servers return this as a plain error: gRPC Unknown.
        ServerError::ContenderDeleted => Code::Unknown,
    }
}

impl From<ServerError> for Status {
    fn from(e: ServerError) -> Self {
        Status::new(code(&e), e.to_string())
    }
}

impl From<KvError> for Status {
    fn from(e: KvError) -> Self {
        ServerError::Kv(e).into()
    }
}
