//! What every request passes through before and after its handler, one file a concern.
//!
//! From the outside in (as [`crate::http::router`] stacks them): [`request_id`] (a client's
//! `x-request-id` kept or a UUIDv7 made, and the tracing span that carries it), [`metrics`]
//! (requests counted and timed by route template), the header-size limit and the per-route body
//! limits ([`body_limit`]), the framing RFC 9112 requires a server to refuse ([`framing`]), [`cors`] when origins are configured, the bearer-token check
//! ([`auth`]), the rewriting of bare errors into problem+json ([`problem_json`]), the request
//! timeout and the catching of panics. (Predictions are admitted by the prediction engine
//! once their body is read: `serving::admission`.)
//!
//! Most of them are [`gate::Gate`]s: middleware that allocates nothing on the way through.

pub mod auth;
pub mod body_limit;
pub mod cors;
pub(crate) mod framing;
pub(crate) mod gate;
pub(crate) mod metrics;
pub(crate) mod problem_json;
pub mod request_id;
