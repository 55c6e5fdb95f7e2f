//! Test support shared by the algorithm modules: seeded data without fixtures, a fixed
//! thread count, a cancelled run.

use tokio_util::sync::CancellationToken;

use crate::model::{DeviceKind, ProgressEvent, RunContext};

/// A PCG-style stream: seeded test data without a dependency on the rng crates' versions.
pub struct Lcg(pub u64);

impl Lcg {
    pub fn uniform(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Roughly normal: the sum of four uniforms, centred and scaled to unit variance.
    pub fn normalish(&mut self) -> f64 {
        (self.uniform() + self.uniform() + self.uniform() + self.uniform() - 2.0) * 3f64.sqrt()
    }
}

/// `f` on a rayon pool of exactly `threads` threads (thread-count invariance tests).
pub fn on_threads<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("a rayon pool")
        .install(f)
}

/// A CPU run context whose token is already cancelled.
pub fn cancelled_context() -> RunContext {
    let t = CancellationToken::new();
    t.cancel();
    RunContext::new(0, DeviceKind::Cpu).with_cancel(t)
}

/// Run `fit` with a CPU context that cancels itself at the first progress event
/// `cancel_when` accepts; returns the fit's answer and every progress event the run sent.
pub fn fit_cancelled_at<R>(
    cancel_when: impl Fn(&ProgressEvent) -> bool + Send + 'static,
    fit: impl FnOnce(&RunContext) -> R,
) -> (R, Vec<ProgressEvent>) {
    let token = CancellationToken::new();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let ctx = RunContext::new(0, DeviceKind::Cpu)
        .with_cancel(token.clone())
        .with_progress(tx);
    let watcher = std::thread::spawn(move || {
        let mut events = Vec::new();
        while let Some(ev) = rx.blocking_recv() {
            if cancel_when(&ev) {
                token.cancel();
            }
            events.push(ev);
        }
        events
    });
    let result = fit(&ctx);
    // Closing the progress sink ends the watcher.
    drop(ctx);
    (result, watcher.join().expect("the watcher thread"))
}
