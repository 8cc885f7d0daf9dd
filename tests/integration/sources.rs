//! Sources split their input across subtasks without loss or overlap.

use crate::run_job;
use std::io::Write;
use weir::operators::prelude::*;

#[test]
fn file_lines_are_read_exactly_once_at_any_parallelism() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("input.txt");
    let mut expected = Vec::new();
    {
        let mut file = std::fs::File::create(&path).unwrap();
        for i in 0..500 {
            // Varying lengths, empty lines and CRLF endings.
            let line = "x".repeat(i % 37) + &i.to_string();
            let line = if i % 50 == 0 { String::new() } else { line };
            expected.push(line.clone());
            let ending = if i % 7 == 0 { "\r\n" } else { "\n" };
            write!(file, "{line}{ending}").unwrap();
        }
        // A last line without a terminator.
        write!(file, "tail").unwrap();
        expected.push("tail".into());
    }
    expected.sort();
    for parallelism in 1..=5 {
        let out = CollectSink::new();
        let job = JobBuilder::new("lines").with_parallelism(parallelism);
        job.source(FileLines::new(&path)).sink(out.clone());
        run_job(job, 32).unwrap();
        let mut got = out.records();
        got.sort();
        assert_eq!(got, expected, "parallelism {parallelism}");
    }
}

#[test]
fn a_missing_input_file_is_an_error_naming_it() {
    let job = JobBuilder::new("missing");
    job.source(FileLines::new("/nonexistent/weir-input.txt"))
        .discard();
    let err = run_job(job, 32).unwrap_err();
    let text = weir::cli::error_chain(&err);
    assert!(
        text.contains("opening /nonexistent/weir-input.txt"),
        "{text}"
    );
}

#[test]
fn the_generator_yields_the_same_events_at_every_parallelism() {
    let mut runs = Vec::new();
    for parallelism in [1, 3] {
        let out = CollectSink::new();
        let job = JobBuilder::new("gen").with_parallelism(parallelism);
        job.source(Generator::new(10_001, 17, 5)).sink(out.clone());
        run_job(job, 100).unwrap();
        let mut events = out.records();
        events.sort_by_key(|e| e.seq);
        runs.push(events);
    }
    assert_eq!(runs[0].len(), 10_001);
    assert_eq!(runs[0], runs[1]);
    assert!(runs[0]
        .iter()
        .all(|e| e.key < 17 && (0..1000).contains(&e.value)));
}

#[test]
fn nexmark_events_are_the_same_at_every_parallelism() {
    let mut runs = Vec::new();
    for parallelism in [1, 4] {
        let out = CollectSink::new();
        let job = JobBuilder::new("nexmark").with_parallelism(parallelism);
        job.source(NexmarkSource::new(5_000))
            .map(|e: NexmarkEvent| format!("{e:?}"))
            .sink(out.clone());
        run_job(job, 100).unwrap();
        let mut events = out.records();
        events.sort();
        runs.push(events);
    }
    assert_eq!(runs[0].len(), 5_000);
    assert_eq!(runs[0], runs[1]);
}
