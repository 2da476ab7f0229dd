//! Placeholder removed once the conformance suite lands.
