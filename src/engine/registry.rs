//! The runs this process is computing, by run id: what `cancel` needs to reach a run
//! (its token) and to refuse callers of another scope. Entries leave when the run's final
//! status is written, so "not here" means finished, elsewhere, or unknown.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio_util::sync::CancellationToken;

use crate::model::Scope;

#[derive(Default)]
pub struct Registry {
    runs: Mutex<HashMap<String, Entry>>,
}

struct Entry {
    scope: Scope,
    cancel: CancellationToken,
    /// Cancelled when the run has left the registry (its final status written).
    done: CancellationToken,
}

/// What `signal` found.
pub enum Signal {
    /// The run was told to stop; `done` fires once its final status is written.
    Sent {
        done: CancellationToken,
    },
    NotRunningHere,
}

/// Held for the whole run; dropping it removes the entry and fires `done`.
pub struct Registration {
    registry: Arc<Registry>,
    run_id: String,
    done: CancellationToken,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.run_id);
        self.done.cancel();
    }
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        // A panic while holding the map cannot leave an entry half-written.
        self.runs.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn register(
        self: &Arc<Self>,
        run_id: &str,
        scope: Scope,
        cancel: CancellationToken,
    ) -> Registration {
        let done = CancellationToken::new();
        self.lock().insert(
            run_id.to_owned(),
            Entry {
                scope,
                cancel,
                done: done.clone(),
            },
        );
        Registration {
            registry: self.clone(),
            run_id: run_id.to_owned(),
            done,
        }
    }

    /// Cancel the run when it runs here in `scope`; a run of another scope is treated as
    /// absent so its existence does not leak.
    pub fn signal(&self, scope: &Scope, run_id: &str) -> Signal {
        match self.lock().get(run_id) {
            Some(e) if &e.scope == scope => {
                e.cancel.cancel();
                Signal::Sent {
                    done: e.done.clone(),
                }
            }
            _ => Signal::NotRunningHere,
        }
    }

    /// Whether this process is computing the run in `scope` (housekeeping must not touch
    /// it, even after its final status is written and before it leaves).
    pub fn holds(&self, scope: &Scope, run_id: &str) -> bool {
        self.lock().get(run_id).is_some_and(|e| &e.scope == scope)
    }

    /// Cancel every run (shutdown).
    pub fn cancel_all(&self) {
        for e in self.lock().values() {
            e.cancel.cancel();
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_runs_own_scope_can_cancel_it_and_the_entry_leaves_with_the_run() {
        let registry = Arc::new(Registry::default());
        let token = CancellationToken::new();
        let mine = Scope::new("org_a", "ns").unwrap();
        let theirs = Scope::new("org_b", "ns").unwrap();
        let registration = registry.register("run_1", mine.clone(), token.clone());
        assert!(matches!(
            registry.signal(&theirs, "run_1"),
            Signal::NotRunningHere
        ));
        assert!(!token.is_cancelled());
        let Signal::Sent { done } = registry.signal(&mine, "run_1") else {
            panic!("the run's own scope reaches it");
        };
        assert!(token.is_cancelled());
        assert!(!done.is_cancelled());
        drop(registration);
        assert!(done.is_cancelled());
        assert_eq!(registry.len(), 0);
        assert!(matches!(
            registry.signal(&mine, "run_1"),
            Signal::NotRunningHere
        ));
    }
}
