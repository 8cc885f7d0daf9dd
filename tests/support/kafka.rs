//! A real Apache Kafka broker for tests: one KRaft node (broker and
//! controller) run with `java` from the release's jars, on 127.0.0.1 with
//! ports picked at run time and a temporary log directory; killed when
//! dropped.
//!
//! `.ci/fetch-kafka` fetches the jars from Maven Central into
//! `/var/cache/weir/kafka-<version>` (`WEIR_KAFKA_HOME` overrides it), and
//! `.ci/run` calls it. Without them (or without `java`), tests that need a
//! broker are skipped with a message, except under CI (`CI` set), where
//! their absence is a failure.

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::ClientConfig;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The Kafka release the tests run.
pub const KAFKA_VERSION: &str = "4.4.0";

/// A running broker.
pub struct Kafka {
    child: Option<Child>,
    /// `HOST:PORT` of its PLAINTEXT listener (`bootstrap.servers`).
    pub bootstrap: String,
    dir: tempfile::TempDir,
    home: PathBuf,
}

fn free_port() -> u16 {
    TcpListener::bind(("127.0.0.1", 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Where `.ci/fetch-kafka` put the jars, if it did.
fn kafka_home() -> Option<PathBuf> {
    let home = std::env::var_os("WEIR_KAFKA_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(format!("/var/cache/weir/kafka-{KAFKA_VERSION}")));
    let ready = home.join("complete").exists()
        && Command::new("java")
            .arg("-version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    if !ready {
        assert!(
            std::env::var_os("CI").is_none(),
            "no Kafka broker jars in {} (or no java); .ci/run fetches them with .ci/fetch-kafka",
            home.display()
        );
        eprintln!(
            "skipping: no Kafka broker jars in {} (run .ci/fetch-kafka)",
            home.display()
        );
        return None;
    }
    Some(home)
}

impl Kafka {
    /// Starts a broker, or returns `None` (after saying why) when its jars
    /// are not fetched outside CI.
    pub fn start() -> Option<Self> {
        let home = kafka_home()?;
        let dir = tempfile::tempdir().unwrap();
        let (broker, controller) = (free_port(), free_port());
        let properties = format!(
            "process.roles=broker,controller\n\
             node.id=1\n\
             controller.quorum.voters=1@127.0.0.1:{controller}\n\
             listeners=PLAINTEXT://127.0.0.1:{broker},CONTROLLER://127.0.0.1:{controller}\n\
             advertised.listeners=PLAINTEXT://127.0.0.1:{broker}\n\
             controller.listener.names=CONTROLLER\n\
             inter.broker.listener.name=PLAINTEXT\n\
             listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\n\
             log.dirs={logs}\n\
             num.partitions=1\n\
             default.replication.factor=1\n\
             min.insync.replicas=1\n\
             auto.create.topics.enable=false\n\
             offsets.topic.replication.factor=1\n\
             offsets.topic.num.partitions=1\n\
             transaction.state.log.replication.factor=1\n\
             transaction.state.log.min.isr=1\n\
             transaction.state.log.num.partitions=1\n\
             share.coordinator.state.topic.replication.factor=1\n\
             share.coordinator.state.topic.min.isr=1\n\
             group.initial.rebalance.delay.ms=0\n",
            logs = dir.path().join("logs").display()
        );
        std::fs::write(dir.path().join("server.properties"), properties).unwrap();
        let mut kafka = Self {
            child: None,
            bootstrap: format!("127.0.0.1:{broker}"),
            dir,
            home,
        };
        // Any valid cluster id does: every broker here has its own logs.
        let formatted = kafka
            .java("kafka.tools.StorageTool")
            .args(["format", "-t", "WeirTestsKafkaCluster1", "-c"])
            .arg(kafka.dir.path().join("server.properties"))
            .stdout(Stdio::null())
            .output()
            .expect("java runs");
        assert!(
            formatted.status.success(),
            "formatting Kafka's log directory failed: {}",
            String::from_utf8_lossy(&formatted.stderr)
        );
        kafka.spawn();
        Some(kafka)
    }

    fn java(&self, main: &str) -> Command {
        let mut java = Command::new("java");
        java.args([
            "-Xms64m",
            "-Xmx256m",
            "-XX:+UseSerialGC",
            "-XX:-UsePerfData",
            "-XX:TieredStopAtLevel=1",
            "-Djava.awt.headless=true",
        ])
        .arg(format!("-Djava.io.tmpdir={}", self.dir.path().display()))
        .arg(format!(
            "-Dlog4j2.configurationFile={}",
            self.home.join("log4j2.properties").display()
        ))
        .arg("-cp")
        .arg(format!("{}/*", self.home.join("libs").display()))
        .arg(main);
        java
    }

    /// Starts the broker on its log directory and waits for the line that
    /// says it is up.
    fn spawn(&mut self) {
        let mut child = self
            .java("kafka.Kafka")
            .arg(self.dir.path().join("server.properties"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the Kafka broker starts");
        let stdout = child.stdout.take().expect("piped");
        let (started, up) = crossbeam_channel::bounded(1);
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains("Kafka Server started") {
                    let _ = started.send(Ok(()));
                }
                seen.push(line);
            }
            // The broker exited (or was killed): whatever it said.
            let _ = started.send(Err(seen.join("\n")));
        });
        match up.recv_timeout(Duration::from_secs(90)) {
            Ok(Ok(())) => {}
            Ok(Err(output)) => panic!("the Kafka broker exited before it was up:\n{output}"),
            Err(_) => {
                let _ = child.kill();
                panic!("the Kafka broker was not up within 90 s");
            }
        }
        self.child = Some(child);
    }

    /// Creates `topic` with `partitions` partitions.
    pub fn create_topic(&self, topic: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .create()
            .unwrap();
        let topics = [NewTopic::new(topic, partitions, TopicReplication::Fixed(1))];
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        let creating = admin.create_topics(&topics, &options);
        let results = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(creating)
            .unwrap();
        for result in results {
            result.unwrap_or_else(|(t, e)| panic!("creating topic {t}: {e}"));
        }
    }

    /// Writes `(partition, key, value)` records and waits until the broker
    /// has them.
    pub fn produce(&self, topic: &str, records: &[(i32, String, String)]) {
        let producer: ThreadedProducer<_> = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("linger.ms", "5")
            .create()
            .unwrap();
        for (partition, key, value) in records {
            let mut record = BaseRecord::to(topic)
                .partition(*partition)
                .key(key)
                .payload(value);
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((_, back)) => {
                        // The local queue is full: wait until the broker
                        // acknowledged what it holds.
                        record = back;
                        producer.flush(Duration::from_secs(30)).unwrap();
                    }
                }
            }
        }
        producer.flush(Duration::from_secs(30)).unwrap();
    }

    /// The broker's temporary directory.
    #[allow(dead_code)]
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// SIGKILLs the broker (its logs stay).
    #[allow(dead_code)]
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the broker again on the same logs and ports.
    #[allow(dead_code)]
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for Kafka {
    fn drop(&mut self) {
        self.kill();
    }
}
