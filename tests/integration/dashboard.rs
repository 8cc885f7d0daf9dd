//! The web dashboard in a real headless browser: Debian's Chromium driven
//! through chromedriver (WebDriver), against a running cluster. The
//! screenshot it takes is kept as an artifact (`WEIR_ARTIFACTS`, default
//! `/var/tmp/weir-artifacts`) and shown in the README.

use crate::harness::{free_port, text, TestCluster};
use fantoccini::{Client, ClientBuilder, Locator};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use weir::protocol::JobState;

/// Where Debian's `chromium` and `chromium-driver` put them.
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// chromedriver on a free port, killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    /// Starts chromedriver, or `None` when this machine has none (outside
    /// CI: `.ci/run` installs it, and under `CI=1` its absence fails).
    fn start() -> Option<Self> {
        if !std::path::Path::new(CHROMEDRIVER).exists() || !std::path::Path::new(CHROMIUM).exists()
        {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI=1 but {CHROMIUM} or {CHROMEDRIVER} is missing (apt-get install chromium chromium-driver)"
            );
            eprintln!("skipping: no {CHROMIUM} and {CHROMEDRIVER} on this machine");
            return None;
        }
        let port = free_port("127.0.0.1");
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        })
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A browser session, closed on drop (a failing test included: the
/// browser would outlive chromedriver otherwise).
struct Session {
    runtime: tokio::runtime::Runtime,
    browser: Client,
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.runtime.block_on(self.browser.clone().close());
    }
}

async fn browser(driver: &Driver) -> Client {
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": CHROMIUM,
            "args": [
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--window-size=1280,1400",
            ],
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .expect("a browser session")
}

/// Waits until `done` holds of the elements matching `css`; returns them
/// and their texts.
async fn wait_for_elements(
    browser: &Client,
    css: &str,
    what: &str,
    done: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut texts = Vec::new();
        for element in browser
            .find_all(Locator::Css(css))
            .await
            .unwrap_or_default()
        {
            texts.push(element.text().await.unwrap_or_default());
        }
        if done(&texts) {
            return texts;
        }
        assert!(
            Instant::now() < deadline,
            "the dashboard never showed {what}: {texts:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn count(browser: &Client, css: &str) -> usize {
    browser
        .find_all(Locator::Css(css))
        .await
        .map_or(0, |found| found.len())
}

fn artifacts() -> PathBuf {
    let dir = std::env::var_os("WEIR_ARTIFACTS")
        .map_or_else(|| PathBuf::from("/var/tmp/weir-artifacts"), PathBuf::from);
    std::fs::create_dir_all(&dir).expect("the artifacts directory");
    dir
}

/// Three one-slot workers run keyed-sum at p=2 (one is a spare). The
/// dashboard lists the job and the workers; the job's page draws its graph
/// of three operators with their rates, a checkpoint chart of at least
/// three points and the checkpoint table; after the worker of slot 0 is
/// SIGKILLed it shows the restart with its cause and the tier each
/// subtask restored from, and the lost worker. The job page is saved as a
/// screenshot.
#[test]
fn the_dashboard_shows_jobs_graph_checkpoints_and_a_restart_in_a_browser() {
    let Some(driver) = Driver::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = TestCluster::start(dir.path(), 3, 1, &[]);
    let out = dir.path().join("out");
    let submitted = cluster.weir(&[
        "submit",
        "keyed-sum",
        "--param",
        "events=1000000000",
        "--param",
        "keys=1000",
        "--param",
        "emit=updates",
        "--param",
        "rate=20000",
        "-p",
        "2",
        "--checkpoint-interval",
        "300ms",
        "--output",
        &out.display().to_string(),
    ]);
    assert!(submitted.status.success(), "{}", text(&submitted.stderr));
    let id = text(&submitted.stdout).trim().to_owned();
    let running = cluster.wait_for(&id, "it runs", |s| s.state == JobState::Running);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let api = cluster.api.clone();
    let browser = runtime.block_on(browser(&driver));
    let session = Session { runtime, browser };
    let (runtime, browser) = (&session.runtime, &session.browser);
    runtime.block_on(async {
        browser.goto(&format!("http://{api}/")).await.unwrap();
        wait_for_elements(browser, "[data-testid=job-row]", "the job", |rows| {
            rows.iter()
                .any(|r| r.contains(&id) && r.contains("Running"))
        })
        .await;
        wait_for_elements(
            browser,
            "[data-testid=worker-row]",
            "three workers",
            |rows| rows.len() == 3,
        )
        .await;

        browser
            .goto(&format!("http://{api}/#/jobs/{id}"))
            .await
            .unwrap();
        let vertices = wait_for_elements(
            browser,
            "[data-testid=vertex]",
            "the graph with rates",
            |vertices| vertices.len() == 3 && vertices.iter().all(|v| v.contains("k/s")),
        )
        .await;
        assert!(vertices[0].contains("×2"), "{vertices:?}");
        let deadline = Instant::now() + Duration::from_secs(60);
        while count(browser, "[data-testid=checkpoint-point]").await < 3 {
            assert!(
                Instant::now() < deadline,
                "fewer than three checkpoint points"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        wait_for_elements(
            browser,
            "[data-testid=checkpoint-row]",
            "checkpoints",
            |rows| rows.iter().any(|r| r.contains("completed")),
        )
        .await;
    });

    // A worker is lost: the restart appears with its cause and tiers.
    let victim = cluster.kill_worker_of_slot_0(&running);
    let screenshot = runtime.block_on(async {
        let restarts = wait_for_elements(
            browser,
            "[data-testid=restart-row]",
            "the restart",
            |rows| {
                rows.iter()
                    .any(|r| r.contains("global") && r.contains(" ms"))
            },
        )
        .await;
        assert!(
            restarts[0].contains(&victim.to_string()),
            "the cause names the lost worker {victim}: {restarts:?}"
        );
        assert!(
            restarts[0].contains("peer") || restarts[0].contains("local"),
            "the tiers restored from: {restarts:?}"
        );
        // The new attempt's subtasks report their rates again (their
        // first report after the restart starts a new interval).
        wait_for_elements(
            browser,
            "[data-testid=vertex]",
            "rates after the restart",
            |vertices| {
                vertices
                    .iter()
                    .all(|v| v.contains("2/2 reporting") && v.contains("k/s"))
            },
        )
        .await;
        let screenshot = browser.screenshot().await.expect("a screenshot");

        browser.goto(&format!("http://{api}/")).await.unwrap();
        wait_for_elements(
            browser,
            "[data-testid=worker-row]",
            "the lost worker",
            |rows| rows.iter().any(|r| r.contains("lost")),
        )
        .await;
        screenshot
    });
    let path = artifacts().join("dashboard.png");
    std::fs::write(&path, &screenshot).unwrap();
    assert!(screenshot.starts_with(b"\x89PNG"), "a PNG");
    eprintln!("dashboard screenshot: {}", path.display());
    let _ = cluster.client().cancel(&id);
}
