//! TCP connections of a manager that serves other machines. A peer that vanishes without a word
//! (its machine lost power, its network went away) must still be noticed, so that what it held
//! is let go of and a call waiting on it ends: keep-alive probes after a short idle time, and a
//! bound on how long sent data may stay unacknowledged.

use std::io;
use std::net::TcpStream;
use std::time::Duration;

use rustix::net::sockopt;

/// Idle time before the first keep-alive probe.
const IDLE: Duration = Duration::from_secs(10);
/// Time between probes.
const INTERVAL: Duration = Duration::from_secs(5);
/// Unanswered probes before the connection is dropped (so a silent peer is gone after about
/// 25 seconds).
const PROBES: u32 = 3;
/// How long sent data may stay unacknowledged before the connection is dropped, in ms.
const UNACKNOWLEDGED_MS: u32 = 30_000;

/// Sets up a manager's TCP connection: small messages go at once (no Nagle delay), and a peer
/// that vanished is noticed (see the module's docs) where the system offers the options (a
/// sandbox that refuses them leaves the connection as it is, still usable).
pub(crate) fn set_up(stream: &TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let _ = sockopt::set_socket_keepalive(stream, true)
        .and_then(|()| sockopt::set_tcp_keepidle(stream, IDLE))
        .and_then(|()| sockopt::set_tcp_keepintvl(stream, INTERVAL))
        .and_then(|()| sockopt::set_tcp_keepcnt(stream, PROBES));
    let _ = sockopt::set_tcp_user_timeout(stream, UNACKNOWLEDGED_MS);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_is_set_up_to_notice_a_vanished_peer() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        set_up(&stream).unwrap();
        assert!(stream.nodelay().unwrap());
        assert!(sockopt::socket_keepalive(&stream).unwrap());
        assert_eq!(sockopt::tcp_keepidle(&stream).unwrap(), IDLE);
        assert_eq!(sockopt::tcp_keepcnt(&stream).unwrap(), PROBES);
    }
}
