//! Data parallelism over OS threads: independent pieces of work (the micro-batches of a training
//! step, the chunks of chains of a sampler) run on `workers()` threads, each calling candle with
//! its own kernels single-threaded.
//!
//! Why not candle's own threads: the networks here are small (16 channels), so most candle ops
//! touch a few thousand floats. Splitting each op over two threads costs more in wake-ups than it
//! saves, and candle 0.11 asks the system for the core count on every matmul (it reads
//! `/proc/cpuinfo` unless `RAYON_NUM_THREADS` is set). Measured on the 2-core development machine
//! (docs/performance.md): a DKF micro-batch step took 1.58 s with candle's default threading and
//! 1.00 s with candle single-threaded; splitting the work instead of the ops gives both cores
//! something to do.
//!
//! Results never depend on the worker count: [`map_ordered`] returns results in input order and
//! each piece of work must draw its own noise (e.g. a [`crate::SeededNoise::fork`] per chunk).
//!
//! Binaries call [`configure_threads`] first thing in `main`; libraries only read [`workers`]
//! (1 unless a binary configured more), so tests and embedding programs are unaffected.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::SeededNoise;

static WORKERS: AtomicUsize = AtomicUsize::new(1);

/// The environment variable that sets the number of worker threads for [`configure_threads`].
pub const THREADS_VAR: &str = "DDSSM_THREADS";

/// The number of worker threads [`map_ordered`] uses (at least 1).
pub fn workers() -> usize {
    WORKERS.load(Ordering::Relaxed).max(1)
}

/// Sets the number of worker threads [`map_ordered`] uses (0 is read as 1).
pub fn set_workers(n: usize) {
    WORKERS.store(n.max(1), Ordering::Relaxed);
}

/// For binaries, before any candle op runs: makes candle's kernels single-threaded
/// (`CANDLE_NUM_THREADS = RAYON_NUM_THREADS = 1`, unless the user set either) and sets the number
/// of workers to `requested`, else `$DDSSM_THREADS`, else the cores available. Returns the
/// worker count, or an error naming the variable when `$DDSSM_THREADS` is not a positive integer.
pub fn configure_threads(requested: Option<usize>) -> Result<usize, String> {
    let from_env = match std::env::var(THREADS_VAR) {
        Ok(v) => match v.trim().parse::<usize>() {
            Ok(n) if n > 0 => Some(n),
            _ => {
                return Err(format!(
                    "{THREADS_VAR}={v:?}: expected a positive whole number of threads"
                ))
            }
        },
        Err(_) => None,
    };
    let n = requested
        .filter(|&n| n > 0)
        .or(from_env)
        .unwrap_or_else(cores);
    let user_set = KERNEL_VARS.iter().any(|v| std::env::var_os(v).is_some());
    if !user_set {
        // Called at the start of `main`, before other threads exist.
        for v in KERNEL_VARS {
            std::env::set_var(v, "1");
        }
    }
    set_workers(n);
    Ok(n)
}

/// The cores available to this process (1 if unknown).
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// candle's kernel-thread variables, in the order candle 0.11 reads them.
const KERNEL_VARS: [&str; 2] = ["CANDLE_NUM_THREADS", "RAYON_NUM_THREADS"];

/// The threading this process runs with, as benchmarks and result files record it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadSettings {
    /// Worker threads ([`workers`]).
    pub workers: usize,
    /// candle's kernel-thread variables that are set, as `(name, value)`.
    pub kernel_vars: Vec<(String, String)>,
}

impl ThreadSettings {
    /// The current settings.
    pub fn current() -> Self {
        Self {
            workers: workers(),
            kernel_vars: KERNEL_VARS
                .iter()
                .filter_map(|v| std::env::var(v).ok().map(|n| (v.to_string(), n)))
                .collect(),
        }
    }

    /// Threads that may run at once: workers × candle's kernel threads (the first kernel variable
    /// that parses, else the cores available, as candle does).
    pub fn total(&self) -> usize {
        let kernel = self
            .kernel_vars
            .iter()
            .find_map(|(_, v)| v.trim().parse::<usize>().ok())
            .unwrap_or_else(cores);
        self.workers * kernel
    }
}

impl std::fmt::Display for ThreadSettings {
    /// `"2 workers (CANDLE_NUM_THREADS=1, RAYON_NUM_THREADS=1)"`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let vars: Vec<String> = self
            .kernel_vars
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        write!(f, "{} workers ({})", self.workers, vars.join(", "))
    }
}

/// Applies `f` to every item on up to [`workers`] threads and returns the results in input order
/// (`f` gets the item's index). At most `workers()` items are in flight at once, so memory grows
/// with the worker count, not the item count. The first error (in input order) is returned.
pub fn map_ordered<T, R, E, F>(items: &[T], f: F) -> Result<Vec<R>, E>
where
    T: Sync,
    R: Send,
    E: Send,
    F: Fn(usize, &T) -> Result<R, E> + Sync,
{
    let threads = workers().min(items.len());
    if threads <= 1 {
        return items.iter().enumerate().map(|(i, t)| f(i, t)).collect();
    }
    let next = AtomicUsize::new(0);
    let slots: Mutex<Vec<Option<Result<R, E>>>> =
        Mutex::new((0..items.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= items.len() {
                    break;
                }
                let out = f(i, &items[i]);
                let failed = out.is_err();
                slots.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(out);
                if failed {
                    // Stop handing out work; items already running finish.
                    next.store(items.len(), Ordering::Relaxed);
                }
            });
        }
    });
    let slots = slots.into_inner().unwrap_or_else(|p| p.into_inner());
    let mut out = Vec::with_capacity(items.len());
    for slot in slots {
        match slot {
            Some(r) => out.push(r?),
            // Only items after a failure are skipped, and that failure was returned above.
            None => unreachable!("an item was skipped without an earlier error"),
        }
    }
    Ok(out)
}

/// Runs `f(start, len, noise)` on the consecutive chunks of `size` items out of `total` (the last
/// may be shorter), on the worker threads, and concatenates the chunks' results in order. Each
/// chunk gets its own stream, split off `noise` in chunk order ([`SeededNoise::split`]), so the
/// result depends on `size` but not on the worker count, and `noise` advances by one draw per
/// chunk.
pub fn map_chunks<R, E, F>(
    total: usize,
    size: usize,
    noise: &mut SeededNoise,
    f: F,
) -> Result<Vec<R>, E>
where
    R: Send,
    E: Send,
    F: Fn(usize, usize, &mut SeededNoise) -> Result<Vec<R>, E> + Sync,
{
    let size = size.max(1);
    let chunks: Vec<(usize, SeededNoise)> = (0..total)
        .step_by(size)
        .map(|start| (start, noise.split()))
        .collect();
    let per_chunk = map_ordered(&chunks, |_, (start, chunk_noise)| {
        f(*start, size.min(total - start), &mut chunk_noise.clone())
    })?;
    Ok(per_chunk.into_iter().flatten().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_settings_describe_and_multiply() {
        let s = ThreadSettings {
            workers: 3,
            kernel_vars: vec![
                ("CANDLE_NUM_THREADS".into(), "2".into()),
                ("RAYON_NUM_THREADS".into(), "1".into()),
            ],
        };
        assert_eq!(
            s.to_string(),
            "3 workers (CANDLE_NUM_THREADS=2, RAYON_NUM_THREADS=1)"
        );
        // The first variable that parses wins, as in candle.
        assert_eq!(s.total(), 6);
        let unparsable = ThreadSettings {
            workers: 2,
            kernel_vars: vec![
                ("CANDLE_NUM_THREADS".into(), "many".into()),
                ("RAYON_NUM_THREADS".into(), "4".into()),
            ],
        };
        assert_eq!(unparsable.total(), 8);
    }

    // Both tests change the process-wide worker count; one test owns it.
    #[test]
    fn results_keep_input_order_and_errors_surface() {
        for w in [1, 2, 3, 8] {
            set_workers(w);
            let items: Vec<u64> = (0..37).collect();
            let out: Vec<u64> = map_ordered(&items, |i, &x| {
                // Uneven work so threads finish out of order.
                std::thread::sleep(std::time::Duration::from_micros((x * 7919) % 300));
                Ok::<_, String>(x * 10 + i as u64)
            })
            .unwrap();
            assert_eq!(out, items.iter().map(|x| x * 11).collect::<Vec<_>>());
            let err = map_ordered(&items, |_, &x| {
                if x == 5 || x == 20 {
                    Err(format!("item {x}"))
                } else {
                    Ok(x)
                }
            })
            .unwrap_err();
            assert_eq!(err, "item 5", "workers {w}");
        }
        // Chunks of 4 out of 10: starts 0, 4, 8 with lengths 4, 4, 2, results in order.
        set_workers(2);
        let mut noise = SeededNoise::new(1);
        let out = map_chunks(10, 4, &mut noise, |start, len, _| {
            Ok::<_, String>((start..start + len).collect::<Vec<usize>>())
        })
        .unwrap();
        assert_eq!(out, (0..10).collect::<Vec<_>>());
        assert_eq!(noise.state().draws, 3);
        set_workers(1);
        assert_eq!(workers(), 1);
    }
}
