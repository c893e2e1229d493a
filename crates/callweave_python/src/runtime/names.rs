//! Callee names for custom callbacks, without keeping callees alive.
//!
//! A custom callback receives `CallTimes`: the invocation's call durations by callee name. The
//! record therefore keeps, per call, a name index instead of the callee (a bound method keeps
//! its object alive: `open(p).read()` in a loop would keep every file open until the
//! invocation ends). Names follow recompyle's rule (`__qualname__`, `__name__`, through
//! `__wrapped__`, else the type's name) and are computed once per distinct callee, then found
//! in a cache keyed by the callee's identity:
//! - a bound method by its `__func__` (a new method object is made at every `obj.m`);
//! - a builtin function or method by its method definition and the type of its `self` (whose
//!   qualname it uses), the type held by the entry;
//! - any other callee by its address, validated by a weak reference on every hit, so a new
//!   object at a dead one's address is never given the dead one's name.
//!
//! Callees that support no weak reference (rare: some C-level callables) get their name
//! computed at each call. Memory is bounded: the cache holds at most [`CACHE_CAP`] entries
//! (then it starts over); the name table holds each distinct name once, for the process's
//! lifetime (names are as many as the distinct callables the profiled code calls).
//!
//! Unwinding invariant (see `entry.rs`): the functions here call into Python (attribute
//! lookups, weak references, releasing references) only from stack frames that hold no value
//! with a destructor, and never while a borrow of the cache is alive.

use std::cell::UnsafeCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use pyo3::ffi;

use super::cpython::{PyMethodObject, PyMethod_Type};

/// Entries in the identity cache before it starts over.
pub(crate) const CACHE_CAP: usize = 8192;

/// How many `__wrapped__` links the name rule follows (recompyle's bound).
const MAX_WRAPPED: usize = 100;

/// CPython's weak reference object (`Include/cpython/weakrefobject.h`), stable across
/// 3.11–3.13: `wr_object` is the referent, or `None` once it has died.
#[repr(C)]
struct PyWeakReference {
    ob_base: ffi::PyObject,
    wr_object: *mut ffi::PyObject,
}

/// A multiplicative hash for pointer pairs (the std SipHash costs more than the lookup).
#[derive(Default)]
struct PtrHasher(u64);

impl Hasher for PtrHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// `(address, 0)` for an object checked by weak reference; `(method def, owner | 1)` for a
/// builtin (type addresses are aligned, so the tag keeps the two kinds apart).
type Key = (usize, usize);

struct Entry {
    /// Owned: the weak reference (objects) or the owner type, possibly NULL (builtins).
    guard: *mut ffi::PyObject,
    is_weak: bool,
    name: u32,
}

#[derive(Default)]
struct Names {
    cache: HashMap<Key, Entry, BuildHasherDefault<PtrHasher>>,
    /// Owned `str` objects, never released.
    names: Vec<*mut ffi::PyObject>,
    index: HashMap<Box<str>, u32>,
    /// Owned references waiting to be released outside any borrow.
    garbage: Vec<*mut ffi::PyObject>,
    /// Interned attribute names: `__qualname__`, `__name__`, `__wrapped__`.
    attrs: [usize; 3],
}

struct GilCell(UnsafeCell<Option<Names>>);
// SAFETY: touched only with the GIL held (the runtime's concurrency invariant, mod.rs), in
// short borrows that never call into Python.
unsafe impl Sync for GilCell {}

static NAMES: GilCell = GilCell(UnsafeCell::new(None));

/// Runs `f` on the table. The GIL must be held and `f` must not call into Python.
unsafe fn with<R>(f: impl FnOnce(&mut Names) -> R) -> R {
    // SAFETY: GIL held; no other borrow is alive (borrows never span Python calls).
    let slot = unsafe { &mut *NAMES.0.get() };
    f(slot.get_or_insert_with(Names::default))
}

/// Releases the references queued by cache evictions, one at a time with no borrow alive.
unsafe fn collect_garbage() {
    // SAFETY: GIL held; each borrow ends (`with` returns a plain pointer) before the release
    // runs.
    while let Some(obj) = unsafe { with(|n| n.garbage.pop()) } {
        // SAFETY: an owned reference queued by this module.
        unsafe { ffi::Py_DECREF(obj) };
    }
}

/// The name `str` with index `i` (borrowed; names live for the process), or NULL.
pub(crate) unsafe fn name(i: u32) -> *mut ffi::PyObject {
    // SAFETY: GIL held by the caller.
    unsafe {
        with(|n| {
            n.names
                .get(i as usize)
                .copied()
                .unwrap_or(std::ptr::null_mut())
        })
    }
}

/// The index of `callee`'s name, computed on the first sight of the callee. Returns Err with
/// the error set when computing it raised a `BaseException` that is not an `Exception`
/// (KeyboardInterrupt, SystemExit), which must propagate; other errors count as a missing
/// attribute.
///
/// # Safety
/// The GIL must be held; `callee` must be a valid object.
pub(crate) unsafe fn name_of(callee: *mut ffi::PyObject) -> Result<u32, ()> {
    // SAFETY: valid objects; the method object layouts are CPython's (checked by type).
    let (key, target, owner) = unsafe { classify(callee) };
    // SAFETY: GIL held; the closure does not call into Python.
    let hit = unsafe {
        with(|n| {
            let e = n.cache.get(&key)?;
            // SAFETY: the guard of a weak entry is a live weak reference object.
            if !e.is_weak || (*e.guard.cast::<PyWeakReference>()).wr_object == target {
                return Some(e.name);
            }
            // The referent died and another object now lives at its address.
            let stale = n.cache.remove(&key)?;
            n.garbage.push(stale.guard);
            None
        })
    };
    if let Some(i) = hit {
        return Ok(i);
    }
    // SAFETY: GIL held; no borrow alive while Python code runs.
    unsafe {
        collect_garbage();
        let name = compute_name(target)?;
        let index = intern(name);
        ffi::Py_DECREF(name);
        let (guard, is_weak) = match key.1 {
            0 => {
                let weak = ffi::PyWeakref_NewRef(target, std::ptr::null_mut());
                if weak.is_null() {
                    // No weak references for this type: the name is not cached.
                    ffi::PyErr_Clear();
                    return Ok(index);
                }
                (weak, true)
            }
            _ => {
                if !owner.is_null() {
                    ffi::Py_INCREF(owner);
                }
                (owner, false)
            }
        };
        with(|n| {
            if n.cache.len() >= CACHE_CAP {
                let old = std::mem::take(&mut n.cache);
                n.garbage
                    .extend(old.into_values().map(|e| e.guard).filter(|g| !g.is_null()));
            }
            let entry = Entry {
                guard,
                is_weak,
                name: index,
            };
            if let Some(old) = n.cache.insert(key, entry) {
                if !old.guard.is_null() {
                    n.garbage.push(old.guard);
                }
            }
        });
        collect_garbage();
        Ok(index)
    }
}

/// The cache key of `callee`, the object whose name it has, and the owner type to hold (for
/// builtins; NULL otherwise).
unsafe fn classify(callee: *mut ffi::PyObject) -> (Key, *mut ffi::PyObject, *mut ffi::PyObject) {
    // SAFETY: valid object pointers; the casts follow exact type checks.
    unsafe {
        let ty = ffi::Py_TYPE(callee);
        if ty == std::ptr::addr_of_mut!(PyMethod_Type) {
            let func = (*callee.cast::<PyMethodObject>()).im_func;
            return ((func as usize, 0), func, std::ptr::null_mut());
        }
        if ty == std::ptr::addr_of_mut!(ffi::PyCFunction_Type)
            || ty == std::ptr::addr_of_mut!(ffi::PyCMethod_Type)
        {
            let f = &*callee.cast::<ffi::PyCFunctionObject>();
            let slf = f.m_self;
            // The qualname is the method def's name, prefixed by the qualname of `self`'s
            // type (or of `self` when it is a type) unless `self` is NULL or a module.
            let owner: *mut ffi::PyObject = if slf.is_null() || ffi::PyModule_Check(slf) != 0 {
                std::ptr::null_mut()
            } else if ffi::PyType_Check(slf) != 0 {
                slf
            } else {
                ffi::Py_TYPE(slf).cast()
            };
            return ((f.m_ml as usize, owner as usize | 1), callee, owner);
        }
        ((callee as usize, 0), callee, std::ptr::null_mut())
    }
}

/// Clears the current error if it is an `Exception`; false (error kept) for the others.
unsafe fn clear_exception() -> bool {
    // SAFETY: GIL held, an error is set.
    unsafe {
        if ffi::PyErr_ExceptionMatches(ffi::PyExc_Exception) != 0 {
            ffi::PyErr_Clear();
            true
        } else {
            false
        }
    }
}

fn attr_names() -> [*mut ffi::PyObject; 3] {
    // SAFETY: GIL held by every caller; the borrow does not call into Python.
    let cached = unsafe { with(|n| n.attrs) };
    if cached[0] != 0 {
        return cached.map(|p| p as *mut ffi::PyObject);
    }
    let make = |s: &std::ffi::CStr| {
        // SAFETY: GIL held; the interned string is kept for the process's lifetime.
        unsafe { ffi::PyUnicode_InternFromString(s.as_ptr()) as usize }
    };
    let made = [
        make(c"__qualname__"),
        make(c"__name__"),
        make(c"__wrapped__"),
    ];
    if made.contains(&0) {
        // SAFETY: GIL held; an allocation failure is reported by returning NULLs below.
        unsafe { ffi::PyErr_Clear() };
        return [std::ptr::null_mut(); 3];
    }
    // SAFETY: GIL held; no Python code runs in the closure.
    unsafe { with(|n| n.attrs = made) };
    made.map(|p| p as *mut ffi::PyObject)
}

/// recompyle's `callable_name`: a new reference to a `str`.
unsafe fn compute_name(obj: *mut ffi::PyObject) -> Result<*mut ffi::PyObject, ()> {
    let [qualname, name, wrapped] = attr_names();
    // SAFETY: GIL held; every reference taken here is released on every path.
    unsafe {
        if qualname.is_null() {
            return Ok(ffi::PyUnicode_FromString(c"?".as_ptr()));
        }
        let mut cur = obj;
        ffi::Py_INCREF(cur);
        let mut seen = 0;
        loop {
            for attr in [qualname, name] {
                let v = ffi::PyObject_GetAttr(cur, attr);
                if v.is_null() {
                    if !clear_exception() {
                        ffi::Py_DECREF(cur);
                        return Err(());
                    }
                } else if ffi::PyUnicode_Check(v) != 0 {
                    ffi::Py_DECREF(cur);
                    return Ok(v);
                } else {
                    ffi::Py_DECREF(v);
                }
            }
            let next = ffi::PyObject_GetAttr(cur, wrapped);
            if next.is_null() && !clear_exception() {
                ffi::Py_DECREF(cur);
                return Err(());
            }
            if next.is_null() || next == ffi::Py_None() || seen >= MAX_WRAPPED {
                if !next.is_null() {
                    ffi::Py_DECREF(next);
                }
                let n = ffi::PyType_GetName(ffi::Py_TYPE(cur));
                ffi::Py_DECREF(cur);
                if n.is_null() {
                    ffi::PyErr_Clear();
                    return Ok(ffi::PyUnicode_FromString(c"?".as_ptr()));
                }
                return Ok(n);
            }
            ffi::Py_DECREF(cur);
            cur = next;
            seen += 1;
        }
    }
}

/// The index of `name` (a `str`) in the name table, adding it if new.
unsafe fn intern(name: *mut ffi::PyObject) -> u32 {
    if name.is_null() {
        // SAFETY: GIL held; an allocation failure leaves an error to clear.
        unsafe { ffi::PyErr_Clear() };
        return u32::MAX;
    }
    let mut size: ffi::Py_ssize_t = 0;
    // SAFETY: `name` is a str; the buffer lives as long as it.
    let utf8 = unsafe { ffi::PyUnicode_AsUTF8AndSize(name, &mut size) };
    let text: Option<Box<str>> = if utf8.is_null() {
        // SAFETY: GIL held (lone surrogates: kept without deduplication).
        unsafe { ffi::PyErr_Clear() };
        None
    } else {
        // SAFETY: CPython returns `size` bytes of valid UTF-8.
        let bytes = unsafe { std::slice::from_raw_parts(utf8.cast::<u8>(), size as usize) };
        std::str::from_utf8(bytes).ok().map(Box::from)
    };
    // SAFETY: GIL held; the closure does not call into Python (INCREF runs no code).
    unsafe {
        with(|n| {
            if let Some(i) = text.as_ref().and_then(|t| n.index.get(t)) {
                return *i;
            }
            let Ok(i) = u32::try_from(n.names.len()) else {
                return u32::MAX;
            };
            ffi::Py_INCREF(name);
            n.names.push(name);
            if let Some(t) = text {
                n.index.insert(t, i);
            }
            i
        })
    }
}
