//! What runs on each subtask thread.
//!
//! - [`source`]: a source's loop: poll it, take checkpoints when the engine
//!   triggers them, close once a final checkpoint completed.
//! - [`operator`]: an operator's or sink's loop: read whichever input (or
//!   the control channel) has a message, align barriers, merge watermarks,
//!   fire processing-time timers, flush when idle.
//! - [`aligner`]: [`BarrierAligner`](aligner::BarrierAligner), the pure
//!   decision of when an operator has a checkpoint's barrier on every input.
//! - [`watermarks`]: [`InputWatermarks`](watermarks::InputWatermarks), the
//!   pure merge of per-channel watermarks into an operator's watermark
//!   (idle channels left out; all idle makes the operator idle).
//! - [`context`]: what both loops are given and how they end.
//!
//! A loop that has nothing to do blocks on its channels and on the job's
//! [`CancelToken::signal`](crate::cancel::CancelToken::signal), with a
//! deadline only when a processing-time timer or an idle source says when
//! to look again.

pub mod aligner;
pub mod context;
pub mod operator;
pub mod source;
pub mod watermarks;

pub use context::{TaskCommand, TaskContext, TaskExit, TaskInput};
pub use operator::run_operator;
pub use source::run_source;
