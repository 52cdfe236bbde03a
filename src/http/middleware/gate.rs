//! Middleware that costs no allocation on the way through: a [`Gate`] looks at a request
//! before the service behind it, and at the response after.
//!
//! axum's `middleware::from_fn` is convenient but not free: each call clones the whole stack
//! of services behind it (each boxed service in that stack is a new allocation), boxes its
//! future, and boxes the inner service again for `Next`. With six such layers, a one-row
//! prediction made 136 allocations (counted with callgrind over 275 requests), most of them
//! these clones. A [`Gated`] service calls the service behind it in place, after passing on
//! `poll_ready`, and its future is a plain enum: a gate allocates only when it must answer
//! with work of its own to do (reading a body to rewrite an error, say), which is the rare
//! path, and when the service behind answers with a body type other than axum's (tower-http's
//! panic catcher does), which is boxed once.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use axum::extract::Request;
use axum::response::Response;
use futures_util::future::BoxFuture;
use tower::{Layer, Service};

/// An answer from a gate: ready now, or to be computed.
pub(crate) enum Reply {
    /// This response.
    Now(Response),
    /// The response this future gives.
    Later(BoxFuture<'static, Response>),
}

/// What a middleware does before and after the service behind it.
pub(crate) trait Gate: Clone + Send + Sync + 'static {
    /// What the gate keeps from the request for the response.
    type Kept: Send + 'static;

    /// Passes the request on with what to keep, or answers it without calling the service
    /// behind.
    ///
    /// # Errors
    /// The answer, when the request goes no further.
    // A request one way, a response the other: both are large, and moved once.
    #[allow(clippy::result_large_err)]
    fn before(&self, request: Request) -> Result<(Self::Kept, Request), Reply>;

    /// The response the client gets, from the one the service behind gave.
    fn after(kept: Self::Kept, response: Response) -> Reply {
        let _ = kept;
        Reply::Now(response)
    }
}

/// The layer that puts a [`Gate`] before a service.
#[derive(Clone, Debug)]
pub(crate) struct GateLayer<G>(pub G);

impl<G: Gate, S> Layer<S> for GateLayer<G> {
    type Service = Gated<G, S>;

    fn layer(&self, inner: S) -> Self::Service {
        Gated {
            gate: self.0.clone(),
            inner,
        }
    }
}

/// A service behind a [`Gate`].
#[derive(Clone, Debug)]
pub(crate) struct Gated<G, S> {
    gate: G,
    inner: S,
}

impl<G, S, B> Service<Request> for Gated<G, S>
where
    G: Gate,
    S: Service<Request, Response = axum::http::Response<B>, Error = Infallible>,
    B: axum::body::HttpBody<Data = axum::body::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = GateFuture<S::Future, G::Kept>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        match self.gate.before(request) {
            Ok((kept, request)) => GateFuture::Inner {
                inner: self.inner.call(request),
                kept: Some(kept),
                after: G::after,
            },
            Err(Reply::Now(response)) => GateFuture::Done {
                response: Some(response),
            },
            Err(Reply::Later(future)) => GateFuture::Later { future },
        }
    }
}

pin_project_lite::pin_project! {
    /// The response of a [`Gated`] service.
    #[project = GateProjection]
    pub(crate) enum GateFuture<F, K> {
        /// The service behind is computing; then the gate's `after`.
        Inner {
            #[pin]
            inner: F,
            kept: Option<K>,
            after: fn(K, Response) -> Reply,
        },
        /// The gate's own answer, being computed.
        Later { future: BoxFuture<'static, Response> },
        /// The gate's own answer.
        Done { response: Option<Response> },
    }
}

impl<F, K, B> Future for GateFuture<F, K>
where
    F: Future<Output = Result<axum::http::Response<B>, Infallible>>,
    B: axum::body::HttpBody<Data = axum::body::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Output = Result<Response, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let later = match self.as_mut().project() {
                GateProjection::Inner { inner, kept, after } => {
                    // A `Body` already (from a gate behind this one) is kept as it is; another
                    // body type (tower-http's) is boxed once.
                    let response = match ready!(inner.poll(cx)) {
                        Ok(response) => response.map(axum::body::Body::new),
                        Err(never) => match never {},
                    };
                    let kept = kept
                        .take()
                        .expect("a gate's future is not polled after it is done");
                    match after(kept, response) {
                        Reply::Now(response) => return Poll::Ready(Ok(response)),
                        Reply::Later(future) => future,
                    }
                }
                GateProjection::Later { future } => return future.as_mut().poll(cx).map(Ok),
                GateProjection::Done { response } => {
                    let response = response
                        .take()
                        .expect("a gate's future is not polled after it is done");
                    return Poll::Ready(Ok(response));
                }
            };
            self.set(GateFuture::Later { future: later });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use axum::body::{to_bytes, Body};
    use axum::http::StatusCode;
    use tower::ServiceExt;

    use super::*;

    /// Turns away requests to `/no` at once and to `/later` after a wait, and rewrites a 404
    /// from the service behind into a 410 after a wait; counts the responses it saw.
    #[derive(Clone)]
    struct Test(Arc<AtomicUsize>);

    impl Gate for Test {
        type Kept = Arc<AtomicUsize>;

        fn before(&self, request: Request) -> Result<(Self::Kept, Request), Reply> {
            match request.uri().path() {
                "/no" => Err(Reply::Now(status(StatusCode::FORBIDDEN, "no"))),
                "/later" => Err(Reply::Later(Box::pin(async {
                    tokio::task::yield_now().await;
                    status(StatusCode::TOO_MANY_REQUESTS, "later")
                }))),
                _ => Ok((Arc::clone(&self.0), request)),
            }
        }

        fn after(seen: Self::Kept, response: Response) -> Reply {
            seen.fetch_add(1, Ordering::Relaxed);
            if response.status() != StatusCode::NOT_FOUND {
                return Reply::Now(response);
            }
            Reply::Later(Box::pin(async move {
                let body = to_bytes(response.into_body(), 1024)
                    .await
                    .unwrap_or_default();
                let text = format!("gone: {}", String::from_utf8_lossy(&body));
                status(StatusCode::GONE, &text)
            }))
        }
    }

    fn status(code: StatusCode, text: &str) -> Response {
        let mut response = Response::new(Body::from(text.to_owned()));
        *response.status_mut() = code;
        response
    }

    async fn answer(path: &str) -> (StatusCode, String, usize, usize) {
        let seen = Arc::new(AtomicUsize::new(0));
        let called = Arc::new(AtomicUsize::new(0));
        let behind = {
            let called = Arc::clone(&called);
            tower::service_fn(move |request: Request| {
                called.fetch_add(1, Ordering::Relaxed);
                let code = if request.uri().path() == "/missing" {
                    StatusCode::NOT_FOUND
                } else {
                    StatusCode::OK
                };
                async move { Ok::<_, Infallible>(status(code, "behind")) }
            })
        };
        let service = GateLayer(Test(Arc::clone(&seen))).layer(behind);
        let request = Request::builder()
            .uri(path)
            .body(Body::empty())
            .expect("a request");
        let Ok(response) = service.oneshot(request).await;
        let code = response.status();
        let body = to_bytes(response.into_body(), 1024).await.expect("a body");
        let text = String::from_utf8_lossy(&body).into_owned();
        (
            code,
            text,
            called.load(Ordering::Relaxed),
            seen.load(Ordering::Relaxed),
        )
    }

    #[tokio::test]
    async fn a_gate_passes_answers_or_rewrites_as_it_says() {
        // Passed through: the service behind answers, and the gate sees the response.
        assert_eq!(answer("/ok").await, (StatusCode::OK, "behind".into(), 1, 1));
        // Answered before: the service behind is never called.
        assert_eq!(
            answer("/no").await,
            (StatusCode::FORBIDDEN, "no".into(), 0, 0)
        );
        assert_eq!(
            answer("/later").await,
            (StatusCode::TOO_MANY_REQUESTS, "later".into(), 0, 0)
        );
        // Rewritten after, with the body the service behind gave.
        assert_eq!(
            answer("/missing").await,
            (StatusCode::GONE, "gone: behind".into(), 1, 1)
        );
    }
}
