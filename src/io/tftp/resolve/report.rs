//! `ferry tftp-resolve`: a request's resolution as an operator reads it, made by the same
//! [`Resolver`] and admission checks the server uses, then the open the server would do.

use super::{MacSource, Resolver};
use crate::config::Config;
use crate::fs::{self, Root};
use crate::tftp::request::check_overwrite;
use crate::tftp::roots::{MacAddr, Matched};
use crate::tftp::{plan, AccessPolicy, Direction, Refusal};
use std::fmt::Write;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

/// What a request for `name` from `client` would be served as under `config`, and why;
/// `Ok` when it would be served, `Err` when refused (the text says why in both cases).
pub fn report(
    config: &Config,
    name: &str,
    client: IpAddr,
    mac: Option<MacAddr>,
    write: bool,
) -> Result<String, String> {
    let cfg = &config.tftp;
    let common = config.tftp.effective_root(config);
    let common =
        Root::open(common).map_err(|e| format!("cannot open the TFTP root {}: {e}", common.display()))?;
    let roots = Resolver::open_client_roots(cfg)
        .map_err(|(p, e)| format!("cannot open the client root {}: {e}", p.display()))?;
    let resolver = Resolver::new(Arc::new(common), roots);
    let mut out = String::new();
    let kind = if write { "WRQ" } else { "RRQ" };
    let _ = writeln!(out, "request:   {kind} {name:?} from {client}");
    let datagram = [&[0, if write { 2 } else { 1 }][..], name.as_bytes(), b"\0octet\0"].concat();
    let policy = AccessPolicy::from(cfg);
    let request = match plan(client, &datagram, &policy) {
        Ok(r) => r,
        Err(refusal) => return Err(refused(out, "the request itself", refusal)),
    };
    let r = resolver.explain(client, mac, request, cfg);
    match (&cfg.remap.file, &cfg.remap.rules) {
        (Some(file), Some(rules)) => {
            let _ = writeln!(out, "rules:     {} ({} rules)", file.display(), rules.len());
        }
        _ => out.push_str("rules:     none (tftp.remap.file is unset)\n"),
    }
    if cfg.remap.backslash_to_slash {
        out.push_str("           backslashes turned into slashes first (tftp.remap.backslash_to_slash)\n");
    }
    for hit in &r.hits {
        let (before, after) = (String::from_utf8_lossy(&hit.before), String::from_utf8_lossy(&hit.after));
        let _ = writeln!(
            out,
            "  line {:<4} {:<24} {before:?} -> {after:?}, then {}",
            hit.line, hit.regex, hit.then
        );
    }
    if let Some(e) = &r.remap_error {
        let _ = writeln!(out, "           {e}");
    }
    let _ = writeln!(out, "name:      {:?}", String::from_utf8_lossy(&r.name));
    if let Some(choice) = &r.choice {
        match r.mac {
            Some((m, MacSource::Given)) => {
                let _ = writeln!(out, "mac:       {m} (given)");
            }
            Some((m, MacSource::NeighbourTable)) => {
                let _ = writeln!(out, "mac:       {m} (kernel neighbour table)");
            }
            None => out.push_str("mac:       unknown (not needed, or not in the kernel's neighbour table)\n"),
        }
        let root_line = match choice.entry {
            Some((i, why)) => {
                let by = match why {
                    Matched::Network(n) => format!("network {n}"),
                    Matched::Mac(m) => format!("MAC {m}"),
                };
                format!("{} (tftp.client_roots[{i}], by {by})", cfg.client_roots[i].root.display())
            }
            None => format!(
                "{} (the TFTP root: no tftp.client_roots entry names this client)",
                common_path(config)
            ),
        };
        let _ = writeln!(out, "root:      {root_line}");
        if let Some(dir) = &choice.unique_dir {
            let _ = writeln!(
                out,
                "unique:    {dir}/ (tftp.unique_root = {})",
                format!("{:?}", cfg.unique_root).to_lowercase()
            );
        }
    }
    for (i, t) in r.tried.iter().enumerate() {
        let label = if i == 0 { "tried:" } else { "" };
        let _ = writeln!(out, "{label:<10} {}  {}  {}", t.root.display(), t.path.display(), t.result);
    }
    let (root, request) = match r.outcome {
        Ok(found) => found,
        Err(refusal) => return Err(refused(out, "the resolution", refusal)),
    };
    let _ = writeln!(out, "served as: {}", root.path().join(&request.path).display());
    match open_check(&root, &request.path, request.direction, &policy) {
        Ok(what) => {
            let _ = writeln!(out, "result:    {what}");
            Ok(out)
        }
        Err(refusal) => Err(refused(out, "the open", refusal)),
    }
}

fn common_path(config: &Config) -> String {
    config.tftp.effective_root(config).display().to_string()
}

fn refused(mut out: String, by: &str, refusal: Refusal) -> String {
    let _ = writeln!(out, "result:    refused by {by}: ERROR {} {:?}", refusal.code as u16, refusal.message);
    out
}

/// What the server's open would say, without keeping anything open or creating anything.
fn open_check(
    root: &Root,
    path: &Path,
    direction: Direction,
    policy: &AccessPolicy,
) -> Result<String, Refusal> {
    let classify = |e| Refusal::for_file(fs::classify(e), "cannot open file");
    match direction {
        Direction::Read => {
            let (_, meta) = root.open_read(path).map_err(classify)?;
            Ok(format!("would be served ({} bytes)", meta.len()))
        }
        Direction::Write => {
            let exists = root.stat(path).is_ok();
            check_overwrite(exists, policy)?;
            Ok(if exists { "would be overwritten" } else { "would be created" }.to_string())
        }
    }
}
