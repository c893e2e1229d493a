//! The call timer and the other entry points of rewritten code, written against the C API so
//! that rewritten code calls them with CPython's vectorcall convention:
//! `time_call(RECORD, SITE, f, *args, **kw)` forwards its arguments to `f` untouched with
//! `PyObject_Vectorcall` (no tuple or dict is built) and adds the elapsed ticks to the
//! record's site.
//!
//! `time_call` is a builtin function (`METH_FASTCALL | METH_KEYWORDS`), so that CPython's
//! specialising interpreter calls it through its builtin-call fast path
//! (`CALL_BUILTIN_FAST_WITH_KEYWORDS`: the C function is called directly, with no recursion
//! check of its own). An object of a static type with a vectorcall slot, tried before, takes
//! the generic call path (`PyObject_Vectorcall`, result check), which cost 3–8 ns more per
//! timed call. The builtin's own vectorcall, used where the interpreter does not specialise
//! (tracers, profilers, 3.13's `CALL_KW`, C callers), is replaced by one without CPython's
//! `Py_EnterRecursiveCall` (`time_call_vectorcall`), so no path charges the timer a recursion
//! unit: a Python callee's evaluation loop checks the recursion limit (and, from 3.12, the C
//! recursion budget) on entry as for any C caller; on 3.12 that loop costs two units per
//! entry, one of which the timer gives back; on 3.11, which has no C-stack check, and on 3.12,
//! the timer checks the remaining stack itself (`stack.rs`).
//!
//! The hot path computes the thread-local's address once (its profiled-span and callback
//! counters, and on 3.11–3.12 the stack bound), decodes the site index of a small `int` inline, and counts the
//! call with an inlined update of the record's site; everything else (errors, custom
//! callbacks' per-call lists) is out of line.
//!
//! # Unwinding invariant
//! At interpreter exit CPython 3.11–3.13 ends a daemon thread that tries to take the GIL with
//! `pthread_exit`, a *forced unwind* of the thread's stack, which may start inside any call
//! into Python made from here. Every entry point is therefore `extern "C-unwind"` (an
//! `extern "C"` function aborts the process when unwound through), and none of them, nor
//! anything they inline, holds a value with a destructor (`Bound`, `Py`, `Vec`, `PyErr`, …)
//! across a call that can run Python code: Rust defines forced unwinding only through frames
//! without pending destructors ("plain old frames"). Such frames have no landing pad, so the
//! unwinder passes through them as through CPython's own C frames. References the timer must
//! release after a Python call are raw pointers released by hand on the normal path (a
//! forced unwind leaks them, which is harmless at exit). The function pointers are stored in
//! CPython's tables with PyO3's `extern "C"` pointer types: the two ABIs share the calling
//! convention, and only CPython calls them.

use std::ffi::CStr;
use std::sync::atomic::{AtomicPtr, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use pyo3::exceptions::{PyIndexError, PyTypeError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyInt, PyList, PyString, PyTuple};

use super::cpython::{PyTracebackObject, VectorcallUnwind};
use pyo3::PyTypeInfo;

use super::awaits::start_await;
use super::clock::ticks;
use super::record::Record;
use super::stack;
use super::stats::{FunctionProfile, FunctionSpec, FunctionState, ProfileSite, SiteInfo};
use super::thread;

extern "C" {
    /// CPython 3.11+: the exception being handled (`sys.exception()`), a new reference or NULL.
    fn PyErr_GetHandledException() -> *mut ffi::PyObject;
}

/// The name of the record's local in rewritten code (`profiler.RECORD_NAME` takes it from
/// here); `strip_locals` removes it from `locals()`, `vars()` and `dir()`.
pub(crate) const RECORD_NAME: &str = "__callweave_rec__";
// `record_name()` spells it as a C string.

type FastUnwind = unsafe extern "C-unwind" fn(
    *mut ffi::PyObject,
    *mut *mut ffi::PyObject,
    ffi::Py_ssize_t,
) -> *mut ffi::PyObject;
type FastKwUnwind = unsafe extern "C-unwind" fn(
    *mut ffi::PyObject,
    *const *mut ffi::PyObject,
    ffi::Py_ssize_t,
    *mut ffi::PyObject,
) -> *mut ffi::PyObject;
type PlainUnwind =
    unsafe extern "C-unwind" fn(*mut ffi::PyObject, *mut ffi::PyObject) -> *mut ffi::PyObject;

fn fast(f: FastUnwind) -> ffi::PyMethodDefPointer {
    // SAFETY: same signature and calling convention; only CPython calls through it (see the
    // unwinding invariant above).
    ffi::PyMethodDefPointer {
        PyCFunctionFast: unsafe { std::mem::transmute::<FastUnwind, ffi::PyCFunctionFast>(f) },
    }
}

fn fast_kw(f: FastKwUnwind) -> ffi::PyMethodDefPointer {
    // SAFETY: as in `fast`.
    ffi::PyMethodDefPointer {
        PyCFunctionFastWithKeywords: unsafe {
            std::mem::transmute::<FastKwUnwind, ffi::PyCFunctionFastWithKeywords>(f)
        },
    }
}

fn plain(f: PlainUnwind) -> ffi::PyMethodDefPointer {
    // SAFETY: as in `fast`.
    ffi::PyMethodDefPointer {
        PyCFunction: unsafe { std::mem::transmute::<PlainUnwind, ffi::PyCFunction>(f) },
    }
}

/// `Record`'s type object, cached at module init for a pointer comparison on the hot path.
static RECORD_TYPE: AtomicPtr<ffi::PyTypeObject> = AtomicPtr::new(std::ptr::null_mut());

/// Byte offset of a `Record`'s Rust value inside its Python object, measured at module init on
/// a real instance (every instance of the type has the same layout). It lets the timer reach
/// the record without touching its reference count.
static RECORD_OFFSET: AtomicUsize = AtomicUsize::new(usize::MAX);

/// Method definitions must outlive every function object made from them.
struct Defs {
    call: ffi::PyMethodDef,
    exit: ffi::PyMethodDef,
    atime: ffi::PyMethodDef,
    pause: ffi::PyMethodDef,
    resume: ffi::PyMethodDef,
    strip: ffi::PyMethodDef,
    enter: ffi::PyMethodDef,
}
// SAFETY: the definitions are immutable after creation; CPython only reads them.
unsafe impl Sync for Defs {}
unsafe impl Send for Defs {}

static DEFS: OnceLock<Defs> = OnceLock::new();

fn defs() -> &'static Defs {
    DEFS.get_or_init(|| Defs {
        call: ffi::PyMethodDef {
            ml_name: c"time_call".as_ptr(),
            ml_meth: fast_kw(time_call),
            ml_flags: ffi::METH_FASTCALL | ffi::METH_KEYWORDS,
            ml_doc: c"time_call(record, site, callable, /, *args, **kwargs)\n--\n\nCalls callable(*args, **kwargs) and adds its duration to the record's site.".as_ptr(),
        },
        exit: ffi::PyMethodDef {
            ml_name: c"exit_record".as_ptr(),
            ml_meth: fast(exit_record),
            ml_flags: ffi::METH_FASTCALL,
            ml_doc: c"exit_record(record, raised=False, /)\n--\n\nEnds the invocation of record and runs its callback; a no-op if it has ended.".as_ptr(),
        },
        atime: ffi::PyMethodDef {
            ml_name: c"time_await".as_ptr(),
            ml_meth: fast_kw(time_await),
            ml_flags: ffi::METH_FASTCALL | ffi::METH_KEYWORDS,
            ml_doc: c"time_await(record, site, callable, /, *args, **kwargs)\n--\n\nCalls callable(*args, **kwargs) and returns an awaitable that times the whole await.".as_ptr(),
        },
        pause: ffi::PyMethodDef {
            ml_name: c"pause_record".as_ptr(),
            ml_meth: fast(pause_record),
            ml_flags: ffi::METH_FASTCALL,
            ml_doc: c"pause_record(record, value, /)\n--\n\nStops the invocation's clock (its running time so far is kept) and returns value.".as_ptr(),
        },
        resume: ffi::PyMethodDef {
            ml_name: c"resume_record".as_ptr(),
            ml_meth: fast(resume_record),
            ml_flags: ffi::METH_FASTCALL,
            ml_doc: c"resume_record(record, sent, /)\n--\n\nRestarts the invocation's clock and returns sent.".as_ptr(),
        },
        strip: ffi::PyMethodDef {
            ml_name: c"strip_locals".as_ptr(),
            ml_meth: plain(strip_locals),
            ml_flags: ffi::METH_O,
            ml_doc: c"strip_locals(obj, /)\n--\n\nRemoves the record's local name from a dict (locals(), vars()) or a list (dir()) in place and returns obj.".as_ptr(),
        },
        enter: ffi::PyMethodDef {
            ml_name: c"enter".as_ptr(),
            ml_meth: plain(enter),
            ml_flags: ffi::METH_O,
            ml_doc: c"enter(index, /)\n--\n\nStarts an invocation record of the table's function number index.".as_ptr(),
        },
    })
}

/// Adds the entry points to the module and caches the record type.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    stack::init((py.version_info().major, py.version_info().minor));
    RECORD_TYPE.store(Record::type_object_raw(py), Ordering::Release);
    let probe = Bound::new(py, Record::probe())?;
    let value = std::ptr::from_ref(probe.get()) as usize;
    let object = probe.as_ptr() as usize;
    let offset = value
        .checked_sub(object)
        .filter(|&o| o < 4096)
        .ok_or_else(|| pyo3::exceptions::PyImportError::new_err("unexpected Record layout"))?;
    RECORD_OFFSET.store(offset, Ordering::Release);
    INT_LAYOUT.store(int_layout(py), Ordering::Relaxed);
    m.add("RECORD_NAME", RECORD_NAME)?;
    let d = defs();
    m.add("time_call", make_time_call(py)?)?;
    for def in [&d.exit, &d.atime, &d.pause, &d.resume, &d.strip] {
        // SAFETY: `def` is 'static; a NULL self makes a plain module-level function.
        let f = unsafe {
            Bound::from_owned_ptr_or_err(
                py,
                ffi::PyCFunction_NewEx(
                    std::ptr::from_ref(def).cast_mut(),
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                ),
            )?
        };
        let name = unsafe { CStr::from_ptr(def.ml_name) }
            .to_string_lossy()
            .into_owned();
        m.add(name.as_str(), f)?;
    }
    Ok(())
}

/// The `time_call` builtin, with its generic-path vectorcall replaced (see
/// [`time_call_vectorcall`]) where `PyCFunctionObject`'s layout is the one CPython's own type
/// declares (its `tp_vectorcall_offset` names our `vectorcall` field).
fn make_time_call(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    let def = &defs().call;
    // SAFETY: `def` is 'static; a NULL self makes a plain module-level function.
    let f = unsafe {
        Bound::from_owned_ptr_or_err(
            py,
            ffi::PyCFunction_NewEx(
                std::ptr::from_ref(def).cast_mut(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            ),
        )?
    };
    let field = std::mem::offset_of!(ffi::PyCFunctionObject, vectorcall);
    // SAFETY: reading a field of a static type object; GIL held.
    let declared = unsafe { (*std::ptr::addr_of!(ffi::PyCFunction_Type)).tp_vectorcall_offset };
    if usize::try_from(declared).ok() == Some(field)
        && unsafe { ffi::Py_TYPE(f.as_ptr()) } == std::ptr::addr_of_mut!(ffi::PyCFunction_Type)
    {
        // SAFETY: `f` is a fresh `PyCFunctionObject` (exact type checked) that nothing else
        // has seen yet; the field is its vectorcall pointer (offset checked above). The
        // C-unwind function is stored with the C ABI's pointer type (unwinding invariant).
        unsafe {
            let vectorcall =
                std::mem::transmute::<VectorcallUnwind, ffi::vectorcallfunc>(time_call_vectorcall);
            (*f.as_ptr().cast::<ffi::PyCFunctionObject>()).vectorcall = Some(vectorcall);
        }
    }
    Ok(f)
}

/// The profiled functions of one rewrite, indexed as the rewritten code's `ENTER(i)` calls.
///
/// A table made by `ProfileTable.lazy(size, resolve)` (the import hook's, for a module loaded
/// from its cache) starts empty: function `i` is `resolve(i)`, a `FunctionProfile`, asked for
/// when `i` is first entered ([`ProfileTable::function`]). Invariant: a slot, once set, never
/// changes.
#[pyclass(module = "callweave._native", frozen)]
pub(crate) struct ProfileTable {
    pub(crate) functions: Vec<OnceLock<Arc<FunctionState>>>,
    /// Registers function `i` on its first entry (None: every slot is set at creation).
    resolve: Option<Py<PyAny>>,
    /// The cached rows a table made by `ProfileTable.cached` registers its functions from
    /// itself, before asking `resolve` (None: `resolve` registers every function).
    rows: Option<CachedRows>,
}

/// A profile rule's registration arguments: time limit, callback above it, below it, whether
/// calls are recorded.
type RuleArgs = (f64, Option<Py<PyAny>>, Option<Py<PyAny>>, bool);

/// A cached row's fields: qualname, first line, rule index, sites.
type RowFields<'py> = (
    Bound<'py, PyString>,
    Bound<'py, PyAny>,
    usize,
    Bound<'py, PyList>,
);

/// A cache entry's profiled-function rows (`callweave._pycache.EntryMeta`'s blob and
/// offsets), and what the import hook registers their functions with, so that a function's
/// first entry registers it without running Python code.
///
/// Row `i` is `marshal.loads(blob[offsets[i]:offsets[i + 1]])` (offsets 4-byte little-endian),
/// `(qualname, first line, rule index, sites)`. A row that is not exactly that shape, or a
/// function already in `profiles` (a reload: the hook reuses its profile), is left to
/// `resolve`, which raises the hook's error for a malformed row. Each function registered
/// here is put into `profiles` under `(module, qualname, line)` and appended to `registered`
/// as `(resolve, i, profile)`, in order: the hook's bookkeeping reads it later.
struct CachedRows {
    blob: Py<PyBytes>,
    offsets: Py<PyBytes>,
    module: Py<PyString>,
    filename: String,
    /// The engine's index of the first profile rule: row rule indices are counted from it.
    rule_start: usize,
    /// Per profile rule: time limit, callback above it, below it, whether calls are recorded.
    rules: Vec<RuleArgs>,
    profiles: Py<PyDict>,
    registered: Py<PyList>,
}

impl ProfileTable {
    /// Function `i` (None past the table's end), resolved on its first use: the only
    /// per-call cost of laziness is the slot's initialised check.
    #[inline(always)]
    pub(crate) fn function(
        &self,
        py: Python<'_>,
        i: usize,
    ) -> PyResult<Option<&Arc<FunctionState>>> {
        let Some(slot) = self.functions.get(i) else {
            return Ok(None);
        };
        match slot.get() {
            Some(state) => Ok(Some(state)),
            None => self.resolve_slot(py, i, slot).map(Some),
        }
    }

    /// The cold path of [`ProfileTable::function`]: asks the resolver for function `i`. Two
    /// threads may both ask (the resolver runs Python code); the first answer is kept.
    ///
    /// The resolver's time is callweave's own work, counted as callback time: a caller's
    /// timed call and the invocations around it leave it out, as they leave out callbacks.
    #[cold]
    #[inline(never)]
    fn resolve_slot<'a>(
        &self,
        py: Python<'_>,
        i: usize,
        slot: &'a OnceLock<Arc<FunctionState>>,
    ) -> PyResult<&'a Arc<FunctionState>> {
        let Some(resolve) = self.resolve.as_ref() else {
            return Err(PyIndexError::new_err(format!(
                "no profiled function number {i}"
            )));
        };
        if let Some(rows) = self.rows.as_ref() {
            let started = ticks();
            let state = register_row(py, rows, resolve, i);
            thread::add_callback_ticks(ticks().saturating_sub(started));
            if let Some(state) = state? {
                return Ok(slot.get_or_init(|| state));
            }
        }
        let started = ticks();
        let profile = resolve.call1(py, (i,));
        thread::add_callback_ticks(ticks().saturating_sub(started));
        let profile = profile?;
        let profile = profile.bind(py).cast::<FunctionProfile>()?;
        let state = Arc::clone(&profile.get().state);
        Ok(slot.get_or_init(|| state))
    }
}

/// The 4-byte little-endian offset number `k` of `offsets`, if there is one.
fn offset_at(offsets: &[u8], k: usize) -> Option<usize> {
    let bytes = offsets.get(4 * k..4 * k + 4)?;
    let word: [u8; 4] = bytes.try_into().ok()?;
    usize::try_from(u32::from_le_bytes(word)).ok()
}

/// Registers function `i` of a table from its cached row (see [`CachedRows`]): `Ok(None)`
/// when the row is left to the Python resolver (malformed, or the function already has a
/// profile). Runs no Python code: nothing else runs between the check of `profiles` and the
/// registration.
fn register_row(
    py: Python<'_>,
    rows: &CachedRows,
    resolve: &Py<PyAny>,
    i: usize,
) -> PyResult<Option<Arc<FunctionState>>> {
    let blob = rows.blob.bind(py).as_bytes();
    let offsets = rows.offsets.bind(py).as_bytes();
    let (Some(start), Some(end)) = (offset_at(offsets, i), offset_at(offsets, i + 1)) else {
        return Ok(None);
    };
    let Some(data) = blob.get(start..end) else {
        return Ok(None);
    };
    let Ok(len) = ffi::Py_ssize_t::try_from(data.len()) else {
        return Ok(None);
    };
    // SAFETY: `data` is `len` readable bytes of a `bytes` object kept alive by `rows`; GIL
    // held. Unmarshalling plain data (the rows hold tuples, lists, strings and ints) runs
    // no Python code.
    let row = unsafe {
        Bound::from_owned_ptr_or_err(
            py,
            ffi::PyMarshal_ReadObjectFromString(data.as_ptr().cast(), len),
        )
    };
    let Ok(row) = row else {
        return Ok(None); // the error is dropped: the resolver raises the hook's own
    };
    let Some((qualname, line, rule, sites)) = row_fields(&row) else {
        return Ok(None);
    };
    let Some(rule_index) = rule.checked_sub(rows.rule_start) else {
        return Ok(None);
    };
    let Some((time_limit, above, below, record_calls)) = rows.rules.get(rule_index) else {
        return Ok(None);
    };
    let profiles = rows.profiles.bind(py);
    let key = PyTuple::new(
        py,
        [
            rows.module.bind(py).as_any(),
            qualname.as_any(),
            line.as_any(),
        ],
    )?;
    if profiles.contains(&key)? {
        return Ok(None);
    }
    let (Ok(line), Ok(sites)) = (line.extract::<u32>(), sites.extract::<Vec<ProfileSite>>()) else {
        return Ok(None);
    };
    let profile = FunctionProfile::register(FunctionSpec {
        module: rows.module.bind(py).to_str()?.to_owned(),
        qualname: qualname.to_str()?.to_owned(),
        filename: rows.filename.clone(),
        line,
        sites: sites.into_iter().map(SiteInfo::from).collect(),
        time_limit: *time_limit,
        above: above.as_ref().map(|a| a.clone_ref(py)),
        below: below.as_ref().map(|b| b.clone_ref(py)),
        record_calls: *record_calls,
    })?;
    let state = Arc::clone(&profile.state);
    let profile = Bound::new(py, profile)?;
    profiles.set_item(&key, &profile)?;
    let entry = PyTuple::new(
        py,
        [
            resolve.bind(py).clone(),
            i.into_pyobject(py)?.into_any(),
            profile.into_any(),
        ],
    )?;
    rows.registered.bind(py).append(entry)?;
    Ok(Some(state))
}

/// A cached row's fields, `(qualname, first line, rule index, sites)`, when the row is a
/// 4-tuple of a `str`, an `int`, an `int` that fits a `usize` and a `list` (exact types, as
/// marshal makes them).
fn row_fields<'py>(row: &Bound<'py, PyAny>) -> Option<RowFields<'py>> {
    let row = row.cast_exact::<PyTuple>().ok()?;
    if row.len() != 4 {
        return None;
    }
    let qualname = row.get_item(0).ok()?.cast_into_exact::<PyString>().ok()?;
    let line = row.get_item(1).ok()?;
    line.cast_exact::<PyInt>().ok()?;
    let rule = row.get_item(2).ok()?;
    let rule = rule.cast_exact::<PyInt>().ok()?.extract::<usize>().ok()?;
    let sites = row.get_item(3).ok()?.cast_into_exact::<PyList>().ok()?;
    Some((qualname, line, rule, sites))
}

#[pymethods]
impl ProfileTable {
    #[new]
    fn new(functions: Vec<PyRef<'_, FunctionProfile>>) -> Self {
        Self {
            functions: functions
                .iter()
                .map(|f| OnceLock::from(Arc::clone(&f.state)))
                .collect(),
            resolve: None,
            rows: None,
        }
    }

    /// A table of `size` functions, function `i` given by `resolve(i)` (a `FunctionProfile`)
    /// when it is first entered.
    #[staticmethod]
    fn lazy(size: usize, resolve: Py<PyAny>) -> Self {
        Self {
            functions: (0..size).map(|_| OnceLock::new()).collect(),
            resolve: Some(resolve),
            rows: None,
        }
    }

    /// A lazy table (see `lazy`) that registers function `i` from its cached row itself
    /// when it can (see the Rust docs of `CachedRows`), else asks `resolve(i)`.
    ///
    /// `rules` are, per profile rule, `(time_limit, above, below, record_calls)`; a row's
    /// rule index minus `rule_start` indexes them.
    #[staticmethod]
    #[allow(clippy::too_many_arguments)]
    fn cached(
        py: Python<'_>,
        size: usize,
        resolve: Py<PyAny>,
        blob: Py<PyBytes>,
        offsets: Py<PyBytes>,
        module: Py<PyString>,
        filename: String,
        rule_start: usize,
        rules: Vec<RuleArgs>,
        profiles: Py<PyDict>,
        registered: Py<PyList>,
    ) -> PyResult<Self> {
        // Each row's start and the blob's end (see `EntryMeta`).
        if offsets.bind(py).as_bytes().len() != 4 * (size + 1) && size != 0 {
            return Err(pyo3::exceptions::PyValueError::new_err(
                "offsets must hold the start of each row and the end of the blob",
            ));
        }
        Ok(Self {
            functions: (0..size).map(|_| OnceLock::new()).collect(),
            resolve: Some(resolve),
            rows: Some(CachedRows {
                blob,
                offsets,
                module,
                filename,
                rule_start,
                rules,
                profiles,
                registered,
            }),
        })
    }

    /// The entry callable for this table: `enter(i)` returns a new record for function `i`.
    fn enter_function<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        make_enter(slf)
    }

    /// The entry callable again (a pickled entry callable is `getattr(table, "enter")`).
    #[getter]
    fn enter<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        make_enter(slf)
    }

    fn __len__(&self) -> usize {
        self.functions.len()
    }

    /// Pickles as a table of the same profiles (by reference: see `FunctionProfile`); a lazy
    /// table's functions are resolved first.
    fn __reduce__<'py>(
        slf: &Bound<'py, Self>,
    ) -> PyResult<(Bound<'py, pyo3::types::PyType>, (Vec<FunctionProfile>,))> {
        let table = slf.get();
        let mut profiles = Vec::with_capacity(table.functions.len());
        for i in 0..table.functions.len() {
            if let Some(state) = table.function(slf.py(), i)? {
                profiles.push(FunctionProfile {
                    state: Arc::clone(state),
                });
            }
        }
        Ok((slf.get_type(), (profiles,)))
    }
}

/// The entry callable of a table: a C function whose `self` is the table.
pub(crate) fn make_enter<'py>(table: &Bound<'py, ProfileTable>) -> PyResult<Bound<'py, PyAny>> {
    let def = &defs().enter;
    // SAFETY: `def` is 'static; the function object keeps a reference to `table`.
    unsafe {
        Bound::from_owned_ptr_or_err(
            table.py(),
            ffi::PyCFunction_NewEx(
                std::ptr::from_ref(def).cast_mut(),
                table.as_ptr(),
                std::ptr::null_mut(),
            ),
        )
    }
}

fn raise<E: PyTypeInfo>(py: Python<'_>, msg: String) -> *mut ffi::PyObject {
    PyErr::new::<E, _>(msg).restore(py);
    std::ptr::null_mut()
}

/// How `int` objects store a small value, found at module init (`int_layout`): 0 when the
/// inline decoding is off (every site index goes through `PyLong_AsSsize_t`).
static INT_LAYOUT: AtomicU8 = AtomicU8::new(0);
/// 3.11: `ob_size` (number of digits, negative for negative values) then the digits.
const INT_OB_SIZE: u8 = 1;
/// 3.12+: `lv_tag` (digits << 3 | sign bits: 0 positive, 1 zero, 2 negative) then the digits.
const INT_LV_TAG: u8 = 2;

/// The value of a non-negative one-digit `int` (or 0) read inline, or None for anything else
/// (other types, bools, big or negative ints, unknown layout): the caller then takes the
/// general path. The word after the object header and the first 30-bit digit after it are
/// CPython's `PyLongObject` layout for 3.11 (`ob_size`) and 3.12–3.13 (`lv_tag`), checked
/// against `PyLong_AsSsize_t` at init.
///
/// # Safety
/// `obj` must be a valid object pointer.
#[inline(always)]
unsafe fn small_index(obj: *mut ffi::PyObject) -> Option<usize> {
    // SAFETY: `obj` is valid; an exact `int` has at least one word and one digit after its
    // header (CPython allocates a digit even for zero).
    unsafe {
        if ffi::Py_TYPE(obj) != std::ptr::addr_of_mut!(ffi::PyLong_Type) {
            return None;
        }
        let body = obj.cast::<u8>().add(std::mem::size_of::<ffi::PyObject>());
        let word = body.cast::<isize>().read();
        let digit = body.add(std::mem::size_of::<isize>()).cast::<u32>().read() as usize;
        match (INT_LAYOUT.load(Ordering::Relaxed), word) {
            (INT_OB_SIZE, 0) | (INT_LV_TAG, 1) => Some(0),
            (INT_OB_SIZE, 1) | (INT_LV_TAG, 8) => Some(digit),
            _ => None,
        }
    }
}

/// Picks the inline `int` layout for this interpreter and checks it on sample values; 0 (off)
/// unless digits are 30 bits in 4 bytes and every sample decodes to its value.
fn int_layout(py: Python<'_>) -> u8 {
    let digits_ok = py
        .import("sys")
        .and_then(|sys| sys.getattr("int_info"))
        .and_then(|info| {
            Ok((
                info.getattr("bits_per_digit")?.extract::<u32>()?,
                info.getattr("sizeof_digit")?.extract::<u32>()?,
            ))
        })
        .is_ok_and(|d| d == (30, 4));
    let layout = match (py.version_info().major, py.version_info().minor) {
        (3, 11) => INT_OB_SIZE,
        (3, 12..) => INT_LV_TAG,
        _ => 0,
    };
    if !digits_ok || layout == 0 {
        return 0;
    }
    INT_LAYOUT.store(layout, Ordering::Relaxed);
    let samples: [i64; 9] = [0, 1, 2, 255, 256, 1000, 65_535, (1 << 30) - 1, 1 << 30];
    let ok = samples.iter().all(|&v| {
        // SAFETY: GIL held; a new reference, released below.
        unsafe {
            let obj = ffi::PyLong_FromLongLong(v);
            if obj.is_null() {
                ffi::PyErr_Clear();
                return false;
            }
            let got = small_index(obj);
            ffi::Py_DECREF(obj);
            // Values of one digit decode; larger ones are left to the general path.
            got == (v < (1 << 30)).then_some(v as usize)
        }
    });
    INT_LAYOUT.store(0, Ordering::Relaxed);
    if ok {
        layout
    } else {
        0
    }
}

/// The record whose object is `rec`, without touching its reference count.
///
/// # Safety
/// `rec` must be a `Record` object (type checked by the caller), alive while the reference is
/// used (the caller's frame holds it for the whole call).
#[inline(always)]
unsafe fn record_at<'a>(rec: *mut ffi::PyObject) -> &'a Record {
    // SAFETY: a Record's value sits at RECORD_OFFSET in its object (measured at init).
    unsafe { &*((rec as usize + RECORD_OFFSET.load(Ordering::Relaxed)) as *const Record) }
}

/// The timer's leading arguments as rewritten code passes them (a record, a small site index,
/// a callable), or None for anything else.
///
/// # Safety
/// `args` must point to `nargs` valid object pointers.
#[inline(always)]
unsafe fn unpack_fast<'a>(
    args: *const *mut ffi::PyObject,
    nargs: isize,
) -> Option<(&'a Record, usize, *mut ffi::PyObject)> {
    if nargs < 3 {
        return None;
    }
    // SAFETY: nargs >= 3; valid object pointers.
    unsafe {
        let rec = *args;
        if ffi::Py_TYPE(rec) != RECORD_TYPE.load(Ordering::Relaxed) {
            return None;
        }
        let site = small_index(*args.add(1))?;
        Some((record_at(rec), site, *args.add(2)))
    }
}

/// Checks the timer's leading arguments; returns the record, the site index and the callable,
/// or None with a TypeError, IndexError or OverflowError set.
///
/// # Safety
/// `args` must point to `nargs` valid object pointers and the GIL must be held.
#[cold]
#[inline(never)]
unsafe fn unpack<'a>(
    py: Python<'a>,
    name: &str,
    args: *const *mut ffi::PyObject,
    nargs: isize,
) -> Option<(&'a Record, usize, *mut ffi::PyObject)> {
    if nargs < 3 {
        raise::<PyTypeError>(
            py,
            format!("{name}() takes a record, a site and a callable"),
        );
        return None;
    }
    // SAFETY: nargs >= 3 checked above.
    let (rec, site, callable) = unsafe { (*args, *args.add(1), *args.add(2)) };
    // SAFETY: `rec` is a valid object pointer.
    if unsafe { ffi::Py_TYPE(rec) } != RECORD_TYPE.load(Ordering::Relaxed) {
        raise::<PyTypeError>(
            py,
            format!("{name}() needs a callweave record as first argument"),
        );
        return None;
    }
    // SAFETY: `rec` is a Record (checked above), held by the caller's frame.
    let record = unsafe { record_at(rec) };
    // SAFETY: `site` is a valid object pointer.
    let index = unsafe { ffi::PyLong_AsSsize_t(site) };
    if index < 0 {
        if unsafe { ffi::PyErr_Occurred() }.is_null() {
            raise::<PyIndexError>(py, format!("{name}(): negative site index"));
        }
        return None;
    }
    Some((record, index as usize, callable))
}

/// Calls `callable` with the timer's arguments after the first three, untouched, between two
/// clock readings; returns the result (NULL with an error set on failure), the readings
/// before and after, the latter less the time this thread spent in above/below callbacks
/// meanwhile (a nested profiled function's callback runs inside this call and is not the
/// callee's time), and the growth of this thread's profiled-span counter over the call: the
/// ticks the callee spent in profiled invocations (`thread::PerThread::profiled_ticks`).
///
/// # Safety
/// As for [`forward`].
#[inline(always)]
unsafe fn call_between_readings(
    t: &thread::PerThread,
    callable: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: isize,
    kwnames: *mut ffi::PyObject,
) -> (*mut ffi::PyObject, u64, u64, u64) {
    let callbacks = t.callback_ticks.get();
    let profiled = t.profiled_ticks.get();
    let start = ticks();
    // SAFETY: args[3..] are the caller's arguments; the offset flag lets the callee borrow
    // args[2] (the callable slot) temporarily. `t` stays valid across the call: it is this
    // thread's state, and the thread is the same when the call returns.
    let result = unsafe {
        ffi::PyObject_Vectorcall(
            callable,
            args.add(3),
            (nargs - 3) as usize | ffi::PY_VECTORCALL_ARGUMENTS_OFFSET,
            kwnames,
        )
    };
    let end = ticks();
    let in_callbacks = t.callback_ticks.get().wrapping_sub(callbacks);
    let nested = t.profiled_ticks.get().wrapping_sub(profiled);
    (
        result,
        start,
        end.saturating_sub(in_callbacks).max(start),
        nested,
    )
}

/// Calls `callable` with the timer's arguments after the first three and times it (see
/// [`call_between_readings`]).
///
/// No recursion counter of our own: a Python callee's evaluation loop checks the recursion
/// limit (and, from 3.12, the C recursion budget) on entry, exactly as for any C caller, so
/// deep recursion through the timer raises RecursionError; counting here too would halve the
/// depth. On 3.11 and 3.12 the remaining C stack is checked as well, and on 3.12 one unit of
/// the evaluation loop's two is given back for the call (`stack.rs`).
///
/// # Safety
/// The GIL must be held; `args` must hold `nargs` (>= 3) positional arguments followed by the
/// values of `kwnames`. Holds nothing with a destructor (unwinding invariant).
#[inline(always)]
unsafe fn forward(
    callable: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: isize,
    kwnames: *mut ffi::PyObject,
) -> (*mut ffi::PyObject, u64, u64, u64) {
    thread::with(|t| {
        if stack::guarded() {
            if stack::below_bound(t) {
                // SAFETY: GIL held.
                unsafe {
                    ffi::PyErr_SetString(
                        ffi::PyExc_RecursionError,
                        c"maximum recursion depth exceeded while calling a Python object (C stack nearly exhausted)".as_ptr(),
                    );
                }
                return (std::ptr::null_mut(), 0, 0, 0);
            }
            let unit = stack::give_unit();
            // SAFETY: guaranteed by the caller.
            let timed = unsafe { call_between_readings(t, callable, args, nargs, kwnames) };
            stack::take_unit(unit);
            timed
        } else {
            // SAFETY: guaranteed by the caller.
            unsafe { call_between_readings(t, callable, args, nargs, kwnames) }
        }
    })
}

/// `time_call` called through its object rather than by the interpreter's builtin-call fast
/// path (a call site not yet specialised, a tracer or profiler deoptimising calls, 3.13's
/// `CALL_KW`, C code): CPython's own vectorcall for builtins would enter
/// `Py_EnterRecursiveCall` first, which costs a unit of the recursion limit (3.11) or of the C
/// recursion budget (3.12+) per timed call, so a profiled recursion under a tracer stopped at
/// half the plain depth (499 levels on 3.11, 749 under a profile function on 3.12). This one
/// calls the timer directly: the callee's evaluation loop does the accounting, as on the fast
/// path.
unsafe extern "C-unwind" fn time_call_vectorcall(
    _func: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: usize,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython's vectorcall protocol; GIL held.
    unsafe {
        time_call(
            std::ptr::null_mut(),
            args,
            ffi::PyVectorcall_NARGS(nargsf),
            kwnames,
        )
    }
}

/// `time_call(record, site, callable, *args, **kwargs)`.
unsafe extern "C-unwind" fn time_call(
    _module: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython calls this with the GIL held and `nargs` positional arguments in `args`
    // (followed by the values of `kwnames`).
    let unpacked = match unsafe { unpack_fast(args, nargs) } {
        Some(u) => Some(u),
        None => unsafe { unpack(Python::assume_attached(), "time_call", args, nargs) },
    };
    let Some((record, site, callable)) = unpacked else {
        return std::ptr::null_mut();
    };
    // SAFETY: GIL held; the three leading arguments are checked.
    let (result, start, end, nested) = unsafe { forward(callable, args, nargs, kwnames) };
    // SAFETY: GIL held; `callable` is alive (the caller holds it).
    if !unsafe { record.add(site, end - start, nested, callable) } && !result.is_null() {
        // A KeyboardInterrupt while computing the callee's name for a custom callback.
        // SAFETY: `result` is an owned reference.
        unsafe { ffi::Py_DECREF(result) };
        return std::ptr::null_mut();
    }
    result
}

/// `time_await(record, site, callable, *args, **kwargs)`: for `await callable(...)`.
unsafe extern "C-unwind" fn time_await(
    _module: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython calls this with the GIL held.
    let py = unsafe { Python::assume_attached() };
    let nargs = unsafe { ffi::PyVectorcall_NARGS(nargsf as usize) };
    let Some((_, site, callable)) = (unsafe { unpack(py, "time_await", args, nargs) }) else {
        return std::ptr::null_mut();
    };
    // SAFETY: GIL held; `unpack` checked the three leading arguments. Nothing with a
    // destructor exists yet (unwinding invariant).
    let profiled = thread::profiled_ticks();
    let callbacks = thread::callback_ticks();
    let (result, start, _, _) = unsafe { forward(callable, args, nargs, kwnames) };
    // Past this point the frame holds `Bound`s while `start_await` looks up the awaitable's
    // `__await__`: for coroutines, futures and tasks that is C code that cannot release the
    // GIL. The awaits themselves run later, from `AwaitTimer`'s methods.
    // SAFETY: `unpack` checked that args[0] is a Record.
    let record = unsafe { Bound::from_borrowed_ptr(py, *args).cast_into_unchecked::<Record>() };
    // SAFETY: `callable` is alive; `result` is a new reference or NULL with an error set.
    let callable = unsafe { Bound::from_borrowed_ptr(py, callable) };
    let result = unsafe { Bound::from_owned_ptr_or_err(py, result) };
    match start_await(
        py,
        record,
        site,
        (start, profiled, callbacks),
        callable,
        result,
    ) {
        Ok(obj) => obj.into_ptr(),
        Err(e) => {
            e.restore(py);
            std::ptr::null_mut()
        }
    }
}

/// The record at `args[0]`, type-checked; NULL with a TypeError naming `name` otherwise.
///
/// # Safety
/// The GIL must be held; `args` must hold at least one valid object.
unsafe fn record_arg<'a>(
    py: Python<'a>,
    name: &str,
    args: *const *mut ffi::PyObject,
) -> Option<(&'a Record, *mut ffi::PyObject)> {
    // SAFETY: guaranteed by the caller.
    let rec = unsafe { *args };
    if unsafe { ffi::Py_TYPE(rec) } != RECORD_TYPE.load(Ordering::Relaxed) {
        raise::<PyTypeError>(py, format!("{name}() needs a callweave record"));
        return None;
    }
    // SAFETY: `rec` is a Record (checked above); the caller holds it for the whole call.
    Some((unsafe { record_at(rec) }, rec))
}

/// `exit_record(record, raised=False)`.
unsafe extern "C-unwind" fn exit_record(
    _module: *mut ffi::PyObject,
    args: *mut *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
) -> *mut ffi::PyObject {
    // SAFETY: CPython calls this with the GIL held and `nargs` valid pointers in `args`.
    let py = unsafe { Python::assume_attached() };
    if !(1..=2).contains(&nargs) {
        return raise::<PyTypeError>(
            py,
            "exit_record() takes a record and an optional flag".into(),
        );
    }
    let Some((record, rec)) = (unsafe { record_arg(py, "exit_record", args) }) else {
        return std::ptr::null_mut();
    };
    let raised = if nargs == 2 {
        match unsafe { ffi::PyObject_IsTrue(*args.add(1)) } {
            -1 => return std::ptr::null_mut(),
            v => v == 1,
        }
    } else {
        // SAFETY: GIL held.
        unsafe { leaving_with_error() }
    };
    // SAFETY: GIL held; `rec` is the record's object, held by the caller.
    let ok = unsafe { record.exit(rec, raised) };
    // SAFETY: GIL held; the invocation has ended (`exit` marks it done in every case).
    unsafe { keep_spare(record, rec) };
    if ok {
        // SAFETY: GIL held.
        unsafe { ffi::Py_NewRef(ffi::Py_None()) }
    } else {
        std::ptr::null_mut()
    }
}

/// Whether the calling frame is being left by an error: in a `finally` block on the
/// exceptional path, the exception being handled is the one propagating, and the head of its
/// traceback (entries are prepended as it propagates) is the current frame. An exception the
/// caller was handling when it called us has an older frame there. `GeneratorExit` (a
/// generator's `close()`, an async generator's `aclose()`) ends an invocation normally.
///
/// Uses C accessors only: no Python code runs (unwinding invariant).
unsafe fn leaving_with_error() -> bool {
    // SAFETY: GIL held; a new reference, or NULL (no error set) when nothing is being handled
    // — the common case, costing one call.
    unsafe {
        let exc = PyErr_GetHandledException();
        if exc.is_null() {
            return false;
        }
        let mut error = false;
        if exc != ffi::Py_None()
            && ffi::PyErr_GivenExceptionMatches(exc, ffi::PyExc_GeneratorExit) == 0
        {
            let tb = ffi::PyException_GetTraceback(exc);
            if !tb.is_null() {
                let frame = ffi::PyEval_GetFrame();
                error = (*tb.cast::<PyTracebackObject>()).tb_frame == frame.cast();
                ffi::Py_DECREF(tb);
            }
        }
        ffi::Py_DECREF(exc);
        error
    }
}

/// The body of `pause_record` / `resume_record`: checks the record and the value, applies
/// `step` to the record and returns the value (a new reference), or NULL with an error set.
///
/// # Safety
/// The GIL must be held and `args` must hold `nargs` valid object pointers.
#[inline(always)]
unsafe fn pass_through(
    name: &str,
    args: *mut *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    step: fn(&Record),
) -> *mut ffi::PyObject {
    // SAFETY: the caller holds the GIL.
    let py = unsafe { Python::assume_attached() };
    if nargs != 2 {
        return raise::<PyTypeError>(py, format!("{name}() takes a record and a value"));
    }
    // SAFETY: two valid arguments.
    let Some((record, _)) = (unsafe { record_arg(py, name, args) }) else {
        return std::ptr::null_mut();
    };
    step(record);
    // SAFETY: a borrowed argument returned as a new reference.
    unsafe { ffi::Py_NewRef(*args.add(1)) }
}

/// `pause_record(record, value) -> value`: the generator is about to yield `value`.
unsafe extern "C-unwind" fn pause_record(
    _module: *mut ffi::PyObject,
    args: *mut *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
) -> *mut ffi::PyObject {
    // SAFETY: CPython calls this with the GIL held and `nargs` valid pointers in `args`.
    unsafe { pass_through("pause_record", args, nargs, Record::pause) }
}

/// `resume_record(record, sent) -> sent`: the generator resumed with `sent`.
unsafe extern "C-unwind" fn resume_record(
    _module: *mut ffi::PyObject,
    args: *mut *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
) -> *mut ffi::PyObject {
    // SAFETY: CPython calls this with the GIL held and `nargs` valid pointers in `args`.
    unsafe { pass_through("resume_record", args, nargs, Record::resume) }
}

/// The record's local name as an interned `str` (borrowed; kept for the process), or NULL.
fn record_name() -> *mut ffi::PyObject {
    static NAME: AtomicPtr<ffi::PyObject> = AtomicPtr::new(std::ptr::null_mut());
    let cached = NAME.load(Ordering::Relaxed);
    if !cached.is_null() {
        return cached;
    }
    // SAFETY: GIL held by every caller; the reference is kept for the process.
    let made = unsafe { ffi::PyUnicode_InternFromString(c"__callweave_rec__".as_ptr()) };
    NAME.store(made, Ordering::Relaxed);
    made
}

/// `strip_locals(obj) -> obj`: removes the record's name from a dict (`locals()`, `vars()`)
/// or a list of names (`dir()`) in place. Other objects pass through untouched.
unsafe extern "C-unwind" fn strip_locals(
    _module: *mut ffi::PyObject,
    obj: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    let name = record_name();
    if name.is_null() {
        return std::ptr::null_mut();
    }
    // SAFETY: GIL held (CPython calls us with it); `obj` is a valid object. The dict and list
    // operations below compare `str` keys only, which runs no Python code.
    unsafe {
        if ffi::PyDict_Check(obj) != 0 {
            match ffi::PyDict_Contains(obj, name) {
                1 => {
                    if ffi::PyDict_DelItem(obj, name) < 0 {
                        return std::ptr::null_mut();
                    }
                }
                0 => {}
                _ => return std::ptr::null_mut(),
            }
        } else if ffi::PyList_Check(obj) != 0 {
            let mut i = ffi::PyList_Size(obj);
            while i > 0 {
                i -= 1;
                let item = ffi::PyList_GetItem(obj, i);
                if !item.is_null()
                    && ffi::PyUnicode_CheckExact(item) != 0
                    && ffi::PyUnicode_Compare(item, name) == 0
                    && ffi::PyList_SetSlice(obj, i, i + 1, std::ptr::null_mut()) < 0
                {
                    return std::ptr::null_mut();
                }
            }
        }
        ffi::Py_NewRef(obj)
    }
}

/// `enter(index)`: a new record for the table's function `index`, its clock started.
///
/// The function's spare record (the one its last invocation ended, see [`keep_spare`]) is
/// reused when nothing but the spare slot references it: the previous invocation's frame,
/// callbacks and awaits have all let it go, so no one can see it restart. Otherwise a new one
/// is made (`Record` is not tracked by the garbage collector, so allocating it runs no Python
/// code).
unsafe extern "C-unwind" fn enter(
    slf: *mut ffi::PyObject,
    arg: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython calls this with the GIL held; `slf` is the ProfileTable the function
    // object was made with (never NULL), borrowed for the call.
    let py = unsafe { Python::assume_attached() };
    let Some(table) = (unsafe { pyo3::Borrowed::from_ptr_or_opt(py, slf) }) else {
        return raise::<PyTypeError>(py, "enter() has no profile table".into());
    };
    // SAFETY: the entry callable is only made with a ProfileTable as its self (`make_enter`).
    let table = unsafe { table.cast_unchecked::<ProfileTable>() }.get();
    // SAFETY: `arg` is a valid object.
    let index = match unsafe { small_index(arg) } {
        Some(i) => i,
        None => match unsafe { ffi::PyLong_AsSsize_t(arg) } {
            -1 if !unsafe { ffi::PyErr_Occurred() }.is_null() => return std::ptr::null_mut(),
            i => match usize::try_from(i) {
                Ok(i) => i,
                Err(_) => {
                    return raise::<PyIndexError>(py, format!("no profiled function number {i}"))
                }
            },
        },
    };
    // A lazily registered function is resolved on its first entry (`ProfileTable::function`).
    let func = match table.function(py, index) {
        Ok(Some(func)) => func,
        Ok(None) => {
            return raise::<PyIndexError>(py, format!("no profiled function number {index}"))
        }
        Err(e) => {
            e.restore(py);
            return std::ptr::null_mut();
        }
    };
    // SAFETY: GIL held; the slot holds NULL or an owned reference to a finished record of
    // `func` (its invariant). With a reference count of 1 the slot's reference is the only
    // one: it moves to the caller, and the record restarts unseen.
    unsafe {
        let spare = func.spare.get();
        if !spare.is_null() && ffi::Py_REFCNT(spare) == 1 {
            func.spare.set(std::ptr::null_mut());
            record_at(spare).restart();
            return spare;
        }
    }
    match Py::new(py, Record::new(std::sync::Arc::clone(func))) {
        Ok(obj) => obj.into_ptr(),
        Err(e) => {
            e.restore(py);
            std::ptr::null_mut()
        }
    }
}

/// Keeps the ended record `rec` as its function's spare for a later invocation (see
/// [`enter`]), unless the slot already holds a spare that is free to reuse (then `rec` is left
/// to be freed with its frame). A spare still referenced elsewhere (a generator's frame not yet
/// collected, a record kept by a callback) is replaced, so that one long-lived holder cannot
/// stop reuse.
///
/// # Safety
/// The GIL must be held; `rec` is the object of `record`, alive for the call, and its
/// invocation has ended. Runs no Python code: releasing a replaced spare at most frees a
/// `Record`, whose function state outlives it (the slot's function holds it).
#[inline(always)]
unsafe fn keep_spare(record: &Record, rec: *mut ffi::PyObject) {
    let slot = &record.func.spare;
    // SAFETY: GIL held; the slot holds NULL or an owned reference.
    unsafe {
        let old = slot.get();
        if old == rec || (!old.is_null() && ffi::Py_REFCNT(old) == 1) {
            return;
        }
        slot.set(ffi::Py_NewRef(rec));
        if !old.is_null() {
            ffi::Py_DECREF(old);
        }
    }
}
