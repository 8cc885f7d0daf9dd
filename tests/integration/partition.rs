//! A worker cut off by a network partition (a network namespace whose
//! traffic an iptables DROP rule stops) is declared lost by heartbeat
//! timeout; the job recovers on a spare; the cut-off worker fences itself
//! (its old attempt can neither ack nor commit), and when the partition
//! heals it registers again as a new worker. The output stays exactly once.
//!
//! Needs root, `ip` and `iptables` (`.ci/run` installs them); skipped with
//! a message otherwise.

use crate::harness::{clean_long_run, TestCluster};
use crate::recovery::assert_same;
use std::process::Command;
use std::time::Duration;
use weir::protocol::JobState;

/// A network namespace joined to this one by a veth pair; removed on drop.
pub struct Netns {
    pub name: String,
    pub host_ip: String,
    pub inner_ip: String,
}

pub fn sh(args: &[&str]) -> bool {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .is_ok_and(|o| o.status.success())
}

impl Netns {
    /// A namespace `weir-{kind}-{pid}` (one per kind and test process).
    pub fn create(kind: &str, subnet: u8) -> Option<Self> {
        if !sh(&["iptables", "--version"]) {
            println!("partition test skipped: no iptables");
            return None;
        }
        let tag = std::process::id() % 250;
        let name = format!("weir-{kind}-{}", std::process::id());
        let (host, inner) = (format!("w{kind}a{tag}"), format!("w{kind}b{tag}"));
        let (host_ip, inner_ip) = (
            format!("10.{subnet}.{tag}.1"),
            format!("10.{subnet}.{tag}.2"),
        );
        let netns = Self {
            name: name.clone(),
            host_ip: host_ip.clone(),
            inner_ip: inner_ip.clone(),
        };
        let steps: [&[&str]; 8] = [
            &["ip", "netns", "add", &name],
            &[
                "ip", "link", "add", &host, "type", "veth", "peer", "name", &inner,
            ],
            &["ip", "link", "set", &inner, "netns", &name],
            &["ip", "addr", "add", &format!("{host_ip}/30"), "dev", &host],
            &["ip", "link", "set", &host, "up"],
            &[
                "ip",
                "netns",
                "exec",
                &name,
                "ip",
                "addr",
                "add",
                &format!("{inner_ip}/30"),
                "dev",
                &inner,
            ],
            &[
                "ip", "netns", "exec", &name, "ip", "link", "set", &inner, "up",
            ],
            &[
                "ip", "netns", "exec", &name, "ip", "link", "set", "lo", "up",
            ],
        ];
        for step in steps {
            if !sh(step) {
                println!(
                    "partition test skipped: `{}` failed (needs root and iproute2)",
                    step.join(" ")
                );
                return None;
            }
        }
        Some(netns)
    }

    /// Drops all traffic of the namespace.
    pub fn cut(&self) {
        for chain in ["INPUT", "OUTPUT"] {
            assert!(sh(&[
                "ip", "netns", "exec", &self.name, "iptables", "-A", chain, "-j", "DROP"
            ]));
        }
    }

    /// Drops the namespace's TCP traffic with the host's `port` only.
    pub fn cut_port(&self, port: u16) {
        let port = port.to_string();
        // Outgoing to the port, and incoming from it.
        for (chain, host, service) in [("OUTPUT", "-d", "--dport"), ("INPUT", "-s", "--sport")] {
            assert!(sh(&[
                "ip",
                "netns",
                "exec",
                &self.name,
                "iptables",
                "-A",
                chain,
                "-p",
                "tcp",
                host,
                &self.host_ip,
                service,
                &port,
                "-j",
                "DROP"
            ]));
        }
    }

    pub fn heal(&self) {
        assert!(sh(&["ip", "netns", "exec", &self.name, "iptables", "-F"]));
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace deletes the veth pair with it.
        sh(&["ip", "netns", "del", &self.name]);
    }
}

#[test]
fn a_partitioned_worker_is_fenced_and_the_job_recovers() {
    let Some(netns) = Netns::create("part", 78) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("{}:0", netns.host_ip);
    let host_data = format!("{}:0", netns.host_ip);
    let inner_data = format!("{}:0", netns.inner_ip);
    let mut cluster = TestCluster::start(
        dir.path(),
        0,
        1,
        &["--listen", &listen, "--token", "partition-test"],
    );
    // The worker to be cut off, and two more: the job's three slots.
    cluster.add_worker_in(&netns.name, 1, &["--data-listen", &inner_data]);
    cluster.wait_for_workers(1);
    cluster.add_worker_with(1, &["--data-listen", &host_data]);
    cluster.add_worker_with(1, &["--data-listen", &host_data]);
    cluster.wait_for_workers(3);
    let out = dir.path().join("out");
    let id = cluster.submit_long_job(&out, &[]);
    // The spare takes over the cut-off worker's slot.
    cluster.add_worker_with(1, &["--data-listen", &host_data]);
    cluster.wait_for_workers(4);
    let before = cluster.wait_for(&id, "two checkpoints", |s| s.checkpoints_completed >= 2);
    println!(
        "before the cut: attempt {}, failure {:?}",
        before.attempt, before.failure
    );
    netns.cut();
    let recovered = cluster.wait_for(&id, "recovered on the spare", |s| {
        s.attempt > before.attempt
            && s.state == JobState::Running
            && s.last_loss
                .as_ref()
                .is_some_and(|l| l.recovered_at_ms.is_some())
    });
    let loss = recovered.last_loss.expect("the loss is reported");
    assert!(loss.cause.starts_with("no heartbeat for"), "{}", loss.cause);
    std::thread::sleep(Duration::from_millis(1500));
    netns.heal();
    // The cut-off worker comes back as a new worker.
    cluster.wait_for_workers(4);
    cluster.wait_finished(&id);
    assert_same(&out, &clean_long_run(dir.path()));
}
