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
    for (key, value) in flatten(file)? {
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
            // Lists (`cipher-suites`, URLs) as the flags take them: comma-separated.
            serde_yaml::Value::Sequence(items) => items
                .iter()
                .map(|i| match i {
                    serde_yaml::Value::String(s) => Ok(s.clone()),
                    serde_yaml::Value::Number(n) => Ok(n.to_string()),
                    other => bail!("config file key {key:?}: unsupported list item {other:?}"),
                })
                .collect::<anyhow::Result<Vec<_>>>()?
                .join(","),
            other => bail!("config file key {key:?}: unsupported value {other:?}"),
        };
        extended.push(format!("--{}={v}", id.replace('_', "-")));
    }
    let matches = T::command().try_get_matches_from(&extended)?;
    Ok(T::from_arg_matches(&matches)?)
}

/// etcd's config file nests the TLS settings: `client-transport-security` holds the client
/// flags under their own names, `peer-transport-security` the peer flags without `peer-`
/// (and `allowed-cn`/`allowed-hostname` for `peer-cert-allowed-*`). Flattened to flag names.
fn flatten(
    file: BTreeMap<String, serde_yaml::Value>,
) -> anyhow::Result<BTreeMap<String, serde_yaml::Value>> {
    let mut out = BTreeMap::new();
    for (key, value) in file {
        let peer = match key.as_str() {
            "client-transport-security" => false,
            "peer-transport-security" => true,
            _ => {
                out.insert(key, value);
                continue;
            }
        };
        let serde_yaml::Value::Mapping(inner) = value else {
            if value.is_null() {
                continue;
            }
            bail!("config file key {key:?}: expected a mapping");
        };
        for (k, v) in inner {
            let Some(k) = k.as_str() else {
                bail!("config file key {key:?}: a key that is not a string");
            };
            let flag = match (peer, k) {
                (false, k) => k.to_string(),
                (true, "allowed-cn") => "peer-cert-allowed-cn".to_string(),
                (true, "allowed-hostname") => "peer-cert-allowed-hostname".to_string(),
                (true, k) => format!("peer-{k}"),
            };
            out.insert(flag, v);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_security_sections_become_flags() {
        let file: BTreeMap<String, serde_yaml::Value> = serde_yaml::from_str(
            "name: m1\nclient-transport-security:\n  cert-file: /c.pem\n  client-cert-auth: true\n\
             peer-transport-security:\n  cert-file: /p.pem\n  allowed-cn: member\n\
             cipher-suites: [A, B]\n",
        )
        .expect("yaml");
        let flat = flatten(file).expect("flatten");
        let keys: Vec<&str> = flat.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "cert-file",
                "cipher-suites",
                "client-cert-auth",
                "name",
                "peer-cert-allowed-cn",
                "peer-cert-file"
            ]
        );
    }
}
