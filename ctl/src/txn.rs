//! `txn`'s stdin format, as etcdctl reads it: compares, an empty line, success requests, an
//! empty line, failure requests, an empty line.
//!
//! ```text
//! value("user1") = "bad"
//!
//! put user1 good
//!
//! get user1
//! ```

use std::io::BufRead;

use clap::{Parser, Subcommand};
use oxetcd_common::etcdserverpb::{compare, request_op, Compare, RequestOp, TxnRequest};

use crate::client::Dialer;
use crate::error::Failure;
use crate::kv::{DelArgs, GetArgs, PutArgs};
use crate::output::Printer;

#[derive(Parser)]
#[command(no_binary_name = true)]
struct OpLine {
    #[command(subcommand)]
    op: Op,
}

#[derive(Subcommand)]
enum Op {
    Get(GetArgs),
    Put(PutArgs),
    Del(DelArgs),
}

/// Splits a line into words, honouring double and single quotes (etcdctl's argify).
pub(crate) fn argify(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' | '\'' => {
                in_word = true;
                for d in chars.by_ref() {
                    if d == c {
                        break;
                    }
                    cur.push(d);
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    out
}

/// Parses a Go-quoted string at the start of `s`; returns it and the rest.
fn take_quoted(s: &str) -> Option<(String, &str)> {
    let s = s.trim_start();
    let rest = s.strip_prefix('"')?;
    let mut out = String::new();
    let mut chars = rest.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, &rest[i + 1..])),
            '\\' => match chars.next()?.1 {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                '\\' => out.push('\\'),
                '"' => out.push('"'),
                other => {
                    out.push('\\');
                    out.push(other);
                }
            },
            c => out.push(c),
        }
    }
    None
}

/// One compare line: `<target>("<key>") <op> "<value>"`.
pub(crate) fn parse_compare(line: &str) -> Result<Compare, Failure> {
    let malformed = || Failure::bad_args(format!("malformed comparison: {line}"));
    let (target, rest) = line.split_once('(').ok_or_else(malformed)?;
    let (key, rest) = take_quoted(rest).ok_or_else(malformed)?;
    let rest = rest.strip_prefix(')').ok_or_else(malformed)?;
    let rest = rest.trim_start();
    let (op, rest) = rest.split_once(' ').ok_or_else(malformed)?;
    let (val, _) = take_quoted(rest).ok_or_else(malformed)?;
    use compare::{CompareResult as R, CompareTarget as T, TargetUnion as U};
    let result = match op {
        "=" | "==" => R::Equal,
        "!=" => R::NotEqual,
        ">" => R::Greater,
        "<" => R::Less,
        _ => {
            return Err(Failure::bad_args(format!(
                "malformed comparison: {line} (unknown op {op})"
            )))
        }
    };
    let int = || -> Result<i64, Failure> {
        val.parse::<i64>()
            .map_err(|_| Failure::bad_args(format!("invalid txn compare request: {line}")))
    };
    let (target, union) = match target.trim() {
        "ver" | "version" => (T::Version, U::Version(int()?)),
        "c" | "create" => (T::Create, U::CreateRevision(int()?)),
        "m" | "mod" => (T::Mod, U::ModRevision(int()?)),
        "val" | "value" => (T::Value, U::Value(val.clone().into_bytes())),
        "lease" => (T::Lease, U::Lease(int()?)),
        other => {
            return Err(Failure::bad_args(format!(
                "malformed comparison: {line} (unknown target {other})"
            )))
        }
    };
    Ok(Compare {
        result: result as i32,
        target: target as i32,
        key: key.into_bytes(),
        target_union: Some(union),
        range_end: Vec::new(),
    })
}

/// One request line: `get ...`, `put ...` or `del ...` with their flags.
pub(crate) fn parse_request(line: &str) -> Result<RequestOp, Failure> {
    let words = argify(line);
    let parsed = OpLine::try_parse_from(&words)
        .map_err(|e| Failure::bad_args(format!("invalid txn request: {line}: {}", e.kind())))?;
    let request = match parsed.op {
        Op::Get(g) => request_op::Request::RequestRange(g.request()?),
        Op::Put(p) => request_op::Request::RequestPut(p.request(|| None)?),
        Op::Del(d) => request_op::Request::RequestDeleteRange(d.request()?),
    };
    Ok(RequestOp {
        request: Some(request),
    })
}

/// Reads lines until an empty line. As etcdctl's (Go's `ReadString('\n')`), input that ends
/// before the empty line, or a last line without its newline, is "Error: EOF".
fn read_section(input: &mut dyn BufRead) -> Result<Vec<String>, Failure> {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        input
            .read_line(&mut line)
            .map_err(|e| Failure::bad_args(e.to_string()))?;
        if !line.ends_with('\n') {
            return Err(Failure::new(crate::error::EXIT_INVALID_INPUT, "EOF"));
        }
        let line = line.trim_end_matches(['\n', '\r']);
        if line.is_empty() {
            return Ok(lines);
        }
        lines.push(line.to_string());
    }
}

/// Reads a whole txn from `input`; with `interactive`, prints etcdctl's section prompts.
pub(crate) fn read_txn(input: &mut dyn BufRead, interactive: bool) -> Result<TxnRequest, Failure> {
    let prompt = |s: &str| {
        if interactive {
            println!("{s}");
        }
    };
    prompt("compares:");
    let compare = read_section(input)?
        .iter()
        .map(|l| parse_compare(l))
        .collect::<Result<Vec<_>, Failure>>()?;
    prompt("success requests (get, put, del):");
    let success = read_section(input)?
        .iter()
        .map(|l| parse_request(l))
        .collect::<Result<Vec<_>, Failure>>()?;
    prompt("failure requests (get, put, del):");
    let failure = read_section(input)?
        .iter()
        .map(|l| parse_request(l))
        .collect::<Result<Vec<_>, Failure>>()?;
    Ok(TxnRequest {
        compare,
        success,
        failure,
    })
}

/// `txn [-i]`: the whole txn is read from stdin before connecting.
pub(crate) async fn run(d: &Dialer, printer: Printer, interactive: bool) -> Result<(), Failure> {
    let req = read_txn(&mut std::io::stdin().lock(), interactive)?;
    let mut c = d.connect().await?;
    let resp = c.kv.txn(req).await?.into_inner();
    printer.txn(&resp);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares() {
        let c = parse_compare(r#"value("user1") = "bad""#).unwrap();
        assert_eq!(c.key, b"user1");
        assert_eq!(
            c.target_union,
            Some(compare::TargetUnion::Value(b"bad".to_vec()))
        );
        let c = parse_compare(r#"mod("user1") > "0""#).unwrap();
        assert_eq!(c.result, compare::CompareResult::Greater as i32);
        assert!(parse_compare(r#"nope("k") = "1""#).is_err());
        assert!(parse_compare(r#"version("k") = "x""#).is_err());
    }

    #[test]
    fn whole_txn() {
        let text = "value(\"user1\") = \"bad\"\n\nget user1\nput user1 good --prev-kv\n\nput user1 \"two words\"\n\n";
        let t = read_txn(&mut text.as_bytes(), false).unwrap();
        assert_eq!(
            (t.compare.len(), t.success.len(), t.failure.len()),
            (1, 2, 1)
        );
        match &t.failure[0].request {
            Some(request_op::Request::RequestPut(p)) => assert_eq!(p.value, b"two words"),
            _ => panic!("expected a put"),
        }
    }
}
