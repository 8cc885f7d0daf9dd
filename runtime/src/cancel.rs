//! [`CancelToken`]: asks a running job (or a worker) to stop, and wakes
//! whoever waits on it.
//!
//! A thread blocked on channels selects on [`CancelToken::signal`] as well,
//! a channel that never carries a message and becomes ready (disconnected)
//! the moment the token is cancelled; a thread blocked on a condition
//! variable registers a wake-up with [`CancelToken::on_cancel`]. Nobody
//! polls the flag on a timer.

use crossbeam_channel::{Receiver, Sender};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// Nothing is ever sent on a cancel signal: it only disconnects.
#[derive(Debug)]
pub enum Never {}

/// Asks a running job to stop. Clones share the token; a child token is
/// cancelled when it or its parent is.
#[derive(Debug, Clone)]
pub struct CancelToken {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    cancelled: AtomicBool,
    /// Dropped on cancel, which disconnects `signal`.
    sender: Mutex<Option<Sender<Never>>>,
    signal: Receiver<Never>,
    /// Children and wake-ups, run once on cancel.
    hooks: Mutex<Vec<Hook>>,
}

enum Hook {
    Child(Weak<Inner>),
    Wake(Box<dyn Fn() + Send + Sync>),
}

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Hook::Child(_) => f.write_str("Child"),
            Hook::Wake(_) => f.write_str("Wake"),
        }
    }
}

impl Default for CancelToken {
    fn default() -> Self {
        let (sender, signal) = crossbeam_channel::bounded(0);
        Self {
            inner: Arc::new(Inner {
                cancelled: AtomicBool::new(false),
                sender: Mutex::new(Some(sender)),
                signal,
                hooks: Mutex::new(Vec::new()),
            }),
        }
    }
}

impl CancelToken {
    /// A token that is not cancelled.
    pub fn new() -> Self {
        Self::default()
    }

    /// A token cancelled by `self` or by its own `cancel`, which does not
    /// cancel `self`.
    pub fn child(&self) -> Self {
        let child = Self::new();
        if self
            .register(Hook::Child(Arc::downgrade(&child.inner)))
            .is_err()
        {
            child.cancel();
        }
        child
    }

    /// Runs `wake` once when the token is cancelled (at once if it already
    /// is). For waits on a condition variable: `wake` notifies it, under
    /// its mutex, so a waiter that checked [`is_cancelled`](Self::is_cancelled)
    /// under that mutex cannot miss it. `wake` runs on the cancelling
    /// thread, which may hold locks of its own: it must take only a leaf
    /// lock (its condition variable's), never one a canceller could hold.
    pub fn on_cancel(&self, wake: impl Fn() + Send + Sync + 'static) {
        if let Err(Hook::Wake(wake)) = self.register(Hook::Wake(Box::new(wake))) {
            wake();
        }
    }

    /// Adds a hook unless the token is cancelled; hands it back if it is.
    fn register(&self, hook: Hook) -> Result<(), Hook> {
        let mut hooks = self.inner.hooks.lock().unwrap_or_else(|p| p.into_inner());
        if self.is_cancelled() {
            return Err(hook);
        }
        // Keep the list from growing with the children of long-gone jobs.
        hooks.retain(|h| match h {
            Hook::Child(weak) => weak.strong_count() > 0,
            Hook::Wake(_) => true,
        });
        hooks.push(hook);
        Ok(())
    }

    /// Requests cancellation: sets the flag, wakes every waiter, cancels
    /// every child.
    pub fn cancel(&self) {
        cancel_inner(&self.inner);
    }

    /// Whether cancellation was requested (here or on the parent).
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancelled.load(Ordering::Acquire)
    }

    /// Waits until the token is cancelled or `timeout` passed; whether it
    /// is cancelled. For periodic work and deadlines that must end at once
    /// on cancellation.
    pub fn wait_timeout(&self, timeout: std::time::Duration) -> bool {
        match self.signal().recv_timeout(timeout) {
            Ok(never) => match never {},
            Err(error) => error.is_disconnected(),
        }
    }

    /// A channel that becomes ready (disconnected) once the token is
    /// cancelled, for `crossbeam_channel::Select` and `select!`.
    pub fn signal(&self) -> &Receiver<Never> {
        &self.inner.signal
    }
}

fn cancel_inner(inner: &Inner) {
    let hooks = {
        let mut hooks = inner.hooks.lock().unwrap_or_else(|p| p.into_inner());
        if inner.cancelled.swap(true, Ordering::AcqRel) {
            return;
        }
        std::mem::take(&mut *hooks)
    };
    inner
        .sender
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    for hook in hooks {
        match hook {
            Hook::Child(weak) => {
                if let Some(child) = weak.upgrade() {
                    cancel_inner(&child);
                }
            }
            Hook::Wake(wake) => wake(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn cancelling_disconnects_the_signal_and_runs_each_wake_up_once() {
        let token = CancelToken::new();
        let woken = Arc::new(AtomicUsize::new(0));
        let counter = woken.clone();
        token.on_cancel(move || {
            counter.fetch_add(1, Ordering::Relaxed);
        });
        assert!(token.signal().try_recv().is_err());
        assert!(!token.signal().try_recv().unwrap_err().is_disconnected());
        token.cancel();
        token.cancel();
        assert!(token.is_cancelled());
        assert!(token.signal().try_recv().unwrap_err().is_disconnected());
        assert_eq!(woken.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_parent_cancels_its_children_but_not_the_other_way_round() {
        let parent = CancelToken::new();
        let child = parent.child();
        let grandchild = child.child();
        let sibling = parent.child();
        sibling.cancel();
        assert!(!parent.is_cancelled() && !child.is_cancelled());
        parent.cancel();
        assert!(child.is_cancelled() && grandchild.is_cancelled());
        assert!(grandchild
            .signal()
            .try_recv()
            .unwrap_err()
            .is_disconnected());
        // A child of a cancelled token starts cancelled.
        assert!(parent.child().is_cancelled());
    }

    #[test]
    fn a_blocked_select_wakes_on_cancel() {
        let token = CancelToken::new();
        let waiter = {
            let token = token.clone();
            std::thread::spawn(move || {
                let (_keep, never) = crossbeam_channel::unbounded::<()>();
                crossbeam_channel::select! {
                    recv(never) -> _ => false,
                    recv(token.signal()) -> _ => true,
                }
            })
        };
        token.cancel();
        assert!(waiter.join().unwrap());
    }
}
