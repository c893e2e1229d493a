//! Gives this crate pyo3's `Py_3_*` cfgs (the CPython version it is built for), so that code
//! can use the C API that version prefers (`PyErr_GetRaisedException` on 3.12+).

fn main() {
    pyo3_build_config::use_pyo3_cfgs();
}
