//! Shared slot code of the runtime's garbage-collected static types (the trampoline, the
//! binder's bound calls).

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
