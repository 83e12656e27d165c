//! Looking up a group by name (`getgrnam_r`): for the control socket's group.

use std::ffi::CString;

/// The id of group `name`, or `None` when there is no such group (or the name
/// cannot be a group name).
pub fn group_id(name: &str) -> Option<u32> {
    let name = CString::new(name).ok()?;
    let mut buf = vec![0u8; 4096];
    loop {
        // SAFETY: every pointer points into storage that lives across the call:
        // `grp` and `result` on the stack, `buf` with its length.
        let mut grp: libc::group = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::group = std::ptr::null_mut();
        let rc = unsafe {
            libc::getgrnam_r(
                name.as_ptr(),
                &mut grp,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            )
        };
        if rc == libc::ERANGE && buf.len() < 1 << 20 {
            // A group with many members: a larger buffer.
            buf.resize(buf.len() * 4, 0);
            continue;
        }
        return (rc == 0 && !result.is_null()).then_some(grp.gr_gid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_root_and_not_a_group_that_does_not_exist() {
        assert_eq!(group_id("root"), Some(0));
        assert_eq!(group_id("no-such-group-contentdist-test"), None);
        assert_eq!(group_id("nul\0byte"), None);
    }
}
