//! Directory listings: `getdents64` into one buffer, names held in place when short.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::RawFd;

use rustix::io::Errno;

use super::borrow;

/// A file name, NUL-terminated, held in place when it is short (most are): a directory of
/// 200,000 files needs no allocation per name. It derefs to the [`CStr`] the calls take.
#[derive(Clone)]
pub enum Name {
    /// The bytes, their NUL, then zeros; and the length without the NUL.
    Short([u8; SHORT_NAME], u8),
    Long(CString),
}

/// Bytes a [`Name`] holds in place, its NUL included.
const SHORT_NAME: usize = 22;

impl Name {
    pub fn new(c: &CStr) -> Name {
        let bytes = c.to_bytes_with_nul();
        match u8::try_from(bytes.len() - 1) {
            Ok(len) if bytes.len() <= SHORT_NAME => {
                let mut short = [0u8; SHORT_NAME];
                short[..bytes.len()].copy_from_slice(bytes);
                Name::Short(short, len)
            }
            _ => Name::Long(c.to_owned()),
        }
    }

    /// The name without its NUL.
    pub fn as_bytes(&self) -> &[u8] {
        self.to_bytes()
    }
}

impl From<CString> for Name {
    fn from(c: CString) -> Name {
        match c.as_bytes().len() < SHORT_NAME {
            true => Name::new(&c),
            false => Name::Long(c),
        }
    }
}

impl std::ops::Deref for Name {
    type Target = CStr;

    fn deref(&self) -> &CStr {
        match self {
            // Made from a CStr: no NUL before the one at `len`.
            Name::Short(bytes, len) => {
                CStr::from_bytes_with_nul(&bytes[..=*len as usize]).unwrap_or_default()
            }
            Name::Long(c) => c,
        }
    }
}

impl AsRef<CStr> for Name {
    fn as_ref(&self) -> &CStr {
        self
    }
}

impl std::fmt::Debug for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&**self, f)
    }
}

/// One directory entry: its name and the type readdir reported (`DT_*`).
pub struct DirEntry {
    pub name: Name,
    pub d_type: u8,
    pub ino: u64,
}

/// Bytes of `getdents64` records read at a time: the buffer glibc's `opendir` gives readdir.
const DIR_BUFFER: usize = 32 * 1024;

/// Every entry of the directory open at `fd` except `.` and `..`, in the order readdir gives
/// them (the order GNU rm processes them in, for small directories).
pub fn read_dir(fd: RawFd) -> io::Result<Vec<DirEntry>> {
    let dir = borrow(&fd)?;
    // From the start, as `rewinddir` lists (an earlier listing left the offset at the end);
    // like it, a failed seek is not reported (the read that follows reports what is wrong).
    let _ = rustix::fs::seek(dir, rustix::fs::SeekFrom::Start(0));
    let mut buf = Vec::<u8>::with_capacity(DIR_BUFFER);
    let mut entries = rustix::fs::RawDir::new(dir, buf.spare_capacity_mut());
    let mut out = Vec::new();
    while let Some(entry) = entries.next() {
        let entry = match entry {
            Ok(entry) => entry,
            // Linux says ENOENT for a directory removed meanwhile: the end, as glibc's readdir
            // takes it (POSIX asks for that).
            Err(Errno::NOENT) => break,
            Err(e) => return Err(e.into()),
        };
        let name = entry.file_name();
        let bytes = name.to_bytes();
        if bytes == b"." || bytes == b".." {
            continue;
        }
        out.push(DirEntry {
            name: Name::new(name),
            d_type: d_type(entry.file_type()),
            ino: entry.ino(),
        });
    }
    Ok(out)
}

/// The `DT_*` value of a type readdir reported (rustix decodes it; an unknown one is
/// `DT_UNKNOWN`, as for a filesystem that reports none).
fn d_type(file_type: rustix::fs::FileType) -> u8 {
    use rustix::fs::FileType as T;
    match file_type {
        T::RegularFile => libc::DT_REG,
        T::Directory => libc::DT_DIR,
        T::Symlink => libc::DT_LNK,
        T::Fifo => libc::DT_FIFO,
        T::Socket => libc::DT_SOCK,
        T::CharacterDevice => libc::DT_CHR,
        T::BlockDevice => libc::DT_BLK,
        T::Unknown => libc::DT_UNKNOWN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_short_and_long_give_back_their_bytes() {
        for len in [0, 1, 20, 21, 22, 23, 255, 4000] {
            let bytes: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            let c = CString::new(bytes.clone()).expect("no NUL");
            let short = len < SHORT_NAME;
            for name in [Name::new(&c), Name::from(c.clone())] {
                assert_eq!(name.as_bytes(), &bytes[..], "length {len}");
                assert_eq!(&*name, c.as_c_str());
                assert_eq!(matches!(name, Name::Short(..)), short, "length {len}");
            }
        }
    }
}
