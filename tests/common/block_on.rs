//! The smallest executor, shared by the async tests and `benches/await_vs_get.rs` (which
//! includes this file by path).

use std::future::{Future, IntoFuture};
use std::sync::Arc;
use std::task::{Context, Poll, Wake};

/// Runs `f` on this thread, parking while it is pending.
pub fn block_on<F: IntoFuture>(f: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark()
        }
    }
    let waker = Arc::new(Unpark(std::thread::current())).into();
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f.into_future());
    loop {
        match f.as_mut().poll(&mut cx) {
            Poll::Ready(v) => return v,
            Poll::Pending => std::thread::park(),
        }
    }
}
