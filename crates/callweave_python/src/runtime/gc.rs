//! Shared slot code (`tp_traverse`, `tp_clear`, `tp_dealloc`) of the runtime's garbage-collected
//! heap types: the trampoline and the binder's bound calls.

use std::ffi::c_void;

use pyo3::ffi;

/// A type's `tp_clear`.
pub(crate) type ClearFn = unsafe extern "C-unwind" fn(*mut ffi::PyObject) -> std::ffi::c_int;

/// `tp_dealloc` of a GC-tracked instance of a heap type: untracks it, runs `clear` (which drops
/// its references, possibly running Python code), frees it with the type's `tp_free` and
/// releases the reference every heap-type instance holds on its type.
///
/// # Safety
/// `slf` must be an instance of a heap type with `Py_TPFLAGS_HAVE_GC` whose reference count
/// reached zero, and `clear` that type's `tp_clear`.
pub(crate) unsafe fn dealloc(slf: *mut ffi::PyObject, clear: ClearFn) {
    // SAFETY: the caller's contract.
    unsafe {
        ffi::PyObject_GC_UnTrack(slf.cast());
        clear(slf);
        let tp = ffi::Py_TYPE(slf);
        let free = ffi::PyType_GetSlot(tp, ffi::Py_tp_free);
        if !free.is_null() {
            let free: ffi::freefunc = std::mem::transmute::<*mut c_void, ffi::freefunc>(free);
            free(slf.cast());
        }
        ffi::Py_DECREF(tp.cast());
    }
}

/// The body of a heap type's `tp_traverse`: visits each non-NULL object of `objs`, then the
/// instance's type (heap-type instances own a reference to it); stops at the first non-zero.
///
/// # Safety
/// `slf` must be a live instance and every non-NULL pointer of `objs` a valid object.
pub(crate) unsafe fn traverse(
    slf: *mut ffi::PyObject,
    objs: impl IntoIterator<Item = *mut ffi::PyObject>,
    visit: ffi::visitproc,
    arg: *mut c_void,
) -> std::ffi::c_int {
    // SAFETY: the caller's contract.
    unsafe {
        for obj in objs {
            if !obj.is_null() {
                let r = visit(obj, arg);
                if r != 0 {
                    return r;
                }
            }
        }
        visit(ffi::Py_TYPE(slf).cast(), arg)
    }
}

/// Sets `field` to NULL, then drops the reference it held (which may run Python code, so the
/// object is never seen half-cleared).
///
/// # Safety
/// `field` must be NULL or own a reference to a valid object; the GIL must be held.
pub(crate) unsafe fn clear(field: &mut *mut ffi::PyObject) {
    let old = std::mem::replace(field, std::ptr::null_mut());
    // SAFETY: the caller's contract.
    unsafe { ffi::Py_XDECREF(old) };
}
