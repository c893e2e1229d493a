//! CPython object layouts and symbols the runtime reads that `pyo3::ffi` does not expose. Each
//! layout is the same in CPython 3.11, 3.12 and 3.13 (the versions callweave builds for).

use std::ffi::c_int;

use pyo3::ffi;

extern "C" {
    /// The bound-method type (`types.MethodType`).
    pub(crate) static mut PyMethod_Type: ffi::PyTypeObject;
}

/// A bound method (`Include/cpython/classobject.h`).
#[repr(C)]
pub(crate) struct PyMethodObject {
    pub(crate) ob_base: ffi::PyObject,
    pub(crate) im_func: *mut ffi::PyObject,
    pub(crate) im_self: *mut ffi::PyObject,
}

/// A traceback entry (`Include/cpython/traceback.h`).
#[repr(C)]
pub(crate) struct PyTracebackObject {
    pub(crate) ob_base: ffi::PyObject,
    pub(crate) tb_next: *mut ffi::PyObject,
    pub(crate) tb_frame: *mut ffi::PyObject,
    pub(crate) tb_lasti: c_int,
    pub(crate) tb_lineno: c_int,
}

/// A vectorcall entry point that a forced unwind (a daemon thread ended at exit) may cross.
pub(crate) type VectorcallUnwind = unsafe extern "C-unwind" fn(
    *mut ffi::PyObject,
    *const *mut ffi::PyObject,
    usize,
    *mut ffi::PyObject,
) -> *mut ffi::PyObject;
