//! The API, tested from the outside: one integration binary (one link, one compile) whose
//! modules are the areas of the API.

mod extractors;
mod health;
mod helpers;
mod openapi;
mod routing;
