//! `wordcount`: how often each word occurs in a text file.

use weir_operators::job::{JobContext, JobDefinition, JobError, ParamKind, ParamSpec};
use weir_operators::prelude::*;
use weir_operators::{Dataflow, MAX_WATERMARK};

/// The job's registration.
pub const DEFINITION: JobDefinition = JobDefinition {
    name: "wordcount",
    description:
        "occurrences of each word (lower-cased, split on non-alphanumerics) in a text file",
    params: &[ParamSpec {
        name: "input",
        kind: ParamKind::File,
        default: None,
        help: "path of the text file to count",
    }],
    build,
};

/// Counts words; emits `word,count` per word when the input ends.
#[derive(Debug, Clone, Default)]
pub struct CountWords {
    counts: Option<ValueState<String, u64>>,
}

impl CountWords {
    fn counts(&self) -> Result<ValueState<String, u64>, OperatorError> {
        self.counts
            .ok_or_else(|| OperatorError::user("word counter used before open"))
    }
}

impl KeyedProcessFunction for CountWords {
    type Key = String;
    type In = String;
    type Out = String;

    fn open(&mut self, state: &mut StateRegistry<'_, String>) -> Result<(), OperatorError> {
        self.counts = Some(state.value("counts")?);
        Ok(())
    }

    fn process(
        &mut self,
        _word: String,
        ctx: &mut KeyedContext<'_, String, String>,
    ) -> Result<(), OperatorError> {
        let count = self
            .counts()?
            .update(ctx, |old| Some(old.unwrap_or(0) + 1))?;
        if count == Some(1) {
            ctx.register_event_time_timer(MAX_WATERMARK)?;
        }
        Ok(())
    }

    fn on_timer(
        &mut self,
        _timestamp: Timestamp,
        _domain: TimeDomain,
        ctx: &mut KeyedContext<'_, String, String>,
    ) -> Result<(), OperatorError> {
        if let Some(count) = self.counts()?.get(ctx)? {
            let line = format!("{},{count}", ctx.key());
            ctx.emit(line)?;
        }
        Ok(())
    }
}

/// The words of a line: maximal runs of alphanumeric characters, lower-cased.
pub fn words(line: &str) -> Vec<String> {
    line.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

fn build(ctx: &JobContext) -> Result<Dataflow, JobError> {
    let job = ctx.builder();
    let counts = job
        .source(FileLines::new(ctx.params.text("input")))
        .named("lines")
        .flat_map(|line: String| words(&line))
        .named("split")
        .key_by(|word: &String| word.clone())
        .process(CountWords::default())
        .named("count");
    ctx.sink(counts);
    ctx.finish(job)
}
