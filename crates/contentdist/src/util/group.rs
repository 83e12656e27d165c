//! Looking up a group (`getgrnam_r`) or a user (`getpwnam_r`) by name: for the
//! control socket's group, and the users the agent's smbd must know.

use std::ffi::{CStr, CString};

/// Call a reentrant `get*nam_r` for `name` with a buffer that grows while the call
/// says it is too small (`ERANGE`: a group with many members); `call` returns the
/// call's result code and what it found.
fn lookup<T>(
    name: &str,
    mut call: impl FnMut(&CStr, &mut [u8]) -> (libc::c_int, Option<T>),
) -> Option<T> {
    let name = CString::new(name).ok()?;
    let mut buf = vec![0u8; 4096];
    loop {
        let (rc, found) = call(&name, &mut buf);
        if rc == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 4, 0);
            continue;
        }
        return if rc == 0 { found } else { None };
    }
}

/// The id of group `name`, or `None` when there is no such group (or the name
/// cannot be a group name).
pub fn group_id(name: &str) -> Option<u32> {
    lookup(name, |name, buf| {
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
        (rc, (!result.is_null()).then_some(grp.gr_gid))
    })
}

/// The user id and primary group id of user `name`, or `None` when there is no such
/// user (or the name cannot be a user name).
pub fn user_ids(name: &str) -> Option<(u32, u32)> {
    lookup(name, |name, buf| {
        // SAFETY: as in `group_id`: `pwd`, `result` and `buf` outlive the call.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = unsafe {
            libc::getpwnam_r(
                name.as_ptr(),
                &mut pwd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            )
        };
        (rc, (!result.is_null()).then_some((pwd.pw_uid, pwd.pw_gid)))
    })
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

    #[test]
    fn finds_the_root_user_and_not_a_user_that_does_not_exist() {
        assert_eq!(user_ids("root"), Some((0, 0)));
        assert_eq!(user_ids("no-such-user-contentdist-test"), None);
        assert_eq!(user_ids("nul\0byte"), None);
    }
}
