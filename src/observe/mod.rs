//! Observability: where log lines go and how they look.
//! Metrics and xferlog join this module later.

pub mod http;
pub mod log;
pub mod metrics;
pub mod sdnotify;
pub mod sessions;
pub mod xferlog;
