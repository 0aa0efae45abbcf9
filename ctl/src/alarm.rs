//! `alarm list|disarm`, printed as etcdctl 3.4 prints an `AlarmResponse`.
//!
//! etcd 3.4 answers `Alarm` without a response header, and `alarm disarm` prints a response it
//! puts together itself (never with a header), so the header is optional everywhere here.

use clap::Subcommand;
use oxetcd_common::etcdserverpb::{
    alarm_request::AlarmAction, AlarmMember, AlarmRequest, AlarmResponse, AlarmType,
};
use serde_json::{json, Map, Value};

use crate::client::{Clients, Dialer};
use crate::error::{Failure, EXIT_PANIC};
use crate::output::{self, pb, Format, Printer};

#[derive(Subcommand)]
pub(crate) enum AlarmCommand {
    /// Disarms all alarms
    Disarm {
        // etcdctl refuses arguments with its own message, so they are taken and refused here.
        #[arg(hide = true)]
        args: Vec<String>,
    },
    /// Lists all alarms
    List {
        #[arg(hide = true)]
        args: Vec<String>,
    },
}

/// `alarm list|disarm`
pub(crate) async fn run(d: &Dialer, printer: Printer, cmd: AlarmCommand) -> Result<(), Failure> {
    let (name, args) = match &cmd {
        AlarmCommand::Disarm { args } => ("disarm", args),
        AlarmCommand::List { args } => ("list", args),
    };
    if !args.is_empty() {
        return Err(Failure::bad_args(format!(
            "alarm {name} command accepts no arguments"
        )));
    }
    let c = &mut d.connect().await?;
    let resp = match cmd {
        AlarmCommand::List { .. } => list(c).await?,
        AlarmCommand::Disarm { .. } => disarm(c).await?,
    };
    print(printer.format, &resp)
}

/// clientv3's AlarmList: every alarm of every member.
async fn list(c: &mut Clients) -> Result<AlarmResponse, Failure> {
    let req = AlarmRequest {
        action: AlarmAction::Get as i32,
        member_id: 0,
        alarm: AlarmType::None as i32,
    };
    Ok(c.maintenance.alarm(req).await?.into_inner())
}

/// clientv3's AlarmDisarm of all alarms: lists them, deactivates each, and answers with the
/// alarms the deactivations return (in a response of its own, without a header).
async fn disarm(c: &mut Clients) -> Result<AlarmResponse, Failure> {
    let mut out = AlarmResponse::default();
    for a in list(c).await?.alarms {
        let req = AlarmRequest {
            action: AlarmAction::Deactivate as i32,
            member_id: a.member_id,
            alarm: a.alarm,
        };
        out.alarms
            .extend(c.maintenance.alarm(req).await?.into_inner().alarms);
    }
    Ok(out)
}

/// An alarm type's name, or its number when it has none (Go's enum `String()`).
fn alarm_name(t: i32) -> String {
    AlarmType::try_from(t)
        .map(|t| t.as_str_name().to_string())
        .unwrap_or_else(|_| t.to_string())
}

/// Go's `%+v` of an `*AlarmMember`: protobuf's compact text form, zero fields left out, each
/// field followed by a space (`memberID:8211 alarm:NOSPACE `).
fn simple_line(a: &AlarmMember) -> String {
    let mut s = String::new();
    if a.member_id != 0 {
        s.push_str(&format!("memberID:{} ", a.member_id));
    }
    if a.alarm != 0 {
        s.push_str(&format!("alarm:{} ", alarm_name(a.alarm)));
    }
    s
}

/// `json.Marshal` of the response: omitempty fields, the alarm type as its number.
fn to_json(r: &AlarmResponse) -> Value {
    let mut m = Map::new();
    if r.header.is_some() {
        m.insert("header".into(), output::header_json(&r.header));
    }
    if !r.alarms.is_empty() {
        let alarms = r
            .alarms
            .iter()
            .map(|a| {
                let mut am = Map::new();
                if a.member_id != 0 {
                    am.insert("memberID".into(), json!(a.member_id));
                }
                if a.alarm != 0 {
                    am.insert("alarm".into(), json!(a.alarm));
                }
                Value::Object(am)
            })
            .collect();
        m.insert("alarms".into(), Value::Array(alarms));
    }
    Value::Object(m)
}

/// The response's protobuf encoding, as `-w protobuf` prints it.
fn to_protobuf(r: &AlarmResponse) -> Vec<u8> {
    let mut out = pb::header(&r.header);
    for a in &r.alarms {
        let mut m = Vec::new();
        pb::uint(&mut m, 1, a.member_id);
        pb::uint(&mut m, 2, a.alarm as i64 as u64);
        pb::bytes(&mut out, 2, &m);
    }
    out
}

fn print(format: Format, r: &AlarmResponse) -> Result<(), Failure> {
    match format {
        Format::Simple => {
            for a in &r.alarms {
                println!("{}", simple_line(a));
            }
        }
        Format::Json => println!("{}", to_json(r)),
        Format::Protobuf => output::write_stdout(&to_protobuf(r)),
        Format::Table => return Err(output::unsupported("table")),
        Format::Fields => {
            // etcdctl's fields printer reads the header unconditionally: without one (always
            // from etcd 3.4) it dies of a nil pointer before printing anything.
            if r.header.is_none() {
                eprintln!(
                    "panic: runtime error: invalid memory address or nil pointer dereference"
                );
                return Err(Failure::quiet(EXIT_PANIC));
            }
            Printer::hdr_fields(&r.header);
            for a in &r.alarms {
                println!("\"MemberID\" : {}", a.member_id);
                println!("\"AlarmType\" : {}", alarm_name(a.alarm));
                println!();
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nospace() -> AlarmResponse {
        AlarmResponse {
            header: None,
            alarms: vec![AlarmMember {
                member_id: 13668033151171901709,
                alarm: AlarmType::Nospace as i32,
            }],
        }
    }

    /// What etcdctl 3.4 printed for a NOSPACE alarm of real etcd 3.4.
    #[test]
    fn formats_like_etcdctl() {
        let r = nospace();
        assert_eq!(
            simple_line(&r.alarms[0]),
            "memberID:13668033151171901709 alarm:NOSPACE "
        );
        assert_eq!(
            to_json(&r).to_string(),
            r#"{"alarms":[{"memberID":13668033151171901709,"alarm":1}]}"#
        );
        assert_eq!(
            to_protobuf(&r),
            b"\x12\x0d\x08\x8d\xf2\xf4\x8e\xc1\xf7\xa6\xd7\xbd\x01\x10\x01".to_vec()
        );
        let empty = AlarmResponse::default();
        assert_eq!(to_json(&empty).to_string(), "{}");
        assert!(to_protobuf(&empty).is_empty());
    }
}
