//! What this executable *is*, by content rather than by file: the same program copied to another
//! path or another machine has another inode and modification time, but the same bytes.
//!
//! The cheap answer is the GNU build-id that the linker writes into the program (a hash of its
//! contents, in an ELF note the loader maps with the program): read from memory, it costs a few
//! µs. A program linked without one is hashed whole instead (SHA-256 of `/proc/self/exe`:
//! some 15 ms for a 20 MB binary, once).

use std::io;

/// How [`content_id`] identified this executable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IdKind {
    /// The GNU build-id note.
    BuildId,
    /// SHA-256 of the file.
    Sha256,
}

/// This executable's identity by content: its GNU build-id when it has one, otherwise the
/// SHA-256 of the file it was started from.
///
/// # Errors
/// The file could not be read (for the hash).
pub(crate) fn content_id() -> io::Result<(IdKind, Vec<u8>)> {
    if let Some(id) = build_id() {
        return Ok((IdKind::BuildId, id));
    }
    use sha2::Digest;
    let bytes = std::fs::read("/proc/self/exe")?;
    Ok((IdKind::Sha256, sha2::Sha256::digest(&bytes).to_vec()))
}

/// The GNU build-id of the main program (not of a shared library), from its loaded `PT_NOTE`
/// segments; `None` if it has none.
pub(crate) fn build_id() -> Option<Vec<u8>> {
    let mut found: Option<Vec<u8>> = None;
    // SAFETY: `first_object_build_id` has the signature `dl_iterate_phdr` expects, and
    // `found` outlives the call, which hands it back as `data` only during the call.
    unsafe {
        libc::dl_iterate_phdr(
            Some(first_object_build_id),
            (&mut found as *mut Option<Vec<u8>>).cast(),
        )
    };
    found
}

/// The note type of a GNU build-id (`NT_GNU_BUILD_ID`).
const NT_GNU_BUILD_ID: u32 = 3;

/// `dl_iterate_phdr`'s callback: looks at the first object only (the main program, by the
/// function's contract), and stores its build-id in `*data`.
unsafe extern "C" fn first_object_build_id(
    info: *mut libc::dl_phdr_info,
    _size: libc::size_t,
    data: *mut libc::c_void,
) -> libc::c_int {
    // SAFETY: `dl_iterate_phdr` passes a valid `info` for the duration of the call, and
    // `data` is the `Option<Vec<u8>>` that `build_id` handed it.
    let (info, found) = unsafe { (&*info, &mut *data.cast::<Option<Vec<u8>>>()) };
    for i in 0..info.dlpi_phnum as usize {
        // SAFETY: `dlpi_phdr` points to `dlpi_phnum` program headers of a loaded object.
        let header = unsafe { &*info.dlpi_phdr.add(i) };
        if header.p_type != libc::PT_NOTE {
            continue;
        }
        let start = info.dlpi_addr as usize + header.p_vaddr as usize;
        // SAFETY: a `PT_NOTE` segment of a loaded object is mapped readable, `p_memsz` bytes
        // from its load address, for as long as the object stays loaded (the main program:
        // for ever).
        let notes =
            unsafe { std::slice::from_raw_parts(start as *const u8, header.p_memsz as usize) };
        if let Some(id) = gnu_build_id(notes) {
            *found = Some(id.to_vec());
            break;
        }
    }
    // Non-zero: stop after the first object.
    1
}

/// The GNU build-id among ELF notes laid out back to back (each a 12-byte header, a name and
/// a description, both padded to 4 bytes).
fn gnu_build_id(mut notes: &[u8]) -> Option<&[u8]> {
    let word = |b: &[u8], at: usize| -> Option<u32> {
        Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
    };
    while notes.len() >= 12 {
        let name_len = word(notes, 0)? as usize;
        let desc_len = word(notes, 4)? as usize;
        let kind = word(notes, 8)?;
        let desc_at = 12 + name_len.next_multiple_of(4);
        let next = desc_at + desc_len.next_multiple_of(4);
        let name = notes.get(12..12 + name_len)?;
        let desc = notes.get(desc_at..desc_at + desc_len)?;
        if kind == NT_GNU_BUILD_ID && name == b"GNU\0" {
            return Some(desc);
        }
        notes = notes.get(next..)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(name: &[u8], kind: u32, desc: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend((name.len() as u32).to_ne_bytes());
        v.extend((desc.len() as u32).to_ne_bytes());
        v.extend(kind.to_ne_bytes());
        v.extend(name);
        v.resize(v.len().next_multiple_of(4), 0);
        v.extend(desc);
        v.resize(v.len().next_multiple_of(4), 0);
        v
    }

    #[test]
    fn the_build_id_is_found_among_other_notes() {
        let mut notes = note(b"GNU\0", 1, &[0; 16]); // an ABI tag
        notes.extend(note(b"Go\0", NT_GNU_BUILD_ID, &[9; 5])); // another vendor's
        notes.extend(note(b"GNU\0", NT_GNU_BUILD_ID, &[7; 20]));
        assert_eq!(gnu_build_id(&notes), Some(&[7u8; 20][..]));
        assert_eq!(gnu_build_id(&notes[..notes.len() - 3]), None, "cut short");
        assert_eq!(gnu_build_id(&[]), None);
    }

    #[test]
    fn this_program_has_one_identity_by_content() {
        let (kind, id) = content_id().unwrap();
        assert!(!id.is_empty());
        assert_eq!(content_id().unwrap(), (kind, id.clone()), "stable");
        if kind == IdKind::BuildId {
            // The linker's build-id is a hash of the contents: it is in the file itself.
            let file = std::fs::read("/proc/self/exe").unwrap();
            assert!(file.windows(id.len()).any(|w| w == id));
        }
    }
}
