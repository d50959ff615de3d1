//! Observability: where log lines go and how they look.
//! Metrics and xferlog join this module later.

pub mod log;
pub mod sdnotify;
