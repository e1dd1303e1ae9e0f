//! hearth patch: a bound on the text one value's `Display` may produce.
//!
//! Containers format their items recursively, and a template can build a list holding itself twice, sixty levels
//! deep (`{% set ns.l = [ns.l, ns.l] %}`): a small value whose text is 2^60 items long. Turned into a string
//! (`~`, `|string`, any filter taking a string) it was formatted into one `String` before fuel was charged, until
//! the allocation failed and the process aborted. The outermost object being formatted now writes through a
//! counter; past [`MAX_DISPLAY_BYTES`] the write fails (and the containers stop iterating), so the caller gets a
//! formatting error instead of an abort.

use std::cell::Cell;
use std::fmt;

use crate::value::DynObject;

/// Most bytes the formatting of one object (with everything inside it) may produce.
pub(crate) const MAX_DISPLAY_BYTES: usize = 64 << 20;

thread_local! {
    /// Bytes the object being formatted on this thread may still write; `None` when none is being formatted.
    static LEFT: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Whether the object being formatted on this thread has used its bytes up.
pub(crate) fn exhausted() -> bool {
    LEFT.with(|l| l.get() == Some(0))
}

/// Formats `x` into `f`, bounded when it is the outermost object being formatted on this thread.
pub(crate) fn render_object(f: &mut fmt::Formatter<'_>, x: &DynObject) -> fmt::Result {
    if LEFT.with(|l| l.get().is_some()) {
        return write!(f, "{x}");
    }
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            LEFT.with(|l| l.set(None));
        }
    }
    LEFT.with(|l| l.set(Some(MAX_DISPLAY_BYTES)));
    let _reset = Reset;
    let mut out = Counted { f };
    fmt::write(&mut out, format_args!("{x}"))
}

/// Forwards to the formatter while bytes are left.
struct Counted<'a, 'b> {
    f: &'a mut fmt::Formatter<'b>,
}

impl fmt::Write for Counted<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let left = LEFT.with(|l| l.get()).unwrap_or(0);
        if s.len() > left {
            LEFT.with(|l| l.set(Some(0)));
            return Err(fmt::Error);
        }
        LEFT.with(|l| l.set(Some(left - s.len())));
        self.f.write_str(s)
    }
}

/// `value.to_string()` that fails, instead of panicking in `to_string`, when a container's text passes the bound.
pub(crate) fn try_to_string(value: &crate::value::Value) -> Result<String, crate::error::Error> {
    let mut rv = String::new();
    fmt::write(&mut rv, format_args!("{value}")).map_err(|_| {
        crate::error::Error::new(
            crate::error::ErrorKind::InvalidOperation,
            "a value is too large to turn into a string",
        )
    })?;
    Ok(rv)
}
