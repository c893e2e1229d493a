//! The call binder: how rewritten code keeps CPython's own argument-unpacking errors for calls
//! with `*` or `**` arguments.
//!
//! CPython unpacks `f(*a, **k)` in the caller's frame before it calls anything, and its errors
//! name the callable on the stack (`_PyObject_FunctionStr`: `f.__module__`, `f.__qualname__`
//! and `()`, or `str(f)` without a `__qualname__`): `f() got multiple values for keyword
//! argument 'a'`, `f() argument after * must be an iterable, not int`. Routed as
//! `OUTER(PRE, f, POST, *a, **k)` those errors would name the timer or the wrapper, and
//! `f(*a)`'s message would become `f(x, *a)`'s nameless `Value after * …`. So the engine writes
//! such calls `BIND(k, OUTER, PRE..., f, POST...)(*a, **k)`.
//!
//! `bind_call(k, outer, *items)` (the `__callweave_bind__` global) returns a [`BoundCall`]
//! whose `__qualname__`, `__name__` and `__module__` are `items[k]`'s and whose `str()` is
//! `str(items[k])`, and which, called with `ARGS`, calls `outer(*items, *ARGS)` with
//! vectorcall (argument array on the stack for small counts; nothing is built beyond what
//! CPython builds for the call itself). The call keeps the user's argument shape, so every
//! message is exactly the plain call's; the timer still times just the callee's call.
//!
//! Both callables are instances of static types with their own vectorcall slot, like the timer
//! (no `Py_EnterRecursiveCall` unit). A bound call is garbage-collected (it may sit on a
//! suspended generator's value stack, `f(*(yield))`, where a cycle through its callee must stay
//! collectable); it dies right after its call.
//!
//! Every entry point is `extern "C-unwind"` and holds no value with a destructor across a call
//! into Python (see the unwinding invariant in `entry.rs`).

use std::ffi::{c_int, c_void, CStr};
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::OnceLock;

use pyo3::exceptions::{PyIndexError, PyRuntimeError, PyTypeError};
use pyo3::ffi;
use pyo3::prelude::*;

use super::cpython::VectorcallUnwind;

/// The one instance of the binder type, `bind_call`: a vectorcall slot and nothing else.
#[repr(C)]
struct BinderObject {
    ob_base: ffi::PyObject,
    vectorcall: VectorcallUnwind,
}

/// A bound call: `outer(*items, *args, **kwargs)` when called with `args` and `kwargs`. A
/// variable-size object: `ob_size` items follow the fixed part. Every object field is a strong
/// reference, or NULL only between allocation and initialisation (and after `clear`).
#[repr(C)]
struct BoundCall {
    ob_base: ffi::PyVarObject,
    vectorcall: VectorcallUnwind,
    /// The layer's callable (timer, trampoline, or the outermost of several).
    outer: *mut ffi::PyObject,
    /// Index in `items` of the user's callee (`< ob_size`).
    callee: usize,
    /// The arguments before the call's own: `PRE..., callee, POST...`.
    items: [*mut ffi::PyObject; 0],
}

/// Calls with at most this many arguments in all (bound items, positional and keyword ones)
/// build their argument array on the stack.
const SMALL: usize = 16;

static BOUND_TYPE: AtomicPtr<ffi::PyTypeObject> = AtomicPtr::new(std::ptr::null_mut());

/// The items of a bound call.
///
/// # Safety
/// `slf` must be a live bound call.
#[inline(always)]
unsafe fn items(slf: *mut ffi::PyObject) -> (*mut *mut ffi::PyObject, usize) {
    // SAFETY: a bound call has `ob_size` item slots after its fixed part.
    unsafe {
        let b = slf.cast::<BoundCall>();
        let n = usize::try_from(ffi::Py_SIZE(slf)).unwrap_or(0);
        (std::ptr::addr_of_mut!((*b).items).cast(), n)
    }
}

/// `bind_call(k, outer, *items)`: a new bound call standing for `items[k]`.
unsafe extern "C-unwind" fn bind_call(
    _binder: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: usize,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython calls this with the GIL held and `nargs` valid pointers in `args`. No
    // value with a destructor is held across the allocation (which may run a collection).
    unsafe {
        let py = Python::assume_attached();
        let nargs = ffi::PyVectorcall_NARGS(nargsf);
        if !kwnames.is_null() && ffi::PyTuple_GET_SIZE(kwnames) != 0 {
            PyTypeError::new_err("bind_call() takes no keyword arguments").restore(py);
            return std::ptr::null_mut();
        }
        if nargs < 3 {
            PyTypeError::new_err("bind_call() takes an index, a callable and at least one item")
                .restore(py);
            return std::ptr::null_mut();
        }
        let k = ffi::PyLong_AsSsize_t(*args);
        if k == -1 && !ffi::PyErr_Occurred().is_null() {
            return std::ptr::null_mut();
        }
        let n = nargs - 2;
        if !(0..n).contains(&k) {
            PyIndexError::new_err(format!(
                "bind_call(): callee index {k} out of range for {n} items"
            ))
            .restore(py);
            return std::ptr::null_mut();
        }
        let ty = BOUND_TYPE.load(Ordering::Relaxed);
        if ty.is_null() {
            PyRuntimeError::new_err("callweave's bound-call type is not ready").restore(py);
            return std::ptr::null_mut();
        }
        // Zeroed, `ob_size` set to `n`, and tracked by the collector (which finds NULL fields
        // until they are filled below, with no allocation in between).
        let obj = ffi::PyType_GenericAlloc(ty, n);
        if obj.is_null() {
            return std::ptr::null_mut();
        }
        let b = obj.cast::<BoundCall>();
        (*b).vectorcall = bound_call;
        (*b).outer = ffi::Py_NewRef(*args.add(1));
        (*b).callee = k as usize;
        let (slots, n) = items(obj);
        for i in 0..n {
            *slots.add(i) = ffi::Py_NewRef(*args.add(2 + i));
        }
        obj
    }
}

/// Calling a bound call: `outer(*items, *args, **kwargs)`, forwarded with vectorcall.
unsafe extern "C-unwind" fn bound_call(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: usize,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython calls this with the GIL held, `args` holding the positional arguments
    // followed by the keyword values; `slf` is a bound call, kept alive by the caller for the
    // whole call, and so are its fields (borrowed into the argument array). The array is plain
    // pointers: a stack array, or a PyMem block released by hand on the normal path.
    unsafe {
        let outer = (*slf.cast::<BoundCall>()).outer;
        if outer.is_null() {
            PyRuntimeError::new_err("callweave bound call was cleared")
                .restore(Python::assume_attached());
            return std::ptr::null_mut();
        }
        let (slots, n) = items(slf);
        let nargs = ffi::PyVectorcall_NARGS(nargsf) as usize;
        let nkw = if kwnames.is_null() {
            0
        } else {
            ffi::PyTuple_GET_SIZE(kwnames) as usize
        };
        let total = n + nargs + nkw;
        // Slot 0 is free for the callee (PY_VECTORCALL_ARGUMENTS_OFFSET).
        let mut small = [std::ptr::null_mut::<ffi::PyObject>(); SMALL + 1];
        let buf = if total <= SMALL {
            small.as_mut_ptr()
        } else {
            let p = ffi::PyMem_Malloc((total + 1) * std::mem::size_of::<*mut ffi::PyObject>());
            if p.is_null() {
                return ffi::PyErr_NoMemory();
            }
            p.cast::<*mut ffi::PyObject>()
        };
        std::ptr::copy_nonoverlapping(slots, buf.add(1), n);
        if nargs + nkw > 0 {
            std::ptr::copy_nonoverlapping(args, buf.add(1 + n), nargs + nkw);
        }
        let result = ffi::PyObject_Vectorcall(
            outer,
            buf.add(1),
            (n + nargs) | ffi::PY_VECTORCALL_ARGUMENTS_OFFSET,
            kwnames,
        );
        if total > SMALL {
            ffi::PyMem_Free(buf.cast());
        }
        result
    }
}

/// The callee a bound call stands for (borrowed), or NULL once cleared.
///
/// # Safety
/// `slf` must be a live bound call.
unsafe fn callee(slf: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: `callee < ob_size` (checked in `bind_call`).
    unsafe {
        let (slots, n) = items(slf);
        let k = (*slf.cast::<BoundCall>()).callee;
        if k < n {
            *slots.add(k)
        } else {
            std::ptr::null_mut()
        }
    }
}

/// Attribute reads: `__qualname__`, `__name__` and `__module__` are the callee's (what
/// `_PyObject_FunctionStr` reads for CPython's messages); anything else is the bound call's own.
unsafe extern "C-unwind" fn getattro(
    slf: *mut ffi::PyObject,
    name: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: `slf` is a bound call and `name` a str (CPython's contract for tp_getattro).
    unsafe {
        let target = callee(slf);
        if !target.is_null() {
            for own in [c"__qualname__", c"__name__", c"__module__"] {
                if ffi::PyUnicode_CompareWithASCIIString(name, own.as_ptr()) == 0 {
                    return ffi::PyObject_GetAttr(target, name);
                }
            }
        }
        ffi::PyObject_GenericGetAttr(slf, name)
    }
}

/// `str()`: the callee's (CPython's messages use it for a callee without `__qualname__`, such
/// as a `functools.partial` or an instance with `__call__`).
unsafe extern "C-unwind" fn str_(slf: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: `slf` is a bound call.
    unsafe {
        let target = callee(slf);
        if target.is_null() {
            return ffi::PyUnicode_FromString(c"<callweave bound call>".as_ptr());
        }
        ffi::PyObject_Str(target)
    }
}

unsafe extern "C-unwind" fn repr(slf: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: `slf` is a bound call.
    unsafe {
        let target = callee(slf);
        if target.is_null() {
            return ffi::PyUnicode_FromString(c"<callweave bound call>".as_ptr());
        }
        ffi::PyUnicode_FromFormat(c"<callweave bound call of %R>".as_ptr(), target)
    }
}

unsafe extern "C-unwind" fn traverse(
    slf: *mut ffi::PyObject,
    visit: ffi::visitproc,
    arg: *mut c_void,
) -> c_int {
    // SAFETY: `slf` is a bound call; its fields are NULL or valid objects.
    unsafe {
        let outer = (*slf.cast::<BoundCall>()).outer;
        let (slots, n) = items(slf);
        let objs = std::iter::once(outer).chain((0..n).map(|i| *slots.add(i)));
        super::gc::traverse(slf, objs, visit, arg)
    }
}

unsafe extern "C-unwind" fn clear(slf: *mut ffi::PyObject) -> c_int {
    // SAFETY: `slf` is a bound call; its fields are NULL or own a reference.
    unsafe {
        super::gc::clear(&mut (*slf.cast::<BoundCall>()).outer);
        let (slots, n) = items(slf);
        for i in 0..n {
            super::gc::clear(&mut *slots.add(i));
        }
    }
    0
}

unsafe extern "C-unwind" fn dealloc(slf: *mut ffi::PyObject) {
    // SAFETY: `slf` is a bound call (a GC heap type) whose reference count reached zero.
    unsafe { super::gc::dealloc(slf, clear) }
}

/// The types' tables must outlive them.
struct Defs {
    binder_members: [ffi::PyMemberDef; 2],
    bound_members: [ffi::PyMemberDef; 2],
}
// SAFETY: immutable after creation; CPython only reads them.
unsafe impl Sync for Defs {}
unsafe impl Send for Defs {}

static DEFS: OnceLock<Defs> = OnceLock::new();

fn vectorcall_member(offset: usize) -> [ffi::PyMemberDef; 2] {
    [
        ffi::PyMemberDef {
            name: c"__vectorcalloffset__".as_ptr(),
            type_code: ffi::Py_T_PYSSIZET,
            offset: offset as ffi::Py_ssize_t,
            flags: ffi::Py_READONLY,
            doc: std::ptr::null(),
        },
        ffi::PyMemberDef {
            name: std::ptr::null(),
            type_code: 0,
            offset: 0,
            flags: 0,
            doc: std::ptr::null(),
        },
    ]
}

fn defs() -> &'static Defs {
    DEFS.get_or_init(|| Defs {
        binder_members: vectorcall_member(std::mem::offset_of!(BinderObject, vectorcall)),
        bound_members: vectorcall_member(std::mem::offset_of!(BoundCall, vectorcall)),
    })
}

const BINDER_DOC: &CStr = c"bind_call(k, outer, /, *items)\n--\n\nA callable standing for items[k] (its __qualname__, __name__, __module__ and str()) that calls outer(*items, *args, **kwargs) when called with args and kwargs.";
const BOUND_DOC: &CStr = c"A call bound by callweave's bind_call; it stands for its callee.";

fn slot(slot: c_int, pfunc: *mut c_void) -> ffi::PyType_Slot {
    ffi::PyType_Slot { slot, pfunc }
}

/// Creates a type from `spec`, kept alive for the process.
fn new_type(py: Python<'_>, spec: &mut ffi::PyType_Spec) -> PyResult<*mut ffi::PyTypeObject> {
    // SAFETY: a valid spec whose tables are 'static or copied; the GIL is held.
    let ty = unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyType_FromSpec(spec))? };
    Ok(ty.into_ptr().cast())
}

/// Creates both types; returns the one instance of the binder.
fn make_binder(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    let d = defs();
    let mut bound_slots = [
        slot(ffi::Py_tp_call, ffi::PyVectorcall_Call as *mut c_void),
        slot(ffi::Py_tp_doc, BOUND_DOC.as_ptr().cast_mut().cast()),
        slot(
            ffi::Py_tp_members,
            d.bound_members.as_ptr().cast_mut().cast(),
        ),
        slot(ffi::Py_tp_traverse, traverse as *mut c_void),
        slot(ffi::Py_tp_clear, clear as *mut c_void),
        slot(ffi::Py_tp_dealloc, dealloc as *mut c_void),
        slot(ffi::Py_tp_getattro, getattro as *mut c_void),
        slot(ffi::Py_tp_str, str_ as *mut c_void),
        slot(ffi::Py_tp_repr, repr as *mut c_void),
        slot(0, std::ptr::null_mut()),
    ];
    let mut bound_spec = ffi::PyType_Spec {
        name: c"callweave._native.BoundCall".as_ptr(),
        basicsize: std::mem::size_of::<BoundCall>() as c_int,
        itemsize: std::mem::size_of::<*mut ffi::PyObject>() as c_int,
        flags: (ffi::Py_TPFLAGS_DEFAULT
            | ffi::Py_TPFLAGS_HAVE_GC
            | ffi::Py_TPFLAGS_HAVE_VECTORCALL
            | ffi::Py_TPFLAGS_DISALLOW_INSTANTIATION
            | ffi::Py_TPFLAGS_IMMUTABLETYPE) as std::ffi::c_uint,
        slots: bound_slots.as_mut_ptr(),
    };
    BOUND_TYPE.store(new_type(py, &mut bound_spec)?, Ordering::Release);

    let mut binder_slots = [
        slot(ffi::Py_tp_call, ffi::PyVectorcall_Call as *mut c_void),
        slot(ffi::Py_tp_doc, BINDER_DOC.as_ptr().cast_mut().cast()),
        slot(
            ffi::Py_tp_members,
            d.binder_members.as_ptr().cast_mut().cast(),
        ),
        slot(0, std::ptr::null_mut()),
    ];
    let mut binder_spec = ffi::PyType_Spec {
        name: c"callweave._native.Binder".as_ptr(),
        basicsize: std::mem::size_of::<BinderObject>() as c_int,
        itemsize: 0,
        flags: (ffi::Py_TPFLAGS_DEFAULT
            | ffi::Py_TPFLAGS_HAVE_VECTORCALL
            | ffi::Py_TPFLAGS_DISALLOW_INSTANTIATION
            | ffi::Py_TPFLAGS_IMMUTABLETYPE) as std::ffi::c_uint,
        slots: binder_slots.as_mut_ptr(),
    };
    let ty = new_type(py, &mut binder_spec)?;
    // SAFETY: `ty` is the binder type; a fresh instance is zeroed apart from its header and
    // gets its slot before it is handed out.
    unsafe {
        let obj = Bound::from_owned_ptr_or_err(py, ffi::PyType_GenericAlloc(ty, 0))?;
        (*obj.as_ptr().cast::<BinderObject>()).vectorcall = bind_call;
        Ok(obj)
    }
}

/// Adds `bind_call` and `BIND_NAME` (the engine's default name for it) to the module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("bind_call", make_binder(m.py())?)?;
    m.add("BIND_NAME", callweave_engine::DEFAULT_BIND)?;
    Ok(())
}
