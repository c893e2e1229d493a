//! The call timer and the entry callable, written against the C API so that rewritten code
//! calls them with CPython's vectorcall convention: `time_call(RECORD, SITE, f, *args, **kw)`
//! forwards its arguments to `f` untouched with `PyObject_Vectorcall` (no tuple or dict is
//! built) and adds the elapsed ticks to the record's site.

use std::ffi::CStr;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use std::sync::OnceLock;

use pyo3::exceptions::{PyIndexError, PyTypeError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::PyTypeInfo;

use super::awaits::start_await;
use super::clock::ticks;
use super::profile::ProfileTable;
use super::record::Record;

extern "C" {
    /// CPython 3.11+: the exception being handled (`sys.exception()`), a new reference or NULL.
    fn PyErr_GetHandledException() -> *mut ffi::PyObject;
}

/// `Record`'s type object, cached at module init for a pointer comparison on the hot path.
static RECORD_TYPE: AtomicPtr<ffi::PyTypeObject> = AtomicPtr::new(std::ptr::null_mut());

/// Byte offset of a `Record`'s Rust value inside its Python object, measured at module init on
/// a real instance (every instance of the type has the same layout). It lets the timer reach
/// the record without touching its reference count.
static RECORD_OFFSET: AtomicUsize = AtomicUsize::new(usize::MAX);

/// Method definitions must outlive every function object made from them.
struct Defs {
    exit: ffi::PyMethodDef,
    time: ffi::PyMethodDef,
    atime: ffi::PyMethodDef,
    enter: ffi::PyMethodDef,
}
// SAFETY: the definitions are immutable after creation; CPython only reads them.
unsafe impl Sync for Defs {}
unsafe impl Send for Defs {}

static DEFS: OnceLock<Defs> = OnceLock::new();

fn defs() -> &'static Defs {
    DEFS.get_or_init(|| Defs {
        exit: ffi::PyMethodDef {
            ml_name: c"exit_record".as_ptr(),
            ml_meth: ffi::PyMethodDefPointer {
                PyCFunctionFast: exit_record,
            },
            ml_flags: ffi::METH_FASTCALL,
            ml_doc: c"exit_record(record, raised=False, /)\n--\n\nEnds the invocation of record and runs its callback; a no-op if it has ended.".as_ptr(),
        },
        time: ffi::PyMethodDef {
            ml_name: c"time_call".as_ptr(),
            ml_meth: ffi::PyMethodDefPointer {
                PyCFunctionFastWithKeywords: time_call,
            },
            ml_flags: ffi::METH_FASTCALL | ffi::METH_KEYWORDS,
            ml_doc: c"time_call(record, site, callable, /, *args, **kwargs)\n--\n\nCalls callable(*args, **kwargs) and adds its duration to the record's site.".as_ptr(),
        },
        atime: ffi::PyMethodDef {
            ml_name: c"time_await".as_ptr(),
            ml_meth: ffi::PyMethodDefPointer {
                PyCFunctionFastWithKeywords: time_await,
            },
            ml_flags: ffi::METH_FASTCALL | ffi::METH_KEYWORDS,
            ml_doc: c"time_await(record, site, callable, /, *args, **kwargs)\n--\n\nCalls callable(*args, **kwargs) and returns an awaitable that times the whole await.".as_ptr(),
        },
        enter: ffi::PyMethodDef {
            ml_name: c"enter".as_ptr(),
            ml_meth: ffi::PyMethodDefPointer { PyCFunction: enter },
            ml_flags: ffi::METH_O,
            ml_doc: c"enter(index, /)\n--\n\nStarts an invocation record of the table's function number index.".as_ptr(),
        },
    })
}

/// Adds `time_call` and `time_await` to the module and caches the record type.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    RECORD_TYPE.store(Record::type_object_raw(py), Ordering::Release);
    let probe = Bound::new(py, Record::probe())?;
    let value = std::ptr::from_ref(probe.get()) as usize;
    let object = probe.as_ptr() as usize;
    let offset = value
        .checked_sub(object)
        .filter(|&o| o < 4096)
        .ok_or_else(|| pyo3::exceptions::PyImportError::new_err("unexpected Record layout"))?;
    RECORD_OFFSET.store(offset, Ordering::Release);
    let d = defs();
    for def in [&d.exit, &d.time, &d.atime] {
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

/// Checks the timer's leading arguments; returns the record, the site index and the callable.
///
/// # Safety
/// `args` must point to `nargs` valid object pointers and the GIL must be held.
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
    // SAFETY: the type check above makes this cast valid; the record outlives this call since
    // the caller's frame holds it.
    // SAFETY: `rec` is a Record (checked above) whose value sits at RECORD_OFFSET; the caller's
    // frame holds it for the whole call.
    let record: &'a Record =
        unsafe { &*((rec as usize + RECORD_OFFSET.load(Ordering::Relaxed)) as *const Record) };
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

/// Calls `callable` with the timer's arguments after the first three, untouched; returns the
/// result (NULL with an error set on failure) and the clock readings before and after.
///
/// No recursion guard of our own: a Python callee's evaluation loop checks the recursion limit
/// (and, from 3.12, the C stack) on entry, exactly as for any C caller, so deep recursion
/// through the timer raises RecursionError; an extra guard would count each level twice.
///
/// # Safety
/// The GIL must be held; `args` must hold `nargs` (>= 3) positional arguments followed by the
/// values of `kwnames`.
#[inline(always)]
unsafe fn forward(
    callable: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: isize,
    kwnames: *mut ffi::PyObject,
) -> (*mut ffi::PyObject, u64, u64) {
    let start = ticks();
    // SAFETY: args[3..] are the caller's arguments; the offset flag lets the callee borrow
    // args[2] (the callable slot) temporarily.
    let result = unsafe {
        ffi::PyObject_Vectorcall(
            callable,
            args.add(3),
            (nargs - 3) as usize | ffi::PY_VECTORCALL_ARGUMENTS_OFFSET,
            kwnames,
        )
    };
    (result, start, ticks())
}

/// `time_call(record, site, callable, *args, **kwargs)`.
unsafe extern "C" fn time_call(
    _module: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython calls this with the GIL held.
    let py = unsafe { Python::assume_attached() };
    let nargs = unsafe { ffi::PyVectorcall_NARGS(nargsf as usize) };
    let Some((record, site, callable)) = (unsafe { unpack(py, "time_call", args, nargs) }) else {
        return std::ptr::null_mut();
    };
    // SAFETY: GIL held; `unpack` checked the three leading arguments.
    let (result, start, end) = unsafe { forward(callable, args, nargs, kwnames) };
    let elapsed = end.saturating_sub(start);
    // SAFETY: GIL held; `callable` is alive (the caller holds it).
    unsafe { record.add(py, site, elapsed, callable) };
    result
}

/// `time_await(record, site, callable, *args, **kwargs)`: for `await callable(...)`.
unsafe extern "C" fn time_await(
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
    // SAFETY: `unpack` checked that args[0] is a Record.
    let record = unsafe { Bound::from_borrowed_ptr(py, *args).cast_into_unchecked::<Record>() };
    // SAFETY: GIL held; `unpack` checked the three leading arguments.
    let (result, start, _) = unsafe { forward(callable, args, nargs, kwnames) };
    // SAFETY: `callable` is alive; `result` is a new reference or NULL with an error set.
    let callable = unsafe { Bound::from_borrowed_ptr(py, callable) };
    let result = unsafe { Bound::from_owned_ptr_or_err(py, result) };
    match start_await(py, record, site, start, callable, result) {
        Ok(obj) => obj.into_ptr(),
        Err(e) => {
            e.restore(py);
            std::ptr::null_mut()
        }
    }
}

/// `exit_record(record, raised=False)`.
unsafe extern "C" fn exit_record(
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
    let rec = unsafe { *args };
    if unsafe { ffi::Py_TYPE(rec) } != RECORD_TYPE.load(Ordering::Relaxed) {
        return raise::<PyTypeError>(py, "exit_record() needs a callweave record".into());
    }
    let raised = if nargs == 2 {
        match unsafe { ffi::PyObject_IsTrue(*args.add(1)) } {
            -1 => return std::ptr::null_mut(),
            v => v == 1,
        }
    } else {
        leaving_with_exception(py)
    };
    // SAFETY: the type check above makes this cast valid.
    let record = unsafe { Bound::from_borrowed_ptr(py, rec).cast_into_unchecked::<Record>() };
    Record::exit(&record, raised);
    py.None().into_ptr()
}

/// Whether the calling frame is being left by an exception: in a `finally` block on the
/// exceptional path, the exception being handled is the one propagating, and the head of its
/// traceback (entries are prepended as it propagates) is the current frame. An exception the
/// caller was handling when it called us has an older frame there.
fn leaving_with_exception(py: Python<'_>) -> bool {
    // SAFETY: GIL held; returns a new reference, or NULL (no error set) when nothing is being
    // handled — the common case, costing one call.
    let handled = unsafe { PyErr_GetHandledException() };
    let Some(exc_info) = (unsafe { Bound::from_owned_ptr_or_opt(py, handled) }) else {
        return false;
    };
    if exc_info.is_none() {
        return false;
    }
    // SAFETY: GIL held; the current frame is the profiled function's (borrowed reference).
    let frame = unsafe { ffi::PyEval_GetFrame() };
    exc_info
        .getattr("__traceback__")
        .and_then(|tb| tb.getattr("tb_frame"))
        .is_ok_and(|f| f.as_ptr() == frame.cast::<ffi::PyObject>())
}

/// `enter(index)`: a new record for the table's function `index`, its clock started.
unsafe extern "C" fn enter(slf: *mut ffi::PyObject, arg: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: CPython calls this with the GIL held; `slf` is the ProfileTable the function
    // object was made with.
    let py = unsafe { Python::assume_attached() };
    let table = unsafe { Bound::from_borrowed_ptr(py, slf).cast_into_unchecked::<ProfileTable>() };
    let index = unsafe { ffi::PyLong_AsSsize_t(arg) };
    if index < 0 && !unsafe { ffi::PyErr_Occurred() }.is_null() {
        return std::ptr::null_mut();
    }
    let Some(func) = usize::try_from(index)
        .ok()
        .and_then(|i| table.get().functions.get(i))
    else {
        return raise::<PyIndexError>(py, format!("no profiled function number {index}"));
    };
    match Py::new(py, Record::new(std::sync::Arc::clone(func))) {
        Ok(obj) => obj.into_ptr(),
        Err(e) => {
            e.restore(py);
            std::ptr::null_mut()
        }
    }
}
