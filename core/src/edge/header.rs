//! One request header's text, read where it lies.
//!
//! axum's `HeaderMap` extractor clones the whole map (every name and value of the request), and
//! the handlers that want one header sit on the answer path of every round trip
//! (`POST /rpc/responses`, the Go-compatible `POST /response`). [`HeaderText`] copies the one
//! value instead. It never refuses: a handler that needs the header refuses its absence itself,
//! after the body has been checked, so the order of errors stays that of the handler.

use std::convert::Infallible;
use std::marker::PhantomData;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName};

/// A header a [`HeaderText`] reads.
pub trait NamedHeader {
    /// Its name (a constant: a `&str` would be parsed per lookup).
    const NAME: HeaderName;
}

/// The text of header `N`, when it has a non-empty one that is text.
#[derive(Debug)]
pub struct HeaderText<N>(Option<String>, PhantomData<fn() -> N>);

impl<N> HeaderText<N> {
    /// The value, if any.
    pub fn into_inner(self) -> Option<String> {
        self.0
    }
}

impl<N: NamedHeader, S: Send + Sync> FromRequestParts<S> for HeaderText<N> {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        Ok(HeaderText(header_text(&parts.headers, &N::NAME).map(str::to_owned), PhantomData))
    }
}

/// The text of header `name` in `headers`, when it has a non-empty one that is text.
pub fn header_text<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok()).filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Probe;
    impl NamedHeader for Probe {
        const NAME: HeaderName = HeaderName::from_static("x-probe");
    }

    async fn read(value: Option<&'static [u8]>) -> Option<String> {
        let mut request = axum::http::Request::builder();
        if let Some(value) = value {
            request = request.header("x-probe", value);
        }
        let (mut parts, ()) = request.body(()).expect("a valid request").into_parts();
        let Ok(text) = HeaderText::<Probe>::from_request_parts(&mut parts, &()).await;
        text.into_inner()
    }

    #[tokio::test]
    async fn reads_a_text_value_and_nothing_else() {
        assert_eq!(read(Some(b"w1")).await.as_deref(), Some("w1"));
        assert_eq!(read(Some(b"")).await, None, "empty is absent");
        assert_eq!(read(Some(b"caf\xc3\xa9")).await, None, "not visible ASCII is absent");
        assert_eq!(read(None).await, None);
    }
}
