//! `put`, `get`, `del` and `compaction`. The flags of `put`, `get` and `del` are shared with
//! `txn`'s request lines.

use std::io::{IsTerminal, Read};

use clap::Args;
use oxetcd_common::etcdserverpb::{
    range_request, CompactionRequest, DeleteRangeRequest, PutRequest, RangeRequest,
};
use oxetcd_common::net::prefix_end;

use crate::client::Dialer;
use crate::error::Failure;
use crate::output::{self, Format, Printer};

#[derive(Args, Debug, Clone, Default)]
pub(crate) struct GetArgs {
    pub(crate) key: String,
    pub(crate) range_end: Option<String>,
    /// Linearizable(l) or Serializable(s)
    #[arg(long, default_value = "l")]
    pub(crate) consistency: String,
    /// Order of results; ASCEND or DESCEND (ASCEND by default)
    #[arg(long, default_value = "")]
    pub(crate) order: String,
    /// Sort target; CREATE, KEY, MODIFY, VALUE, or VERSION
    #[arg(long, default_value = "")]
    pub(crate) sort_by: String,
    /// Maximum number of results
    #[arg(long, default_value_t = 0)]
    pub(crate) limit: i64,
    /// Get keys with matching prefix
    #[arg(long)]
    pub(crate) prefix: bool,
    /// Get keys that are greater than or equal to the given key using byte compare
    #[arg(long)]
    pub(crate) from_key: bool,
    /// Specify the kv revision
    #[arg(long, default_value_t = 0)]
    pub(crate) rev: i64,
    /// Get only the keys
    #[arg(long)]
    pub(crate) keys_only: bool,
    /// Get only the count
    #[arg(long)]
    pub(crate) count_only: bool,
    /// Only write values when using the "simple" output format
    #[arg(long)]
    pub(crate) print_value_only: bool,
}

#[derive(Args, Debug, Clone, Default)]
pub(crate) struct PutArgs {
    pub(crate) key: String,
    pub(crate) value: Option<String>,
    /// lease ID (in hexadecimal) to attach to the key
    #[arg(long, default_value = "0")]
    pub(crate) lease: String,
    /// return the previous key-value pair before modification
    #[arg(long)]
    pub(crate) prev_kv: bool,
    /// updates the key using its current value
    #[arg(long)]
    pub(crate) ignore_value: bool,
    /// updates the key using its current lease
    #[arg(long)]
    pub(crate) ignore_lease: bool,
}

#[derive(Args, Debug, Clone, Default)]
pub(crate) struct DelArgs {
    pub(crate) key: String,
    pub(crate) range_end: Option<String>,
    /// delete keys with matching prefix
    #[arg(long)]
    pub(crate) prefix: bool,
    /// return deleted key-value pairs
    #[arg(long)]
    pub(crate) prev_kv: bool,
    /// delete keys that are greater than or equal to the given key using byte compare
    #[arg(long)]
    pub(crate) from_key: bool,
}

/// Resolves key/range_end from the positional args and --prefix / --from-key, as clientv3 does.
fn key_range(
    key: &str,
    end: &Option<String>,
    prefix: bool,
    from_key: bool,
    cmd: &str,
) -> Result<(Vec<u8>, Vec<u8>), Failure> {
    if prefix && from_key {
        return Err(Failure::bad_args(
            "`--prefix` and `--from-key` cannot be set at the same time, choose one",
        ));
    }
    if end.is_some() && (prefix || from_key) {
        return Err(Failure::bad_args(
            "too many arguments, only accept one argument when `--prefix` or `--from-key` is set",
        ));
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
    pub(crate) fn request(&self) -> Result<RangeRequest, Failure> {
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
            other => {
                return Err(Failure::bad_args(format!(
                    "unknown consistency flag {other:?}"
                )))
            }
        };
        let order = match self.order.as_str() {
            "" => range_request::SortOrder::None,
            "ASCEND" => range_request::SortOrder::Ascend,
            "DESCEND" => range_request::SortOrder::Descend,
            other => return Err(Failure::bad_args(format!("bad sort order {other}"))),
        };
        let target = match self.sort_by.as_str() {
            "" | "KEY" => range_request::SortTarget::Key,
            "CREATE" => range_request::SortTarget::Create,
            "MODIFY" => range_request::SortTarget::Mod,
            "VALUE" => range_request::SortTarget::Value,
            "VERSION" => range_request::SortTarget::Version,
            other => return Err(Failure::bad_args(format!("bad sort target {other}"))),
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
    pub(crate) fn request(
        &self,
        stdin_value: impl FnOnce() -> Option<String>,
    ) -> Result<PutRequest, Failure> {
        if self.ignore_value && self.value.is_some() {
            return Err(Failure::bad_args(
                "put command needs only 1 argument when 'ignore-value' is set",
            ));
        }
        let value = if self.ignore_value {
            String::new()
        } else {
            match &self.value {
                Some(v) => v.clone(),
                None => stdin_value().ok_or_else(|| {
                    Failure::bad_args(
                        "put command needs 1 argument and input from stdin or 2 arguments",
                    )
                })?,
            }
        };
        let lease = i64::from_str_radix(&self.lease, 16)
            .map_err(|e| Failure::bad_args(format!("bad lease ID ({e}), expecting ID in Hex")))?;
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
    pub(crate) fn request(&self) -> Result<DeleteRangeRequest, Failure> {
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

/// etcdctl's argOrStdin: the value from stdin when it is not a terminal.
fn read_stdin_value() -> Option<String> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return None;
    }
    let mut s = String::new();
    stdin.lock().read_to_string(&mut s).ok()?;
    Some(s)
}

/// `put`: the flags are checked before connecting.
pub(crate) async fn put(d: &Dialer, printer: Printer, args: PutArgs) -> Result<(), Failure> {
    let req = args.request(read_stdin_value)?;
    let mut c = d.connect().await?;
    let resp = c.kv.put(req).await?.into_inner();
    printer.put(&resp);
    Ok(())
}

/// `get`
pub(crate) async fn get(d: &Dialer, printer: Printer, args: GetArgs) -> Result<(), Failure> {
    let req = args.request()?;
    let printer = Printer {
        value_only: args.print_value_only,
        ..printer
    };
    let mut c = d.connect().await?;
    let resp = c.kv.range(req).await?.into_inner();
    printer.get(&resp, args.count_only);
    Ok(())
}

/// `del`
pub(crate) async fn del(d: &Dialer, printer: Printer, args: DelArgs) -> Result<(), Failure> {
    let req = args.request()?;
    let mut c = d.connect().await?;
    let resp = c.kv.delete_range(req).await?.into_inner();
    printer.del(&resp);
    Ok(())
}

/// `compaction <revision> [--physical]`
pub(crate) async fn compaction(
    d: &Dialer,
    printer: Printer,
    revision: String,
    physical: bool,
) -> Result<(), Failure> {
    let rev: i64 = revision
        .parse()
        .map_err(|e| Failure::bad_args(format!("bad revision {revision:?}: {e}")))?;
    let mut c = d.connect().await?;
    let resp =
        c.kv.compact(CompactionRequest {
            revision: rev,
            physical,
        })
        .await?
        .into_inner();
    match printer.format {
        Format::Json => println!("{{\"header\":{}}}", output::header_json(&resp.header)),
        _ => println!("compacted revision {rev}"),
    }
    Ok(())
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
