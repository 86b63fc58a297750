//! The program's service as each connection runs it: the [`Context`] in every request's
//! extensions, and, on HTTP/1 during lameduck, `Connection: close` on every response.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll, ready};

use http::header::{CONNECTION, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::Context;

/// The program's service `inner`, as one connection runs it.
#[derive(Debug)]
pub(crate) struct Wrapped<S> {
    pub inner: S,
    pub lb: Context,
    /// HTTP/1: close the connection after a response given during lameduck.
    pub http1: bool,
}

impl<S, B> hyper::service::Service<Request<Incoming>> for Wrapped<S>
where
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>>,
{
    type Response = Response<B>;
    type Error = S::Error;
    type Future = WrappedFuture<S::Future>;

    fn call(&self, mut request: Request<Incoming>) -> Self::Future {
        request.extensions_mut().insert(self.lb.clone());
        WrappedFuture {
            inner: self.inner.call(request),
            close_in_lameduck: self.http1.then(|| self.lb.clone()),
        }
    }
}

pin_project_lite::pin_project! {
    /// The program's response, with `Connection: close` added if lameduck has come.
    #[derive(Debug)]
    pub(crate) struct WrappedFuture<F> {
        #[pin]
        inner: F,
        close_in_lameduck: Option<Context>,
    }
}

impl<F, B, E> Future for WrappedFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = ready!(this.inner.poll(cx))?;
        if let Some(lb) = this.close_in_lameduck.as_ref() {
            // hyper closes the connection after a response that says so. An upgrade's
            // `101` keeps its own `Connection: upgrade`.
            if lb.is_lameduck() && response.status() != StatusCode::SWITCHING_PROTOCOLS {
                response
                    .headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
            }
        }
        Poll::Ready(Ok(response))
    }
}
