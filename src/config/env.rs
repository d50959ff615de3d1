//! The `FERRY_*` environment layer, and the Kubernetes service-link variables it leaves out.
//! Every other `FERRY_*` variable is a key, refused by name when the schema does not know it.

use figment::providers::Env;

/// Prefix of every variable of the environment layer.
pub const PREFIX: &str = "FERRY_";
/// Separator of nested keys in a variable name: `FERRY_FTP__LISTEN` is `ftp.listen`.
pub const SEPARATOR: &str = "__";

/// The environment layer: `FERRY_*` variables less `FERRY_CONFIG` (it names the file, it is
/// not a key) and less Kubernetes service links.
///
/// Any other variable is a key, so an unknown one fails the load like an unknown key in the
/// file: a typo in a real key (`FERRY_FTP__BANER`) must not pass silently. Service links are
/// told apart by name *and* value, both exactly as Kubernetes writes them, so a person's
/// `FERRY_PORT=2121` is still refused rather than ignored.
pub fn layer() -> Env {
    let links = service_links(
        std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))),
    );
    Env::prefixed(PREFIX)
        .filter(move |key| !links.iter().any(|link| key == link.as_str()))
        .split(SEPARATOR)
        .ignore(&["config"])
}

/// The variable that sets the key at `path` (`["ftp", "banner"]` -> `FERRY_FTP__BANNER`).
pub fn variable(path: &[String]) -> String {
    format!("{PREFIX}{}", path.join(SEPARATOR).to_ascii_uppercase())
}

/// The names, less [`PREFIX`], of the variables among `vars` that are service links.
fn service_links(vars: impl Iterator<Item = (String, String)>) -> Vec<String> {
    vars.filter_map(|(name, value)| {
        let rest = name.strip_prefix(PREFIX)?;
        is_service_link(rest, &value).then(|| rest.to_string())
    })
    .collect()
}

/// Whether `FERRY_<rest>=<value>` is what Kubernetes injects for a Service named `ferry` or
/// `ferry-<something>` in the pod's namespace (the name upper-cased, `-` written `_`):
/// `SERVICE_HOST`, `SERVICE_PORT`, `SERVICE_PORT_<PORT NAME>`, `PORT`, `PORT_<n>_<PROTO>` and
/// `PORT_<n>_<PROTO>_{PROTO,PORT,ADDR}`, each after the `<SOMETHING>_` of a `ferry-*` name.
fn is_service_link(rest: &str, value: &str) -> bool {
    let words: Vec<&str> = rest.split('_').collect();
    // Ferry's nested keys hold `__`, an empty word; no Service name or link suffix does.
    if words.iter().any(|w| w.is_empty()) {
        return false;
    }
    // The suffix may start at any word: those before it are the rest of the Service name.
    (0..words.len()).any(|start| link_suffix(&words[start..], value))
}

fn link_suffix(words: &[&str], value: &str) -> bool {
    let ip = || value.parse::<std::net::IpAddr>().is_ok();
    match words {
        ["SERVICE", "HOST"] => ip(),
        ["SERVICE", "PORT", ..] => value.parse::<u16>().is_ok(),
        ["PORT"] => link_url(value, None),
        ["PORT", port, proto] => link_url(value, Some((port, proto))),
        ["PORT", port, proto, field] if port.parse::<u16>().is_ok() && is_proto(proto) => match *field {
            "PROTO" => value == proto.to_ascii_lowercase(),
            "PORT" => value == *port,
            "ADDR" => ip(),
            _ => false,
        },
        _ => false,
    }
}

fn is_proto(word: &str) -> bool {
    matches!(word, "TCP" | "UDP" | "SCTP")
}

/// `tcp://10.96.0.10:21` (`udp`, `sctp`; IPv6 in brackets), matching `port` and `proto` when
/// the variable's name gives them.
fn link_url(value: &str, expected: Option<(&str, &str)>) -> bool {
    let Some((scheme, addr)) = value.split_once("://") else { return false };
    let Ok(addr) = addr.parse::<std::net::SocketAddr>() else { return false };
    if !is_proto(&scheme.to_ascii_uppercase()) || scheme != scheme.to_ascii_lowercase() {
        return false;
    }
    match expected {
        None => true,
        Some((port, proto)) => addr.port().to_string() == port && scheme.to_ascii_uppercase() == proto,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn links(vars: &[(&str, &str)]) -> Vec<String> {
        service_links(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn kubernetes_shapes_are_links() {
        for (k, v) in [
            ("FERRY_SERVICE_HOST", "10.96.0.10"),
            ("FERRY_SERVICE_PORT", "21"),
            ("FERRY_SERVICE_PORT_FTP_DATA", "20"),
            ("FERRY_PORT", "tcp://10.96.0.10:21"),
            ("FERRY_PORT_69_UDP", "udp://[fd00::1]:69"),
            ("FERRY_PORT_69_UDP_PROTO", "udp"),
            ("FERRY_PORT_69_UDP_PORT", "69"),
            ("FERRY_PORT_69_UDP_ADDR", "fd00::1"),
            ("FERRY_TFTP_EXTRA_SERVICE_HOST", "10.96.0.11"),
            ("FERRY_TFTP_EXTRA_PORT_69_SCTP", "sctp://10.96.0.11:69"),
        ] {
            assert_eq!(links(&[(k, v)]), [&k[PREFIX.len()..]], "{k}={v}");
        }
    }

    #[test]
    fn keys_and_look_alikes_are_not_links() {
        for (k, v) in [
            ("FERRY_WORKERS", "4"),
            ("FERRY_FTP__LISTEN", "[\"[::]:21\"]"),
            ("FERRY_FTP__PORT", "tcp://10.96.0.10:21"),
            ("FERRY_PORT", "21"),
            ("FERRY_PORT", "TCP://10.96.0.10:21"),
            ("FERRY_PORT", "http://10.96.0.10:21"),
            ("FERRY_SERVICE_HOST", "ferry.ns.svc"),
            ("FERRY_SERVICE_PORT", "70000"),
            ("FERRY_PORT_21_TCP", "tcp://10.96.0.10:2121"),
            ("FERRY_PORT_21_TCP", "udp://10.96.0.10:21"),
            ("FERRY_PORT_21_ICMP_PROTO", "icmp"),
            ("FERRY_PORT_21_TCP_PROTO", "TCP"),
            ("FERRY_PORT_21_TCP_HOST", "10.96.0.10"),
            ("OTHER_SERVICE_HOST", "10.96.0.10"),
        ] {
            assert!(links(&[(k, v)]).is_empty(), "{k}={v}");
        }
    }

    #[test]
    fn a_key_path_names_its_variable() {
        assert_eq!(
            variable(&["ftp".into(), "limits".into(), "max_sessions".into()]),
            "FERRY_FTP__LIMITS__MAX_SESSIONS"
        );
    }
}
