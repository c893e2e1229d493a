//! Profiled functions: static site information, the time limit and callbacks, and aggregates
//! across invocations (count, total, min, max, a histogram, per-site count/total/max). Memory
//! is fixed per function and per site.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::histogram::{upper_bound, Histogram};

/// One timed call site, in original coordinates.
#[derive(Debug, Clone)]
pub(crate) struct SiteInfo {
    pub(crate) text: String,
    pub(crate) callee: Option<String>,
    pub(crate) line: u32,
    pub(crate) end_line: u32,
    pub(crate) col: u32,
    pub(crate) end_col: u32,
}

impl From<ProfileSite> for SiteInfo {
    fn from((text, callee, line, end_line, col, end_col): ProfileSite) -> Self {
        Self {
            text,
            callee,
            line,
            end_line,
            col,
            end_col,
        }
    }
}

#[derive(Default)]
pub(crate) struct SiteAgg {
    pub(crate) count: AtomicU64,
    pub(crate) total_ns: AtomicU64,
    pub(crate) max_ns: AtomicU64,
    /// Time of profiled invocations inside the site's calls (outermost ones; see
    /// `thread::PerThread::profiled_ticks`).
    pub(crate) nested_ns: AtomicU64,
}

/// Everything the runtime knows about one profiled function.
pub(crate) struct FunctionState {
    pub(crate) module: String,
    pub(crate) qualname: String,
    pub(crate) filename: String,
    pub(crate) line: u32,
    pub(crate) sites: Vec<SiteInfo>,
    pub(crate) limit_ns: u64,
    pub(crate) limit_s: f64,
    pub(crate) above: Option<Py<PyAny>>,
    pub(crate) below: Option<Py<PyAny>>,
    /// Keep every call's callee and duration per invocation (custom callbacks need them).
    pub(crate) record_calls: bool,
    /// The function object, once known (replaced on reload); callbacks receive it.
    pub(crate) func: Mutex<Option<Py<PyAny>>>,
    pub(crate) count: AtomicU64,
    pub(crate) total_ns: AtomicU64,
    pub(crate) min_ns: AtomicU64,
    pub(crate) max_ns: AtomicU64,
    pub(crate) errors: AtomicU64,
    /// Invocations at or over the time limit (those that ran, or would run, `above`).
    pub(crate) above_limit: AtomicU64,
    pub(crate) histogram: Histogram,
    pub(crate) site_aggs: Box<[SiteAgg]>,
    /// A finished record of this function kept for its next invocation (`entry::enter`).
    pub(crate) spare: Spare,
}

/// One finished `Record` object of a function, kept (with a strong reference) so that the
/// next invocation can reuse it instead of allocating and freeing an object per invocation.
///
/// Invariants: touched only with the GIL held, never across a call into Python (see the
/// concurrency invariant in `runtime/mod.rs`); the pointer is NULL or a `Record` whose
/// function is the one holding this slot, and whose invocation has ended. The record is reused
/// only when the slot's reference is its only one (nothing else can observe the reset). The
/// reference is never released while the function's state lives; a state is kept by the
/// registry for the process, and a record keeps its state alive, so at most one record per
/// profiled function is kept.
pub(crate) struct Spare(std::cell::UnsafeCell<*mut pyo3::ffi::PyObject>);

// SAFETY: accessed only with the GIL held (see the invariants above).
unsafe impl Sync for Spare {}
unsafe impl Send for Spare {}

impl Spare {
    fn new() -> Self {
        Self(std::cell::UnsafeCell::new(std::ptr::null_mut()))
    }

    /// The kept record (borrowed from the slot), or NULL.
    ///
    /// # Safety
    /// The GIL must be held.
    #[inline(always)]
    pub(crate) unsafe fn get(&self) -> *mut pyo3::ffi::PyObject {
        // SAFETY: GIL held (caller's contract); no reference into the cell outlives this read.
        unsafe { *self.0.get() }
    }

    /// Replaces the kept record; the slot owns the reference it is given.
    ///
    /// # Safety
    /// The GIL must be held; `obj` is NULL or an owned reference to a finished `Record` of
    /// this slot's function.
    #[inline(always)]
    pub(crate) unsafe fn set(&self, obj: *mut pyo3::ffi::PyObject) {
        // SAFETY: GIL held (caller's contract); no reference into the cell is alive.
        unsafe { *self.0.get() = obj }
    }
}

/// What a profiled function is, as given at registration.
pub(crate) struct FunctionSpec {
    pub(crate) module: String,
    pub(crate) qualname: String,
    pub(crate) filename: String,
    pub(crate) line: u32,
    pub(crate) sites: Vec<SiteInfo>,
    pub(crate) time_limit: f64,
    pub(crate) above: Option<Py<PyAny>>,
    pub(crate) below: Option<Py<PyAny>>,
    pub(crate) record_calls: bool,
}

impl FunctionState {
    /// A function with empty aggregates.
    pub(crate) fn new(spec: FunctionSpec) -> Self {
        let site_aggs = (0..spec.sites.len()).map(|_| SiteAgg::default()).collect();
        Self {
            module: spec.module,
            qualname: spec.qualname,
            filename: spec.filename,
            line: spec.line,
            sites: spec.sites,
            limit_ns: (spec.time_limit * 1e9).min(u64::MAX as f64) as u64,
            limit_s: spec.time_limit,
            above: spec.above,
            below: spec.below,
            record_calls: spec.record_calls,
            func: Mutex::new(None),
            count: AtomicU64::new(0),
            total_ns: AtomicU64::new(0),
            min_ns: AtomicU64::new(u64::MAX),
            max_ns: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            above_limit: AtomicU64::new(0),
            histogram: Histogram::new(),
            site_aggs,
            spare: Spare::new(),
        }
    }

    /// An unregistered function with no sites and no callbacks.
    pub(crate) fn probe() -> Self {
        Self::new(FunctionSpec {
            module: String::new(),
            qualname: String::new(),
            filename: String::new(),
            line: 0,
            sites: Vec::new(),
            time_limit: f64::INFINITY,
            above: None,
            below: None,
            record_calls: false,
        })
    }
}

// Writers hold the GIL (the runtime's invariant), so a relaxed load and store is an exact
// read-modify-write without a locked instruction; atomics only let readers skip any lock.
#[inline]
fn add(a: &AtomicU64, v: u64) {
    a.store(a.load(Ordering::Relaxed).wrapping_add(v), Ordering::Relaxed);
}

#[inline]
fn raise_to(a: &AtomicU64, v: u64) {
    if v > a.load(Ordering::Relaxed) {
        a.store(v, Ordering::Relaxed);
    }
}

#[inline]
fn lower_to(a: &AtomicU64, v: u64) {
    if v < a.load(Ordering::Relaxed) {
        a.store(v, Ordering::Relaxed);
    }
}

impl FunctionState {
    /// Folds one finished invocation into the aggregates. The GIL must be held.
    pub(crate) fn add_invocation(&self, total_ns: u64, raised: bool) {
        add(&self.count, 1);
        add(&self.total_ns, total_ns);
        lower_to(&self.min_ns, total_ns);
        raise_to(&self.max_ns, total_ns);
        if raised {
            add(&self.errors, 1);
        }
        // The same comparison as `Record::exit`'s choice of the above callback.
        if total_ns >= self.limit_ns {
            add(&self.above_limit, 1);
        }
        self.histogram.record(total_ns);
    }

    /// Folds one invocation's use of a site into the aggregates. The GIL must be held.
    pub(crate) fn add_site(
        &self,
        site: usize,
        count: u64,
        total_ns: u64,
        max_ns: u64,
        nested_ns: u64,
    ) {
        if let Some(agg) = self.site_aggs.get(site) {
            add(&agg.count, count);
            add(&agg.total_ns, total_ns);
            raise_to(&agg.max_ns, max_ns);
            add(&agg.nested_ns, nested_ns);
        }
    }

    fn reset(&self) {
        // Before the aggregates change: a reader that saw the old epoch reads again.
        RESETS.fetch_add(1, Ordering::Relaxed);
        self.count.store(0, Ordering::Relaxed);
        self.total_ns.store(0, Ordering::Relaxed);
        self.min_ns.store(u64::MAX, Ordering::Relaxed);
        self.max_ns.store(0, Ordering::Relaxed);
        self.errors.store(0, Ordering::Relaxed);
        self.above_limit.store(0, Ordering::Relaxed);
        self.histogram.reset();
        for s in self.site_aggs.iter() {
            s.count.store(0, Ordering::Relaxed);
            s.total_ns.store(0, Ordering::Relaxed);
            s.max_ns.store(0, Ordering::Relaxed);
            s.nested_ns.store(0, Ordering::Relaxed);
        }
    }
}

/// How many times a function's aggregates were cleared in this process: with the functions'
/// counts, it tells whether anything changed since it was last read (`profile_counts`).
static RESETS: AtomicU64 = AtomicU64::new(0);

/// Every function profiled in this process, for `stats()` and reports.
static REGISTRY: Mutex<Vec<Arc<FunctionState>>> = Mutex::new(Vec::new());

/// The Python function that runs callbacks: `dispatch(callback, total, record)`.
pub(crate) static DISPATCHER: OnceLock<Py<PyAny>> = OnceLock::new();

/// Sets the Python-level callback dispatcher (once, by `callweave.profiler`).
#[pyfunction]
pub(crate) fn set_dispatcher(dispatcher: Py<PyAny>) -> PyResult<()> {
    DISPATCHER
        .set(dispatcher)
        .map_err(|_| PyValueError::new_err("the callback dispatcher is already set"))
}

/// A profiled function as Python sees it.
#[pyclass(module = "callweave._native", frozen)]
pub(crate) struct FunctionProfile {
    pub(crate) state: Arc<FunctionState>,
}

/// What a pickled profile holds: its registry index and, to check it, its module, qualname and
/// first line.
type ProfileRef = (usize, String, String, u32);

/// `FunctionProfile.aggregates()`: count, errors, total, min, max, p50, p95, p99, per site
/// (count, total, max, nested), invocations above the limit and the histogram's non-empty buckets
/// (low, high, count); times in seconds.
type Aggregates = (
    u64,
    u64,
    f64,
    f64,
    f64,
    f64,
    f64,
    f64,
    Vec<(u64, f64, f64, f64)>,
    u64,
    Vec<(f64, f64, u64)>,
);

fn secs(ns: u64) -> f64 {
    ns as f64 / 1e9
}

impl FunctionState {
    /// `(min, max, p50, p95, p99)` in nanoseconds. A percentile is a bucket's midpoint,
    /// clamped to `[min, max]` (a midpoint can lie beyond the extremes actually seen); all
    /// zero without invocations.
    fn extremes_and_percentiles(&self) -> (u64, u64, u64, u64, u64) {
        if self.count.load(Ordering::Relaxed) == 0 {
            return (0, 0, 0, 0, 0);
        }
        let min = self.min_ns.load(Ordering::Relaxed);
        let max = self.max_ns.load(Ordering::Relaxed).max(min);
        let q = |x: f64| self.histogram.quantile(x).clamp(min, max);
        (min, max, q(0.50), q(0.95), q(0.99))
    }

    /// The histogram's non-empty buckets `(low, high, count)` in seconds.
    fn histogram_secs(&self) -> Vec<(f64, f64, u64)> {
        self.histogram
            .buckets()
            .into_iter()
            .map(|(low, high, n)| (secs(low), secs(high), n))
            .collect()
    }
}

/// A site as `FunctionProfile` takes it: `(text, callee, line, end_line, col, end_col)`.
pub(crate) type ProfileSite = (String, Option<String>, u32, u32, u32, u32);

impl FunctionProfile {
    /// Registers a profiled function (`FunctionProfile(...)`, and a lazy profile table's
    /// native registration): its state joins the registry `stats()` reads.
    ///
    /// # Errors
    /// `ValueError` for a time limit that is not a finite number of seconds >= 0.
    pub(crate) fn register(spec: FunctionSpec) -> PyResult<Self> {
        let time_limit = spec.time_limit;
        if !(time_limit.is_finite() && time_limit >= 0.0) {
            return Err(PyValueError::new_err(format!(
                "time_limit must be a finite number of seconds >= 0, got {time_limit}"
            )));
        }
        let state = Arc::new(FunctionState::new(spec));
        if let Ok(mut all) = REGISTRY.lock() {
            all.push(Arc::clone(&state));
        }
        Ok(Self { state })
    }
}

#[pymethods]
impl FunctionProfile {
    /// Pickles by reference to this process's registry (`_profile_at`): a profile holds live
    /// callbacks and aggregates, so it is the same object again, or a clear error elsewhere.
    fn __reduce__<'py>(&self, py: Python<'py>) -> PyResult<(Bound<'py, PyAny>, ProfileRef)> {
        let index = REGISTRY
            .lock()
            .ok()
            .and_then(|all| all.iter().position(|s| Arc::ptr_eq(s, &self.state)))
            .ok_or_else(|| {
                pyo3::exceptions::PyValueError::new_err(format!(
                    "callweave: {}:{} is not a registered profile",
                    self.state.module, self.state.qualname
                ))
            })?;
        let at = py.import("callweave._native")?.getattr("_profile_at")?;
        let s = &self.state;
        Ok((at, (index, s.module.clone(), s.qualname.clone(), s.line)))
    }

    /// Registers a profiled function.
    ///
    /// `sites` are tuples `(text, callee, line, end_line, col, end_col)` in local-index order.
    #[new]
    #[pyo3(signature = (*, module, qualname, filename, line, sites, time_limit, above=None, below=None, record_calls=false))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        module: String,
        qualname: String,
        filename: String,
        line: u32,
        sites: Vec<ProfileSite>,
        time_limit: f64,
        above: Option<Py<PyAny>>,
        below: Option<Py<PyAny>>,
        record_calls: bool,
    ) -> PyResult<Self> {
        Self::register(FunctionSpec {
            module,
            qualname,
            filename,
            line,
            sites: sites.into_iter().map(SiteInfo::from).collect(),
            time_limit,
            above,
            below,
            record_calls,
        })
    }

    #[getter]
    fn module(&self) -> &str {
        &self.state.module
    }

    #[getter]
    fn qualname(&self) -> &str {
        &self.state.qualname
    }

    #[getter]
    fn filename(&self) -> &str {
        &self.state.filename
    }

    #[getter]
    fn line(&self) -> u32 {
        self.state.line
    }

    #[getter]
    fn time_limit(&self) -> f64 {
        self.state.limit_s
    }

    #[getter]
    fn above(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.state.above.as_ref().map(|a| a.clone_ref(py))
    }

    #[getter]
    fn below(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.state.below.as_ref().map(|a| a.clone_ref(py))
    }

    /// Site tuples `(text, callee, line, end_line, col, end_col)` in local-index order.
    #[getter]
    fn sites(&self) -> Vec<(String, Option<String>, u32, u32, u32, u32)> {
        self.state
            .sites
            .iter()
            .map(|s| {
                (
                    s.text.clone(),
                    s.callee.clone(),
                    s.line,
                    s.end_line,
                    s.col,
                    s.end_col,
                )
            })
            .collect()
    }

    /// The function object, or None before it is known.
    #[getter]
    fn function(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.state
            .func
            .lock()
            .ok()
            .and_then(|f| f.as_ref().map(|f| f.clone_ref(py)))
    }

    /// Records the function object (a reloaded module's function replaces the old one).
    fn set_function(&self, func: Py<PyAny>) {
        if let Ok(mut slot) = self.state.func.lock() {
            *slot = Some(func);
        }
    }

    /// Aggregates: a dict with `count`, `errors`, `above` (invocations at or over the
    /// limit), `total`, `min`, `max`, `p50`, `p95`, `p99` (seconds; percentiles within
    /// `[min, max]`), `histogram`: the non-empty buckets `(low, high, count)` (seconds), and
    /// `sites`: a list of dicts with `count`, `total`, `max`, `nested` per site (`nested`:
    /// the time of profiled invocations inside the site's calls, outermost ones only).
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = &self.state;
        let d = PyDict::new(py);
        let count = s.count.load(Ordering::Relaxed);
        d.set_item("count", count)?;
        d.set_item("errors", s.errors.load(Ordering::Relaxed))?;
        d.set_item("above", s.above_limit.load(Ordering::Relaxed))?;
        d.set_item("total", secs(s.total_ns.load(Ordering::Relaxed)))?;
        let (min, max, p50, p95, p99) = s.extremes_and_percentiles();
        d.set_item("min", secs(min))?;
        d.set_item("max", secs(max))?;
        d.set_item("p50", secs(p50))?;
        d.set_item("p95", secs(p95))?;
        d.set_item("p99", secs(p99))?;
        d.set_item("histogram", s.histogram_secs())?;
        let mut sites = Vec::with_capacity(s.site_aggs.len());
        for agg in s.site_aggs.iter() {
            let sd = PyDict::new(py);
            sd.set_item("count", agg.count.load(Ordering::Relaxed))?;
            sd.set_item("total", secs(agg.total_ns.load(Ordering::Relaxed)))?;
            sd.set_item("max", secs(agg.max_ns.load(Ordering::Relaxed)))?;
            sd.set_item("nested", secs(agg.nested_ns.load(Ordering::Relaxed)))?;
            sites.push(sd);
        }
        d.set_item("sites", sites)?;
        Ok(d)
    }

    /// The aggregates of `stats()` as one tuple, cheaper to make and to serialise:
    /// `(count, errors, total, min, max, p50, p95, p99, sites, above, histogram)` (seconds),
    /// `sites` a list of `(count, total, max, nested)` per site, `histogram` the non-empty buckets
    /// `(low, high, count)`. What a pool worker saves after each task.
    fn aggregates(&self) -> Aggregates {
        let s = &self.state;
        let count = s.count.load(Ordering::Relaxed);
        let (min, max, p50, p95, p99) = s.extremes_and_percentiles();
        let sites = s
            .site_aggs
            .iter()
            .map(|agg| {
                (
                    agg.count.load(Ordering::Relaxed),
                    secs(agg.total_ns.load(Ordering::Relaxed)),
                    secs(agg.max_ns.load(Ordering::Relaxed)),
                    secs(agg.nested_ns.load(Ordering::Relaxed)),
                )
            })
            .collect();
        (
            count,
            s.errors.load(Ordering::Relaxed),
            secs(s.total_ns.load(Ordering::Relaxed)),
            secs(min),
            secs(max),
            secs(p50),
            secs(p95),
            secs(p99),
            sites,
            s.above_limit.load(Ordering::Relaxed),
            s.histogram_secs(),
        )
    }

    /// How many invocations took at least the time limit (the above callback's share).
    #[getter]
    fn above_limit(&self) -> u64 {
        self.state.above_limit.load(Ordering::Relaxed)
    }

    /// The invocation-time histogram's non-empty buckets, shortest first: `(upper, count)`
    /// with `upper` the bucket's exclusive upper bound in nanoseconds (every invocation
    /// counted in it took less), or None for the top bucket, which is unbounded. Bucket
    /// edges are log-linear: 16 per power of two, and every power of two is an edge.
    fn histogram(&self) -> Vec<(Option<u64>, u64)> {
        self.state
            .histogram
            .buckets()
            .into_iter()
            .map(|(_, high, n)| (upper_bound(high), n))
            .collect()
    }

    /// Clears this function's aggregates.
    fn reset(&self) {
        self.state.reset();
    }

    fn __repr__(&self) -> String {
        format!(
            "<FunctionProfile {}:{} line {}>",
            self.state.module, self.state.qualname, self.state.line
        )
    }
}

/// The registered profile at `index`, if it is the function named (a pickled reference).
#[pyfunction]
pub(crate) fn _profile_at(
    index: usize,
    module: &str,
    qualname: &str,
    line: u32,
) -> PyResult<FunctionProfile> {
    REGISTRY
        .lock()
        .ok()
        .and_then(|all| all.get(index).cloned())
        .filter(|s| s.module == module && s.qualname == qualname && s.line == line)
        .map(|state| FunctionProfile { state })
        .ok_or_else(|| {
            pyo3::exceptions::PyValueError::new_err(format!(
                "callweave: {module}:{qualname} (line {line}) is not profiled in this process: \
                 a profiled function's runtime objects unpickle only where they were made"
            ))
        })
}

/// Every profiled function registered in this process.
#[pyfunction]
pub(crate) fn all_profiles() -> Vec<FunctionProfile> {
    REGISTRY
        .lock()
        .map(|all| {
            all.iter()
                .map(|s| FunctionProfile {
                    state: Arc::clone(s),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The reset epoch and each registered profile's invocation count, in registry order.
///
/// A profile's aggregates change only with an invocation's end (its count grows) or a reset
/// (the epoch grows): the same answer twice means nothing was recorded in between. Costs one
/// lock and an atomic load per function, nothing on the recording path.
#[pyfunction]
pub(crate) fn profile_counts() -> (u64, Vec<u64>) {
    let resets = RESETS.load(Ordering::Relaxed);
    let counts = REGISTRY
        .lock()
        .map(|all| {
            all.iter()
                .map(|s| s.count.load(Ordering::Relaxed))
                .collect()
        })
        .unwrap_or_default();
    (resets, counts)
}

/// Clears the aggregates of every profiled function.
#[pyfunction]
pub(crate) fn reset_stats() {
    if let Ok(all) = REGISTRY.lock() {
        for s in all.iter() {
            s.reset();
        }
    }
}
