//! Names of shared-memory objects in `/dev/shm`, given and taken by object identity.
//!
//! A named segment is created without a name first (`O_TMPFILE` in `/dev/shm`) and named
//! afterwards with `linkat`, which fails like `O_EXCL` if the name is taken. That order lets the
//! creator tell its tracker about the name *before* the name exists, so no crash of the creator
//! can leave a name the tracker does not know. Names are removed only if they still refer to the
//! object that was created (`fd::ObjectId`), so a late clean-up never removes a segment that
//! someone else created under the same name in the meantime.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use rustix::fs::{AtFlags, CWD, Mode, OFlags};
use rustix::io::Errno;

use super::fd::ObjectId;

/// Where POSIX shared-memory objects live on Linux (glibc's `shm_open` and rustix's use it).
const SHM_DIR: &str = "/dev/shm";

/// `/dev/shm/<name>` for a name already checked to be one path component.
fn path_of(name: &str) -> io::Result<String> {
    if name.is_empty() || name.contains(['/', '\0']) || name == "." || name == ".." {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid shared memory name {name:?}"),
        ));
    }
    Ok(format!("{SHM_DIR}/{name}"))
}

/// A new zero-filled memory object of `len` bytes in `/dev/shm` that has no name yet.
///
/// # Errors
/// Besides the usual ones, `Unsupported`-like errors (`EOPNOTSUPP`, `EISDIR`, `EINVAL`) when
/// the kernel or file system has no `O_TMPFILE`; callers fall back to `shm_open`.
pub(crate) fn create_unnamed(len: usize) -> io::Result<OwnedFd> {
    let fd = rustix::fs::open(
        SHM_DIR,
        OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC,
        Mode::RUSR | Mode::WUSR,
    )?;
    rustix::fs::ftruncate(&fd, len as u64)?;
    Ok(fd)
}

/// Gives the unnamed object behind `fd` (from [`create_unnamed`]) the name `name`, atomically.
///
/// # Errors
/// `AlreadyExists` if the name is taken; `NotFound` if `/proc` is not mounted (the link goes
/// through `/proc/self/fd`, the one way that needs no privilege).
pub(crate) fn link_name(fd: BorrowedFd<'_>, name: &str) -> io::Result<()> {
    let path = path_of(name)?;
    let source = format!("/proc/self/fd/{}", fd.as_raw_fd());
    rustix::fs::linkat(
        CWD,
        source.as_str(),
        CWD,
        path.as_str(),
        AtFlags::SYMLINK_FOLLOW,
    )?;
    Ok(())
}

/// Removes `name` if it still refers to the object `id`. Returns whether it did; `false` when
/// the name is gone or now belongs to another object (which is left alone).
pub(crate) fn unlink_if(name: &str, id: ObjectId) -> io::Result<bool> {
    let path = path_of(name)?;
    let st = match rustix::fs::stat(path.as_str()) {
        Ok(st) => st,
        Err(Errno::NOENT) => return Ok(false),
        Err(e) => return Err(e.into()),
    };
    if st.st_dev != id.dev || st.st_ino != id.ino {
        return Ok(false);
    }
    // Between the stat and the unlink another process could replace the name; only a process
    // that first removed *our* name could do that, and the window is a few instructions.
    match rustix::fs::unlink(path.as_str()) {
        Ok(()) => Ok(true),
        Err(Errno::NOENT) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::fd::object_id;
    use std::os::fd::AsFd;

    #[test]
    fn an_unnamed_object_gets_its_name_once_and_is_removed_only_by_identity() {
        let name = format!("mp-sys-shm-name-{}", std::process::id());
        let fd = create_unnamed(100).unwrap();
        let id = object_id(fd.as_fd()).unwrap();
        assert!(!std::path::Path::new(&path_of(&name).unwrap()).exists());
        link_name(fd.as_fd(), &name).unwrap();
        assert!(std::path::Path::new(&path_of(&name).unwrap()).exists());

        let other = create_unnamed(100).unwrap();
        let err = link_name(other.as_fd(), &name).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        let other_id = object_id(other.as_fd()).unwrap();
        assert_ne!(id, other_id);
        assert!(!unlink_if(&name, other_id).unwrap(), "not ours to remove");
        assert!(unlink_if(&name, id).unwrap());
        assert!(!unlink_if(&name, id).unwrap(), "already gone");
    }

    #[test]
    fn names_that_are_not_one_component_are_refused() {
        for bad in ["", ".", "..", "a/b", "a\0b"] {
            assert_eq!(
                path_of(bad).unwrap_err().kind(),
                io::ErrorKind::InvalidInput
            );
        }
    }
}
