//! trackyard's media engine, exposed to Python as `trackyard._engine`.
//!
//! Today the module only reports its version and build profile; the media issue
//! fills it with the UDP socket owner, ICE-lite, SRTP and the forwarding graph.
//! Python imports it in exactly one place: `trackyard/engine.py`.

use pyo3::prelude::*;

/// The engine crate's version, as built.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Whether this build has debug assertions on (a debug build is far slower on the packet path).
pub const fn is_debug_build() -> bool {
    cfg!(debug_assertions)
}

#[pyfunction]
fn version() -> &'static str {
    VERSION
}

#[pyfunction]
fn debug_build() -> bool {
    is_debug_build()
}

#[pymodule]
fn _engine(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(version, m)?)?;
    m.add_function(wrap_pyfunction!(debug_build, m)?)?;
    m.add("__version__", VERSION)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_is_semver() {
        let parts: Vec<&str> = VERSION.split('.').collect();
        assert_eq!(parts.len(), 3, "version {VERSION} is not x.y.z");
        assert!(parts.iter().all(|p| p.parse::<u32>().is_ok()));
    }
}
