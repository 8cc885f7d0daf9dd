//! `two-chains`: two independent pipelines in one job, each a generator, a
//! map and a sink, with no exchange between them. Its graph falls apart
//! into one pipelined region per chain and subtask, so a failure restarts
//! only the regions that lost a task (regional failover); the test and
//! example of that.

use weir_operators::job::{JobContext, JobDefinition, JobError, ParamKind, ParamSpec};
use weir_operators::sources::{GeneratedEvent, Generator};
use weir_operators::Dataflow;

/// The job's registration.
pub const DEFINITION: JobDefinition = JobDefinition {
    name: "two-chains",
    description: "two unconnected generator → map → sink chains (output under left/ and right/): one pipelined region per chain and subtask",
    params: &[
        ParamSpec {
            name: "events",
            kind: ParamKind::UInt,
            default: Some("100000"),
            help: "events each chain generates",
        },
        ParamSpec {
            name: "rate",
            kind: ParamKind::UInt,
            default: Some("0"),
            help: "at most this many events per second per chain (0: unlimited)",
        },
    ],
    build,
};

/// One output line: the chain and the event's position in its input.
fn line(chain: &'static str) -> impl Fn(GeneratedEvent) -> String + Send + Sync + 'static {
    move |event| format!("{chain} {}", event.seq)
}

fn build(ctx: &JobContext) -> Result<Dataflow, JobError> {
    let p = &ctx.params;
    let job = ctx.builder();
    for (chain, seed) in [("left", 1), ("right", 2)] {
        let lines = job
            .source(Generator::new(p.uint("events"), 1, seed).with_rate(p.uint("rate")))
            .named(&format!("{chain}-events"))
            .uid(&format!("{chain}-events"))
            .map(line(chain))
            .named(&format!("{chain}-lines"));
        let sink = match &ctx.output {
            Some(dir) => lines.write_to_dir(dir.join(chain)),
            None => lines.print(),
        };
        sink.named(&format!("{chain}-output"))
            .uid(&format!("{chain}-output"));
    }
    ctx.finish(job)
}
