//! The channels and wiring of one process's subtasks.
//!
//! - [`channels`]: bounded crossbeam channels as the operator API's
//!   [`OutputChannel`](weir_operators::output::OutputChannel); a full
//!   channel blocks its producer (back-pressure).
//! - [`wiring`]: the plan of every local subtask of a deployment and the
//!   channels of every edge, local or through the data exchange
//!   ([`net`](crate::net)).

pub mod channels;
pub mod wiring;
