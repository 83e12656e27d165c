//! The election socket's receive side, with the kernel's own count of datagrams it
//! dropped. Under a flood the socket's receive queue fills and the kernel drops
//! datagrams before anyone reads them (11–12% in the hostile test): valid election
//! messages are lost the same way, unseen. So the socket asks for `SO_RXQ_OVFL`,
//! the kernel then attaches its cumulative drop count to each datagram, and the
//! receive buffer is sized deliberately rather than left at the system default.

use std::io;
use std::mem::{size_of, size_of_val, MaybeUninit};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;

use socket2::Socket;
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// One datagram read.
pub(super) struct Datagram {
    /// Its length in the buffer (cut to the buffer's size if longer).
    pub len: usize,
    /// Its sender.
    pub from: Option<SocketAddr>,
    /// The socket's cumulative drop count when it was queued, if the kernel has
    /// dropped any (it attaches none before the first drop).
    pub drops: Option<u32>,
}

/// Ask the kernel to attach its drop count to every datagram (`SO_RXQ_OVFL`).
pub(super) fn enable_drop_count(sock: &Socket) -> io::Result<()> {
    set_int(sock, libc::SO_RXQ_OVFL, 1)
}

/// Ask for a receive buffer of `bytes` and return what the kernel granted, as it
/// reports it (twice the size asked for: the kernel counts its bookkeeping too).
/// The kernel caps the request at `net.core.rmem_max`; a privileged agent
/// (`CAP_NET_ADMIN`) is granted the size anyway (`SO_RCVBUFFORCE`).
pub(super) fn size_recv_buffer(sock: &Socket, bytes: usize) -> io::Result<usize> {
    sock.set_recv_buffer_size(bytes)?;
    let granted = sock.recv_buffer_size()?;
    if granted < bytes.saturating_mul(2) {
        let asked = i32::try_from(bytes).unwrap_or(i32::MAX);
        // Not privileged: keep what `SO_RCVBUF` gave.
        if set_int(sock, libc::SO_RCVBUFFORCE, asked).is_ok() {
            return sock.recv_buffer_size();
        }
    }
    Ok(granted)
}

fn set_int(sock: &Socket, option: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: a valid descriptor, and a pointer to an int with its length.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Wait for the next datagram and read it into `buf`.
pub(super) async fn recv(sock: &UdpSocket, buf: &mut [u8]) -> io::Result<Datagram> {
    sock.async_io(Interest::READABLE, || recvmsg(sock.as_raw_fd(), buf))
        .await
}

/// Read the next datagram already queued, without waiting (`WouldBlock` when the
/// queue is empty).
pub(super) fn try_recv(sock: &UdpSocket, buf: &mut [u8]) -> io::Result<Datagram> {
    sock.try_io(Interest::READABLE, || recvmsg(sock.as_raw_fd(), buf))
}

/// One `recvmsg` without waiting (`WouldBlock` when the queue is empty).
fn recvmsg(fd: libc::c_int, buf: &mut [u8]) -> io::Result<Datagram> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // Room for a few control messages; u64 for the alignment `cmsghdr` needs.
    let mut control = [0u64; 16];
    let mut name = MaybeUninit::<libc::sockaddr_storage>::zeroed();
    // SAFETY: msghdr is plain data; all-zero is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = name.as_mut_ptr().cast();
    msg.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = size_of_val(&control) as _;
    // SAFETY: every pointer in `msg` points at live buffers of the lengths given.
    let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut drops = None;
    // SAFETY: the kernel filled `msg_control` up to `msg_controllen`; the CMSG
    // macros walk only inside it, and the data of SO_RXQ_OVFL is one u32.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SO_RXQ_OVFL {
                drops = Some(std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<u32>()));
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    // SAFETY: zero-initialised, and the kernel wrote at most `msg_namelen` bytes.
    let from = socket_addr(unsafe { name.assume_init_ref() });
    Ok(Datagram {
        len: (n as usize).min(buf.len()),
        from,
        drops,
    })
}

/// The sender's address, from the kernel's `sockaddr`.
fn socket_addr(s: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match s.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says it is a sockaddr_in, which fits the storage.
            let a = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddrV4::new(ip, u16::from_be(a.sin_port)).into())
        }
        libc::AF_INET6 => {
            // SAFETY: the family says it is a sockaddr_in6, which fits the storage.
            let a = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
            Some(
                SocketAddrV6::new(
                    ip,
                    u16::from_be(a.sin6_port),
                    a.sin6_flowinfo,
                    a.sin6_scope_id,
                )
                .into(),
            )
        }
        _ => None,
    }
}

/// Turns the kernel's cumulative u32 drop counts into a running u64 total.
#[derive(Debug, Default)]
pub(super) struct DropCount {
    last: u32,
}

impl DropCount {
    /// The drops new since the last count seen (the kernel's counter wraps at 2³²).
    pub fn update(&mut self, reported: Option<u32>) -> u64 {
        let Some(now) = reported else { return 0 };
        let new = now.wrapping_sub(self.last);
        self.last = now;
        new.into()
    }
}

#[cfg(test)]
mod tests {
    use super::DropCount;

    #[test]
    fn drop_counts_add_up_across_the_kernels_wrap() {
        let mut d = DropCount::default();
        assert_eq!(d.update(None), 0);
        assert_eq!(d.update(Some(5)), 5);
        assert_eq!(d.update(Some(5)), 0);
        assert_eq!(d.update(Some(u32::MAX)), u64::from(u32::MAX - 5));
        assert_eq!(d.update(Some(2)), 3);
    }
}
