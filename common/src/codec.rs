//! The gRPC codec of every generated client and server (`build.rs` names it): prost's, except
//! that a message's buffer is sized once, from its encoded length, before encoding.
//!
//! prost writes into tonic's `BytesMut` piece by piece, so a large message (a full Range of a
//! million keys is hundreds of MB) grew it by doubling: each step copied the buffer and held
//! the old one beside the new. glibc grows such buffers in place with `mremap`; jemalloc copies,
//! and the peak of one unary Range rose by half. Reserving the exact length first makes one
//! allocation, and costs nothing: prost computes the same length before encoding anyway.

use std::marker::PhantomData;

use prost::Message;
use tonic::codec::{BufferSettings, Codec, EncodeBuf, Encoder};
use tonic::Status;
use tonic_prost::ProstDecoder;

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct ProtoCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for ProtoCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> Codec for ProtoCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = PresizedEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        PresizedEncoder(PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::default()
    }
}

/// Encodes a message into a buffer reserved for its whole length.
#[derive(Debug, Clone)]
pub struct PresizedEncoder<T>(PhantomData<T>);

impl<T: Message> Encoder for PresizedEncoder<T> {
    type Item = T;
    type Error = Status;

    fn encode(&mut self, item: T, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        buf.reserve(item.encoded_len());
        item.encode_raw(buf);
        Ok(())
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::default()
    }
}
