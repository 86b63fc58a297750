//! The program's service as each connection runs it: the [`Context`] in every request's
//! extensions; on HTTP/1 during lameduck, `Connection: close` on every response unless
//! the connection is to move to the new process; and, on a connection that may move,
//! the count of requests in flight ([`InFlight`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context as TaskContext, Poll, ready};
use std::time::Instant;

use http::header::{CONNECTION, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::sync::Notify;

use crate::Context;
use crate::http_counts::ListenerCounts;

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
    /// The listener's counts for the supervisor's metrics, if they are kept.
    pub counts: Option<Arc<ListenerCounts>>,
    /// What the connection says of itself to each request.
    pub info: ConnInfo,
}

/// What a connection says of itself in each of its requests' extensions, besides the
/// [`Context`]: what its TLS handshake said (feature `rustls`).
#[derive(Clone, Debug, Default)]
pub(crate) struct ConnInfo {
    #[cfg(feature = "rustls")]
    pub tls: Option<super::TlsInfo>,
}

impl ConnInfo {
    fn insert(&self, extensions: &mut http::Extensions) {
        #[cfg(feature = "rustls")]
        if let Some(tls) = &self.tls {
            extensions.insert(tls.clone());
        }
        let _ = extensions;
    }
}

/// What one connection that may move knows of itself: its requests in flight (from the
/// moment hyper hands one to the service until its response body is done with, written
/// in full or dropped), whether every exchange left it reusable, and, once lameduck has
/// come, whether it moves.
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    count: AtomicUsize,
    idle: Notify,
    /// Whether the last exchange leaves the connection not reusable: hyper closes it
    /// after it (an HTTP/1.0 request, `Connection: close` either way).
    spent: AtomicBool,
    /// Decided once, at lameduck: whether the successor adopts the listener's
    /// connections.
    moves: OnceLock<bool>,
}

impl InFlight {
    /// Whether the connection moves to the successor, decided the first time it is
    /// asked after lameduck, so that its responses and its end agree.
    pub(crate) fn moves(&self, lb: &Context, listener: &str) -> bool {
        *self.moves.get_or_init(|| lb.successor_adopts(listener))
    }

    /// Whether the last exchange left the connection reusable, at a request's boundary.
    pub(crate) fn reusable(&self) -> bool {
        !self.spent.load(Ordering::SeqCst)
    }

    fn spend(&self, spent: bool) {
        self.spent.store(spent, Ordering::SeqCst);
    }

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
        self.info.insert(request.extensions_mut());
        if let Some((_, in_flight)) = &self.moving {
            // A request with a body leaves it reusable too: the move takes place only
            // at the body's end (see `framing`).
            let reusable = request.version() == Version::HTTP_11 && !says_close(request.headers());
            in_flight.spend(!reusable);
        }
        WrappedFuture {
            inner: self.inner.call(request),
            lb: self.lb.clone(),
            http1: self.http1,
            moving: self.moving.clone(),
            guard: self.moving.as_ref().map(|(_, in_flight)| in_flight.start()),
            counts: self.counts.clone(),
            began: Instant::now(),
        }
    }
}

/// Whether `headers` say `Connection: close`.
fn says_close(headers: &http::HeaderMap) -> bool {
    headers.get_all(CONNECTION).iter().any(|value| {
        value.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|token| token.trim().eq_ignore_ascii_case("close"))
        })
    })
}

pin_project_lite::pin_project! {
    /// The program's response, with `Connection: close` added if lameduck has come (and
    /// the connection does not move).
    #[derive(Debug)]
    pub(crate) struct WrappedFuture<F> {
        #[pin]
        inner: F,
        lb: Context,
        // HTTP/1: `Connection: close` in lameduck.
        http1: bool,
        moving: Option<(Arc<str>, Arc<InFlight>)>,
        guard: Option<Guard>,
        counts: Option<Arc<ListenerCounts>>,
        // When the request was handed to the service.
        began: Instant,
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
        // Read once: lameduck can come (on another thread) between two reads, and a
        // connection about to move must not be told to close.
        let lb = &*this.lb;
        if *this.http1 && lb.is_winding_down() {
            // It moves after this response only if it is reusable; else it winds down
            // by closing, announced.
            let moves = match this.moving.as_ref() {
                Some((listener, in_flight)) => {
                    in_flight.moves(lb, listener) && in_flight.reusable()
                }
                None => false,
            };
            // hyper closes the connection after a response that says so. An upgrade's
            // `101` keeps its own `Connection: upgrade`.
            if !moves && response.status() != StatusCode::SWITCHING_PROTOCOLS {
                response
                    .headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
            }
        }
        if let Some((_, in_flight)) = this.moving.as_ref() {
            if says_close(response.headers()) {
                in_flight.spend(true);
            }
        }
        // During this process's probation, its 5xx share counts (`probation_5xx`).
        lb.count_response(response.status().as_u16());
        if let Some(counts) = this.counts {
            counts.observe(response.status().as_u16(), this.began.elapsed());
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
