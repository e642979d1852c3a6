//! The JSON body of a REST request: `web::Json`'s size limit and error shape (413
//! `payload_too_large`, 400 `invalid_json`), and one thing more: a number written with a zero
//! fraction (`6481.0`) is read as the integer it is where an integer is expected, because JSON
//! Schema (and so the OpenAPI document) counts it as one. A body that parses as it is costs no
//! more than with `web::Json`; only a body that fails is looked at again.

use std::future::Future;
use std::pin::Pin;

use actix_web::error::{JsonPayloadError, PayloadError};
use actix_web::{dev, web, FromRequest, HttpRequest};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::http::error::{json_error, ApiError};

/// A JSON request body of type `T`.
pub struct Json<T>(pub T);

impl<T> Json<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> std::ops::Deref for Json<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for Json<T> {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut dev::Payload) -> Self::Future {
        // The app sets PayloadConfig's limit to server.max_body_bytes, which is this limit.
        let limit = req
            .app_data::<web::Data<crate::runtime::RuntimeHandle>>()
            .map_or(0, |r| r.config().server.max_body_bytes);
        let length = req
            .headers()
            .get(actix_web::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let bytes = web::Bytes::from_request(req, payload);
        Box::pin(async move {
            let bytes = bytes.await.map_err(|e| match (e.as_error::<PayloadError>(), length) {
                (Some(PayloadError::Overflow), Some(length)) => {
                    json_error(JsonPayloadError::OverflowKnownLength { length, limit }).into()
                }
                (Some(PayloadError::Overflow), None) => json_error(JsonPayloadError::Overflow { limit }).into(),
                _ => e,
            })?;
            parse(&bytes).map(Json).map_err(actix_web::Error::from)
        })
    }
}

/// `bytes` as a `T`; integers written with a zero fraction are taken when nothing else is wrong.
/// Every REST body is a JSON object: serde would also read a struct from an array of its
/// fields in order (`["node-9", null, null]`), which no client means and the document forbids.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::new(actix_web::http::StatusCode::BAD_REQUEST, "invalid_json", "request body: expected a JSON object")
            .with_details(serde_json::json!({ "field": "body", "reason": "expected a JSON object" })));
    }
    let strict = match serde_json::from_slice::<T>(bytes) {
        Ok(value) => return Ok(value),
        Err(e) => e,
    };
    let retried = serde_json::from_slice::<Value>(bytes)
        .ok()
        .and_then(|mut v| integral_floats_to_integers(&mut v).then_some(v))
        .and_then(|v| serde_json::from_value::<T>(v).ok());
    retried.ok_or_else(|| json_error(JsonPayloadError::Deserialize(strict)))
}

/// Rewrites every float with a zero fraction that fits an integer as that integer; whether any
/// was rewritten.
fn integral_floats_to_integers(v: &mut Value) -> bool {
    match v {
        Value::Number(n) if n.is_f64() => {
            let whole = n.as_f64().filter(|f| f.fract() == 0.0);
            let integer = match whole {
                Some(f) if f >= 0.0 && f < u64::MAX as f64 => Some(serde_json::Number::from(f as u64)),
                Some(f) if f < 0.0 && f >= i64::MIN as f64 => Some(serde_json::Number::from(f as i64)),
                _ => None,
            };
            match integer {
                Some(i) => {
                    *n = i;
                    true
                }
                None => false,
            }
        }
        // Every one is rewritten, so no short circuit.
        Value::Array(items) => items.iter_mut().map(integral_floats_to_integers).fold(false, |any, one| any | one),
        Value::Object(map) => map.values_mut().map(integral_floats_to_integers).fold(false, |any, one| any | one),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct Link {
        delay_ms: u64,
        drop_rate: f64,
    }

    #[test]
    fn integers_with_a_zero_fraction_are_integers_and_nothing_else_changes() {
        let l: Link = parse(br#"{"delay_ms": 6481.0, "drop_rate": 0.5}"#).expect("6481.0 is an integer");
        assert_eq!(l, Link { delay_ms: 6481, drop_rate: 0.5 });
        let l: Link = parse(br#"{"delay_ms": 1, "drop_rate": 1.0}"#).expect("as it is");
        assert_eq!(l, Link { delay_ms: 1, drop_rate: 1.0 });
        let e = parse::<Link>(br#"{"delay_ms": 6481.5, "drop_rate": 0}"#).expect_err("a fraction is refused");
        assert_eq!((e.status.as_u16(), e.code.as_str()), (400, "invalid_json"));
        let e = parse::<Link>(br#"{"delay_ms": -1.0, "drop_rate": 0}"#).expect_err("negative");
        assert_eq!(e.code, "invalid_json");
        let e = parse::<Link>(b"{").expect_err("not JSON");
        assert_eq!(e.code, "invalid_json");
        let e = parse::<Link>(b"[1, 0.5]").expect_err("fields in order are not an object");
        assert_eq!(e.code, "invalid_json");
    }
}
