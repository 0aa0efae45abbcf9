//! `--config-file`: a YAML file with etcd's key names (`listen-client-urls: ...`), for every
//! binary. Precedence: command line, then environment, then the file, then defaults.

use std::collections::BTreeMap;

use anyhow::{bail, Context};
use clap::parser::ValueSource;
use clap::Parser;

/// Parses `args` (program name first) and fills what neither the command line nor the
/// environment set from the file named by the `config_file` argument, if any. Keys the
/// binary does not know are reported on stderr and ignored (etcd has many we do not implement).
pub fn parse_with_config_file<T: Parser>(args: Vec<String>) -> anyhow::Result<T> {
    let matches = T::command().try_get_matches_from(&args)?;
    let path = matches
        .get_raw("config_file")
        .and_then(|mut v| v.next())
        .map(|p| std::path::PathBuf::from(p.to_os_string()));
    let Some(path) = path else {
        return Ok(T::from_arg_matches(&matches)?);
    };
    let program = T::command().get_name().to_string();
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    let file: BTreeMap<String, serde_yaml::Value> = serde_yaml::from_str(&text)
        .with_context(|| format!("cannot parse config file {}", path.display()))?;
    let known: Vec<String> = T::command()
        .get_arguments()
        .map(|a| a.get_id().to_string())
        .collect();
    let mut extended = args.clone();
    for (key, value) in file {
        let id = key.replace('-', "_");
        if !known.contains(&id) {
            eprintln!("{program}: config file key {key:?} is not supported, ignored");
            continue;
        }
        let explicit = matches!(
            matches.value_source(&id),
            Some(ValueSource::CommandLine) | Some(ValueSource::EnvVariable)
        );
        if explicit {
            continue;
        }
        let v = match value {
            serde_yaml::Value::String(s) => s,
            serde_yaml::Value::Number(n) => n.to_string(),
            serde_yaml::Value::Bool(b) => b.to_string(),
            serde_yaml::Value::Null => continue,
            other => bail!("config file key {key:?}: unsupported value {other:?}"),
        };
        extended.push(format!("--{}={v}", id.replace('_', "-")));
    }
    let matches = T::command().try_get_matches_from(&extended)?;
    Ok(T::from_arg_matches(&matches)?)
}
