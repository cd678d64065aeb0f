//! Flags of a multi-process cluster, shared by `shopdiff run` and `shopdiff replay`.
//!
//! Timely's own cluster settings under shopdiff's names: `--processes N` (timely's `-n`),
//! `--process I` (`-p`) and `--hostfile FILE` (`-h`: one `host:port` per line, by process
//! index, the same file on every process). Without a hostfile the processes are on this
//! machine, on consecutive ports from `--cluster-port` (default 2101).

use crate::runtime::ClusterConfig;
use clap::Args;
use std::path::PathBuf;

/// The default first port of processes on one machine (timely's own default).
pub const DEFAULT_CLUSTER_PORT: u16 = 2101;

/// `--processes`, `--process`, `--hostfile`, `--cluster-port`.
#[derive(Args, Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterArgs {
    /// Processes in the cluster (default 1: no cluster).
    #[arg(long)]
    pub processes: Option<usize>,
    /// This process's index in the cluster, from 0 (process 0 reads the event and table
    /// sources; every process holds a shard of the state and serves every view).
    #[arg(long)]
    pub process: Option<usize>,
    /// `host:port` of every process, one per line by index; the same file on every process.
    #[arg(long)]
    pub hostfile: Option<PathBuf>,
    /// Without --hostfile: the processes listen on 127.0.0.1 from this port up (default 2101).
    #[arg(long)]
    pub cluster_port: Option<u16>,
}

impl ClusterArgs {
    /// Fills what is missing here from `other` (flags win over the config file).
    pub fn or(&self, other: &ClusterArgs) -> ClusterArgs {
        ClusterArgs {
            processes: self.processes.or(other.processes),
            process: self.process.or(other.process),
            hostfile: self.hostfile.clone().or(other.hostfile.clone()),
            cluster_port: self.cluster_port.or(other.cluster_port),
        }
    }

    /// The cluster these flags describe, or `None` for a single process.
    pub fn config(&self) -> anyhow::Result<Option<ClusterConfig>> {
        let process = self.process.unwrap_or(0);
        let c = match (&self.hostfile, self.processes) {
            (None, None | Some(1)) => {
                if process != 0 {
                    anyhow::bail!("--process {process} needs --processes N (or --hostfile)");
                }
                return Ok(None);
            }
            (Some(h), n) => ClusterConfig::from_hostfile(h, process, n),
            (None, Some(n)) => ClusterConfig::local(
                process,
                n,
                self.cluster_port.unwrap_or(DEFAULT_CLUSTER_PORT),
            ),
        }
        .map_err(anyhow::Error::msg)?;
        if self.process.is_none() && c.processes() > 1 {
            anyhow::bail!(
                "a cluster of {} processes needs --process I (0 to {}) on each",
                c.processes(),
                c.processes() - 1
            );
        }
        Ok(if c.processes() == 1 { None } else { Some(c) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_flags_is_one_process() {
        assert_eq!(ClusterArgs::default().config().ok(), Some(None));
        let one = ClusterArgs {
            processes: Some(1),
            ..Default::default()
        };
        assert_eq!(one.config().ok(), Some(None));
    }

    #[test]
    fn local_ports_and_process_index() {
        let a = ClusterArgs {
            processes: Some(3),
            process: Some(2),
            cluster_port: Some(4000),
            ..Default::default()
        };
        let c = a.config().ok().flatten();
        assert_eq!(
            c,
            Some(ClusterConfig {
                process: 2,
                addresses: vec![
                    "127.0.0.1:4000".into(),
                    "127.0.0.1:4001".into(),
                    "127.0.0.1:4002".into()
                ],
            })
        );
    }

    #[test]
    fn errors_name_what_is_wrong() {
        let missing = ClusterArgs {
            processes: Some(2),
            ..Default::default()
        };
        let e = missing.config().err().map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("--process I")));
        let out_of_range = ClusterArgs {
            processes: Some(2),
            process: Some(2),
            ..Default::default()
        };
        let e = out_of_range.config().err().map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("index 2")));
        let lone = ClusterArgs {
            process: Some(1),
            ..Default::default()
        };
        assert!(lone.config().is_err());
    }

    #[test]
    fn hostfile_lines_comments_and_errors() {
        let dir = std::env::temp_dir().join(format!("shopdiff-hosts-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let f = dir.join("hosts.txt");
        let _ = std::fs::write(
            &f,
            "# the cluster\n10.0.0.1:2101\n\n10.0.0.2:2101 # second\n",
        );
        let a = ClusterArgs {
            process: Some(1),
            hostfile: Some(f.clone()),
            ..Default::default()
        };
        let c = a.config().ok().flatten();
        assert_eq!(
            c.map(|c| c.addresses),
            Some(vec![
                "10.0.0.1:2101".to_string(),
                "10.0.0.2:2101".to_string()
            ])
        );
        let too_many = ClusterArgs {
            processes: Some(3),
            ..a.clone()
        };
        let e = too_many.config().err().map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("2 address(es) for 3 processes")));
        let _ = std::fs::write(&f, "10.0.0.1\n");
        let e = a.config().err().map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("hosts.txt:1") && e.contains("host:port")));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
