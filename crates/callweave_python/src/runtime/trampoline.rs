//! The wrap-mode trampoline: a small C-level callable that rewritten code calls in place of a
//! user's call wrapper, so that the wrapper's Python frame does not leak into what callees and
//! tracebacks see.
//!
//! `T(callee, POST..., *args, **kwargs)` (where `POST` is the site when the rule passes one):
//! - **frame-reading callees** (`warnings.warn`, logging's methods, `namedtuple`, `TypeVar`,
//!   `sys._getframe`, …, the table [`BYPASS`]) are called directly from here, without the
//!   wrapper: C adds no frame, so they see the user's function as their caller, exactly as
//!   without wrapping. The wrapper does not see those calls.
//! - every other call goes to the wrapper, `W(callee, POST..., *args, **kwargs)`, forwarded
//!   untouched with vectorcall (no tuple or dict is built). When it raises an exception that
//!   came out of the wrapper's own call of the callee (the wrapper's traceback entry sits at
//!   one of the instructions that call its first parameter, found by
//!   `callweave.decorators.callee_call_offsets`), the wrapper's entries are removed from the
//!   traceback, so it reads as if the user's function had called the callee itself. An error
//!   of the wrapper's own keeps them.
//!
//! The trampoline is an instance of a static type with its own vectorcall slot (no
//! `Py_EnterRecursiveCall` unit of its own, as the timer). Every entry point is
//! `extern "C-unwind"` and holds no value with a destructor across a call into Python (see the
//! unwinding invariant in `entry.rs`): at exit CPython may end a daemon thread inside such a
//! call with a forced unwind.

use std::cell::UnsafeCell;
use std::ffi::{c_int, c_void, CStr};
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::OnceLock;

use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::ffi;
use pyo3::prelude::*;

use super::cpython::{PyMethodObject, PyMethod_Type, PyTracebackObject, VectorcallUnwind};
use super::{stack, thread};

/// An instance of the trampoline type. All object fields are strong references (or NULL).
#[repr(C)]
struct TrampolineObject {
    ob_base: ffi::PyObject,
    vectorcall: VectorcallUnwind,
    /// The user's call wrapper.
    wrapper: *mut ffi::PyObject,
    /// The code object whose frame makes the wrapper's call of the callee, or NULL when unknown
    /// (then tracebacks are left alone).
    code: *mut ffi::PyObject,
    /// A frozenset of the byte offsets in `code` of the instructions that call the callee.
    offsets: *mut ffi::PyObject,
    /// How many arguments follow the callee before the call's own (1 with `pass_site`).
    post: usize,
}

/// When a callee of [`BYPASS`] skips the wrapper.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum When {
    Always,
    /// Only when called without arguments (`vars()` reads the caller's frame, `vars(x)` not).
    NoArgs,
    /// Only with at most one argument (`eval(src)` uses the caller's namespaces).
    AtMostOne,
}

use When::{Always, AtMostOne, NoArgs};

/// Callees that read their caller's frame (its module, position or namespaces), as
/// `(module, attribute path, when)`. Each is resolved once its module is in `sys.modules`
/// (never imported from here); bound methods match through their function.
const BYPASS: &[(&str, &str, When)] = &[
    ("builtins", "locals", NoArgs),
    ("builtins", "globals", NoArgs),
    ("builtins", "vars", NoArgs),
    ("builtins", "dir", NoArgs),
    ("builtins", "super", NoArgs),
    ("builtins", "eval", AtMostOne),
    ("builtins", "exec", AtMostOne),
    ("builtins", "breakpoint", Always),
    ("sys", "_getframe", Always),
    ("sys", "_getframemodulename", Always),
    ("warnings", "warn", Always),
    ("logging", "currentframe", Always),
    ("logging", "debug", Always),
    ("logging", "info", Always),
    ("logging", "warning", Always),
    ("logging", "warn", Always),
    ("logging", "error", Always),
    ("logging", "exception", Always),
    ("logging", "critical", Always),
    ("logging", "fatal", Always),
    ("logging", "log", Always),
    ("logging", "Logger.debug", Always),
    ("logging", "Logger.info", Always),
    ("logging", "Logger.warning", Always),
    ("logging", "Logger.warn", Always),
    ("logging", "Logger.error", Always),
    ("logging", "Logger.exception", Always),
    ("logging", "Logger.critical", Always),
    ("logging", "Logger.fatal", Always),
    ("logging", "Logger.log", Always),
    ("logging", "Logger.findCaller", Always),
    ("logging", "LoggerAdapter.debug", Always),
    ("logging", "LoggerAdapter.info", Always),
    ("logging", "LoggerAdapter.warning", Always),
    ("logging", "LoggerAdapter.warn", Always),
    ("logging", "LoggerAdapter.error", Always),
    ("logging", "LoggerAdapter.exception", Always),
    ("logging", "LoggerAdapter.critical", Always),
    ("logging", "LoggerAdapter.log", Always),
    ("collections", "namedtuple", Always),
    ("dataclasses", "make_dataclass", Always),
    ("typing", "NamedTuple", Always),
    ("typing", "TypedDict", Always),
    ("typing", "TypeVar", Always),
    ("typing", "ParamSpec", Always),
    ("typing", "TypeVarTuple", Always),
    ("typing", "NewType", Always),
    ("typing", "TypeAliasType", Always),
    ("typing_extensions", "NamedTuple", Always),
    ("typing_extensions", "TypedDict", Always),
    ("typing_extensions", "TypeVar", Always),
    ("typing_extensions", "ParamSpec", Always),
    ("typing_extensions", "TypeVarTuple", Always),
    ("typing_extensions", "NewType", Always),
    ("typing_extensions", "TypeAliasType", Always),
    ("inspect", "currentframe", Always),
    ("inspect", "stack", Always),
    ("traceback", "print_stack", Always),
    ("traceback", "format_stack", Always),
    ("traceback", "extract_stack", Always),
    ("gettext", "ngettext", Always),
    ("gettext", "dngettext", Always),
    ("gettext", "npgettext", Always),
    ("gettext", "dnpgettext", Always),
    ("gettext", "NullTranslations.ngettext", Always),
    ("gettext", "NullTranslations.npgettext", Always),
    ("gettext", "GNUTranslations.ngettext", Always),
    ("gettext", "GNUTranslations.npgettext", Always),
    ("pdb", "set_trace", Always),
    ("pdb", "Pdb.set_trace", Always),
    ("bdb", "Bdb.set_trace", Always),
    ("bdb", "set_trace", Always),
    ("doctest", "testfile", Always),
    ("doctest", "DocFileSuite", Always),
    ("importlib.resources", "files", Always),
    // Importing runs the module's body, whose import-time warnings (`stacklevel=2`) name the
    // first frame above importlib's: the importer, not the wrapper.
    ("importlib", "import_module", Always),
    ("builtins", "__import__", Always),
];

/// The resolved [`BYPASS`] table. Touched only with the GIL held, never across a call into
/// Python (see the concurrency invariant in `runtime/mod.rs`).
struct Registry {
    /// `(object address, when)`, sorted by address; the objects are kept alive in `held`.
    table: Vec<(usize, When)>,
    /// Strong references to the resolved objects (never released: they are module-level).
    held: Vec<*mut ffi::PyObject>,
    /// Which entries of [`BYPASS`] are resolved.
    done: Vec<bool>,
    /// `enum.EnumType` once resolved (its functional API reads the caller's module).
    enum_type: *mut ffi::PyObject,
    /// `len(sys.modules)` when unresolved entries were last looked for.
    modules_seen: isize,
    /// Whether every entry (and the enum type) is resolved.
    complete: bool,
}

struct GilCell(UnsafeCell<Option<Registry>>);
// SAFETY: only accessed with the GIL held (CPython builds with a GIL only, see `mod.rs`).
unsafe impl Sync for GilCell {}

static REGISTRY: GilCell = GilCell(UnsafeCell::new(None));

/// The registry, created on first use.
///
/// # Safety
/// The GIL must be held and no other reference to the registry may be alive.
unsafe fn registry() -> &'static mut Registry {
    // SAFETY: exclusive access under the GIL (caller's contract).
    let slot = unsafe { &mut *REGISTRY.0.get() };
    slot.get_or_insert_with(|| Registry {
        table: Vec::new(),
        held: Vec::new(),
        done: vec![false; BYPASS.len()],
        enum_type: std::ptr::null_mut(),
        modules_seen: -1,
        complete: false,
    })
}

/// `sys.modules[module]`'s attribute `path` (dotted: `Class.method`), borrowed, or NULL. Runs
/// no user code: module attributes come from the module's `__dict__`, class attributes only
/// from classes whose metaclass is `type` (a plain function in a class is returned as is).
///
/// # Safety
/// The GIL must be held.
unsafe fn lookup(modules: *mut ffi::PyObject, module: &CStr, path: &str) -> *mut ffi::PyObject {
    // SAFETY: GIL held; borrowed references that stay alive in sys.modules / the module dict.
    unsafe {
        let m = ffi::PyDict_GetItemString(modules, module.as_ptr());
        if m.is_null() || ffi::PyModule_Check(m) == 0 {
            return std::ptr::null_mut();
        }
        let mut obj = ffi::PyModule_GetDict(m);
        let mut first = true;
        for part in path.split('.') {
            let Ok(name) = std::ffi::CString::new(part) else {
                return std::ptr::null_mut();
            };
            obj = if first {
                first = false;
                ffi::PyDict_GetItemString(obj, name.as_ptr())
            } else {
                if ffi::Py_TYPE(obj) != std::ptr::addr_of_mut!(ffi::PyType_Type) {
                    return std::ptr::null_mut();
                }
                let dict = (*obj.cast::<ffi::PyTypeObject>()).tp_dict;
                if dict.is_null() {
                    return std::ptr::null_mut();
                }
                ffi::PyDict_GetItemString(dict, name.as_ptr())
            };
            if obj.is_null() {
                ffi::PyErr_Clear();
                return std::ptr::null_mut();
            }
        }
        obj
    }
}

/// Resolves the entries whose module has been imported since the last look.
///
/// # Safety
/// The GIL must be held; no reference to the registry may be alive.
#[inline(never)]
unsafe fn refresh() {
    // SAFETY: GIL held (caller's contract).
    let reg = unsafe { registry() };
    let modules = unsafe { ffi::PyImport_GetModuleDict() };
    if modules.is_null() {
        return;
    }
    let seen = unsafe { ffi::PyDict_Size(modules) };
    if seen == reg.modules_seen {
        return;
    }
    reg.modules_seen = seen;
    let mut added = false;
    for (i, &(module, path, when)) in BYPASS.iter().enumerate() {
        if reg.done[i] {
            continue;
        }
        let Ok(module) = std::ffi::CString::new(module) else {
            continue;
        };
        // SAFETY: GIL held.
        let obj = unsafe { lookup(modules, &module, path) };
        if obj.is_null() {
            continue;
        }
        reg.done[i] = true;
        // SAFETY: a borrowed reference made strong for the registry's lifetime.
        unsafe { ffi::Py_INCREF(obj) };
        reg.held.push(obj);
        reg.table.push((obj as usize, when));
        added = true;
    }
    if reg.enum_type.is_null() {
        // SAFETY: GIL held.
        let t = unsafe { lookup(modules, c"enum", "EnumType") };
        if !t.is_null() && unsafe { ffi::PyType_Check(t) } != 0 {
            unsafe { ffi::Py_INCREF(t) };
            reg.enum_type = t;
        }
    }
    if added {
        reg.table.sort_unstable_by_key(|&(addr, _)| addr);
        reg.table.dedup_by_key(|&mut (addr, _)| addr);
    }
    reg.complete = !reg.enum_type.is_null() && reg.done.iter().all(|&d| d);
}

/// Whether `callee`, called with `nargs` positional arguments and the keywords `kwnames`,
/// reads its caller's frame and must be called directly.
///
/// # Safety
/// The GIL must be held; `callee` and `kwnames` (or NULL) must be valid.
#[inline(always)]
unsafe fn bypasses(callee: *mut ffi::PyObject, nargs: isize, kwnames: *mut ffi::PyObject) -> bool {
    // SAFETY: GIL held; only reads of valid objects and of the registry.
    unsafe {
        if !(*REGISTRY.0.get()).as_ref().is_some_and(|r| r.complete) {
            refresh();
        }
        let Some(reg) = (*REGISTRY.0.get()).as_ref() else {
            return false;
        };
        let mut f = callee;
        if ffi::Py_TYPE(f) == std::ptr::addr_of_mut!(PyMethod_Type) {
            f = (*f.cast::<PyMethodObject>()).im_func;
        }
        let nkw = if kwnames.is_null() {
            0
        } else {
            ffi::PyTuple_GET_SIZE(kwnames)
        };
        if let Ok(i) = reg.table.binary_search_by_key(&(f as usize), |&(a, _)| a) {
            return match reg.table[i].1 {
                Always => true,
                NoArgs => nargs + nkw == 0,
                AtMostOne => nargs + nkw <= 1,
            };
        }
        // Enum's functional API, `Enum("Name", "A B")`: an enum class called with a name
        // and members (a lookup `Color(1)` has one argument and goes to the wrapper).
        !reg.enum_type.is_null()
            && nargs + nkw >= 2
            && ffi::PyType_Check(f) != 0
            && ffi::PyType_IsSubtype(ffi::Py_TYPE(f), reg.enum_type.cast()) != 0
    }
}

/// Removes the wrapper's entries from the traceback of the exception being raised, if the
/// wrapper's frame raised it at one of its calls of the callee.
///
/// # Safety
/// The GIL must be held and an exception set.
#[inline(never)]
unsafe fn strip_wrapper_frames(t: &TrampolineObject) {
    if t.code.is_null() || t.offsets.is_null() {
        return;
    }
    // SAFETY: GIL held; every pointer below is checked before use and reference counts are
    // balanced by hand (no Rust value with a destructor is held).
    unsafe {
        let mut typ = std::ptr::null_mut();
        let mut value = std::ptr::null_mut();
        let mut tb = std::ptr::null_mut();
        ffi::PyErr_Fetch(&mut typ, &mut value, &mut tb);
        ffi::PyErr_NormalizeException(&mut typ, &mut value, &mut tb);
        if !tb.is_null() && ffi::PyTraceBack_Check(tb) != 0 {
            let head = tb.cast::<PyTracebackObject>();
            let frame = (*head).tb_frame;
            let code = ffi::PyFrame_GetCode(frame.cast());
            let ours = code.cast::<ffi::PyObject>() == t.code;
            ffi::Py_XDECREF(code.cast());
            if ours {
                // The wrapper's frame may have several entries (an exception re-raised with
                // `raise e` adds one); strip them all if one is its call of the callee.
                let mut entry = head;
                let mut from_callee = false;
                let mut rest = std::ptr::null_mut();
                while !entry.is_null() && (*entry).tb_frame == frame {
                    let lasti = ffi::PyLong_FromLong(std::ffi::c_long::from((*entry).tb_lasti));
                    if !lasti.is_null() {
                        from_callee |= ffi::PySet_Contains(t.offsets, lasti) == 1;
                        ffi::Py_DECREF(lasti);
                    }
                    rest = (*entry).tb_next;
                    entry = rest.cast();
                }
                ffi::PyErr_Clear();
                if from_callee {
                    ffi::Py_XINCREF(rest);
                    ffi::Py_DECREF(tb);
                    tb = rest;
                    if !value.is_null() && ffi::PyExceptionInstance_Check(value) != 0 {
                        let new = if tb.is_null() { ffi::Py_None() } else { tb };
                        ffi::PyException_SetTraceback(value, new);
                        ffi::PyErr_Clear();
                    }
                }
            }
        }
        ffi::PyErr_Restore(typ, value, tb);
    }
}

/// `T(callee, POST..., *args, **kwargs)`.
unsafe extern "C-unwind" fn trampoline_call(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: usize,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython calls this with the GIL held, `args` holding the positional arguments
    // followed by the keyword values; `slf` is a trampoline.
    unsafe {
        let t = &*slf.cast::<TrampolineObject>();
        if thread::with(stack::exhausted) {
            PyErr::new::<pyo3::exceptions::PyRecursionError, _>(
                "maximum recursion depth exceeded (C stack) while calling a call wrapper",
            )
            .restore(Python::assume_attached());
            return std::ptr::null_mut();
        }
        let nargs = ffi::PyVectorcall_NARGS(nargsf);
        // Through nested trampolines (two wrap rules: `T1(T2, POST1, f, POST2, args)`) to the
        // real callee; `post` is the POST length of the trampoline whose callee is `callee`.
        let mut at = 0isize;
        let mut post = t.post as isize;
        let ty = TRAMPOLINE_TYPE.load(Ordering::Relaxed);
        if nargs > post {
            let mut callee = *args;
            while ffi::Py_TYPE(callee) == ty && at + 1 + post < nargs {
                at += 1 + post;
                post = (*callee.cast::<TrampolineObject>()).post as isize;
                callee = *args.add(at as usize);
            }
            let first = at + 1 + post;
            if first <= nargs
                && ffi::Py_TYPE(callee) != ty
                && bypasses(callee, nargs - first, kwnames)
            {
                // The slot before the arguments (a callee or a site) may be borrowed.
                return ffi::PyObject_Vectorcall(
                    callee,
                    args.add(first as usize),
                    (nargs - first) as usize | ffi::PY_VECTORCALL_ARGUMENTS_OFFSET,
                    kwnames,
                );
            }
        }
        let wrapper = t.wrapper;
        if wrapper.is_null() {
            PyErr::new::<PyRuntimeError, _>("callweave trampoline has no wrapper")
                .restore(Python::assume_attached());
            return std::ptr::null_mut();
        }
        // The trampoline holds the wrapper for the whole call (it is referenced by the
        // caller's globals or builtins, which outlive the call).
        // Each wrapped level re-enters the evaluation loop from here: on 3.12 give back the
        // unit of C recursion budget that the timer gives back too (see `stack.rs`).
        let unit = stack::give_unit();
        let result = ffi::PyObject_Vectorcall(wrapper, args, nargsf, kwnames);
        stack::take_unit(unit);
        if result.is_null() {
            strip_wrapper_frames(t);
        }
        result
    }
}

/// The trampoline type, created at module init.
static TRAMPOLINE_TYPE: AtomicPtr<ffi::PyTypeObject> = AtomicPtr::new(std::ptr::null_mut());

unsafe extern "C-unwind" fn traverse(
    slf: *mut ffi::PyObject,
    visit: ffi::visitproc,
    arg: *mut c_void,
) -> c_int {
    // SAFETY: `slf` is a trampoline; its fields are NULL or valid objects.
    unsafe {
        let t = &*slf.cast::<TrampolineObject>();
        super::gc::traverse(slf, [t.wrapper, t.code, t.offsets], visit, arg)
    }
}

unsafe extern "C-unwind" fn clear(slf: *mut ffi::PyObject) -> c_int {
    // SAFETY: `slf` is a trampoline; its fields are NULL or own a reference.
    unsafe {
        let t = &mut *slf.cast::<TrampolineObject>();
        for field in [&mut t.wrapper, &mut t.code, &mut t.offsets] {
            super::gc::clear(field);
        }
    }
    0
}

unsafe extern "C-unwind" fn dealloc(slf: *mut ffi::PyObject) {
    // SAFETY: `slf` is a trampoline (a GC heap type) whose reference count reached zero.
    unsafe { super::gc::dealloc(slf, clear) }
}

unsafe extern "C-unwind" fn repr(slf: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: `slf` is a trampoline.
    unsafe {
        let t = &*slf.cast::<TrampolineObject>();
        if t.wrapper.is_null() {
            return ffi::PyUnicode_FromString(c"<callweave trampoline>".as_ptr());
        }
        ffi::PyUnicode_FromFormat(c"<callweave trampoline of %R>".as_ptr(), t.wrapper)
    }
}

/// Attribute reads: the trampoline stands for the wrapper, so `__name__`, `__qualname__`,
/// `__module__` and `__doc__` are the wrapper's, and so is any attribute the trampoline lacks
/// (an outer wrapper of stacked rules sees the inner trampoline as its callee).
unsafe extern "C-unwind" fn getattro(
    slf: *mut ffi::PyObject,
    name: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: `slf` is a trampoline and `name` a str (CPython's contract for tp_getattro).
    unsafe {
        let wrapper = (*slf.cast::<TrampolineObject>()).wrapper;
        if wrapper.is_null() {
            return ffi::PyObject_GenericGetAttr(slf, name);
        }
        for own in [c"__name__", c"__qualname__", c"__module__", c"__doc__"] {
            if ffi::PyUnicode_CompareWithASCIIString(name, own.as_ptr()) == 0 {
                return ffi::PyObject_GetAttr(wrapper, name);
            }
        }
        let found = ffi::PyObject_GenericGetAttr(slf, name);
        if found.is_null() && ffi::PyErr_ExceptionMatches(ffi::PyExc_AttributeError) != 0 {
            ffi::PyErr_Clear();
            return ffi::PyObject_GetAttr(wrapper, name);
        }
        found
    }
}

/// The type's tables must outlive it.
struct Defs {
    members: [ffi::PyMemberDef; 4],
}
// SAFETY: immutable after creation; CPython only reads them.
unsafe impl Sync for Defs {}
unsafe impl Send for Defs {}

static DEFS: OnceLock<Defs> = OnceLock::new();

fn defs() -> &'static Defs {
    DEFS.get_or_init(|| Defs {
        members: [
            ffi::PyMemberDef {
                name: c"__vectorcalloffset__".as_ptr(),
                type_code: ffi::Py_T_PYSSIZET,
                offset: std::mem::offset_of!(TrampolineObject, vectorcall) as ffi::Py_ssize_t,
                flags: ffi::Py_READONLY,
                doc: std::ptr::null(),
            },
            ffi::PyMemberDef {
                name: c"__wrapped__".as_ptr(),
                type_code: ffi::Py_T_OBJECT_EX,
                offset: std::mem::offset_of!(TrampolineObject, wrapper) as ffi::Py_ssize_t,
                flags: ffi::Py_READONLY,
                doc: c"The user's call wrapper.".as_ptr(),
            },
            ffi::PyMemberDef {
                name: c"__callweave_post__".as_ptr(),
                type_code: ffi::Py_T_PYSSIZET,
                offset: std::mem::offset_of!(TrampolineObject, post) as ffi::Py_ssize_t,
                flags: ffi::Py_READONLY,
                doc: c"How many arguments follow the callee (1 when a site is passed).".as_ptr(),
            },
            ffi::PyMemberDef {
                name: std::ptr::null(),
                type_code: 0,
                offset: 0,
                flags: 0,
                doc: std::ptr::null(),
            },
        ],
    })
}

const DOC: &CStr =
    c"A call wrapper's C-level trampoline (see callweave.decorators.make_trampoline).";

fn make_type(py: Python<'_>) -> PyResult<()> {
    let d = defs();
    let mut slots = [
        ffi::PyType_Slot {
            slot: ffi::Py_tp_call,
            pfunc: ffi::PyVectorcall_Call as *mut c_void,
        },
        ffi::PyType_Slot {
            slot: ffi::Py_tp_doc,
            pfunc: DOC.as_ptr().cast_mut().cast(),
        },
        ffi::PyType_Slot {
            slot: ffi::Py_tp_members,
            pfunc: d.members.as_ptr().cast_mut().cast(),
        },
        ffi::PyType_Slot {
            slot: ffi::Py_tp_traverse,
            pfunc: traverse as *mut c_void,
        },
        ffi::PyType_Slot {
            slot: ffi::Py_tp_clear,
            pfunc: clear as *mut c_void,
        },
        ffi::PyType_Slot {
            slot: ffi::Py_tp_dealloc,
            pfunc: dealloc as *mut c_void,
        },
        ffi::PyType_Slot {
            slot: ffi::Py_tp_getattro,
            pfunc: getattro as *mut c_void,
        },
        ffi::PyType_Slot {
            slot: ffi::Py_tp_repr,
            pfunc: repr as *mut c_void,
        },
        ffi::PyType_Slot {
            slot: 0,
            pfunc: std::ptr::null_mut(),
        },
    ];
    let mut spec = ffi::PyType_Spec {
        name: c"callweave._native.Trampoline".as_ptr(),
        basicsize: std::mem::size_of::<TrampolineObject>() as c_int,
        itemsize: 0,
        flags: (ffi::Py_TPFLAGS_DEFAULT
            | ffi::Py_TPFLAGS_HAVE_GC
            | ffi::Py_TPFLAGS_HAVE_VECTORCALL
            | ffi::Py_TPFLAGS_DISALLOW_INSTANTIATION
            | ffi::Py_TPFLAGS_IMMUTABLETYPE) as std::ffi::c_uint,
        slots: slots.as_mut_ptr(),
    };
    // SAFETY: a valid spec whose tables are 'static or copied; the GIL is held. The type is
    // kept alive forever by the module and this pointer.
    let ty = unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyType_FromSpec(&mut spec))? };
    TRAMPOLINE_TYPE.store(ty.as_ptr().cast(), Ordering::Release);
    std::mem::forget(ty);
    Ok(())
}

/// `make_trampoline(wrapper, post, code, offsets)`: the trampoline of `wrapper`.
///
/// `post` is the number of arguments between the callee and the call's own (1 when the rule
/// passes the site); `code` and `offsets` say where the wrapper calls the callee (None and an
/// empty set when unknown: tracebacks are then left alone).
#[pyfunction]
#[pyo3(signature = (wrapper, post, code, offsets))]
pub(crate) fn make_trampoline<'py>(
    wrapper: &Bound<'py, PyAny>,
    post: usize,
    code: Option<&Bound<'py, PyAny>>,
    offsets: &Bound<'py, pyo3::types::PyFrozenSet>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = wrapper.py();
    if !wrapper.is_callable() {
        return Err(PyTypeError::new_err(format!(
            "a call wrapper must be callable, got {}",
            wrapper.repr()?
        )));
    }
    if post > 1 {
        return Err(PyTypeError::new_err(format!(
            "make_trampoline(): post must be 0 or 1, got {post}"
        )));
    }
    let ty = TRAMPOLINE_TYPE.load(Ordering::Acquire);
    if ty.is_null() {
        return Err(PyRuntimeError::new_err(
            "callweave's trampoline type is not ready",
        ));
    }
    // SAFETY: `ty` is the trampoline type; a fresh instance is zeroed apart from its header,
    // and its fields are filled before it is handed out.
    unsafe {
        let obj = Bound::from_owned_ptr_or_err(py, ffi::PyType_GenericAlloc(ty, 0))?;
        let t = &mut *obj.as_ptr().cast::<TrampolineObject>();
        t.vectorcall = trampoline_call;
        t.wrapper = wrapper.clone().into_ptr();
        t.code = code.map_or(std::ptr::null_mut(), |c| c.clone().into_ptr());
        t.offsets = offsets.clone().into_any().into_ptr();
        t.post = post;
        Ok(obj)
    }
}

/// Whether `obj` is a trampoline.
#[pyfunction]
pub(crate) fn is_trampoline(obj: &Bound<'_, PyAny>) -> bool {
    // SAFETY: reading the type pointer of a valid object.
    unsafe { ffi::Py_TYPE(obj.as_ptr()) == TRAMPOLINE_TYPE.load(Ordering::Relaxed) }
}

/// Creates the type and adds the trampoline's functions to the module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    make_type(m.py())?;
    m.add_function(wrap_pyfunction!(make_trampoline, m)?)?;
    m.add_function(wrap_pyfunction!(is_trampoline, m)?)?;
    Ok(())
}
