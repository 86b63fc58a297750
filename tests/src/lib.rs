//! Helper programs and the benchmark for the littleboss integration tests.
