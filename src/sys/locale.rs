//! The C library's locale, which rustix and std leave alone: what the user's locale says, and
//! `fnmatch`. libc behind one small safe wrapper each.

use std::ffi::CStr;

/// `setlocale(category, "")` (the user's locale, from the environment), then
/// `nl_langinfo(item)`: whether the locale could be loaded, and the item's text (empty where
/// there is none). Only for the `OnceLock`s that read the locale once (`quote`, `walk`).
pub fn locale_info(category: libc::c_int, item: libc::nl_item) -> (bool, Vec<u8>) {
    // SAFETY: the string given to setlocale is NUL-terminated; nl_langinfo returns null or a
    // NUL-terminated string in the data of the category just loaded, copied out at once.
    // setlocale is called nowhere else, and the two callers (`quote`, `walk`) load different
    // categories (LC_CTYPE, LC_MESSAGES), each once (its OnceLock): nothing replaces that
    // data while it is copied.
    unsafe {
        let loaded = !libc::setlocale(category, c"".as_ptr()).is_null();
        let text = libc::nl_langinfo(item);
        let text = if text.is_null() {
            Vec::new()
        } else {
            CStr::from_ptr(text).to_bytes().to_vec()
        };
        (loaded, text)
    }
}

/// `fnmatch(3)`: whether `name` matches the shell pattern `pattern` under `flags`.
pub fn fnmatch(pattern: &CStr, name: &CStr, flags: libc::c_int) -> bool {
    // SAFETY: both are NUL-terminated strings that outlive the call; fnmatch only reads them.
    unsafe { libc::fnmatch(pattern.as_ptr(), name.as_ptr(), flags) == 0 }
}
