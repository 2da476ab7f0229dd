//! Backends: the clients that reach a model.

pub mod scripted;
