//! The checksum of callweave's cache entries (`callweave._pycache`): CRC-32 computed natively.
//!
//! A warm import checks the CRC-32 of an entry's function-table blobs (about 1 byte in 2 of a
//! profiled module's entry); zlib's table-driven `crc32` took about 4% of such an import.
//! `crc32fast` uses the CPU's carry-less multiply where it has one, with the same result.

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};

/// The CRC-32 of the concatenation of `parts` (each `bytes`): the value
/// `zlib.crc32(parts[-1], ... zlib.crc32(parts[1], zlib.crc32(parts[0])))` gives, computed in
/// one call.
///
/// # Errors
///
/// `TypeError` when a part is not `bytes`.
#[pyfunction]
#[pyo3(signature = (*parts))]
pub(crate) fn crc32(parts: &Bound<'_, PyTuple>) -> PyResult<u32> {
    let mut hasher = crc32fast::Hasher::new();
    for part in parts.iter() {
        hasher.update(part.cast::<PyBytes>()?.as_bytes());
    }
    Ok(hasher.finalize())
}
