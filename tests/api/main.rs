//! The API, tested from the outside: one integration binary (one link, one compile) whose
//! modules are the areas of the API.

mod auth;
mod conformance;
mod corruption;
mod cors;
mod crash;
mod dashboard;
mod datasets;
mod deletes;
mod disk_full;
mod events;
mod experiments;
mod extractors;
mod framing;
mod health;
mod helpers;
mod history;
mod hostile;
mod jobs;
mod limits;
mod memory;
mod models;
mod observability;
mod openapi;
mod orphans;
mod persistence;
mod plots;
mod predict;
mod process;
mod restart;
mod retry;
mod routing;
mod shutdown;
mod training;
mod v2;
mod weights;
