//! The program's service as each connection runs it: the [`Context`] in every request's
//! extensions; on HTTP/1 during lameduck, `Connection: close` on every response unless
//! the connection is to move to the new process; and, on a connection that may move,
//! the count of requests in flight ([`InFlight`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context as TaskContext, Poll, ready};

use http::header::{CONNECTION, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::sync::Notify;

use crate::Context;

/// The program's service `inner`, as one connection runs it.
#[derive(Debug)]
pub(crate) struct Wrapped<S> {
    pub inner: S,
    pub lb: Context,
    /// HTTP/1: close the connection after a response given during lameduck.
    pub http1: bool,
    /// A connection that may move: its listener (it moves if the successor adopts that
    /// listener's connections, and then says no `Connection: close`) and its count of
    /// requests in flight.
    pub moving: Option<(Arc<str>, Arc<InFlight>)>,
}

/// Requests of one connection in flight: from the moment hyper hands one to the
/// service until its response body is done with (written in full, or dropped).
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    count: AtomicUsize,
    idle: Notify,
}

impl InFlight {
    fn start(self: &Arc<Self>) -> Guard {
        self.count.fetch_add(1, Ordering::SeqCst);
        Guard(Arc::clone(self))
    }

    /// Until no request is in flight.
    pub(crate) async fn idle(&self) {
        loop {
            let idle = self.idle.notified();
            let mut idle = std::pin::pin!(idle);
            idle.as_mut().enable();
            if self.count.load(Ordering::SeqCst) == 0 {
                return;
            }
            idle.await;
        }
    }
}

/// One request in flight, until dropped.
#[derive(Debug)]
pub(crate) struct Guard(Arc<InFlight>);

impl Drop for Guard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl<S, B> hyper::service::Service<Request<Incoming>> for Wrapped<S>
where
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>>,
{
    type Response = Response<Counted<B>>;
    type Error = S::Error;
    type Future = WrappedFuture<S::Future>;

    fn call(&self, mut request: Request<Incoming>) -> Self::Future {
        request.extensions_mut().insert(self.lb.clone());
        let close_in_lameduck = match &self.moving {
            _ if !self.http1 => None,
            Some((listener, _)) => Some((self.lb.clone(), Some(Arc::clone(listener)))),
            None => Some((self.lb.clone(), None)),
        };
        WrappedFuture {
            inner: self.inner.call(request),
            close_in_lameduck,
            guard: self.moving.as_ref().map(|(_, in_flight)| in_flight.start()),
        }
    }
}

pin_project_lite::pin_project! {
    /// The program's response, with `Connection: close` added if lameduck has come (and
    /// the connection does not move).
    #[derive(Debug)]
    pub(crate) struct WrappedFuture<F> {
        #[pin]
        inner: F,
        close_in_lameduck: Option<(Context, Option<Arc<str>>)>,
        guard: Option<Guard>,
    }
}

impl<F, B, E> Future for WrappedFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<Counted<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = ready!(this.inner.poll(cx))?;
        if let Some((lb, listener)) = this.close_in_lameduck.as_ref() {
            let moves = listener
                .as_ref()
                .is_some_and(|listener| lb.successor_adopts(listener));
            // hyper closes the connection after a response that says so. An upgrade's
            // `101` keeps its own `Connection: upgrade`.
            if lb.is_lameduck() && !moves && response.status() != StatusCode::SWITCHING_PROTOCOLS {
                response
                    .headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
            }
        }
        let guard = this.guard.take();
        Poll::Ready(Ok(response.map(|inner| Counted { inner, guard })))
    }
}

pin_project_lite::pin_project! {
    /// A response body that counts as in flight until it is done with.
    #[derive(Debug)]
    pub(crate) struct Counted<B> {
        #[pin]
        inner: B,
        guard: Option<Guard>,
    }
}

impl<B: Body> Body for Counted<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
