//! The flags of `get`, `put` and `del`, shared by the commands and by `txn`'s request lines.

use anyhow::{bail, Result};
use clap::Args;
use oxetcd_common::etcdserverpb::{range_request, DeleteRangeRequest, PutRequest, RangeRequest};

#[derive(Args, Debug, Clone, Default)]
pub struct GetArgs {
    pub key: String,
    pub range_end: Option<String>,
    /// Linearizable(l) or Serializable(s)
    #[arg(long, default_value = "l")]
    pub consistency: String,
    /// Order of results; ASCEND or DESCEND (ASCEND by default)
    #[arg(long, default_value = "")]
    pub order: String,
    /// Sort target; CREATE, KEY, MODIFY, VALUE, or VERSION
    #[arg(long, default_value = "")]
    pub sort_by: String,
    /// Maximum number of results
    #[arg(long, default_value_t = 0)]
    pub limit: i64,
    /// Get keys with matching prefix
    #[arg(long)]
    pub prefix: bool,
    /// Get keys that are greater than or equal to the given key using byte compare
    #[arg(long)]
    pub from_key: bool,
    /// Specify the kv revision
    #[arg(long, default_value_t = 0)]
    pub rev: i64,
    /// Get only the keys
    #[arg(long)]
    pub keys_only: bool,
    /// Get only the count
    #[arg(long)]
    pub count_only: bool,
    /// Only write values when using the "simple" output format
    #[arg(long)]
    pub print_value_only: bool,
}

#[derive(Args, Debug, Clone, Default)]
pub struct PutArgs {
    pub key: String,
    pub value: Option<String>,
    /// lease ID (in hexadecimal) to attach to the key
    #[arg(long, default_value = "0")]
    pub lease: String,
    /// return the previous key-value pair before modification
    #[arg(long)]
    pub prev_kv: bool,
    /// updates the key using its current value
    #[arg(long)]
    pub ignore_value: bool,
    /// updates the key using its current lease
    #[arg(long)]
    pub ignore_lease: bool,
}

#[derive(Args, Debug, Clone, Default)]
pub struct DelArgs {
    pub key: String,
    pub range_end: Option<String>,
    /// delete keys with matching prefix
    #[arg(long)]
    pub prefix: bool,
    /// return deleted key-value pairs
    #[arg(long)]
    pub prev_kv: bool,
    /// delete keys that are greater than or equal to the given key using byte compare
    #[arg(long)]
    pub from_key: bool,
}

pub use oxetcd_common::net::prefix_end;

/// Resolves key/range_end from the positional args and --prefix / --from-key, as clientv3 does.
fn key_range(
    key: &str,
    end: &Option<String>,
    prefix: bool,
    from_key: bool,
    cmd: &str,
) -> Result<(Vec<u8>, Vec<u8>)> {
    if prefix && from_key {
        bail!("`--prefix` and `--from-key` cannot be set at the same time, choose one");
    }
    if end.is_some() && (prefix || from_key) {
        bail!(
            "too many arguments, only accept one argument when `--prefix` or `--from-key` is set"
        );
    }
    let _ = cmd;
    let mut k = key.as_bytes().to_vec();
    let e = if prefix {
        if k.is_empty() {
            k = vec![0];
            vec![0]
        } else {
            prefix_end(&k)
        }
    } else if from_key {
        if k.is_empty() {
            k = vec![0];
        }
        vec![0]
    } else {
        end.clone().unwrap_or_default().into_bytes()
    };
    Ok((k, e))
}

impl GetArgs {
    pub fn request(&self) -> Result<RangeRequest> {
        let (key, range_end) = key_range(
            &self.key,
            &self.range_end,
            self.prefix,
            self.from_key,
            "get",
        )?;
        let serializable = match self.consistency.as_str() {
            "l" => false,
            "s" => true,
            other => bail!("unknown consistency flag {other:?}"),
        };
        let order = match self.order.as_str() {
            "" => range_request::SortOrder::None,
            "ASCEND" => range_request::SortOrder::Ascend,
            "DESCEND" => range_request::SortOrder::Descend,
            other => bail!("bad sort order {other}"),
        };
        let target = match self.sort_by.as_str() {
            "" | "KEY" => range_request::SortTarget::Key,
            "CREATE" => range_request::SortTarget::Create,
            "MODIFY" => range_request::SortTarget::Mod,
            "VALUE" => range_request::SortTarget::Value,
            "VERSION" => range_request::SortTarget::Version,
            other => bail!("bad sort target {other}"),
        };
        // etcdctl: a sort target without an order sorts ascending; KEY ascending is the natural
        // order, sent as no sort at all.
        let mut order = order;
        if !self.sort_by.is_empty() && order == range_request::SortOrder::None {
            order = range_request::SortOrder::Ascend;
        }
        if target == range_request::SortTarget::Key && order == range_request::SortOrder::Ascend {
            order = range_request::SortOrder::None;
        }
        Ok(RangeRequest {
            key,
            range_end,
            limit: self.limit,
            revision: self.rev,
            sort_order: order as i32,
            sort_target: target as i32,
            serializable,
            keys_only: self.keys_only,
            count_only: self.count_only,
            ..Default::default()
        })
    }
}

impl PutArgs {
    /// `value` comes from the argument or, without one, from stdin (etcdctl's argOrStdin).
    pub fn request(&self, stdin_value: impl FnOnce() -> Option<String>) -> Result<PutRequest> {
        if self.ignore_value && self.value.is_some() {
            bail!("put command needs only 1 argument when 'ignore-value' is set");
        }
        let value = if self.ignore_value {
            String::new()
        } else {
            match &self.value {
                Some(v) => v.clone(),
                None => stdin_value().ok_or_else(|| {
                    anyhow::anyhow!(
                        "put command needs 1 argument and input from stdin or 2 arguments"
                    )
                })?,
            }
        };
        let lease = i64::from_str_radix(&self.lease, 16)
            .map_err(|e| anyhow::anyhow!("bad lease ID ({e}), expecting ID in Hex"))?;
        Ok(PutRequest {
            key: self.key.clone().into_bytes(),
            value: value.into_bytes(),
            lease,
            prev_kv: self.prev_kv,
            ignore_value: self.ignore_value,
            ignore_lease: self.ignore_lease,
        })
    }
}

impl DelArgs {
    pub fn request(&self) -> Result<DeleteRangeRequest> {
        let (key, range_end) = key_range(
            &self.key,
            &self.range_end,
            self.prefix,
            self.from_key,
            "del",
        )?;
        Ok(DeleteRangeRequest {
            key,
            range_end,
            prev_kv: self.prev_kv,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"aa"), b"ab");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
    }
}
